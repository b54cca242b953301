"""SavedModel export for TF Serving: python -m exports.export (console script ``zoo-export``).

An entry point like the trainers: loading the package first loads TensorFlow without its CPU-only start-up
notices, so ``zoo-export`` prints no CUDA errors on a machine without a GPU. That start-up step is the one
``trainers/startup.py`` holds; it must run before anything imports ``zoo`` (Keras loads TensorFlow), and
``trainers.startup`` imports only the standard library, so this is the one import of ``trainers`` here.
"""

from trainers.startup import quiet_tensorflow_startup

quiet_tensorflow_startup()

"""absl-flag trainers and tools: python -m trainers.train (``zoo-train``), trainers.sample, trainers.yt8m_*.

These are console entry points, not a library: loading the package first loads TensorFlow without its
CPU-only start-up notices (``trainers/startup.py``), so that no entry point prints CUDA errors on a
machine without a GPU.
"""

from trainers.startup import quiet_tensorflow_startup

quiet_tensorflow_startup()

"""zoo: a TensorFlow 2 / Keras 3 model zoo for HyperNetworks and YouTube-8M."""

from setuptools import find_packages, setup

setup(
    name="zoo",
    version="0.1.0",
    description="HyperNetworks (Ha, Dai, Le 2016) and YouTube-8M (Abu-El-Haija et al. 2016) in Keras 3",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11,<3.13",
    packages=find_packages(include=["zoo", "zoo.*", "trainers", "trainers.*", "exports", "exports.*"]),
    install_requires=[
        "tensorflow>=2.21,<2.22",
        "keras>=3.15,<4",
        "tensorboard>=2.21,<2.22",
        "absl-py>=2.0,<3",
        "numpy>=1.26,<3",
        "matplotlib>=3.7,<4",
        "h5py>=3.8",  # .weights.h5 files in zoo.transfer
        # PredictionLog protos for TF Serving warmup records written by exports/.
        "tensorflow-serving-api>=2.21,<2.22",
        # Single-stroke vector fonts: the embedded handwriting dataset (--dataset=hershey).
        "hershey-fonts>=2.1,<3",
        # Translation (HyperNetworks §4.6): subword model learned from the training text, the same
        # tokenizer as graph ops inside the exported SavedModel, BLEU, and the embedded number-names corpus.
        "sentencepiece>=0.2,<0.3",
        "tensorflow-text>=2.21,<2.22",
        "sacrebleu>=2.4,<3",
        "num2words==0.5.14",  # pinned: the embedded corpus is generated from its output
    ],
    extras_require={
        # The quickstart's embedded data: the 1,797 handwritten digits that ship inside scikit-learn.
        "digits": ["scikit-learn>=1.3,<2"],
        # Other Keras 3 backends for the library half (zoo.layers, zoo.models, zoo.losses; README "Other
        # backends"): KERAS_BACKEND=jax or torch. tf.data, the trainer and the exporter stay TensorFlow.
        "jax": ["jax>=0.10,<0.11"],
        "torch": ["torch>=2.13,<2.14"],
        # Decoding video files for zoo-yt8m-extract (PyAV bundles FFmpeg).
        "video": ["av>=14"],
        # Preprocessing at dataset scale on Apache Beam (zoo-yt8m-preprocess --runner=...). Beside TF 2.21 it
        # resolves protobuf to 6.33 (Beam needs <7); google-crc32c: checksums for Beam's TFRecord sink.
        "beam": ["apache-beam>=2.77,<2.78", "google-crc32c>=1.5,<2"],
        "test": [
            "pytest>=8,<10",
            "pytest-xdist>=3.5,<4",
            "pytest-timeout>=2.2,<3",
            "scikit-learn>=1.3,<2",
            "ruff>=0.6",
            "av>=14",
            "apache-beam>=2.77,<2.78",
            "google-crc32c>=1.5,<2",
        ],
    },
    entry_points={
        "console_scripts": [
            "zoo-train=trainers.train:run",
            "zoo-export=exports.export:run",
            "zoo-sample=trainers.sample:run",
            "zoo-yt8m-eval=trainers.yt8m_eval:run",
            "zoo-yt8m-infer=trainers.yt8m_infer:run",
            "zoo-yt8m-synthetic=trainers.yt8m_synthetic:run",
            "zoo-yt8m-preprocess=trainers.yt8m_preprocess:run",
            "zoo-yt8m-extract=trainers.yt8m_extract:run",
            "zoo-translate=trainers.translate:run",
        ]
    },
)

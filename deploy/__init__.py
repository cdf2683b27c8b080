"""Deploy searched networks to phones: TFLite export and quantization, profiling, latency LUTs.

Light on import: TensorFlow, LiteRT and tensorflow-model-optimization are imported by the
modules that need them (tfmot only inside the QAT subprocess, see `deploy.qat`).
"""

"""Keras -> TFLite conversion (fp32, fp16, dynamic-range, full int8) and running a .tflite.

Full int8 has int8 input and output;
`run_tflite` quantizes images and dequantizes logits so every mode is compared in float.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from typing import Iterable

import numpy as np

QUANTIZE_MODES = ("none", "fp16", "dynamic", "int8", "qat")
CALIBRATION_STEPS = 100


def representative_dataset(images: np.ndarray, steps: int = CALIBRATION_STEPS):
    """The converter's calibration callback: one image (batch 1) per step."""
    def gen() -> Iterable[list[np.ndarray]]:
        for image in images[:steps]:
            yield [image[None].astype(np.float32)]
    return gen


def to_tflite(model, quantize: str = "none", calibration: np.ndarray | None = None) -> bytes:
    """Converts a Keras 3 model; `calibration` images are required for "int8"."""
    import tensorflow as tf

    # Private, but the converter's own freezing step: a concrete function of a Keras 3 model
    # handed over unfrozen can keep READ_VARIABLE ops whose values LiteRT never sets.
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2)

    if quantize not in QUANTIZE_MODES or quantize == "qat":
        raise ValueError(f"to_tflite handles {QUANTIZE_MODES[:4]}, not {quantize!r}")
    # The inference graph with the weights frozen into it. from_keras_model gives the same
    # ops but goes through a SavedModel written and read back: 3-4x slower (56 s against
    # 16 s for a 224 px fbnet net).
    model = batch_one(model)
    spec = tf.TensorSpec(model.inputs[0].shape, model.inputs[0].dtype or tf.float32)
    graph = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
    frozen = convert_variables_to_constants_v2(graph)
    # Without a trackable object the converter takes its frozen-graph path, which it calls
    # deprecated (and says so on stderr); with one it writes a SavedModel again.
    absl_logger = logging.getLogger("absl")
    level = absl_logger.level
    absl_logger.setLevel(logging.ERROR)
    try:
        converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen])
    finally:
        absl_logger.setLevel(level)
    configure(converter, quantize, calibration)
    return quiet_convert(converter)


def quiet_convert(converter) -> bytes:
    """`converter.convert()` without the quantizer's C++ line on stdout ("fully_quantize: 0,
    ...", which would break a CLI's --json output) and its input-statistics warning."""
    sys.stdout.flush()
    saved, devnull = os.dup(1), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Statistics for quantized inputs")
            return converter.convert()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def batch_one(model):
    """The model with a static batch of 1: XNNPACK does not take a dynamic batch dimension,
    and phones run one image at a time."""
    import keras

    if model.inputs[0].shape[0] == 1:
        return model
    inputs = keras.Input(batch_shape=(1, *model.inputs[0].shape[1:]))
    return keras.Model(inputs, model(inputs, training=False), name=model.name)


def configure(converter, quantize: str, calibration: np.ndarray | None) -> None:
    """Sets a converter's optimization options for one quantization mode."""
    import tensorflow as tf

    if quantize == "none":
        return
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    elif quantize in ("int8", "qat"):
        # QAT graphs carry fake-quant ranges, but layers tfmot leaves float (shuffles, SE
        # gates) still need calibrated ranges to become int8.
        if calibration is None:
            raise ValueError(f"{quantize} conversion needs calibration images")
        converter.representative_dataset = representative_dataset(calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8


def interpreter(model: bytes | str, threads: int = 1):
    """A LiteRT interpreter (XNNPACK on by default) from file contents or a path."""
    from ai_edge_litert.interpreter import Interpreter

    kwargs = {"model_content": model} if isinstance(model, bytes) else {"model_path": model}
    interp = Interpreter(num_threads=threads, **kwargs)
    interp.allocate_tensors()
    return interp


def quantize_input(images: np.ndarray, detail: dict) -> np.ndarray:
    """Float images -> the input tensor's dtype (int8/uint8 with its scale and zero point)."""
    dtype = detail["dtype"]
    if dtype == np.float32:
        return images.astype(np.float32)
    scale, zero = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(images / scale + zero), info.min, info.max).astype(dtype)


def dequantize_output(values: np.ndarray, detail: dict) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return values.astype(np.float32)
    scale, zero = detail["quantization"]
    return (values.astype(np.float32) - zero) * scale


def run_tflite(model: bytes | str, images: np.ndarray, threads: int = 1) -> np.ndarray:
    """Float logits of a .tflite on `images` [N, H, W, C], one image per invoke."""
    interp = interpreter(model, threads)
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    expected = tuple(inp["shape"][1:])
    if tuple(images.shape[1:]) != expected:
        raise ValueError(f"images of shape {images.shape[1:]} for a model input {expected}")
    logits = []
    for image in images:
        interp.set_tensor(inp["index"], quantize_input(image[None], inp))
        interp.invoke()
        logits.append(dequantize_output(interp.get_tensor(out["index"]), out)[0])
    return np.stack(logits)

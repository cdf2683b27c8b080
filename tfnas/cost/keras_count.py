"""FLOPs counted from a built Keras model by walking its layers: the independent check of
the closed-form cost model. Multiply-adds of Conv2D, DepthwiseConv2D and Dense only."""

from __future__ import annotations

import keras


def count_flops(model: keras.Model) -> int:
    total = 0
    for layer in _leaf_layers(model):
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            kh, kw = layer.kernel_size
            _, h, w, c = layer.output.shape
            total += h * w * kh * kw * c
        elif isinstance(layer, keras.layers.Conv2D):
            kh, kw = layer.kernel_size
            cin = layer.input.shape[-1]
            _, h, w, cout = layer.output.shape
            total += h * w * kh * kw * (cin // layer.groups) * cout
        elif isinstance(layer, keras.layers.Dense):
            total += layer.input.shape[-1] * layer.units
    return int(total)


def _leaf_layers(model: keras.Model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _leaf_layers(layer)
        else:
            yield layer

"""The layers of one block, shared by the standalone builder and the supernet's candidate ops.

The standalone builder gets built-in Keras layers only, so its net can be rebuilt layer by
layer in tf_keras (quantization-aware training); the supernet swaps in subclasses with the
same weights (group conv, fused BatchNorm). Layers match by name across builds. Names are
`<position>.<part>`, e.g. `layer3_2.expand_conv` (Keras 3 forbids '/' in layer names).
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import layers

from tfnas.cost.analytic import se_channels
from tfnas.space.ops import OpSpec, parse_op

BN_MOMENTUM = 0.99
BN_EPSILON = 1e-3


def activation(kind: str, name: str) -> layers.Layer:
    if kind == "relu":
        return layers.ReLU(name=name)
    if kind == "swish":
        return layers.Activation("swish", name=name)
    raise ValueError(f"unknown activation {kind!r}")


@keras.saving.register_keras_serializable(package="tfnas")
class FusedBatchNorm(layers.BatchNormalization):
    """BatchNormalization whose training call is TensorFlow's fused kernel (FusedBatchNormV3).

    Keras 3 normalizes a batch with some twenty small ops (moments, moving averages, the
    affine), and a supernet step traces, differentiates and exports as `Case` intermediates
    every one of them for every candidate op; the fused op and its fused gradient are one op
    each. Same weights as the built-in layer. As in tf.keras's fused path, the moving variance
    averages the unbiased batch variance. Inference, and any setting the kernel does not
    cover, is the built-in call.
    """

    def call(self, inputs, training=None, mask=None):
        fusable = (training and self.trainable and mask is None and not self.renorm
                   and not self.synchronized and self.center and self.scale
                   and len(inputs.shape) == 4 and self.axis in (-1, 3))
        if not fusable:
            return super().call(inputs, training=training, mask=mask)
        y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            tf.cast(inputs, tf.float32), tf.cast(self.gamma, tf.float32),
            tf.cast(self.beta, tf.float32), mean=tf.cast(self.moving_mean, tf.float32),
            variance=tf.cast(self.moving_variance, tf.float32), epsilon=self.epsilon,
            is_training=True, exponential_avg_factor=1.0 - self.momentum)
        self.moving_mean.assign(tf.cast(mean, self.moving_mean.dtype))
        self.moving_variance.assign(tf.cast(variance, self.moving_variance.dtype))
        return tf.cast(y, self.compute_dtype)


BatchNorm = type[layers.BatchNormalization]


def batch_norm(name: str, cls: BatchNorm = layers.BatchNormalization,
               gamma_initializer: str = "ones") -> layers.Layer:
    return cls(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, gamma_initializer=gamma_initializer,
               name=name)


def conv_bn_act(filters: int, kernel: int, stride: int, act: str | None,
                prefix: str, bn: BatchNorm = layers.BatchNormalization) -> list[layers.Layer]:
    """Conv (no bias) -> BN -> activation, named `<prefix>.conv/.bn/.act`."""
    out = [layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False,
                         name=f"{prefix}.conv"),
           batch_norm(f"{prefix}.bn", bn)]
    if act:
        out.append(activation(act, f"{prefix}.act"))
    return out


class BlockLayers:
    """Creates the built-in layers of one block and applies them.

    MBConv: 1x1 expand (kept when e = 1, as in FBNet) -> BN -> act -> [shuffle] -> k x k
    depthwise -> BN -> act -> [SE] -> 1x1 project -> BN, with an identity residual when the
    shape is kept. `skip` has no layers. `in_hw` is the input's spatial size, needed only by
    the channel shuffle of group ops. `group_conv` is the class of the group-2 1x1 convs (the
    supernet passes one whose CPU gradient needs no XLA) and `bn` that of the BatchNorms (the
    supernet passes a fused one); both keep the built-in layer's weights. `zero_init_residual`
    starts the last BN's scale of a residual op at zero, so the op starts as the identity.
    """

    def __init__(self, op: str | OpSpec, in_channels: int, out_channels: int, stride: int,
                 act: str, prefix: str, in_hw: tuple[int, int] | None = None,
                 group_conv: type[layers.Conv2D] = layers.Conv2D,
                 bn: BatchNorm = layers.BatchNormalization, zero_init_residual: bool = False):
        self.spec = parse_op(op) if isinstance(op, str) else op
        self.prefix = prefix
        self.residual = stride == 1 and in_channels == out_channels
        spec, p = self.spec, prefix
        self.pre: list[layers.Layer] = []  # up to the depthwise conv's activation
        self.se: list[layers.Layer] = []
        self.post: list[layers.Layer] = []
        if spec.is_skip:
            return
        mid = in_channels * spec.expansion
        conv = group_conv if spec.groups > 1 else layers.Conv2D
        if spec.kind == "mbconv":
            self.pre += [
                conv(mid, 1, padding="same", use_bias=False, groups=spec.groups,
                     name=f"{p}.expand_conv"),
                batch_norm(f"{p}.expand_bn", bn),
                activation(act, f"{p}.expand_act"),
            ]
            if spec.groups > 1:
                if in_hw is None:
                    raise ValueError("a group op needs the input's spatial size (in_hw)")
                h, w = in_hw
                g = spec.groups
                self.pre += [layers.Reshape((h * w, g, mid // g), name=f"{p}.shuffle_split"),
                             layers.Permute((1, 3, 2), name=f"{p}.shuffle_swap"),
                             layers.Reshape((h, w, mid), name=f"{p}.shuffle_merge")]
        self.pre += [
            layers.DepthwiseConv2D(spec.kernel, stride, padding="same", use_bias=False,
                                   name=f"{p}.dw_conv"),
            batch_norm(f"{p}.dw_bn", bn),
            activation(act, f"{p}.dw_act"),
        ]
        if spec.se:
            squeezed = se_channels(in_channels)
            self.se = [
                layers.GlobalAveragePooling2D(keepdims=True, name=f"{p}.se_pool"),
                layers.Conv2D(squeezed, 1, name=f"{p}.se_reduce"),
                activation(act, f"{p}.se_act"),
                layers.Conv2D(mid, 1, activation="sigmoid", name=f"{p}.se_expand"),
            ]
            self.se_gate = layers.Multiply(name=f"{p}.se_gate")
        self.post = [
            conv(out_channels, 1, padding="same", use_bias=False, groups=spec.groups,
                 name=f"{p}.project_conv"),
            batch_norm(f"{p}.project_bn", bn,
                       "zeros" if zero_init_residual and self.residual else "ones"),
        ]
        if self.residual:
            self.add = layers.Add(name=f"{p}.add")

    @property
    def layers(self) -> list[layers.Layer]:
        extra = [getattr(self, a) for a in ("se_gate", "add") if hasattr(self, a)]
        return self.pre + self.se + self.post + extra

    def build(self, input_shape) -> None:
        """Builds every layer from shapes alone (much faster than a symbolic call)."""
        shape = tuple(input_shape)
        for layer in self.pre:
            shape = _build(layer, shape)
        if self.se:
            s = shape
            for layer in self.se:
                s = _build(layer, s)
            self.se_gate.build([shape, s])
        for layer in self.post:
            shape = _build(layer, shape)
        if self.residual and not self.spec.is_skip:
            self.add.build([tuple(input_shape), shape])

    def __call__(self, x, training=None):
        if self.spec.is_skip:
            return x
        y = x
        for layer in self.pre:
            y = _apply(layer, y, training)
        if self.se:
            s = y
            for layer in self.se:
                s = _apply(layer, s, training)
            y = self.se_gate([y, s])
        for layer in self.post:
            y = _apply(layer, y, training)
        return self.add([x, y]) if self.residual else y


def _build(layer: layers.Layer, shape: tuple) -> tuple:
    layer.build(shape)
    return tuple(layer.compute_output_shape(shape))


def _apply(layer: layers.Layer, x, training):
    if isinstance(layer, (layers.BatchNormalization, layers.Dropout)):
        return layer(x, training=training)
    return layer(x)


def stem_layers(channels: int, act: str,
                bn: BatchNorm = layers.BatchNormalization) -> list[layers.Layer]:
    return conv_bn_act(channels, 3, 2, act, "stem", bn)


def head_layers(channels: int, num_classes: int, act: str, dropout_rate: float = 0.0,
                bn: BatchNorm = layers.BatchNormalization) -> list[layers.Layer]:
    out = conv_bn_act(channels, 1, 1, act, "head", bn)
    out.append(layers.GlobalAveragePooling2D(name="head.pool"))
    if dropout_rate > 0:
        out.append(layers.Dropout(dropout_rate, name="head.dropout"))
    out.append(layers.Dense(num_classes, name="head.fc"))
    return out


def apply_sequence(seq: list[keras.layers.Layer], x, training=None):
    for layer in seq:
        x = _apply(layer, x, training)
    return x

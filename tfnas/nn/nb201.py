"""Standalone Keras model of an NAS-Bench-201 cell genotype (the benchmark's macro net).

stem conv3x3 C + BN; 3 stages of N cells at C, 2C, 4C with a residual reduction block
(ReLU-Conv3x3-BN stride 2, ReLU-Conv3x3-BN, shortcut avg-pool 2x2 + conv1x1) between stages;
BN-ReLU, global average pool, fc. Cell ops are ReLU-Conv-BN (`nor_conv_*`), identity,
3x3 average pooling that ignores padding, and `none` (a zero contribution). A node whose
inputs are all `none` is a zero tensor, and ops applied to it still exist (and count), as
in NAS-Bench-201. Ops whose node feeds nothing (`dead_edges`) do not change the output and
Keras leaves them out of the model. Only built-in layers are used; names are
`stage1_cell2.edge3_1.conv`.
"""

from __future__ import annotations

import keras
from keras import layers

from tfnas.nn.blocks import BatchNorm, apply_sequence, batch_norm
from tfnas.space.genotype import Genotype
from tfnas.space.nb201 import (CONV_KERNELS, EDGES, NOMINAL_CLASSES, NOMINAL_RESOLUTION,
                               NUM_NODES, NB201Space, parse_nb201)
from tfnas.space.registry import get_space


def relu_conv_bn(filters: int, kernel: int, stride: int, prefix: str,
                 bn: BatchNorm = layers.BatchNormalization) -> list[layers.Layer]:
    return [layers.ReLU(name=f"{prefix}.relu"),
            layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False,
                          name=f"{prefix}.conv"),
            batch_norm(f"{prefix}.bn", bn)]


def edge_layers(op: str, channels: int, prefix: str,
                bn: BatchNorm = layers.BatchNormalization) -> list[layers.Layer] | None:
    """The layers of one cell edge; [] is the identity and None the `none` op. `bn`: the
    BatchNorm class (the template network passes a fused one; same weights)."""
    if op == "none":
        return None
    if op == "skip_connect":
        return []
    if op == "avg_pool_3x3":
        return [layers.AveragePooling2D(3, 1, padding="same", name=f"{prefix}.pool")]
    return relu_conv_bn(channels, CONV_KERNELS[op], 1, prefix, bn)


def cell(x, ops: tuple[str, ...], channels: int, prefix: str):
    """One cell: node i is the sum over j < i of op(i<-j)(node j)."""
    nodes = [x]
    for to in range(1, NUM_NODES):
        terms = []
        for (t, frm), op in zip(EDGES, ops):
            if t != to:
                continue
            edge = edge_layers(op, channels, f"{prefix}.edge{t}_{frm}")
            if edge is not None:
                terms.append(apply_sequence(edge, nodes[frm]))
        if not terms:
            nodes.append(keras.ops.zeros_like(x))
        elif len(terms) == 1:
            nodes.append(terms[0])
        else:
            nodes.append(layers.Add(name=f"{prefix}.node{to}")(terms))
    return nodes[-1]


def reduction_block(x, cin: int, cout: int, prefix: str):
    """NAS-Bench-201's ResNet basic block with stride 2 and a pooled 1x1 shortcut."""
    y = apply_sequence(relu_conv_bn(cout, 3, 2, f"{prefix}.conv_a")
                       + relu_conv_bn(cout, 3, 1, f"{prefix}.conv_b"), x)
    shortcut = apply_sequence([
        layers.AveragePooling2D(2, 2, padding="valid", name=f"{prefix}.shortcut_pool"),
        layers.Conv2D(cout, 1, use_bias=False, name=f"{prefix}.shortcut_conv")], x)
    return layers.Add(name=f"{prefix}.add")([y, shortcut])


def build_nb201_model(genotype: Genotype | str, num_classes: int = NOMINAL_CLASSES,
                      input_shape: tuple[int, int, int] = (NOMINAL_RESOLUTION,
                                                           NOMINAL_RESOLUTION, 3),
                      space: NB201Space | None = None, name: str | None = None,
                      dropout_rate: float = 0.0) -> keras.Model:
    """The network of an nb201 genotype (comma form or `|op~0|+...` string); `dropout_rate`
    adds dropout before the classifier (retraining; NAS-Bench-201's own net has none)."""
    space = space or get_space("nb201")
    if not isinstance(genotype, Genotype):
        genotype = parse_nb201(genotype)
    c1 = space.stage_channels[0]
    inputs = keras.Input(input_shape, name="image")
    x = apply_sequence([layers.Conv2D(c1, 3, padding="same", use_bias=False, name="stem.conv"),
                        batch_norm("stem.bn")], inputs)
    cin = c1
    for stage, channels in enumerate(space.stage_channels, start=1):
        if channels != cin:
            x = reduction_block(x, cin, channels, f"reduce{stage}")
            cin = channels
        for i in range(1, space.cells_per_stage + 1):
            x = cell(x, genotype.ops, channels, f"stage{stage}_cell{i}")
    head = [batch_norm("head.bn"), layers.ReLU(name="head.relu"),
            layers.GlobalAveragePooling2D(name="head.pool")]
    if dropout_rate > 0:
        head.append(layers.Dropout(dropout_rate, name="head.dropout"))
    x = apply_sequence(head + [layers.Dense(num_classes, name="head.fc")], x)
    return keras.Model(inputs, x, name=name or "nb201_child")

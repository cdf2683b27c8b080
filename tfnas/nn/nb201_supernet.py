"""SETN's template network of the NAS-Bench-201 space: every edge of every cell holds all five ops.

The six decisions (edges) are shared by the 15 cells, as in NAS-Bench-201: a sampled path
picks one op per edge and every cell runs it with its own weights. The net has the same
interface as `SuperNet` (`forward`, `allowed_mask`, `candidate_groups`, `is_pinned`,
`path_layers`), so the `tfnas.engine` steps, every forward mode of `tfnas.nn.sampling` and
`tfnas.engine.extract_child` work on it unchanged. Layer names match the standalone builder's
(`stage1_cell2.edge3_1.conv`), so a path's weights copy into `build_nb201_model` by name.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from tfnas.nn.blocks import FusedBatchNorm, apply_sequence, batch_norm
from tfnas.nn.nb201 import edge_layers, relu_conv_bn
from tfnas.nn.supernet import PinnedDecisions, local_index, run_candidates
from tfnas.space.genotype import Genotype
from tfnas.space.nb201 import EDGES, NB201_OPS, NUM_NODES, NB201Space, dead_edges
from tfnas.space.registry import get_space

_PACKAGE = "tfnas"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class EdgeOp(keras.layers.Layer):
    """One op on one edge of one cell (`none` outputs zeros)."""

    def __init__(self, op: str, channels: int, prefix: str, **kwargs):
        kwargs.setdefault("name", f"{prefix}.{op}")
        super().__init__(**kwargs)
        self.op, self.channels, self.prefix = op, channels, prefix
        self.parts = edge_layers(op, channels, prefix, FusedBatchNorm) or []

    def build(self, input_shape):
        shape = tuple(input_shape)
        for layer in self.parts:
            layer.build(shape)
            shape = tuple(layer.compute_output_shape(shape))

    def call(self, x, training=None):
        if self.op == "none":
            return keras.ops.zeros_like(x)
        return apply_sequence(self.parts, x, training)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "op": self.op, "channels": self.channels,
                "prefix": self.prefix}


class _Edge:
    """The candidate ops of one edge of one cell."""

    def __init__(self, decision: int, candidates: list[EdgeOp], alphabet_index: list[int]):
        self.decision, self.candidate_ops = decision, candidates
        self.alphabet_index = alphabet_index
        self.local = local_index(len(NB201_OPS), alphabet_index)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class NB201SuperNet(PinnedDecisions, keras.Model):
    """The template (weight-sharing) network of the nb201 space.

    `fixed`: {edge: op index} pins edges to one op (only that op is built there).
    """

    width_multiplier, dropout_rate = 1.0, 0.0  # C is the width; the child as built

    def __init__(self, num_classes: int = 10, input_shape: tuple[int, int, int] = (32, 32, 3),
                 channels: int = 16, cells_per_stage: int = 5,
                 fixed: dict[int, int] | None = None, **kwargs):
        kwargs.setdefault("name", "nb201_supernet")
        super().__init__(**kwargs)
        base = get_space("nb201")
        self.space = self.base_space = (NB201Space(channels, cells_per_stage)
                                        if (channels, cells_per_stage) != (16, 5) else base)
        self.space_name = "nb201"
        self.num_classes, self.channels, self.cells_per_stage = (
            int(num_classes), int(channels), int(cells_per_stage))
        self.image_shape = tuple(int(d) for d in input_shape)
        self.fixed = {int(k): int(v) for k, v in (fixed or {}).items()}
        for edge, op in self.fixed.items():
            if not (0 <= edge < len(EDGES) and 0 <= op < len(NB201_OPS)):
                raise ValueError(f"fixed edge {edge} / op {op} out of range (6 edges x 5 ops)")
        allowed = self.allowed_mask()
        c1 = self.space.stage_channels[0]
        self.stem = [layers.Conv2D(c1, 3, padding="same", use_bias=False, name="stem.conv"),
                     batch_norm("stem.bn", FusedBatchNorm)]
        self.stages = []  # per stage: (reduction (main, shortcut) or None, [cell edges])
        self.edge_op_layers = []  # tracked, so weights save and load
        cin = c1
        for stage, c in enumerate(self.space.stage_channels, start=1):
            reduction = None
            if c != cin:
                p = f"reduce{stage}"
                reduction = (relu_conv_bn(c, 3, 2, f"{p}.conv_a", FusedBatchNorm)
                             + relu_conv_bn(c, 3, 1, f"{p}.conv_b", FusedBatchNorm),
                             [layers.AveragePooling2D(2, 2, padding="valid",
                                                      name=f"{p}.shortcut_pool"),
                              layers.Conv2D(c, 1, use_bias=False, name=f"{p}.shortcut_conv")])
                cin = c
            cells = []
            for i in range(1, cells_per_stage + 1):
                edges = []
                for d, (to, frm) in enumerate(EDGES):
                    ops = [int(o) for o in np.flatnonzero(allowed[d])]
                    prefix = f"stage{stage}_cell{i}.edge{to}_{frm}"
                    cands = [EdgeOp(NB201_OPS[o], c, prefix) for o in ops]
                    self.edge_op_layers.extend(cands)
                    edges.append(_Edge(d, cands, ops))
                cells.append(edges)
            self.stages.append((reduction, cells))
        self.reduction_layers = [l for r, _ in self.stages if r for l in r[0] + r[1]]
        self.head = [batch_norm("head.bn", FusedBatchNorm), layers.ReLU(name="head.relu"),
                     layers.GlobalAveragePooling2D(name="head.pool"),
                     layers.Dense(num_classes, name="head.fc")]
        self.build((None, *self.image_shape))

    # -- the interface the engine steps use ----------------------------------------------------
    @property
    def num_layers(self) -> int:
        return len(EDGES)

    @property
    def num_ops(self) -> int:
        return len(NB201_OPS)

    def is_pinned(self, layer: int) -> bool:
        return layer in self.fixed

    def candidate_groups(self) -> list[tuple[int, int, EdgeOp]]:
        """(edge, alphabet op index, op layer) for every op of every cell."""
        return [(edge.decision, o, op) for _, cells in self.stages for edges in cells
                for edge in edges for o, op in zip(edge.alphabet_index, edge.candidate_ops)]

    def shared_layers(self) -> list[keras.layers.Layer]:
        return self.stem + self.reduction_layers + self.head

    def path_layers(self, indices) -> list[keras.layers.Layer]:
        """The built-in layers of one path as `build_nb201_model` holds them: the shared
        layers and the path's ops, except on dead edges, which the child leaves out."""
        dead = set(dead_edges(Genotype.from_indices(self.base_space,
                                                    [int(i) for i in indices])))
        out = list(self.shared_layers())
        for edge, op_index, op in self.candidate_groups():
            if op_index == int(indices[edge]) and edge not in dead:
                out += op.parts
        return out

    # -- forward -------------------------------------------------------------------------------
    def build(self, input_shape):
        # One symbolic pass through every op builds all weights (the net is small).
        self._run(keras.KerasTensor(tuple(input_shape)), None, None, None, False, build=True)

    def build_from_config(self, config):
        pass  # built in __init__

    def call(self, inputs, training=None, indices=None, weights=None, single_path=True):
        if indices is None:
            if not self.fully_fixed:
                raise ValueError("NB201SuperNet needs sampled op indices unless every edge is "
                                 "pinned")
            indices = tf.constant(self.fixed_indices(), tf.int32)
        return self._run(inputs, training, indices, weights, single_path)

    def _run(self, x, training, indices, weights, single_path, build=False):
        x = apply_sequence(self.stem, x, training)
        for reduction, cells in self.stages:
            if reduction is not None:
                main, shortcut = reduction
                x = apply_sequence(main, x, training) + apply_sequence(shortcut, x, training)
            for edges in cells:
                x = self._cell(x, edges, training, indices, weights, single_path, build)
        return apply_sequence(self.head, x, training)

    def _cell(self, x, edges, training, indices, weights, single_path, build):
        nodes = [x]
        for to in range(1, NUM_NODES):
            terms = []
            for (t, frm), edge in zip(EDGES, edges):
                if t != to:
                    continue
                if build:  # symbolic: run every op once so that it builds
                    outs = [op(nodes[frm], training=training) for op in edge.candidate_ops]
                    terms.append(outs[0])
                    continue
                terms.append(run_candidates(
                    edge.candidate_ops, edge.alphabet_index, edge.local, nodes[frm], training,
                    indices[edge.decision],
                    None if weights is None else weights[edge.decision], single_path))
            nodes.append(terms[0] if len(terms) == 1 else keras.ops.sum(
                keras.ops.stack(terms), axis=0))
        return nodes[-1]

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable, "num_classes": self.num_classes,
                "input_shape": list(self.image_shape), "channels": self.channels,
                "cells_per_stage": self.cells_per_stage,
                "fixed": {str(k): v for k, v in self.fixed.items()}}

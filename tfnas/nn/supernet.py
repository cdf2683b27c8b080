"""Weight-sharing supernet of an MBConv space: one `SuperBlock` per searchable layer.

A SuperBlock holds every candidate op of its position (`CandidateOp`, built from the same
`BlockLayers` as the standalone builder, so `layer3_2.expand_conv` names the same layer in
both). A single-path call runs only the sampled op through a functional `Case` (see
`tfnas.nn.control`); an all-op call sums the weighted outputs. Every candidate is built in `build()`, so a tf.function step never
creates variables and never retraces when the sampled path changes.

Use:
    net = SuperNet("fbnet", num_classes=10, input_shape=(32, 32, 3), width_multiplier=0.5)
    arch = ArchParams(net.allowed_mask())
    logits = net.forward(images, arch.sample("gumbel_max"), training=True)
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from tfnas.errors import TfnasError
from tfnas.nn import blocks, control
from tfnas.nn.builder import _spatial
from tfnas.nn.sampling import ArchSample
from tfnas.space.genotype import Genotype, parse_genotype
from tfnas.space.mbconv import NOMINAL_CLASSES, NOMINAL_RESOLUTION, MBConvSpace
from tfnas.space.registry import get_space

_PACKAGE = "tfnas"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class GroupConv2D(keras.layers.Conv2D):
    """Conv2D whose groups run as one dense conv with a block-diagonal kernel.

    Keras 3 compiles grouped convs with XLA on CPU (TF's CPU gradient of a grouped conv
    fails); XLA has no place on the sampled path. Same weights and layout as Conv2D.
    """

    def convolution_op(self, inputs, kernel):
        g = self.groups
        if g == 1:
            return super().convolution_op(inputs, kernel)
        in_per_group = kernel.shape[-2]
        columns = [tf.pad(part, [[0, 0], [0, 0], [j * in_per_group, (g - 1 - j) * in_per_group],
                                 [0, 0]])
                   for j, part in enumerate(tf.split(kernel, g, axis=-1))]
        return super().convolution_op(inputs, tf.concat(columns, axis=-1))


@keras.saving.register_keras_serializable(package=_PACKAGE)
class CandidateOp(keras.layers.Layer):
    """One op at one position: the built-in layers of `BlockLayers(op, ...)`.

    Its sublayers carry the standalone builder's names (`<position>.<part>`). A residual op
    starts as the identity (zero BN scale at its end): a single path through a deep supernet
    then starts as a shallow net, and stage 2 of a search learns where, with every residual op
    at full scale, the randomly drawn paths did not (loss flat at chance on MNIST, lr 0.1).
    """

    def __init__(self, op: str, in_channels: int, out_channels: int, stride: int,
                 activation: str, position: str, in_hw: tuple[int, int] | None = None, **kwargs):
        kwargs.setdefault("name", f"{position}.{op}")
        super().__init__(**kwargs)
        self.op, self.position = op, position
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.activation = activation
        self.in_hw = tuple(in_hw) if in_hw is not None else None
        self.block = blocks.BlockLayers(op, in_channels, out_channels, stride, activation,
                                        position, in_hw=self.in_hw, group_conv=GroupConv2D,
                                        bn=blocks.FusedBatchNorm, zero_init_residual=True)
        self.parts = list(self.block.layers)  # tracked, so weights save and load

    def build(self, input_shape):
        self.block.build(input_shape)

    def call(self, x, training=None):
        return self.block(x, training=training)

    def compute_output_shape(self, input_shape):
        n, h, w, _ = input_shape
        s = self.stride
        return (n, None if h is None else math.ceil(h / s),
                None if w is None else math.ceil(w / s), self.out_channels)

    def get_config(self):
        return {**super().get_config(), "op": self.op, "in_channels": self.in_channels,
                "out_channels": self.out_channels, "stride": self.stride,
                "activation": self.activation, "position": self.position,
                "in_hw": list(self.in_hw) if self.in_hw else None}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SuperBlock(keras.layers.Layer):
    """Every candidate op of one searchable position.

    `ops` is the space's op alphabet (the index space of θ's columns); `candidates` the subset
    held here (one op when the layer is fixed). Called with an `ArchSample` row: `index`
    (scalar int, alphabet index) and optionally `weights` (row [O] of the sample's weights).
    """

    def __init__(self, position: str, ops: list[str], candidates: list[str], in_channels: int,
                 out_channels: int, stride: int, activation: str,
                 in_hw: tuple[int, int] | None = None, **kwargs):
        kwargs.setdefault("name", position)
        super().__init__(**kwargs)
        unknown = [op for op in candidates if op not in ops]
        if unknown or not candidates:
            raise ValueError(f"{position}: candidates {candidates} not in the alphabet {ops}")
        self.position, self.ops, self.candidates = position, list(ops), list(candidates)
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.activation = activation
        self.in_hw = tuple(in_hw) if in_hw is not None else None
        self.candidate_ops = [
            CandidateOp(op, in_channels, out_channels, stride, activation, position, self.in_hw)
            for op in self.candidates]
        self.alphabet_index = [self.ops.index(op) for op in self.candidates]
        self._local = local_index(len(self.ops), self.alphabet_index)

    def build(self, input_shape):
        for op in self.candidate_ops:
            op.build(input_shape)

    def candidate(self, op: str) -> CandidateOp:
        if op not in self.candidates:
            raise ValueError(f"{self.position}: op {op!r} is not a candidate here "
                             f"(candidates: {', '.join(self.candidates)})")
        return self.candidate_ops[self.candidates.index(op)]

    def call(self, x, training=None, index=None, weights=None, single_path=True):
        return run_candidates(self.candidate_ops, self.alphabet_index, self._local, x, training,
                              index, weights, single_path)

    def compute_output_shape(self, input_shape):
        return self.candidate_ops[0].compute_output_shape(input_shape)

    def get_config(self):
        return {**super().get_config(), "position": self.position, "ops": self.ops,
                "candidates": self.candidates, "in_channels": self.in_channels,
                "out_channels": self.out_channels, "stride": self.stride,
                "activation": self.activation,
                "in_hw": list(self.in_hw) if self.in_hw else None}


@tf.custom_gradient
def scale_by_unit_weight(y, weight):
    """`y * weight` for a straight-through weight whose value is exactly 1 (gumbel_max).

    The forward is `y` itself and `y`'s gradient passes unchanged, as the product would give
    them bit for bit; only the weight's gradient, Σ dy·y, is computed. This spares two full
    passes over the activation per searchable layer in every step. The sum runs in float32:
    under mixed_float16 the loss-scaled products overflow float16.
    """
    def grad(dy):
        return dy, tf.cast(tf.reduce_sum(tf.cast(dy, tf.float32) * tf.cast(y, tf.float32)),
                           weight.dtype)
    return tf.identity(y), grad


def run_candidates(candidates: list, alphabet_index: list[int], local: np.ndarray, x,
                   training, index, weights, single_path: bool):
    """The output of one searchable position (what every supernet's positions share).

    `candidates` are the layers held (alphabet ops `alphabet_index`; `local` maps an alphabet
    index to a position in `candidates`). Single path: only the op `index` runs, scaled by
    `weights[index]` when given (value 1 in gumbel_max; the straight-through gradient to θ).
    Otherwise every op runs, weighted by `weights` [O].
    """
    if single_path:
        if len(candidates) == 1:
            y = candidates[0](x, training=training)
        else:
            branches = [(lambda op=op: op(x, training=training)) for op in candidates]
            y = control.switch_case(tf.gather(tf.constant(local), index), branches)
        if weights is not None:
            y = scale_by_unit_weight(y, tf.gather(weights, index))
        return y
    w = tf.gather(weights, alphabet_index)
    outs = [op(x, training=training) for op in candidates]
    return tf.add_n([tf.cast(w[i], o.dtype) * o for i, o in enumerate(outs)])


def local_index(num_ops: int, alphabet_index: list[int]) -> np.ndarray:
    """Alphabet index -> position among the held candidates (0 for ops not held)."""
    local = np.zeros(num_ops, dtype=np.int32)
    local[alphabet_index] = np.arange(len(alphabet_index))
    return local


class PinnedDecisions:
    """What every supernet shares (`SuperNet`, `NB201SuperNet`): decisions pinned by `fixed`
    {decision: op index} within `base_space`'s legal ops, and the forward of a sample."""

    def allowed_mask(self) -> np.ndarray:
        """L x O: ops that may be drawn (legal, and the pinned op alone where pinned)."""
        mask = self.base_space.legal_mask()
        for layer, op in self.fixed.items():
            mask[layer] = False
            mask[layer, op] = True
        return mask

    @property
    def fully_fixed(self) -> bool:
        return len(self.fixed) == self.num_layers

    def fixed_indices(self) -> list[int]:
        """Op indices of a fully pinned supernet."""
        return [self.fixed[i] for i in range(self.num_layers)]

    def forward(self, images, sample: ArchSample | None = None, training=None):
        """The logits of `images` on the path (or mixture) of `sample`."""
        if sample is None:
            return self(images, training=training)
        return self(images, training=training, indices=sample.indices, weights=sample.weights,
                    single_path=sample.single_path)

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["fixed"] = {int(k): int(v) for k, v in (config.get("fixed") or {}).items()}
        return cls(**config)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SuperNet(PinnedDecisions, keras.Model):
    """The supernet of a registered MBConv space.

    - `fixed`: {layer index: op index} pins layers to one op (only that op is built there).
    - `vital_only`: HourNAS stage 1's minimal supernet: every non-vital layer is identity
      (pinned to `skip`), only the vital layers are searched.
    Call: `net.forward(images, sample, training=...)` (or `net(images, training=...,
    indices=, weights=, single_path=)`); the sample may be omitted only when every layer is
    pinned. θ is [num_layers, num_ops] of the space whatever is pinned; `allowed_mask()` says
    which entries may be drawn.
    """

    def __init__(self, space: str | MBConvSpace, num_classes: int = NOMINAL_CLASSES,
                 input_shape: tuple[int, int, int] = (NOMINAL_RESOLUTION, NOMINAL_RESOLUTION, 3),
                 width_multiplier: float = 1.0, fixed: dict[int, int] | None = None,
                 vital_only: bool = False, dropout_rate: float = 0.0, **kwargs):
        base = get_space(space) if isinstance(space, str) else space
        if not isinstance(base, MBConvSpace):
            raise TfnasError(f"space {base.name!r} is not an MBConv space; SuperNet needs one")
        kwargs.setdefault("name", f"{base.name}_supernet")
        super().__init__(**kwargs)
        self.space_name = base.name
        self.base_space = base
        self.num_classes = int(num_classes)
        self.image_shape = tuple(int(d) for d in input_shape)
        self.width_multiplier = float(width_multiplier)
        self.dropout_rate = float(dropout_rate)
        self.vital_only = bool(vital_only)
        self.fixed = pinned_layers(base, fixed, vital_only)
        sp = base.with_width(width_multiplier) if width_multiplier != 1.0 else base
        self.space = sp
        act = sp.activation
        self.stem = blocks.stem_layers(sp.stem_channels, act, blocks.FusedBatchNorm)
        hw = _spatial(self.image_shape[:2], sp.stem_stride)
        self.fixed_blocks = []
        for layer in sp.fixed_layers:
            self.fixed_blocks.append(CandidateOp(layer.fixed_op, layer.in_channels,
                                                 layer.out_channels, layer.stride, act,
                                                 layer.name, hw))
            hw = _spatial(hw, layer.stride)
        allowed = self.allowed_mask()
        self.super_blocks = []
        for i, layer in enumerate(sp.layers):
            candidates = [sp.ops[o] for o in np.flatnonzero(allowed[i])]
            self.super_blocks.append(SuperBlock(layer.name, list(sp.ops), candidates,
                                                layer.in_channels, layer.out_channels,
                                                layer.stride, act, hw))
            hw = _spatial(hw, layer.stride)
        self.head = blocks.head_layers(sp.head_channels, self.num_classes, act,
                                       self.dropout_rate, blocks.FusedBatchNorm)
        self.build((None, *self.image_shape))

    @property
    def num_layers(self) -> int:
        return len(self.super_blocks)

    @property
    def num_ops(self) -> int:
        return len(self.space.ops)

    def is_pinned(self, layer: int) -> bool:
        """Whether one op only is held at `layer` (it runs on every path)."""
        return len(self.super_blocks[layer].candidate_ops) == 1

    def build(self, input_shape):
        x = blocks.apply_sequence(self.stem, keras.KerasTensor(tuple(input_shape)))
        for block in self.fixed_blocks:
            x = block(x)
        shape = x.shape
        for block in self.super_blocks:
            block.build(shape)
            shape = block.compute_output_shape(shape)
        blocks.apply_sequence(self.head, keras.KerasTensor(shape))

    def build_from_config(self, config):
        pass  # built in __init__ (every candidate op, with the model's input shape)

    def call(self, inputs, training=None, indices=None, weights=None, single_path=True):
        """`indices` [L] and `weights` [L, O] (or None) are an `ArchSample`'s; see `forward`."""
        if indices is None:
            if not self.fully_fixed:
                raise ValueError("SuperNet needs sampled op indices unless every layer is pinned")
            indices = tf.constant(self.fixed_indices(), tf.int32)
        x = blocks.apply_sequence(self.stem, inputs, training)
        for block in self.fixed_blocks:
            x = block(x, training=training)
        for i, block in enumerate(self.super_blocks):
            x = block(x, training=training, index=indices[i],
                      weights=None if weights is None else weights[i], single_path=single_path)
        return blocks.apply_sequence(self.head, x, training)

    def shared_layers(self) -> list[keras.layers.Layer]:
        """Stem, fixed blocks and head: the layers every path uses."""
        return self.stem + self.fixed_blocks + self.head

    def path_layers(self, indices) -> list[keras.layers.Layer]:
        """The built-in layers of one path (stem, fixed blocks, its ops, head): the child's."""
        out = list(self.stem)
        for block in self.fixed_blocks:
            out += block.parts
        for block, index in zip(self.super_blocks, indices):
            out += block.candidate(self.space.ops[int(index)]).parts
        return out + list(self.head)

    def candidate_groups(self) -> list[tuple[int, int, CandidateOp]]:
        """(layer, alphabet op index, op layer) for every candidate op held."""
        return [(i, o, op) for i, block in enumerate(self.super_blocks)
                for o, op in zip(block.alphabet_index, block.candidate_ops)]

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable, "space": self.space_name,
                "num_classes": self.num_classes, "input_shape": list(self.image_shape),
                "width_multiplier": self.width_multiplier,
                "fixed": {str(k): int(v) for k, v in self.fixed.items()}
                if not self.vital_only else _without_vital_pins(self),
                "vital_only": self.vital_only, "dropout_rate": self.dropout_rate}


def pinned_layers(space: MBConvSpace, fixed: dict[int, int] | None,
                  vital_only: bool) -> dict[int, int]:
    """Validated {layer: op index} pins, plus `skip` at every non-vital layer if `vital_only`."""
    pins: dict[int, int] = {}
    legal = space.legal_mask()
    for layer, op in (fixed or {}).items():
        layer, op = int(layer), int(op)
        if not (0 <= layer < space.num_layers and 0 <= op < space.num_ops):
            raise TfnasError(f"fixed layer {layer} / op {op} out of range for space "
                             f"{space.name!r} ({space.num_layers} layers x {space.num_ops} ops)")
        if not legal[layer, op]:
            raise TfnasError(f"{space.layers[layer].name}: op {space.ops[op]!r} is not legal there")
        pins[layer] = op
    if vital_only:
        if "skip" not in space.ops:
            raise TfnasError(f"space {space.name!r} has no skip op for a vital-only supernet")
        skip = space.ops.index("skip")
        for layer in np.flatnonzero(~space.vital_mask()):
            pins.setdefault(int(layer), skip)
    return dict(sorted(pins.items()))


def _without_vital_pins(net: SuperNet) -> dict[str, int]:
    """The user's own pins of a vital-only net (the skip pins are re-derived on load)."""
    skip = net.space.ops.index("skip")
    vital = net.base_space.vital_mask()
    return {str(k): int(v) for k, v in net.fixed.items() if vital[k] or v != skip}


def genotype_indices(net: PinnedDecisions, genotype: Genotype | str | None) -> list[int]:
    """Alphabet indices of `genotype` (default: the pins of a fully pinned net)."""
    if genotype is None:
        if not net.fully_fixed:
            raise ValueError("give a genotype: the supernet is not pinned at every layer")
        return net.fixed_indices()
    if not isinstance(genotype, Genotype):
        genotype = parse_genotype(net.base_space, genotype)
    return [net.space.ops.index(op) for op in genotype.ops]

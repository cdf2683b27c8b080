"""From search to deployment: copy a supernet path's weights into the standalone child."""

from __future__ import annotations

import keras

from tfnas.nn.builder import build_model
from tfnas.nn.supernet import PinnedDecisions, genotype_indices
from tfnas.space.genotype import Genotype


def copy_to_child(net: PinnedDecisions, child: keras.Model,
                  genotype: Genotype | str | None = None) -> None:
    """Copies every weight of the path into `child` (built by `build_model` for the same
    genotype, width and classes), matching layers by name; every child weight must be
    covered, and every weight of the path used."""
    source = {layer.name: layer for layer in net.path_layers(genotype_indices(net, genotype))
              if layer.weights}
    for layer in child.layers:
        if not layer.weights:
            continue
        if layer.name not in source:
            raise ValueError(f"child layer {layer.name!r} has no counterpart in the supernet")
        layer.set_weights(source.pop(layer.name).get_weights())
    if source:
        raise ValueError(f"supernet layers missing in the child: {', '.join(sorted(source))}")


def extract_child(net: PinnedDecisions, genotype: Genotype | str | None = None,
                  dropout_rate: float | None = None) -> keras.Model:
    """The standalone child of `genotype` (default: the pins of a fully pinned supernet) with
    the supernet's weights: the model to fine-tune, export and deploy. Any supernet: an
    MBConv `SuperNet` or the nb201 template."""
    indices = genotype_indices(net, genotype)
    genotype = Genotype.from_indices(net.base_space, indices)
    child = build_model(net.base_space, genotype, net.num_classes, net.image_shape,
                        net.width_multiplier,
                        net.dropout_rate if dropout_rate is None else dropout_rate)
    copy_to_child(net, child, genotype)
    return child

"""Search spaces as data: topology, vital flags and legality are derived, not typed in."""

import json

import numpy as np
import pytest

from tfnas.errors import GenotypeError, UnknownSpaceError
from tfnas.space import Genotype, get_space, list_spaces, parse_genotype, register_space
from tfnas.space.catalog import fbnet
from tfnas.space.published import PUBLISHED

MBCONV_SPACES = ["fbnet", "fbnet_enlarged", "mnasnet", "efficientnet"]


@pytest.mark.parametrize("name,layers,ops", [
    ("fbnet", 22, 9), ("fbnet_enlarged", 22, 10), ("mnasnet", 21, 13), ("efficientnet", 22, 7)])
def test_space_sizes_match_the_paper(name, layers, ops):
    space = get_space(name)
    assert (space.num_layers, space.num_ops) == (layers, ops)


def test_fbnet_topology():
    space = get_space("fbnet")
    names = [layer.name for layer in space.layers]
    assert names[:3] == ["layer1_1", "layer2_1", "layer2_2"] and names[-1] == "layer7_1"
    assert [l.out_channels for l in space.layers[1::4]] == [24, 32, 64, 112, 184, 352]
    assert [l.in_resolution for l in space.layers[1::4]] == [112, 56, 28, 14, 14, 7]
    vital = [l.name for l in space.layers if l.vital]
    # layer1_1 keeps 16 -> 16 channels at stride 1: not vital in FBNet.
    assert vital == ["layer2_1", "layer3_1", "layer4_1", "layer5_1", "layer6_1", "layer7_1"]


def test_vital_and_skip_rules_follow_the_topology():
    for name in MBCONV_SPACES:
        space = get_space(name)
        for layer in space.layers:
            shape_changes = layer.stride != 1 or layer.in_channels != layer.out_channels
            assert ("skip" in layer.legal_ops) == (not shape_changes), layer
            first_of_stage = layer.name.endswith("_1")
            assert layer.vital == (first_of_stage and shape_changes), layer
            assert not (layer.vital and "skip" in layer.legal_ops)
    # EfficientNet's layer1_1 goes from the 32-channel stem to 16: vital, no skip.
    eff = get_space("efficientnet").layers[0]
    assert eff.vital and "skip" not in eff.legal_ops


def test_mnasnet_has_a_fixed_sepconv_block():
    space = get_space("mnasnet")
    assert [(l.name, l.fixed_op, l.out_channels) for l in space.fixed_layers] == [
        ("layer1_1", "sep3", 16)]
    assert space.layers[0].name == "layer2_1" and space.layers[0].in_channels == 16


def test_unknown_space_names_the_known_ones():
    with pytest.raises(UnknownSpaceError, match="known spaces: .*efficientnet, fbnet, fbnet_enlarged, mnasnet"):
        get_space("resnet")


def test_registry_accepts_new_spaces():
    register_space("my_fbnet", lambda: fbnet())
    try:
        assert "my_fbnet" in list_spaces()
        assert get_space("my_fbnet").num_layers == 22
    finally:
        from tfnas.space import registry
        registry._FACTORIES.pop("my_fbnet")
        registry._CACHE.pop("my_fbnet", None)


def test_genotype_string_and_json_round_trip():
    for published in PUBLISHED.values():
        genotype = published.genotype()
        assert str(parse_genotype(published.space, str(genotype))) == published.arch
        assert Genotype.from_json(json.dumps(genotype.to_json())) == genotype
        space = get_space(published.space)
        assert Genotype.from_indices(space, genotype.indices()) == genotype


@pytest.mark.parametrize("arch,message", [
    ("k3e1,k5e6", "has 22 searchable layers, got 2 ops"),
    (",".join(["k9e9"] * 22), "layer1_1: unknown op 'k9e9'; legal ops are k3g2"),
    ("k3e1," + ",".join(["skip"] * 21), "layer2_1: op 'skip' is not legal here"),
    ("", "empty architecture string"),
])
def test_genotype_defects_have_one_clear_message(arch, message):
    with pytest.raises(GenotypeError, match=message):
        parse_genotype("fbnet", arch)


def test_genotype_json_defects():
    with pytest.raises(GenotypeError, match="needs the keys"):
        Genotype.from_json({"arch": "x"})
    with pytest.raises(GenotypeError, match="does not parse"):
        Genotype.from_json("{not json")
    with pytest.raises(UnknownSpaceError):
        Genotype.from_json({"space": "nope", "arch": "skip"})


def test_legal_mask_matches_choices():
    space = get_space("mnasnet")
    mask = space.legal_mask()
    assert mask.shape == (21, 13)
    assert mask[:, space.ops.index("skip")].sum() == 21 - 6  # six vital layers
    assert np.all(mask[:, :-1])

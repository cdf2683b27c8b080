"""`python -m tfnas.describe`: the table, the JSON interface (SPEC §5) and its bad input."""

import json

import pytest
from conftest import assert_one_line_error, run_cli

from tfnas.errors import TfnasError
from tfnas.space.genotype import load_genotype
from tfnas.space.published import PUBLISHED

HOURNAS_F = PUBLISHED["HourNAS-F"]


def test_json_interface():
    proc = run_cli("tfnas.describe", "--space=efficientnet", f"--arch={HOURNAS_F.arch}", "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["space"] == "efficientnet" and info["arch"] == HOURNAS_F.arch
    assert isinstance(info["params"], int) and isinstance(info["flops"], int)
    assert info["params"] == 5316020
    assert abs(info["flops"] / 383e6 - 1) < 0.002


def test_table_lists_every_layer_and_published_names_resolve():
    proc = run_cli("tfnas.describe", "--arch=HourNAS-E")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert any(line.startswith("layer1_1   sep3 (fixed)") for line in lines)
    assert sum(line.startswith("layer") for line in lines) == 22 + 1  # + header
    assert "FLOPs 313.2M" in proc.stdout


def test_arch_json_file(tmp_path):
    path = tmp_path / "arch.json"
    path.write_text(json.dumps({"space": "fbnet", "arch": PUBLISHED["HourNAS-A"].arch}))
    proc = run_cli("tfnas.describe", f"--arch={path}", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["arch"] == PUBLISHED["HourNAS-A"].arch


def test_arch_directory_and_non_string_arch(tmp_path):
    """--arch resolution shared by describe, train and deploy.export (load_genotype)."""
    with pytest.raises(TfnasError, match="is a directory without arch.json"):
        load_genotype(str(tmp_path), "fbnet")
    path = tmp_path / "arch.json"
    path.write_text(json.dumps({"space": "fbnet", "arch": [1, 2, 3]}))
    with pytest.raises(TfnasError, match='the "arch" field must be an op string'):
        load_genotype(str(path))
    path.write_text(json.dumps({"space": "fbnet", "arch": PUBLISHED["HourNAS-A"].arch}))
    assert str(load_genotype(str(tmp_path))) == PUBLISHED["HourNAS-A"].arch


def test_bad_inputs_give_one_line(tmp_path):
    fbnet_22 = lambda op: ",".join([op] * 22)  # noqa: E731
    cases = [
        (["--space=nope", "--arch=k3e1"], "unknown search space 'nope'"),
        (["--space=fbnet", "--arch=k3e1,k5e6"], "has 22 searchable layers, got 2"),
        (["--space=fbnet", f"--arch={fbnet_22('k4e4')}"], "unknown op 'k4e4'; legal ops"),
        (["--space=fbnet", f"--arch={fbnet_22('skip')}"], "'skip' is not legal here"),
        (["--space=fbnet"], "--arch is required"),
        (["--space=fbnet", "--arch=k3e1", "--colour=red"], "Unknown command line flag"),
        (["--arch=missing.json"], "cannot read missing.json"),
        (["--space=mnasnet", "--arch=HourNAS-F"], "is in space 'efficientnet'"),
    ]
    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    cases.append(([f"--arch={bad}"], "is not valid JSON"))
    cases.append((["--space=fbnet", f"--arch={tmp_path}"], "is a directory without arch.json"))
    undecodable = tmp_path / "latin1.json"
    undecodable.write_bytes(b"\xff\xfe junk")
    cases.append(([f"--arch={undecodable}"], "is not valid JSON"))
    for flag in ("--resolution=0", "--num_classes=0"):
        cases.append((["--arch=HourNAS-A", flag], "--resolution must be >= 8"))
    for args, fragment in cases:
        assert_one_line_error(run_cli("tfnas.describe", *args), fragment)


def test_nb201_costs_name_their_resolution():
    arch = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|none~1|none~2|"
    for args, shown in (([], "32x32"), (["--resolution=64"], "64x64")):
        proc = run_cli("tfnas.describe", "--space=nb201", f"--arch={arch}", *args)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip().endswith(f"multiply-adds at {shown}"), proc.stdout

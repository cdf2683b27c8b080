"""Atomic output files: an unwritable path is one clear error before anything is written."""

import os
import subprocess
import sys

import pytest
from conftest import ROOT

from tfnas.errors import TfnasError
from tfnas.io import atomic_path, check_output_path, remove_stale_temp_files


def test_atomic_path_writes_whole_files_and_makes_parents(tmp_path):
    path = tmp_path / "new" / "dir" / "out.json"
    with atomic_path(str(path)) as tmp:
        with open(tmp, "w") as f:
            f.write("{}")
        assert not path.exists()  # visible only once complete
    assert path.read_text() == "{}"
    assert os.listdir(path.parent) == ["out.json"]


def test_unwritable_paths_are_refused_and_nothing_is_touched(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("keep")
    a_dir = tmp_path / "a_dir"
    a_dir.mkdir()
    cases = [(a_file / "sub" / "out.json", f"{a_file} is a file, not a directory"),
             (a_dir, "is a directory; give a file path")]
    for path, fragment in cases:
        with pytest.raises(TfnasError, match=fragment):
            check_output_path(str(path))
        with pytest.raises(TfnasError, match=fragment):
            with atomic_path(str(path)):
                pytest.fail("atomic_path yielded for an unwritable path")
    assert a_file.read_text() == "keep" and os.listdir(a_dir) == []


def test_a_resumed_run_removes_the_temp_files_a_kill_left(tmp_path):
    from tfnas.search.rundir import RunDir

    run = RunDir(str(tmp_path))
    config = {"flags": {"space": "fbnet"}}
    assert run.claim(config) is False
    with pytest.raises(KeyboardInterrupt):  # killed mid-write: here, before the rename
        with atomic_path(run.file("vital_supernet.weights.h5")) as tmp:
            open(tmp, "wb").write(b"half a supernet")
            left = os.path.basename(tmp)
            os.link(tmp, tmp_path / "kept")  # what a kill -9 would have left
            raise KeyboardInterrupt
    os.rename(tmp_path / "kept", tmp_path / left)
    assert left.startswith(".vital_supernet.") and left.endswith(".tmp.weights.h5")
    others = [".state.json", "notes.tmp.json", ".arch.tmp.json", ".hidden"]  # not atomic_path's
    for name in others:
        (tmp_path / name).write_text("mine")
    (tmp_path / ".worker1").mkdir()
    assert run.claim(config) is True  # resuming
    assert sorted(os.listdir(tmp_path)) == sorted(others + [".worker1", "config.json"])
    assert remove_stale_temp_files(str(tmp_path), ["state.json"]) == []


def test_quiet_native_stderr_holds_back_native_output_unless_something_breaks():
    script = """
import os
from tfnas.cli import quiet_native_stderr
from tfnas.errors import TfnasError
with quiet_native_stderr():
    os.write(2, b"INFO dump\\n")
for error in (TfnasError("one line"), RuntimeError("boom")):
    try:
        with quiet_native_stderr():
            os.write(2, f"native, before {type(error).__name__}\\n".encode())
            raise error
    except type(error):
        pass
os.write(2, b"stderr is back\\n")
"""
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": ROOT})
    assert proc.returncode == 0, proc.stderr
    # An unexpected failure shows what native code said; a user error stays one line.
    assert proc.stderr.splitlines() == ["native, before RuntimeError", "stderr is back"]

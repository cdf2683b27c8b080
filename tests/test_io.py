"""Atomic output files: an unwritable path is one clear error before anything is written."""

import os

import pytest

from tfnas.errors import TfnasError
from tfnas.io import atomic_path, check_output_path


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

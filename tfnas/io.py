"""Atomic file output: a reader (or a kill -9) never sees a half-written file."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from typing import Any, Iterable, Iterator


def check_output_path(path: str, what: str = "output") -> None:
    """Raises a one-line TfnasError unless `path` can be written as a file: it is not a
    directory, and its nearest existing ancestor is a directory one can create files in.
    Call it before long work."""
    from tfnas.errors import TfnasError

    ancestor = _nearest_directory(path, what)
    try:  # the one sure test of writability (os.access says yes to root everywhere)
        fd, probe = tempfile.mkstemp(prefix=".tfnas-probe.", dir=ancestor)
    except OSError as e:
        raise TfnasError(f"cannot write {what} {path}: {e.strerror or e}") from None
    os.close(fd)
    os.remove(probe)


def _nearest_directory(path: str, what: str) -> str:
    """The nearest existing ancestor of `path`, a directory; one TfnasError when `path` is a
    directory or sits under a file."""
    from tfnas.errors import TfnasError

    if os.path.isdir(path):
        raise TfnasError(f"{what} {path} is a directory; give a file path")
    ancestor = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(ancestor):
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        raise TfnasError(f"cannot write {what} {path}: {ancestor} is a file, not a directory")
    return ancestor


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yields a temporary path beside `path`; renames it over `path` only on success."""
    from tfnas.errors import TfnasError

    _nearest_directory(path, "output")  # its own temp file below is the writability test
    directory = os.path.dirname(os.path.abspath(path))
    prefix, suffix = _temp_affixes(os.path.basename(path))
    try:  # a read-only or special directory (/proc)
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=directory)
    except OSError as e:
        raise TfnasError(f"cannot write {path}: {e.strerror or e}") from None
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it owner-only; results are for everyone
    try:
        yield tmp
        os.replace(tmp, path)  # atomic: a killed process leaves the old file or the new one
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _temp_affixes(name: str) -> tuple[str, str]:
    """The prefix and suffix of `atomic_path`'s temp files for `name`: .BASE.XXXX.tmp.EXT"""
    # Keras saves weights only to names ending in .weights.h5: keep that whole suffix.
    ext = ".weights.h5" if name.endswith(".weights.h5") else os.path.splitext(name)[1]
    return f".{name[:len(name) - len(ext)]}.", f".tmp{ext}"


def remove_stale_temp_files(directory: str, names: Iterable[str]) -> list[str]:
    """Removes the temp files that `atomic_path` left in `directory` for `names` when its
    process was killed mid-write (never call it while another process writes there);
    returns the removed paths."""
    affixes = [_temp_affixes(name) for name in names]
    removed = []
    for entry in os.listdir(directory):
        path = os.path.join(directory, entry)
        if any(entry.startswith(p) and entry.endswith(s) and len(entry) > len(p) + len(s)
               for p, s in affixes) and os.path.isfile(path):
            os.remove(path)
            removed.append(path)
    return removed


def read_json(path: str, what: str = "") -> Any:
    """Parsed JSON of `path`; a missing or malformed file is one TfnasError line."""
    from tfnas.errors import TfnasError

    label = f"{what} {path}" if what else path
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except OSError as e:
        raise TfnasError(f"cannot read {label}: {e.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TfnasError(f"{label} is not valid JSON: {e}") from None


def write_text(path: str, text: str) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)


def write_json(path: str, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")

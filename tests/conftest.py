"""Shared test setup: quiet TensorFlow, the repo on sys.path, helpers to run CLIs."""

from __future__ import annotations

import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def run_cli(module: str, *args: str, timeout: float = 600,
            env: dict | None = None) -> subprocess.CompletedProcess:
    """Runs `python -m module args` from the repo root and returns the finished process."""
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ROOT, **(env or {})}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


_EXIT_AND_TENSORFLOW = """
import runpy, sys
sys.argv = sys.argv[1:]
try:
    runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
except SystemExit as e:
    print(e.code, "tensorflow" in sys.modules)
"""


def refused_before_tensorflow(module: str, *args: str) -> bool:
    """Whether `python -m module args` exits 2 without having imported TensorFlow: bad flags
    answered in a fraction of a second, not after TensorFlow's seconds of start-up."""
    proc = subprocess.run([sys.executable, "-c", _EXIT_AND_TENSORFLOW, module, *args], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": ROOT}, capture_output=True,
                          text=True, timeout=600)
    return proc.stdout.split() == ["2", "False"]


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    """Bad input: non-zero exit, exactly one line on stderr, no traceback."""
    assert proc.returncode != 0, proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture
def cli():
    return run_cli

"""The README's quick start and CI agree: CI runs exactly the README's test command."""

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _readme_commands():
    text = open(os.path.join(ROOT, "README.md")).read()
    quick = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(?:sh|bash)\n(.*?)\n```", quick, re.S)


def test_quick_start_has_exactly_two_commands():
    commands = _readme_commands()
    assert len(commands) == 2, commands
    assert "python -m tfnas." in commands[0]
    assert "pytest" in commands[1]


def test_ci_runs_the_readme_test_command():
    ci = open(os.path.join(ROOT, ".ci", "run")).read()
    assert _readme_commands()[1].strip() in ci


def test_readme_does_not_recommend_tensorflow_addons():
    text = open(os.path.join(ROOT, "README.md")).read()
    assert "tensorflow-addons" in text  # says what replaces it
    setup = open(os.path.join(ROOT, "setup.py")).read()
    requirements = re.findall(r'^\s+"([a-z][\w.-]*)[<>=]', setup, re.M)
    assert "tensorflow" in requirements and "keras-tuner" in requirements
    assert "tensorflow-addons" not in requirements and "tensorflow-cpu" not in requirements

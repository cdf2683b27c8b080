"""BUILD files name every module, CLI and test (Bazel cannot run here, so we parse them).

Starlark is Python syntax: each BUILD is parsed with `ast`, and each py_library, py_binary
and py_test call is read for its `srcs` and `main`.
"""

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY_DIRS = ("tfnas", "deploy", "tests", "bench")
RULES = {"py_library", "py_binary", "py_test"}


def _targets():
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d != "__pycache__"]
        if "BUILD" not in filenames:
            continue
        tree = ast.parse(open(os.path.join(dirpath, "BUILD")).read())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in RULES:
                kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords
                          if k.arg in ("name", "srcs", "main")}
                yield dirpath, node.func.id, kwargs


def _python_files():
    for top in PY_DIRS:
        for dirpath, dirnames, filenames in os.walk(os.path.join(ROOT, top)):
            dirnames[:] = [d for d in dirnames if d != "__pycache__"]
            for f in filenames:
                if f.endswith(".py"):
                    yield os.path.join(dirpath, f)


def _is_cli(path):
    text = open(path).read()
    return path.endswith("__main__.py") or 'if __name__ == "__main__"' in text


def test_every_target_names_existing_files():
    for dirpath, rule, kw in _targets():
        for src in kw.get("srcs", []) + ([kw["main"]] if "main" in kw else []):
            assert os.path.isfile(os.path.join(dirpath, src)), (dirpath, kw.get("name"), src)


def test_every_module_cli_and_test_has_a_target():
    covered, binaries, tests = set(), set(), set()
    for dirpath, rule, kw in _targets():
        srcs = {os.path.normpath(os.path.join(dirpath, s)) for s in kw.get("srcs", [])}
        covered |= srcs
        main = kw.get("main") or (kw["srcs"][0] if len(kw.get("srcs", [])) == 1 else None)
        if rule in ("py_binary", "py_test") and main:
            (binaries if rule == "py_binary" else tests).add(
                os.path.normpath(os.path.join(dirpath, main)))
    for path in _python_files():
        rel = os.path.relpath(path, ROOT)
        assert path in covered, f"{rel} is in no BUILD target"
        name = os.path.basename(path)
        if rel.startswith("tests") and name.startswith("test_"):
            assert path in tests, f"{rel} has no py_test"
        elif _is_cli(path):
            assert path in binaries, f"{rel} is a CLI without a py_binary"

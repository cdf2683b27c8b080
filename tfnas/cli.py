"""Shared entry point of the absl CLIs: bad input is one line on stderr and exit status 2."""

from __future__ import annotations

import os
import sys
from typing import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before any TensorFlow import

from absl import app, flags  # noqa: E402

from tfnas.errors import TfnasError  # noqa: E402

USAGE_ERROR = 2


def fail(message: str, code: int = USAGE_ERROR) -> None:
    prog = _program_name()
    print(f"{prog}: error: {message}", file=sys.stderr)
    sys.exit(code)


def _program_name() -> str:
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name:  # python -m tfnas.x
        return spec.name.removesuffix(".__main__")
    return os.path.basename(sys.argv[0]) if sys.argv else "tfnas"


def run(main: Callable[[list[str]], int | None], argv: list[str] | None = None) -> None:
    """Parses absl flags (with --help/--helpfull) and runs `main`, turning user errors into
    one line. Unexpected exceptions still show their traceback: they are our bugs."""
    argv = list(sys.argv if argv is None else argv)
    app.define_help_flags()
    try:
        argv = flags.FLAGS(argv)
    except flags.Error as e:
        fail(str(e).splitlines()[0])
    try:
        sys.exit(main(argv) or 0)
    except TfnasError as e:
        fail(str(e))
    except KeyboardInterrupt:
        fail("interrupted", 130)

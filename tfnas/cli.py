"""Shared entry point of the absl CLIs: bad input is one line on stderr and exit status 2."""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import tempfile
from typing import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before any TensorFlow import

from absl import app, flags  # noqa: E402

from tfnas.errors import TfnasError  # noqa: E402

USAGE_ERROR = 2


def fail(message: str, code: int = USAGE_ERROR, fast_exit: bool = False) -> None:
    prog = _program_name()
    print(f"{prog}: error: {message}", file=sys.stderr)
    _exit(code, fast_exit)


def _exit(code: int, fast_exit: bool) -> None:
    """sys.exit, or with `fast_exit` a flush and os._exit (see `run`)."""
    if fast_exit:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def import_tensorflow():
    """Imports TensorFlow with its C++ start-up chatter (CUDA probes on a machine without a
    GPU, absl's pre-init warning) kept off stderr, so that a CLI's error stays one line.

    Only while TF_CPP_MIN_LOG_LEVEL >= 2 (the CLIs' default); set it to 0 to see everything.
    """
    return import_quietly("tensorflow")


def import_quietly(module: str):
    """Imports `module` as `import_tensorflow` imports TensorFlow, should the module import it
    (a user's --space_module may or may not); one that does not leaves TensorFlow unloaded."""
    if int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0") or 0) < 2 or "tensorflow" in sys.modules:
        return importlib.import_module(module)

    def started_tensorflow() -> bool:  # else what was written is the module's own
        return "tensorflow" in sys.modules

    with quiet_native_stderr(replay_unless=started_tensorflow):
        imported = importlib.import_module(module)
        if started_tensorflow():
            sys.modules["tensorflow"].config.list_physical_devices("GPU")  # the CUDA probe logs
    return imported


@contextlib.contextmanager
def quiet_native_stderr(replay_unless: Callable[[], bool] | None = None):
    """Holds back what is written to file descriptor 2 for the duration (TensorFlow's and
    LiteRT's INFO lines from C++). If the block fails unexpectedly, the held output is
    written out before the exception goes on, since it may tell why; a TfnasError stays one
    line. With `replay_unless`, the held output is also written out after a block that
    succeeded, unless it returns True (the output was what was meant to be held)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)

        def replay() -> None:
            sys.stderr.flush()
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.buffer.write(held.read())
            sys.stderr.flush()

        try:
            yield
        except TfnasError:
            raise
        except Exception:
            replay()
            raise
        else:
            if replay_unless is not None and not replay_unless():
                replay()
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def _program_name() -> str:
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name:  # python -m tfnas.x
        return spec.name.removesuffix(".__main__")
    return os.path.basename(sys.argv[0]) if sys.argv else "tfnas"


_HELP_FLAGS = {"?", "help", "helpshort", "helpfull", "helpxml"}
# Flags absl.app defines for its own app.run, which these CLIs do not use: left in, --helpfull
# would offer them and --only_check_args would run the whole job instead of stopping.
_APP_RUN_FLAGS = ("run_with_pdb", "pdb_post_mortem", "pdb", "run_with_profiling",
                  "profile_file", "use_cprofile_for_profiling", "only_check_args")


def run(main: Callable[[list[str]], int | None], argv: list[str] | None = None,
        fast_exit: bool = False, positional: str | None = None) -> None:
    """Parses absl flags (with --help/--helpfull) and runs `main`, turning user errors into
    one line. Unexpected exceptions still show their traceback: they are our bugs.

    `fast_exit` ends the process without tearing down Python objects once `main` is done and
    output is flushed: a traced supernet's graphs take a minute to garbage-collect.
    `positional` names the flag that one argument without a leading -- sets, wherever it is.
    """
    argv = list(sys.argv if argv is None else argv)
    app.define_help_flags()
    for name in _APP_RUN_FLAGS:
        if name in flags.FLAGS:
            delattr(flags.FLAGS, name)
    try:
        argv = flags.FLAGS(argv)
    except flags.Error as e:
        fail(str(e).splitlines()[0].replace("ERROR:: ", ""))
    except SystemExit as e:  # absl exits 1 after printing --help; asking for help is no error
        helped = any(a.split("=")[0].lstrip("-") in _HELP_FLAGS for a in argv[1:])
        sys.exit(0 if helped and e.code == 1 else e.code)
    if positional and len(argv) == 2 and not flags.FLAGS[positional].present:
        flags.FLAGS[positional].parse(argv.pop())  # e.g. `report DIR`: --dir=DIR
    if len(argv) > 1:
        fail(f"unexpected arguments (flags need a leading --, also in a flagfile): "
             f"{' '.join(argv[1:])}")
    try:
        _exit(main(argv) or 0, fast_exit)
    except TfnasError as e:
        fail(str(e))
    except KeyboardInterrupt:  # after a search's stage saved its checkpoint: no teardown either
        fail("interrupted", 130, fast_exit)
    except BrokenPipeError:  # e.g. piped into `head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)

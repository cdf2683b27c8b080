"""Progress output for long stages: a live line on a terminal, periodic lines in a log."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, title: str, total: int, start: int = 0, stream=None, every: float = 0.1):
        self.title, self.total, self.stream = title, max(1, total), stream or sys.stdout
        self.start_step, self.t0 = start, time.monotonic()
        self._first: tuple[int, float] | None = None  # (step, time) of the first update
        self.tty = getattr(self.stream, "isatty", lambda: False)()
        self._next_log = start + max(1, int(self.total * every))
        self._every = max(1, int(self.total * every))

    def update(self, step: int, **values: float | str) -> None:
        now = time.monotonic()
        if self._first is None:
            self._first = (step, now)
        done = step >= self.total
        if not self.tty and step < self._next_log and not done:
            return
        self._next_log = step + self._every
        # The rate leaves out the first step, which often includes tracing (tens of seconds
        # on a supernet) and would make the eta of a long stage many times too long.
        first_step, first_time = self._first
        if step > first_step:
            rate = (step - first_step) / max(1e-9, now - first_time)
        else:
            rate = (step - self.start_step) / max(1e-9, now - self.t0)
        eta = (self.total - step) / rate if rate > 0 else 0.0
        fields = "  ".join(f"{k} {_fmt(v)}" for k, v in values.items())
        width = 24
        filled = int(width * step / self.total)
        bar = "=" * filled + (">" if filled < width else "") + " " * (width - filled - 1)
        line = (f"{self.title} [{bar}] {step}/{self.total}  {fields}  "
                f"{rate:.1f} it/s  eta {eta:.0f}s")
        if self.tty:
            self.stream.write("\r" + line + ("\n" if done else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def _fmt(v) -> str:
    if isinstance(v, float):
        if abs(v) >= 1e5:
            return f"{v / 1e6:.2f}M"
        return f"{v:.4g}"
    return str(v)

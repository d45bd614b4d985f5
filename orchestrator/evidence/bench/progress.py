"""Progress lines on stderr for long runs: what runs, done/total, elapsed."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, tool: str, stream: TextIO | None = None, *, quiet: bool = False) -> None:
        self._tool = tool
        self._stream = stream
        self._quiet = quiet
        self._start = time.monotonic()
        self._last = 0.0

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self._start

    def __call__(self, what: str, done: int | None = None, total: int | None = None) -> None:
        if self._quiet:
            return
        count = ""
        if done is not None and total is not None:
            # counters tick often: at most one line a second, and always the last one
            if done < total and time.monotonic() - self._last < 1.0:
                return
            count = f" {done}/{total}"
        self._last = time.monotonic()
        stream = self._stream or sys.stderr
        stream.write(f"[{self._tool} {self.elapsed_s:7.1f}s] {what}{count}\n")
        stream.flush()

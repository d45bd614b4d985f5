"""Step-by-step progress for long build steps: each line carries the elapsed time."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, stream: TextIO | None = None, verbose: bool = False) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._start = time.monotonic()
        self.verbose = verbose

    def elapsed(self) -> float:
        return time.monotonic() - self._start

    def step(self, message: str) -> None:
        self._stream.write(f"[{self.elapsed():7.1f}s] {message}\n")
        self._stream.flush()

    def detail(self, message: str) -> None:
        if self.verbose:
            self.step(f"  {message}")

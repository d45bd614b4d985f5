"""``FRONTDOOR_LOG_EVENTS=1``: one JSON line per generation on stdout, for the lab's tooling."""

from __future__ import annotations

import json
import re
import sys
from collections import deque
from typing import Any

from .route import now_iso

_USAGE = re.compile(rb'"(prompt_tokens|completion_tokens|input_tokens|output_tokens)"\s*:\s*(\d+)')


class Tail:
    """The last ``size`` bytes of a response, kept for its final ``usage``.

    Runs once per relayed chunk, so it only appends and drops whole chunks; the bytes are
    joined once, when the event is written.
    """

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self._chunks: deque[bytes] = deque()
        self._length = 0

    def add(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._length += len(chunk)
        while self._length - len(self._chunks[0]) >= self.size:
            self._length -= len(self._chunks.popleft())

    def value(self) -> bytes:
        return b"".join(self._chunks)[-self.size :]


def tokens_from_tail(tail: bytes) -> dict[str, int] | None:
    """Token counts from the ``usage`` at the end of a response, when the upstream sent one."""
    found = {m.group(1).decode(): int(m.group(2)) for m in _USAGE.finditer(tail)}
    return found or None


def emit(record: dict[str, Any]) -> None:
    line = json.dumps({"time": now_iso(), **record}, separators=(",", ":"))
    sys.stdout.write(line + "\n")
    sys.stdout.flush()

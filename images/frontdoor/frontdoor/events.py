"""``FRONTDOOR_LOG_EVENTS=1``: one JSON line per generation on stdout, for the lab's tooling."""

from __future__ import annotations

import json
import re
import sys
from typing import Any

from .route import now_iso

_USAGE = re.compile(rb'"(prompt_tokens|completion_tokens|input_tokens|output_tokens)"\s*:\s*(\d+)')


def tokens_from_tail(tail: bytes) -> dict[str, int] | None:
    """Token counts from the ``usage`` at the end of a response, when the upstream sent one."""
    found = {m.group(1).decode(): int(m.group(2)) for m in _USAGE.finditer(tail)}
    return found or None


def emit(record: dict[str, Any]) -> None:
    line = json.dumps({"time": now_iso(), **record}, separators=(",", ":"))
    sys.stdout.write(line + "\n")
    sys.stdout.flush()

"""CPU id lists as Docker (``--cpuset-cpus``) and vLLM CPU (``VLLM_CPU_OMP_THREADS_BIND``) write
them: ``0-3``, ``0,2``, ``0-2,5``. Parsed here once, so a host setting and a profile key are
checked the same way and compared as sets.
"""

from __future__ import annotations

import re

_PART = re.compile(r"^([0-9]+)(?:-([0-9]+))?$")

ALLOWED = "CPU ids such as 1, 0-3 or 0,2-5 (ascending ranges, no spaces)"


def parse(value: str) -> frozenset[int]:
    """The CPU ids of a list such as ``0-2,5``; ValueError naming what is allowed otherwise."""
    ids: set[int] = set()
    for part in value.split(","):
        match = _PART.match(part)
        if match is None:
            raise ValueError(f"{part!r} is not a CPU id or range; expected {ALLOWED}")
        low = int(match.group(1))
        high = int(match.group(2)) if match.group(2) is not None else low
        if high < low:
            raise ValueError(f"the range {part!r} runs backwards; expected {ALLOWED}")
        ids.update(range(low, high + 1))
    return frozenset(ids)


def format_ids(ids: frozenset[int] | set[int]) -> str:
    """The shortest list for ``ids``: ``{0, 1, 2, 5}`` -> ``0-2,5``."""
    parts: list[str] = []
    ordered = sorted(ids)
    start = previous = ordered[0] if ordered else 0
    for cpu in [*ordered[1:], None]:
        if cpu is not None and cpu == previous + 1:
            previous = cpu
            continue
        parts.append(str(start) if start == previous else f"{start}-{previous}")
        if cpu is not None:
            start = previous = cpu
    return ",".join(parts) if ordered else ""

"""Prometheus's text exposition format, read just far enough to total a few series.

vLLM's ``/metrics`` page is the one reader's source: the watchdog's probe (did the engine
generate meanwhile?) and the bench fidelity check (what did the server itself count?). Both want
a series summed over its labels (engines, finish reasons); neither wants buckets or help text.
Stdlib only: ``orchestrator/cli/bench.py``'s archive may carry it into a model container.
"""

from __future__ import annotations

from collections.abc import Iterable


def series_totals(text: str, series: Iterable[str]) -> dict[str, float]:
    """Each of ``series`` found in ``text``, summed over its labels. A series the page lacks is
    absent, not zero; a sample whose value does not parse is skipped (the page is another
    process's output, and a reader that must not raise reads it)."""
    wanted = set(series)
    totals: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name not in wanted:
            continue
        try:
            value = float(line.rsplit(" ", 1)[1])
        except (IndexError, ValueError):
            continue
        totals[name] = totals.get(name, 0.0) + value
    return totals

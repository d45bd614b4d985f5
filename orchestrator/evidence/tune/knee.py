"""The concurrency knee of a ladder: pure logic over ``LevelSummary``s.

A ladder runs c1, c2, c4 ... up to the profile's ``VLLM_MAX_NUM_SEQS``. Walking up it, the knee
is the lowest concurrency ``c`` whose next level either

- breaks a service target (``Slo``): its TTFT p95 is above ``ttft_p95_ms``, its mean TPOT above
  ``tpot_ms``, or a request failed; or
- adds less than ``min_gain`` wall output tok/s per doubling of concurrency (a step that is not
  a doubling, e.g. 8 -> 12, is scaled to one: ``ratio ** (1 / log2(12 / 8))``).

The target is checked first, so a level that is both too slow and flat is reported as breaking
the target. When no level stops the walk the knee is the top of the ladder, and the verdict says
that the ladder may be too short. When even c1 breaks the target there is no knee.

Goodput is counted as ``vllm bench serve --goodput ttft:X tpot:Y`` counts it: a request is good
when its own TTFT and TPOT are both within the targets; goodput is good requests per second of
wall time (and their output tokens per second). It is reported beside each level; the verdict
uses the level's percentiles, which is what an operator writes a target against.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from orchestrator.evidence.bench.client import RequestRecord
from orchestrator.evidence.bench.metrics import LevelSummary

#: Default: a doubling of concurrency must add at least 15% wall output tok/s.
DEFAULT_MIN_GAIN = 0.15


@dataclass(frozen=True)
class Slo:
    """Service targets; None = no target on that number."""

    ttft_p95_ms: float | None = None
    tpot_ms: float | None = None

    @classmethod
    def parse(cls, text: str) -> Slo:
        """``ttft_p95_ms=2000,tpot_ms=50`` (either may be left out)."""
        values: dict[str, float] = {}
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            key, sep, value = part.partition("=")
            if not sep or key not in ("ttft_p95_ms", "tpot_ms"):
                raise ValueError(
                    f"{part!r}: expected ttft_p95_ms=MS and/or tpot_ms=MS, e.g. "
                    "ttft_p95_ms=2000,tpot_ms=50"
                )
            try:
                number = float(value)
            except ValueError:
                raise ValueError(f"{part!r}: {value!r} is not a number of milliseconds") from None
            if not number > 0:
                raise ValueError(f"{part!r}: a target must be above 0 ms")
            values[key] = number
        return cls(**values)

    @property
    def empty(self) -> bool:
        return self.ttft_p95_ms is None and self.tpot_ms is None

    def text(self) -> str:
        parts = []
        if self.ttft_p95_ms is not None:
            parts.append(f"ttft_p95_ms={self.ttft_p95_ms:g}")
        if self.tpot_ms is not None:
            parts.append(f"tpot_ms={self.tpot_ms:g}")
        return ",".join(parts) or "none"

    def breaches(self, summary: LevelSummary) -> list[str]:
        """Why this level misses the targets (empty: it meets them)."""
        why = []
        if summary.failed:
            why.append(f"{summary.failed}/{summary.requests} requests failed")
        ttft = summary.ttft.p95 * 1000
        if self.ttft_p95_ms is not None and not ttft <= self.ttft_p95_ms:
            why.append(f"TTFT p95 {_ms(ttft)} ms > {self.ttft_p95_ms:g} ms")
        tpot = summary.tpot.mean * 1000
        if self.tpot_ms is not None and not tpot <= self.tpot_ms:
            why.append(f"TPOT {_ms(tpot, 1)} ms > {self.tpot_ms:g} ms")
        return why

    def good(self, record: RequestRecord) -> bool:
        """vLLM's goodput rule for one request."""
        if not record.success or record.ttft_s is None:
            return False
        if self.ttft_p95_ms is not None and record.ttft_s * 1000 > self.ttft_p95_ms:
            return False
        if self.tpot_ms is not None:
            out = record.output_tokens or 0
            if out > 1 and record.e2e_s is not None:
                tpot = (record.e2e_s - record.ttft_s) / (out - 1)
                if tpot * 1000 > self.tpot_ms:
                    return False
        return True


def _ms(value: float, digits: int = 0) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


@dataclass(frozen=True)
class Goodput:
    good: int
    requests: int
    req_s: float
    tok_s: float


def goodput(records: Sequence[RequestRecord], wall_s: float, slo: Slo) -> Goodput:
    good = [r for r in records if slo.good(r)]
    tokens = sum(r.output_tokens or 0 for r in good)
    return Goodput(
        good=len(good),
        requests=len(records),
        req_s=len(good) / wall_s if wall_s > 0 else math.nan,
        tok_s=tokens / wall_s if wall_s > 0 else math.nan,
    )


def ladder(top: int) -> tuple[int, ...]:
    """1, 2, 4 ... up to ``top``, and ``top`` itself when it is not a power of two."""
    if top < 1:
        raise ValueError(f"the top of the ladder must be at least 1, not {top}")
    levels = [1]
    while levels[-1] * 2 <= top:
        levels.append(levels[-1] * 2)
    if levels[-1] != top:
        levels.append(top)
    return tuple(levels)


def gain_per_doubling(low: LevelSummary, high: LevelSummary) -> float:
    """Relative wall output tok/s growth from ``low`` to ``high``, scaled to one doubling."""
    if not low.output_tok_s > 0 or math.isnan(high.output_tok_s):
        return math.nan
    doublings = math.log2(high.concurrency / low.concurrency)
    ratio = high.output_tok_s / low.output_tok_s
    if ratio <= 0:
        return -1.0
    return float(ratio ** (1 / doublings) - 1)


@dataclass(frozen=True)
class Knee:
    """The verdict. ``concurrency`` is None when even c1 breaks the target."""

    concurrency: int | None
    reason: str
    stopped_by: str  # "slo" | "gain" | "top" | "c1"
    gains: tuple[float, ...]  # gains[i]: from level i to level i + 1


def find_knee(
    summaries: Sequence[LevelSummary], *, min_gain: float = DEFAULT_MIN_GAIN, slo: Slo = Slo()
) -> Knee:
    """The knee of an ascending ladder (see the module docstring)."""
    levels = sorted(summaries, key=lambda s: s.concurrency)
    if not levels:
        raise ValueError("no levels to find a knee in")
    gains = tuple(gain_per_doubling(a, b) for a, b in itertools.pairwise(levels))
    first = slo.breaches(levels[0])
    if first:
        return Knee(
            None,
            f"c{levels[0].concurrency} already misses the target: {'; '.join(first)}",
            "c1",
            gains,
        )
    for index, (low, high) in enumerate(itertools.pairwise(levels)):
        why = slo.breaches(high)
        if why:
            return Knee(
                low.concurrency,
                f"c{high.concurrency} misses the target: {'; '.join(why)}",
                "slo",
                gains,
            )
        gain = gains[index]
        if not gain >= min_gain:
            return Knee(
                low.concurrency,
                f"c{low.concurrency} -> c{high.concurrency} adds {_pct(gain)} wall output tok/s "
                f"per doubling, less than {_pct(min_gain)}",
                "gain",
                gains,
            )
    top = levels[-1].concurrency
    return Knee(
        top,
        f"still scaling at c{top}, the top of the ladder (the profile's sequences): "
        "raise VLLM_MAX_NUM_SEQS to look further",
        "top",
        gains,
    )


def _pct(value: float) -> str:
    return "-" if math.isnan(value) else f"{value * 100:+.0f}%"

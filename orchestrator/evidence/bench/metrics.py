"""``summarize(records) -> LevelSummary``: pure arithmetic over request records.

Definitions of ``vllm bench serve`` (``benchmarks/serve.py``, ``calculate_metrics``):

- TTFT: start -> first generated text, per successful request.
- TPOT: ``(e2e - ttft) / (output_tokens - 1)``, requests with more than one output token.
- ITL: every gap between text chunks, pooled over all requests.
- E2E: start -> last generated text.
- output throughput: successful output tokens / benchmark duration.

And the lab's own:

- **wall output tok/s** (primary): successful output tokens / wall, where wall runs from the
  level's start to the end of its last request (the same quantity as vLLM's output throughput).
- aggregate decode tok/s: tokens after each request's first one, summed, over the window from
  the first request's first text to the last request's end.
- mean per-request decode tok/s: mean of ``(output_tokens - 1) / (e2e - ttft)``.

Percentiles interpolate linearly between order statistics (as ``numpy.percentile``).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from orchestrator.evidence.bench.client import RequestRecord


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    low = math.floor(pos)
    high = math.ceil(pos)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


@dataclass(frozen=True)
class Stats:
    """Seconds. ``n`` = how many values; every other field is NaN when n == 0."""

    n: int
    mean: float
    p50: float
    p95: float
    p99: float
    min: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Stats:
        if not values:
            return cls(0, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan)
        return cls(
            n=len(values),
            mean=sum(values) / len(values),
            p50=percentile(values, 50),
            p95=percentile(values, 95),
            p99=percentile(values, 99),
            min=min(values),
            max=max(values),
        )


@dataclass(frozen=True)
class LevelSummary:
    concurrency: int
    requests: int
    completed: int
    failed: int
    errors: dict[str, int]
    wall_s: float
    prompt_tokens: int
    output_tokens: int
    output_tok_s: float  # primary: successful output tokens / wall
    request_per_s: float
    decode_tok_s: float  # aggregate, after first text
    decode_tok_s_per_request: float  # mean of per-request decode rates
    ttft: Stats
    tpot: Stats
    itl: Stats
    e2e: Stats
    queue: Stats

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = _finite(asdict(self))
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LevelSummary:
        fields = dict(data)
        for key in ("ttft", "tpot", "itl", "e2e", "queue"):
            fields[key] = Stats(**{k: _nan(v) for k, v in data[key].items()})
        for key in ("output_tok_s", "request_per_s", "decode_tok_s", "decode_tok_s_per_request"):
            fields[key] = _nan(data[key])
        return cls(**fields)


def _nan(value: Any) -> Any:
    return math.nan if value is None else value


def _finite(value: Any) -> Any:
    """NaN -> None, so the JSON is standard JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


def _error_kind(error: str) -> str:
    return error.split(":", 1)[0] if error.startswith("HTTP ") else error[:120]


def summarize(records: Sequence[RequestRecord], concurrency: int) -> LevelSummary:
    """The numbers of one level. Failed requests count in ``failed`` and wall time only."""
    ok = [r for r in records if r.success]
    ends = [r.end_s for r in records if r.end_s is not None]
    wall = max(ends) if ends else 0.0
    output = sum(r.output_tokens or 0 for r in ok)
    prompt = sum(r.prompt_tokens or 0 for r in ok)

    ttfts = [r.ttft_s for r in ok if r.ttft_s is not None]
    e2es = [r.e2e_s for r in ok if r.e2e_s is not None]
    tpots: list[float] = []
    rates: list[float] = []
    for r in ok:
        if r.output_tokens and r.output_tokens > 1 and r.e2e_s is not None and r.ttft_s is not None:
            decode = r.e2e_s - r.ttft_s
            tpots.append(decode / (r.output_tokens - 1))
            if decode > 0:
                rates.append((r.output_tokens - 1) / decode)
    itls = [gap for r in ok for gap in r.itl_s]
    queues = [r.queue_s for r in records if r.queue_s is not None]

    firsts = [r.first_text_s for r in ok if r.first_text_s is not None]
    ok_ends = [r.end_s for r in ok if r.end_s is not None]
    window = (max(ok_ends) - min(firsts)) if firsts and ok_ends else 0.0
    after_first = sum(max(0, (r.output_tokens or 0) - 1) for r in ok)

    errors = Counter(_error_kind(r.error or "unknown") for r in records if not r.success)
    return LevelSummary(
        concurrency=concurrency,
        requests=len(records),
        completed=len(ok),
        failed=len(records) - len(ok),
        errors=dict(errors),
        wall_s=wall,
        prompt_tokens=prompt,
        output_tokens=output,
        output_tok_s=output / wall if wall > 0 else math.nan,
        request_per_s=len(ok) / wall if wall > 0 else math.nan,
        decode_tok_s=after_first / window if window > 0 else math.nan,
        decode_tok_s_per_request=sum(rates) / len(rates) if rates else math.nan,
        ttft=Stats.of(ttfts),
        tpot=Stats.of(tpots),
        itl=Stats.of(itls),
        e2e=Stats.of(e2es),
        queue=Stats.of(queues),
    )

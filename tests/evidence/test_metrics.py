"""summarize() on hand-made records: the definitions, not a server."""

from __future__ import annotations

import math

import pytest

from orchestrator.evidence.bench.client import RequestRecord
from orchestrator.evidence.bench.metrics import LevelSummary, Stats, percentile, summarize


def record(
    index: int,
    *,
    start: float,
    ttft: float,
    itl: list[float],
    tokens: int,
    tail: float = 0.0,
    success: bool = True,
) -> RequestRecord:
    e2e = ttft + sum(itl)
    return RequestRecord(
        index=index,
        concurrency=2,
        prompt_tokens_requested=10,
        output_tokens_requested=tokens,
        success=success,
        error=None if success else "HTTP 503: busy",
        status=200 if success else 503,
        prompt_tokens=10 if success else None,
        output_tokens=tokens if success else None,
        start_s=start,
        queue_s=0.001,
        ttft_s=ttft,
        itl_s=itl,
        e2e_s=e2e,
        end_s=start + e2e + tail,
        chunks=len(itl) + 1,
    )


def test_percentile_interpolates_like_numpy() -> None:
    values = [1.0, 2.0, 3.0, 4.0]
    assert percentile(values, 50) == 2.5
    assert percentile(values, 95) == pytest.approx(3.85)
    assert percentile([7.0], 99) == 7.0
    assert math.isnan(percentile([], 50))


def test_two_requests_vllm_definitions_and_lab_numbers() -> None:
    a = record(0, start=0.0, ttft=0.5, itl=[0.1, 0.1, 0.1], tokens=4)  # e2e 0.8, ends 0.8
    b = record(1, start=0.0, ttft=1.0, itl=[0.2, 0.2], tokens=3, tail=0.2)  # e2e 1.4, ends 1.6
    s = summarize([a, b], concurrency=2)

    assert (s.requests, s.completed, s.failed) == (2, 2, 0)
    assert s.wall_s == pytest.approx(1.6)
    assert s.output_tokens == 7
    assert s.output_tok_s == pytest.approx(7 / 1.6)  # wall tok/s = total tokens / wall
    assert s.request_per_s == pytest.approx(2 / 1.6)
    # TPOT excludes the first token: (e2e - ttft) / (tokens - 1)
    assert s.tpot.mean == pytest.approx((0.3 / 3 + 0.4 / 2) / 2)
    # ITL pools every chunk gap
    assert s.itl.n == 5
    assert s.itl.mean == pytest.approx((0.3 + 0.4) / 5)
    assert s.ttft.mean == pytest.approx(0.75)
    assert s.ttft.max == pytest.approx(1.0)
    assert s.e2e.mean == pytest.approx((0.8 + 1.4) / 2)
    # aggregate decode: tokens after the first, over first text (0.5) -> last end (1.6)
    assert s.decode_tok_s == pytest.approx((3 + 2) / (1.6 - 0.5))
    # per-request decode: mean of (tokens - 1) / (e2e - ttft)
    assert s.decode_tok_s_per_request == pytest.approx((3 / 0.3 + 2 / 0.4) / 2)


def test_failed_requests_count_in_wall_and_errors_only() -> None:
    ok = record(0, start=0.0, ttft=0.1, itl=[0.1], tokens=2)
    bad = record(1, start=0.0, ttft=0.0, itl=[], tokens=2, tail=3.0, success=False)
    s = summarize([ok, bad], concurrency=2)
    assert (s.completed, s.failed) == (1, 1)
    assert s.errors == {"HTTP 503": 1}
    assert s.output_tokens == 2
    assert s.wall_s == pytest.approx(3.0)  # the failed request held the level open
    assert s.output_tok_s == pytest.approx(2 / 3.0)
    assert s.ttft.n == 1


def test_nothing_succeeded_gives_nan_and_json_null() -> None:
    s = summarize([], concurrency=1)
    assert math.isnan(s.output_tok_s)
    assert s.ttft == Stats.of([])
    data = s.to_json()
    assert data["output_tok_s"] is None
    assert data["ttft"]["mean"] is None
    back = LevelSummary.from_json(data)
    assert math.isnan(back.ttft.mean)
    assert back.requests == 0


def test_summary_round_trips_through_json() -> None:
    s = summarize([record(0, start=0.0, ttft=0.2, itl=[0.05] * 9, tokens=10)], concurrency=1)
    assert LevelSummary.from_json(s.to_json()) == s


def test_single_token_outputs_have_no_tpot() -> None:
    s = summarize([record(0, start=0.0, ttft=0.2, itl=[], tokens=1)], concurrency=1)
    assert s.tpot.n == 0
    assert math.isnan(s.decode_tok_s)
    assert s.output_tok_s == pytest.approx(1 / 0.2)

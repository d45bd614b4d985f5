"""The knee rule and the context search, as pure logic."""

from __future__ import annotations

import math

import pytest

from orchestrator.evidence.bench.client import RequestRecord
from orchestrator.evidence.bench.metrics import LevelSummary, Stats
from orchestrator.evidence.tune.context import Row, Search, Started, row_of, run_search
from orchestrator.evidence.tune.knee import Slo, find_knee, gain_per_doubling, goodput, ladder


def level(c: int, tok_s: float, ttft_p95_s: float = 0.1, tpot_s: float = 0.01) -> LevelSummary:
    def stats(value: float) -> Stats:
        return Stats(1, value, value, value, value, value, value)

    return LevelSummary(
        concurrency=c,
        requests=2 * c,
        completed=2 * c,
        failed=0,
        errors={},
        wall_s=1.0,
        prompt_tokens=0,
        output_tokens=int(tok_s),
        output_tok_s=tok_s,
        request_per_s=1.0,
        decode_tok_s=tok_s,
        decode_tok_s_per_request=tok_s / c,
        ttft=stats(ttft_p95_s),
        tpot=stats(tpot_s),
        itl=stats(tpot_s),
        e2e=stats(1.0),
        queue=stats(0.0),
    )


def test_ladder_doubles_up_to_the_top_and_keeps_an_odd_top() -> None:
    assert ladder(1) == (1,)
    assert ladder(8) == (1, 2, 4, 8)
    assert ladder(12) == (1, 2, 4, 8, 12)
    with pytest.raises(ValueError, match="at least 1"):
        ladder(0)


def test_a_step_that_is_not_a_doubling_is_scaled_to_one() -> None:
    # 8 -> 16 doubling 1.5x is +50% per doubling; 8 -> 12 at 1.5x is 1.5 ** (1/log2 1.5) - 1
    assert gain_per_doubling(level(8, 100), level(16, 150)) == pytest.approx(0.5)
    assert gain_per_doubling(level(8, 100), level(12, 150)) == pytest.approx(1.0)


def test_the_knee_is_the_level_before_throughput_flattens() -> None:
    levels = [level(1, 30), level(2, 60), level(4, 120), level(8, 130), level(16, 131)]
    knee = find_knee(levels, min_gain=0.15)
    assert knee.concurrency == 4
    assert knee.stopped_by == "gain"
    assert "c4 -> c8 adds +8%" in knee.reason


def test_an_slo_breach_stops_the_walk_before_the_gain_does() -> None:
    # the lab's Gemma 3 ladder: c16 throughput fell and its TTFT doubled
    levels = [
        level(1, 31.31, 4.09),
        level(2, 62.52, 4.08),
        level(4, 124.48, 4.09),
        level(8, 245.88, 4.14),
        level(16, 166.14, 9.31),
    ]
    assert find_knee(levels).concurrency == 8
    knee = find_knee(levels, slo=Slo(ttft_p95_ms=4100))
    assert knee.concurrency == 4
    assert knee.stopped_by == "slo"
    assert "c8 misses the target: TTFT p95 4140 ms > 4100 ms" in knee.reason
    tpot = find_knee(levels, slo=Slo(tpot_ms=5))
    assert tpot.concurrency is None
    assert tpot.stopped_by == "c1"


def test_still_scaling_at_the_top_says_so() -> None:
    knee = find_knee([level(1, 10), level(2, 20), level(4, 40)])
    assert knee.concurrency == 4
    assert knee.stopped_by == "top"
    assert "raise VLLM_MAX_NUM_SEQS" in knee.reason


def test_slo_parsing_teaches() -> None:
    assert Slo.parse("ttft_p95_ms=2000,tpot_ms=50") == Slo(2000, 50)
    assert Slo.parse("tpot_ms=50") == Slo(None, 50)
    with pytest.raises(ValueError, match="expected ttft_p95_ms=MS"):
        Slo.parse("ttft=2")
    with pytest.raises(ValueError, match="not a number"):
        Slo.parse("tpot_ms=fast")


def test_goodput_counts_requests_within_both_targets() -> None:
    def record(ttft: float, e2e: float) -> RequestRecord:
        return RequestRecord(0, 1, 8, 11, success=True, output_tokens=11, ttft_s=ttft, e2e_s=e2e)

    records = [record(0.1, 0.2), record(0.5, 0.6), record(0.1, 1.1)]  # TPOT 10, 10, 100 ms
    g = goodput(records, 2.0, Slo(ttft_p95_ms=200, tpot_ms=50))
    assert (g.good, g.requests, g.req_s, g.tok_s) == (1, 3, 0.5, 5.5)
    assert math.isnan(goodput(records, 0.0, Slo()).req_s)


# ---- the context search -------------------------------------------------------------------
def facts_for(kv_blocks: int, block: int, sequences: int, length: int) -> tuple[str, float]:
    """What vLLM reports for a fixed KV pool: blocks / blocks-per-request, two decimals."""
    per_request = math.ceil(length / block)
    concurrency = round(kv_blocks / per_request, 2)
    return ("fits" if concurrency >= sequences else "too high"), concurrency


def run(search: Search, kv_blocks: int, block: int, limit: int | None = None) -> list[int]:
    tried = []
    while (length := search.next()) is not None:
        tried.append(length)
        if limit is not None and length > limit:  # e.g. above max_position_embeddings
            search.record(Row(length, f"p{length}", "failed", reason="too long for the model"))
            continue
        outcome, conc = facts_for(kv_blocks, block, search.sequences, length)
        search.record(Row(length, f"p{length}", outcome, kv_blocks * block, conc))
    return tried


def test_a_fixed_kv_pool_is_found_in_three_starts() -> None:
    # SmolLM2 on vLLM CPU with 1 GiB: 46,592 tokens, 22.75x at 2048 (364 blocks of 128)
    search = Search(sequences=8, first=2048, step=128)
    tried = run(search, kv_blocks=364, block=128)
    assert tried == [2048, 5760, 5888]
    assert search.winner is not None and search.winner.max_model_len == 5760
    assert search.done_reason() == "boundary found: 5760 fits, 5888 does not (step 128)"


def test_a_budget_that_moves_is_still_bracketed_to_the_step() -> None:
    # the lab's c64 search: 4480 selected, 4864 too high, 4096 fits
    def blocks(length: int) -> int:
        return 2283 if length <= 4480 else 2200  # a budget that shrinks past a size

    search = Search(sequences=64, first=32768, step=128, max_starts=10)
    while (length := search.next()) is not None:
        per = math.ceil(length / 16)
        conc = round(blocks(length) * 16 / 16 / per, 2)
        search.record(Row(length, "x", search.judge(length, conc), blocks(length) * 16, conc))
    assert search.winner is not None
    lo, hi = search.lo, search.hi
    assert lo is not None and hi is not None and hi - lo == 128
    assert len(search.rows) <= 10


def test_failed_starts_are_rows_and_the_search_goes_below_them() -> None:
    search = Search(sequences=2, first=8192, step=512, max_starts=6)
    tried = run(search, kv_blocks=10_000, block=16, limit=8192)
    assert tried[0] == 8192
    assert search.rows[1].outcome == "failed"
    assert search.winner is not None and search.winner.max_model_len == 8192


def test_the_number_of_starts_is_bounded() -> None:
    search = Search(sequences=8, first=2048, step=16, max_starts=2)
    assert len(run(search, kv_blocks=364, block=128)) == 2
    assert "--max-starts 2" in (search.done_reason() or "")


def test_nothing_fits_ends_the_search() -> None:
    search = Search(sequences=1000, first=1024, step=128, max_starts=20)
    run(search, kv_blocks=50, block=16)
    assert search.winner is None
    assert "nothing fits" in (search.done_reason() or "")


# ---- the search's driver: restore, also when interrupted ------------------------------------
class FakeDriver:
    """A slot that serves one profile at a time; ``interrupt_at`` raises Ctrl-C in a start."""

    def __init__(self, current: str | None, interrupt_at: int | None = None) -> None:
        self.serving = current
        self.switches: list[str] = []
        self.interrupt_at = interrupt_at

    def current(self) -> str | None:
        return self.serving

    def switch(self, name: str) -> Started:
        self.switches.append(name)
        if self.interrupt_at is not None and len(self.switches) == self.interrupt_at:
            self.serving = None  # stopped, then interrupted while the new one starts
            raise KeyboardInterrupt
        self.serving = name
        if "ctx" not in name:
            return Started(True, {})
        _, conc = facts_for(364, 128, 8, int(name.rsplit("ctx", 1)[1]))
        return Started(True, {"kv_cache_tokens": 46592, "max_concurrency": conc})

    def stop(self) -> None:
        self.serving = None

    def verify(self, name: str | None) -> str | None:
        return None if self.serving == name else f"serving {self.serving}"


def test_the_search_ends_back_on_the_previous_profile() -> None:
    driver = FakeDriver("cpu-tiny")
    search = Search(sequences=8, first=2048, step=128)
    outcome = run_search(search, driver, lambda n: f"p-ctx{n}", lambda _: None)
    assert driver.switches == ["p-ctx2048", "p-ctx5760", "p-ctx5888", "cpu-tiny"]
    assert outcome.winner is not None and outcome.winner.max_model_len == 5760
    assert outcome.winner.outcome == "selected"
    assert outcome.restored == "back on cpu-tiny, verified"
    assert driver.serving == "cpu-tiny"


def test_an_interrupted_search_restores_and_says_so() -> None:
    driver = FakeDriver("cpu-tiny", interrupt_at=2)
    outcome = run_search(Search(sequences=8, first=2048), driver, lambda n: f"p-ctx{n}", print)
    assert outcome.interrupted
    assert outcome.why_stopped == "interrupted after 1 starts"
    assert driver.switches[-1] == "cpu-tiny" and driver.serving == "cpu-tiny"
    assert [r.max_model_len for r in outcome.rows] == [2048]


def test_a_failed_restore_is_an_error_not_a_silent_success() -> None:
    class Stuck(FakeDriver):
        def verify(self, name: str | None) -> str | None:
            return "the container runs something else"

    outcome = run_search(
        Search(sequences=8, first=2048), Stuck("cpu-tiny"), "p-ctx{}".format, print
    )
    assert outcome.restore_failed
    assert outcome.restored.startswith("RESTORE FAILED: after the search the slot is not back on")
    assert len(outcome.rows) == 3  # the table is kept all the same


def test_a_failed_start_is_a_row_with_vllms_reason() -> None:
    tail = "INFO loading\nValueError: max_model_len 99999 is larger than the model allows\n"
    started = Started(False, {}, "switch failed; cpu-tiny restored", {"log_tail": tail})
    row = row_of(Search(sequences=2, first=512), 99999, "p", started)
    assert row.outcome == "failed"
    assert row.reason == "ValueError: max_model_len 99999 is larger than the model allows"


def test_the_context_report_is_one_self_contained_page() -> None:
    from orchestrator.evidence import html_report

    rows = [
        Row(2048, "p-ctx2048", "fits", 46592, 22.75, 120.0).to_json(),
        Row(5760, "p-ctx5760", "selected", 46592, 8.09, 130.0).to_json(),
        Row(5888, "p-ctx5888", "too high", 46592, 7.91, 125.0).to_json(),
        Row(9000, "p-ctx9000", "failed", reason="ValueError: <too long>").to_json(),
    ]
    doc = {
        "kind": "model-slot-tune-context",
        "source": {"name": "p"},
        "sequences": 8,
        "rows": rows,
        "winner": {"max_model_len": 5760},
    }
    page = html_report.render(doc)
    assert page.startswith("<!DOCTYPE html>")
    assert "<script" not in page and "http://" not in page.replace('xmlns="http://www.w3.org', "")
    assert '<tr class="mark"><td>5760</td>' in page
    assert "ValueError: &lt;too long&gt;" in page  # escaped
    assert page.count("<circle") == 3  # the three starts with a reported concurrency
    with pytest.raises(ValueError, match="no HTML report"):
        html_report.render({"kind": "something-else"})


def test_an_error_in_a_start_stops_the_search_without_a_verdict_and_restores() -> None:
    class Flaky(FakeDriver):
        def switch(self, name: str) -> Started:
            if name == "p-ctx5760":
                raise TimeoutError("the Docker engine did not answer in 120 s")
            return super().switch(name)

    driver = Flaky("cpu-tiny")
    outcome = run_search(Search(sequences=8, first=2048), driver, "p-ctx{}".format, print)
    assert outcome.errored and not outcome.interrupted
    assert outcome.why_stopped == (
        "stopped by an error in start 2: TimeoutError: the Docker engine did not answer in 120 s"
    )
    assert [r.max_model_len for r in outcome.rows] == [2048]  # no row claims 5760 is too high
    assert driver.serving == "cpu-tiny"

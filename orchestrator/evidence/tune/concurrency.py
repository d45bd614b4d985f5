"""``tune concurrency``: run the ladder on the served profile and find its knee.

The ladder is ``bench``'s (same client, same numbers); ``knee.find_knee`` decides. The document
it returns is a bench document (``kind: model-slot-bench``, so ``bench compare`` reads it) with a
``tune`` section: the knee, the gains per doubling, goodput per level and the suggested limits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from orchestrator.evidence.bench import report
from orchestrator.evidence.bench.client import RequestRecord
from orchestrator.evidence.bench.metrics import LevelSummary
from orchestrator.evidence.tune.knee import DEFAULT_MIN_GAIN, Knee, Slo, find_knee, goodput

KIND = "model-slot-tune-concurrency"


@dataclass(frozen=True)
class Suggestion:
    """The limits the knee suggests: the frontdoor and vLLM cap at the same number, as the
    lab's profiles do (c8: 8 active generations, ``max_num_seqs`` 8)."""

    max_active_generations: int
    max_num_seqs: int

    def keys(self) -> dict[str, str]:
        return {
            "FRONTDOOR_MAX_ACTIVE_GENERATIONS": str(self.max_active_generations),
            "VLLM_MAX_NUM_SEQS": str(self.max_num_seqs),
        }


def suggest(knee: Knee) -> Suggestion | None:
    if knee.concurrency is None:
        return None
    return Suggestion(knee.concurrency, knee.concurrency)


def analyse(document: dict[str, Any], *, min_gain: float, slo: Slo) -> dict[str, Any]:
    """The ``tune`` section of a ladder's bench document."""
    summaries = report.summaries_of(document)
    knee = find_knee(summaries, min_gain=min_gain, slo=slo)
    good = []
    for level, summary in zip(document["levels"], summaries, strict=True):
        records = [RequestRecord.from_json(r) for r in level["records"]]
        g = goodput(records, summary.wall_s, slo)
        good.append({"concurrency": summary.concurrency, **g.__dict__})
    suggestion = suggest(knee)
    return {
        "kind": KIND,
        "min_gain": min_gain,
        "slo": {"ttft_p95_ms": slo.ttft_p95_ms, "tpot_ms": slo.tpot_ms},
        "knee": knee.concurrency,
        "reason": knee.reason,
        "stopped_by": knee.stopped_by,
        "gains": [None if math.isnan(g) else round(g, 4) for g in knee.gains],
        "goodput": good,
        "suggested": suggestion.keys() if suggestion else None,
    }


def table(summaries: Sequence[LevelSummary], tune: dict[str, Any]) -> str:
    """The ladder, one row a level, the knee marked."""
    from orchestrator import output  # noqa: PLC0415

    goods = {g["concurrency"]: g for g in tune["goodput"]}
    gains = [None, *tune["gains"]]
    rows = []
    for summary, gain in zip(sorted(summaries, key=lambda s: s.concurrency), gains, strict=True):
        g = goods.get(summary.concurrency, {})
        rows.append(
            (
                ("> " if summary.concurrency == tune["knee"] else "  ") + f"c{summary.concurrency}",
                f"{summary.completed}/{summary.requests}",
                _num(summary.output_tok_s),
                "-" if gain is None else f"{gain * 100:+.0f}%",
                _num(summary.ttft.p95 * 1000, 0),
                _num(summary.tpot.mean * 1000),
                f"{g.get('good', 0)}/{g.get('requests', 0)}",
                _num(g.get("req_s", float("nan")), 2),
                "knee" if summary.concurrency == tune["knee"] else "",
            )
        )
    headers = (
        "  C",
        "OK/N",
        "OUT tok/s",
        "GAIN/2x",
        "TTFT p95 ms",
        "TPOT ms",
        "GOOD",
        "GOODPUT req/s",
        "",
    )
    return output.table(headers, rows)


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def render(summaries: Sequence[LevelSummary], tune: dict[str, Any]) -> str:
    lines = [table(summaries, tune), ""]
    if tune["knee"] is None:
        lines.append(f"no knee: {tune['reason']}")
    else:
        lines.append(f"knee: c{tune['knee']} ({tune['reason']})")
    slo = Slo(**tune["slo"])
    lines.append(
        f"rule: a doubling must add >= {tune['min_gain'] * 100:.0f}% wall output tok/s; "
        f"targets: {slo.text()}"
    )
    if tune["suggested"]:
        lines.append("suggested: " + " ".join(f"{k}={v}" for k, v in tune["suggested"].items()))
    return "\n".join(lines)


__all__ = ["DEFAULT_MIN_GAIN", "KIND", "Suggestion", "analyse", "render", "suggest", "table"]

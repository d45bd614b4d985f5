"""Render a bench result: the lab's table, the JSON document, a PNG plot, and a comparison."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from orchestrator import output
from orchestrator.evidence.bench.metrics import LevelSummary

KIND = "model-slot-bench"


def _num(value: float, digits: int = 1) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _ms(value: float) -> str:
    return "-" if value is None or math.isnan(value) else f"{value * 1000:.0f}"


def table(summaries: list[LevelSummary]) -> str:
    headers = (
        "C",
        "OK/N",
        "WALL s",
        "OUT tok/s",
        "DECODE tok/s",
        "REQ tok/s",
        "TTFT mean",
        "p50",
        "p95",
        "max ms",
        "TPOT ms",
        "ITL p50",
        "E2E mean s",
        "QUEUE max ms",
    )
    rows = [
        (
            s.concurrency,
            f"{s.completed}/{s.requests}",
            _num(s.wall_s, 2),
            _num(s.output_tok_s),
            _num(s.decode_tok_s),
            _num(s.decode_tok_s_per_request),
            _ms(s.ttft.mean),
            _ms(s.ttft.p50),
            _ms(s.ttft.p95),
            _ms(s.ttft.max),
            _num(s.tpot.mean * 1000),
            _num(s.itl.p50 * 1000),
            _num(s.e2e.mean, 2),
            _num(s.queue.max * 1000),
        )
        for s in summaries
    ]
    return output.table(headers, rows)


def summaries_of(document: dict[str, Any]) -> list[LevelSummary]:
    return [LevelSummary.from_json(level["summary"]) for level in document.get("levels", [])]


def load(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or data.get("kind") != KIND:
        raise ValueError(f"{path}: not a bench result (kind {KIND!r} expected)")
    return data


def plot(document: dict[str, Any], path: Path) -> None:
    """Throughput and TTFT against concurrency. matplotlib is imported only here."""
    import matplotlib  # noqa: PLC0415  (heavy, and only the plot needs it)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    summaries = summaries_of(document)
    conc = [s.concurrency for s in summaries]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 7), sharex=True)
    top.plot(conc, [s.output_tok_s for s in summaries], "o-", label="wall output tok/s")
    top.plot(conc, [s.decode_tok_s for s in summaries], "s--", label="aggregate decode tok/s")
    top.set_ylabel("tokens/s")
    top.legend()
    top.grid(alpha=0.3)
    bottom.plot(conc, [s.ttft.mean * 1000 for s in summaries], "o-", label="TTFT mean")
    bottom.plot(conc, [s.ttft.p95 * 1000 for s in summaries], "^--", label="TTFT p95")
    bottom.set_ylabel("TTFT ms")
    bottom.set_xlabel("concurrency")
    bottom.set_xscale("log", base=2)
    bottom.set_xticks(conc, [str(c) for c in conc])
    bottom.legend()
    bottom.grid(alpha=0.3)
    shape = document.get("shape", {})
    fig.suptitle(
        f"{document.get('model')}: {shape.get('prompt_tokens')} in / "
        f"{shape.get('output_tokens')} out ({shape.get('mode')})"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


_COMPARED = (
    ("output_tok_s", "wall output tok/s", 1.0),
    ("decode_tok_s", "aggregate decode tok/s", 1.0),
    ("decode_tok_s_per_request", "per-request decode tok/s", 1.0),
    ("ttft.mean", "TTFT mean ms", 1000.0),
    ("ttft.p95", "TTFT p95 ms", 1000.0),
    ("tpot.mean", "TPOT mean ms", 1000.0),
    ("e2e.mean", "E2E mean ms", 1000.0),
)


def _get(summary: LevelSummary, dotted: str) -> float:
    value: Any = summary
    for part in dotted.split("."):
        value = getattr(value, part)
    return float(value)


def compare(a: dict[str, Any], b: dict[str, Any]) -> list[tuple[int, str, float, float, float]]:
    """(concurrency, metric, A, B, change %) for every level both results have."""
    left = {s.concurrency: s for s in summaries_of(a)}
    right = {s.concurrency: s for s in summaries_of(b)}
    rows: list[tuple[int, str, float, float, float]] = []
    for conc in sorted(set(left) & set(right)):
        for key, label, scale in _COMPARED:
            va, vb = _get(left[conc], key) * scale, _get(right[conc], key) * scale
            change = (vb - va) / va * 100 if va and not math.isnan(va) else math.nan
            rows.append((conc, label, va, vb, change))
    return rows


def compare_text(a: dict[str, Any], b: dict[str, Any], name_a: str, name_b: str) -> str:
    lines = []
    for label, key in (("model", "model"), ("base URL", "base_url")):
        if a.get(key) != b.get(key):
            lines.append(f"{label}: {a.get(key)} -> {b.get(key)}")
    if a.get("shape") != b.get("shape"):
        lines.append(f"shape differs: {a.get('shape')} -> {b.get('shape')}")
    pa, pb = a.get("profile") or {}, b.get("profile") or {}
    if pa.get("name") != pb.get("name") or pa.get("hash") != pb.get("hash"):
        lines.append(f"profile: {pa.get('name')} -> {pb.get('name')}")
    rows = [
        (conc, label, _num(va), _num(vb), "-" if math.isnan(ch) else f"{ch:+.1f}%")
        for conc, label, va, vb, ch in compare(a, b)
    ]
    missing = sorted(
        {s.concurrency for s in summaries_of(a)} ^ {s.concurrency for s in summaries_of(b)}
    )
    if missing:
        lines.append(f"levels in only one result: {missing}")
    lines.append(output.table(("C", "METRIC", f"A={name_a}", f"B={name_b}", "B vs A"), rows))
    return "\n".join(lines)

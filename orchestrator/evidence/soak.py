"""Soak: checks on a schedule for hours, one row per cycle (the ``soak`` command: ``cli/soak.py``).

Each cycle checks ``/status`` (when a frontdoor answers), ``/v1/models``, runs the canary and a
short decode check, and appends a row to ``soak.tsv`` and ``soak.jsonl``: cycle, time, quality,
baseline, TTFT, wall tok/s, status. A failed cycle is an anomaly row; the soak goes on.

Cycle ``k`` starts at ``start + k * interval`` (anchored, so slow cycles do not drift the
schedule; a slot that has already passed is skipped and counted). After the last cycle the soak
sleeps until ``start + duration`` and exits: it never spins. The summary gives clean cycles,
the anomalies with their details, and throughput mean and range.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx

from orchestrator import output
from orchestrator.errors import ModelSlotError
from orchestrator.evidence import canary
from orchestrator.evidence.bench.run import BenchConfig, run_bench
from orchestrator.evidence.bench.runner import server_info
from orchestrator.evidence.bench.workload import Shape
from orchestrator.progress import Progress, note

KIND = "model-slot-soak"
COLUMNS = ("cycle", "time", "quality", "baseline", "ttft_ms", "wall_tok_s", "status", "detail")


class Clock(Protocol):
    def now(self) -> float: ...
    def sleep(self, seconds: float) -> None: ...


class RealClock:
    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@dataclass(frozen=True)
class SoakConfig:
    base_url: str
    duration_s: float = 28800.0
    interval_s: float = 900.0
    prompt_tokens: int = 128
    output_tokens: int = 128
    canary_expect: str = "answers"
    baseline: dict[str, Any] | None = None
    model: str | None = None


async def check_cycle(config: SoakConfig, progress: Progress) -> dict[str, Any]:
    """One cycle's checks. Problems become ``anomalies``; only cancellation escapes."""
    anomalies: list[str] = []
    row: dict[str, Any] = {"quality": "-", "baseline": "-", "ttft_ms": None, "wall_tok_s": None}
    async with httpx.AsyncClient(timeout=60) as client:
        info = await server_info(client, config.base_url)
    status = info["status"]
    slot = status.get("model_slot") if isinstance(status, dict) else None
    row["profile"] = (slot.get("name") or None) if isinstance(slot, dict) else None
    if isinstance(status, dict):
        state = (
            (status.get("route") or {}).get("state")
            if isinstance(status.get("route"), dict)
            else None
        )
        if status.get("ok") is False or state not in (None, "serving"):
            anomalies.append(f"/status: ok={status.get('ok')} state={state}")
    models = info["models"]
    model = config.model or info["model"]
    if models is None or not model:
        anomalies.append("/v1/models did not answer with a model")
    elif config.model and config.model not in [m.get("id") for m in models.get("data", [])]:
        anomalies.append(f"/v1/models does not list {config.model}")
    if model:
        run = await canary.run_canary(
            canary.CanaryConfig(
                base_url=config.base_url,
                model=model,
                expect=config.canary_expect,
                baseline=config.baseline,
            ),
            progress,
        )
        answers_ok = all(r.success and r.expected_pass for r in run.results)
        if config.canary_expect == "baseline":  # a tiny model: its answers are not judged
            row["quality"] = "unjudged"
        else:
            row["quality"] = "pass" if answers_ok else "fail"
        if config.baseline is not None:
            states = {r.baseline for r in run.results}
            row["baseline"] = "match" if states == {"match"} else "mismatch"
        anomalies += [f"canary: {problem}" for problem in run.failures]
        bench = await run_bench(
            BenchConfig(
                base_url=config.base_url,
                shape=Shape(config.prompt_tokens, config.output_tokens),
                concurrency=(1,),
                requests_per_level=1,
                model=model,
                warmup=False,
            ),
            progress,
        )
        summary = bench.levels[0].summary
        ttft, rate = summary.ttft.mean, summary.output_tok_s
        row["ttft_ms"] = None if math.isnan(ttft) else round(ttft * 1000, 1)
        row["wall_tok_s"] = None if math.isnan(rate) else round(rate, 2)
        anomalies += [f"decode: {count} x {kind}" for kind, count in summary.errors.items()]
    row["status"] = "anomaly" if anomalies else "clean"
    row["detail"] = "; ".join(anomalies)
    return row


CycleFn = Callable[[int], dict[str, Any]]


class Soak:
    """The schedule and the record; what a cycle checks is ``cycle_fn``'s business."""

    def __init__(
        self,
        duration_s: float,
        interval_s: float,
        cycle_fn: CycleFn,
        *,
        out_dir: Path,
        clock: Clock,
        progress: Progress,
    ) -> None:
        if interval_s <= 0 or duration_s <= 0:
            raise ModelSlotError("--duration-s and --interval-s must be positive")
        self.duration_s = duration_s
        self.interval_s = interval_s
        self.cycle_fn = cycle_fn
        self.out_dir = out_dir
        self.clock = clock
        self.progress = progress
        self.rows: list[dict[str, Any]] = []
        self.missed_slots = 0

    @property
    def planned(self) -> int:
        return max(1, math.ceil(self.duration_s / self.interval_s))

    def _append(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        tsv = self.out_dir / "soak.tsv"
        new = not tsv.exists()
        with tsv.open("a", encoding="utf-8") as handle:
            if new:
                handle.write("\t".join(COLUMNS) + "\n")
            cells = ["-" if row.get(c) is None else str(row[c]) for c in COLUMNS]
            handle.write(
                "\t".join(cell.replace("\t", " ").replace("\n", " ") for cell in cells) + "\n"
            )
        with (self.out_dir / "soak.jsonl").open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")

    def run(self) -> dict[str, Any]:
        start = self.clock.now()
        deadline = start + self.duration_s
        started_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        k = 0
        while start + k * self.interval_s < deadline:
            wait = start + k * self.interval_s - self.clock.now()
            if wait > 0:
                self.progress(note(f"soak: cycle {k + 1}/{self.planned} starts in {wait:.0f}s"))
                self.clock.sleep(wait)
            number = k + 1
            self.progress(note(f"soak cycle {number}", number, self.planned))
            when = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
            try:
                row = self.cycle_fn(number)
            except Exception as exc:  # a failed cycle is a row, never the end of the soak
                row = {"status": "anomaly", "detail": f"cycle crashed: {type(exc).__name__}: {exc}"}
            row = {"cycle": number, "time": when, **row}
            _same_profile(self.rows, row)
            self._append(row)
            self.progress(
                note(
                    f"soak cycle {number}: {row.get('status')} quality={row.get('quality')} "
                    f"baseline={row.get('baseline')} tok/s={row.get('wall_tok_s')} "
                    f"{row.get('detail') or ''}"
                )
            )
            k += 1
            now = self.clock.now()
            while start + k * self.interval_s < min(now, deadline):
                k += 1  # that slot passed while the cycle ran: skip it, do not bunch up
                self.missed_slots += 1
        remaining = deadline - self.clock.now()
        if remaining > 0:
            self.progress(note(f"soak: last cycle done, sleeping {remaining:.0f}s to the deadline"))
            self.clock.sleep(remaining)
        summary = summarize(self.rows, self.missed_slots)
        summary.update(
            kind=KIND,
            started_at=started_at,
            finished_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            duration_s=self.duration_s,
            interval_s=self.interval_s,
            elapsed_s=round(self.clock.now() - start, 3),
            out_dir=str(self.out_dir),
        )
        output.write_json(self.out_dir / "summary.json", summary)
        return summary


def _range(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"mean": None, "min": None, "max": None}
    return {
        "mean": round(sum(values) / len(values), 2),
        "min": round(min(values), 2),
        "max": round(max(values), 2),
    }


def _same_profile(before: list[dict[str, Any]], row: dict[str, Any]) -> None:
    """A soak is evidence for one profile: a cycle that finds another one serving (a switch
    mid-soak) is an anomaly, named in the row."""
    first = next((r["profile"] for r in before if r.get("profile")), None)
    now = row.get("profile")
    if first and now and now != first:
        switched = f"the slot serves {now}, not {first} (switched during the soak)"
        row["status"] = "anomaly"
        row["detail"] = "; ".join(part for part in (row.get("detail"), switched) if part)


def summarize(rows: list[dict[str, Any]], missed_slots: int = 0) -> dict[str, Any]:
    """Pure: the soak's verdict from its rows."""
    clean = [row for row in rows if row.get("status") == "clean"]
    anomalies = [
        {"cycle": row["cycle"], "time": row.get("time"), "detail": row.get("detail", "")}
        for row in rows
        if row.get("status") != "clean"
    ]
    rates = [float(row["wall_tok_s"]) for row in rows if row.get("wall_tok_s") is not None]
    ttfts = [float(row["ttft_ms"]) for row in rows if row.get("ttft_ms") is not None]
    return {
        # the profile the frontdoor named in the first cycle that saw one (/status): the
        # profile this soak is evidence for; None against a plain vLLM endpoint
        "profile": next((row["profile"] for row in rows if row.get("profile")), None),
        "cycles": len(rows),
        "clean_cycles": len(clean),
        "anomalies": anomalies,
        "missed_slots": missed_slots,
        "wall_tok_s": _range(rates),
        "ttft_ms": _range(ttfts),
        "passed": bool(rows) and not anomalies,
    }

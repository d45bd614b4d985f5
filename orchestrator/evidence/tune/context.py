"""``tune context``: the largest ``max_model_len`` at which vLLM reports >= N x concurrency.

The lab found the c64 context by hand, one restart at a time (15616 -> 10368 -> 7680 -> 4864 ->
4096 -> 4480), and learnt that the KV budget moves with the scheduler profile: it must be
measured, not derived. So every candidate is a real start of a derived profile through the
normal switch (lock, preflight, one container, readiness, rollback), and vLLM's own startup
facts ("KV cache size: N tokens", "Maximum concurrency for L tokens per request: X x") decide.

``Search`` is the pure part. It keeps the largest length that fits (``lo``) and the smallest that
does not (``hi``: too high, or a start that failed) and proposes the next length:

1. the source profile's own ``max_model_len`` first (it measures the KV budget);
2. then the estimate from the latest start, ``L * X / N`` (the concurrency vLLM reported scales
   as 1 / L for a fixed budget), rounded down to ``step``, when it lies strictly between lo and
   hi and was not tried;
3. else the midpoint of lo and hi on the step grid; with no hi yet, ``lo + step`` (which
   confirms the boundary the estimate implied); with no lo yet, half of hi.

It ends when ``hi - lo == step`` (the boundary, to the step), when nothing below the smallest
failure is left, or after ``max_starts`` starts. ``run_search`` drives the starts through a
``Driver`` and always brings the host back to the profile that ran before, verified, also on
Ctrl-C (``KeyboardInterrupt``) and SIGTERM.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from types import FrameType
from typing import Any, Protocol

from orchestrator.errors import ModelSlotError

KIND = "model-slot-tune-context"
#: "ValueError: ..." and the like: the line of vLLM's log that says why it exited.
_ERROR_LINE = re.compile(r"\b[A-Z]\w*(?:Error|Exception)\b: ")
#: The lab's candidates were all multiples of 128 (4480 = 35 x 128).
DEFAULT_STEP = 128
DEFAULT_MAX_STARTS = 8


@dataclass
class Row:
    """One start of the search: the lab's table row."""

    max_model_len: int
    profile: str
    outcome: str  # fits | too high | failed | selected
    kv_cache_tokens: int | None = None
    max_concurrency: float | None = None
    start_s: float | None = None
    reason: str = ""
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def fits(self) -> bool:
        return self.outcome in ("fits", "selected")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Search:
    """Which ``max_model_len`` to start next (see the module docstring)."""

    def __init__(
        self,
        *,
        sequences: int,
        first: int,
        step: int = DEFAULT_STEP,
        max_starts: int = DEFAULT_MAX_STARTS,
        max_len: int | None = None,
    ) -> None:
        if sequences < 1:
            raise ValueError(f"--sequences must be at least 1, not {sequences}")
        if step < 1:
            raise ValueError(f"--step must be at least 1, not {step}")
        if max_starts < 1:
            raise ValueError(f"--max-starts must be at least 1, not {max_starts}")
        self.sequences = sequences
        self.step = step
        self.max_starts = max_starts
        self.max_len = max_len
        self.first = self._clamp(first)
        self.rows: list[Row] = []

    def _grid(self, value: float) -> int:
        return max(self.step, math.floor(value / self.step) * self.step)

    def _clamp(self, value: int) -> int:
        if self.max_len is not None:
            value = min(value, self.max_len)
        return max(self.step, value)

    def judge(self, max_model_len: int, concurrency: float | None) -> str:
        if concurrency is None:
            return "failed"
        return "fits" if concurrency >= self.sequences else "too high"

    @property
    def lo(self) -> int | None:
        fitting = [r.max_model_len for r in self.rows if r.fits]
        return max(fitting) if fitting else None

    @property
    def hi(self) -> int | None:
        above = [r.max_model_len for r in self.rows if not r.fits]
        return min(above) if above else None

    def record(self, row: Row) -> None:
        self.rows.append(row)

    def done_reason(self) -> str | None:
        """Why the search is over, or None when it should go on."""
        lo, hi = self.lo, self.hi
        if lo is not None and hi is not None and hi - lo <= self.step:
            return f"boundary found: {lo} fits, {hi} does not (step {self.step})"
        if lo is not None and self.max_len is not None and lo >= self.max_len:
            return f"{lo} fits and is the upper limit (--max-len {self.max_len})"
        if hi is not None and lo is None and hi <= self.step:
            return f"nothing fits: even {hi} does not give {self.sequences}x"
        if len(self.rows) >= self.max_starts:
            return f"stopped after {len(self.rows)} starts (--max-starts {self.max_starts})"
        return None

    def _estimate(self) -> int | None:
        for row in reversed(self.rows):
            if row.max_concurrency:
                return self._grid(row.max_model_len * row.max_concurrency / self.sequences)
        return None

    def next(self) -> int | None:
        """The next length to start, or None when ``done_reason`` says why not."""
        if self.done_reason() is not None:
            return None
        if not self.rows:
            return self.first
        tried = {r.max_model_len for r in self.rows}
        lo, hi = self.lo, self.hi

        def inside(value: int) -> bool:
            return (
                (lo is None or value > lo)
                and (hi is None or value < hi)
                and value not in tried
                and (self.max_len is None or value <= self.max_len)
            )

        estimate = self._estimate()
        if estimate is not None and inside(estimate):
            return estimate
        if lo is not None and hi is not None:
            middle = lo + self._grid((hi - lo) / 2)
            return middle if inside(middle) else None
        if lo is not None:
            grown = self._clamp(lo + self.step)
            return grown if inside(grown) else None
        assert hi is not None  # rows exist, none fits
        half = self._grid(hi / 2)
        return half if inside(half) else None

    @property
    def winner(self) -> Row | None:
        fitting = [r for r in self.rows if r.fits]
        return max(fitting, key=lambda r: r.max_model_len) if fitting else None


# ---- driving real starts ------------------------------------------------------------------
@dataclass(frozen=True)
class Started:
    """What one switch did: ok, its startup facts, or why it failed."""

    ok: bool
    facts: dict[str, Any]
    error: str = ""
    report: dict[str, Any] | None = None


class Driver(Protocol):
    """The slot as the search needs it; the CLI backs it with the normal switch."""

    def current(self) -> str | None:
        """The profile the slot serves now (None: nothing)."""

    def switch(self, name: str) -> Started: ...

    def stop(self) -> None: ...

    def verify(self, name: str | None) -> str | None:
        """None when the slot really serves ``name`` (or nothing, for None); else why not."""


Candidate = Callable[[int], str]  # max_model_len -> the derived profile's name (file written)
Say = Callable[[str], None]


def failure_reason(started: Started) -> str:
    """The line of a failed start that says why: vLLM's last error line, else the error."""
    first = (started.error.splitlines() or ["start failed"])[0][:300]
    if "not ready after" in first:  # a timeout: vLLM's last lines are progress, not a cause
        return first
    tail = (started.report or {}).get("log_tail") or ""
    for line in reversed([line.strip() for line in str(tail).splitlines()]):
        if _ERROR_LINE.search(line):
            return line[-300:]
    return first


def row_of(search: Search, length: int, name: str, started: Started) -> Row:
    facts = started.facts
    kv = facts.get("kv_cache_tokens")
    conc = facts.get("max_concurrency")
    at = facts.get("max_concurrency_context_tokens")
    start_s = facts.get("ready_s")
    if not started.ok:
        return Row(length, name, "failed", reason=failure_reason(started), facts=facts)
    if conc is None:
        return Row(
            length,
            name,
            "failed",
            kv_cache_tokens=int(kv) if kv is not None else None,
            start_s=start_s,
            reason="started, but the log has no 'Maximum concurrency' line to judge by",
            facts=facts,
        )
    reason = ""
    if at is not None and int(at) != length:
        reason = f"vLLM reported concurrency at {at} tokens, not {length}"
    return Row(
        length,
        name,
        search.judge(length, float(conc)),
        kv_cache_tokens=int(kv) if kv is not None else None,
        max_concurrency=float(conc),
        start_s=float(start_s) if start_s is not None else None,
        reason=reason,
        facts=facts,
    )


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt in the main thread, so it restores like Ctrl-C."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def shielded() -> Iterator[None]:
    """No second Ctrl-C/SIGTERM while the previous profile is being brought back."""
    try:
        old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
        old_term = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)


@dataclass
class Outcome:
    rows: list[Row]
    winner: Row | None
    why_stopped: str
    previous: str | None
    restored: str  # what the restore did, verified
    interrupted: bool = False
    restore_failed: bool = False
    errored: bool = False  # a start raised instead of succeeding or failing (see why_stopped)
    started_at: str = ""
    finished_at: str = ""


def restore(driver: Driver, previous: str | None, say: Say) -> str:
    """Back to ``previous`` (or to nothing), then check that the slot really is there."""
    if previous is None:
        say("restore: nothing ran before the search; stopping the slot")
        driver.stop()
    elif driver.current() != previous or driver.verify(previous) is not None:
        say(f"restore: switching back to {previous}")
        started = driver.switch(previous)
        if not started.ok:
            raise ModelSlotError(
                f"could not bring {previous} back after the search: {started.error}"
            )
    problem = driver.verify(previous)
    if problem is not None:
        raise ModelSlotError(f"after the search the slot is not back on {previous}: {problem}")
    return f"back on {previous}, verified" if previous else "slot stopped, as before, verified"


def run_search(search: Search, driver: Driver, candidate: Candidate, say: Say) -> Outcome:
    """Start candidates until the search ends; always restore the previous profile."""
    previous = driver.current()
    started_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    interrupted = errored = False
    why = ""
    try:
        with sigterm_interrupts():
            while (length := search.next()) is not None:
                name = candidate(length)
                say(f"start {len(search.rows) + 1}/{search.max_starts}: {name} ({length} tokens)")
                row = row_of(search, length, name, driver.switch(name))
                search.record(row)
                say(_row_line(row, search.sequences))
            why = search.done_reason() or "no length left to try"
    except KeyboardInterrupt:
        interrupted = True
        why = f"interrupted after {len(search.rows)} starts"
        say(why)
    except Exception as exc:
        # Not a verdict on the length: stop, restore, keep the table, and say what happened.
        errored = True
        why = f"stopped by an error in start {len(search.rows) + 1}: {type(exc).__name__}: {exc}"
        say(why)
    finally:
        with shielded():
            try:
                restored = restore(driver, previous, say)
                failed_restore = False
            except ModelSlotError as exc:  # the table is still kept and printed, then this
                restored, failed_restore = f"RESTORE FAILED: {exc}", True
    winner = search.winner
    if winner is not None:
        winner.outcome = "selected"
    return Outcome(
        rows=search.rows,
        winner=winner,
        why_stopped=why,
        previous=previous,
        restored=restored,
        interrupted=interrupted,
        restore_failed=failed_restore,
        errored=errored,
        started_at=started_at,
        finished_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )


def _row_line(row: Row, sequences: int) -> str:
    if row.outcome == "failed":
        return f"  {row.max_model_len}: start failed: {row.reason}"
    return (
        f"  {row.max_model_len}: KV {row.kv_cache_tokens:,} tokens, {row.max_concurrency:.2f}x "
        f"(target {sequences}x): {row.outcome}"
    )


def table_rows(rows: list[Row]) -> list[tuple[str, ...]]:
    """The lab's table, in the order of the starts."""
    out: list[tuple[str, ...]] = []
    for row in rows:
        out.append(
            (
                str(row.max_model_len),
                "-" if row.kv_cache_tokens is None else f"{row.kv_cache_tokens:,}",
                "-" if row.max_concurrency is None else f"{row.max_concurrency:.2f}x",
                row.outcome if not row.reason else f"{row.outcome}: {row.reason}",
                "-" if row.start_s is None else f"{row.start_s:.1f}",
            )
        )
    return out


HEADERS = ("MAX MODEL LEN", "KV TOKENS", "CONCURRENCY", "OUTCOME", "START s")

"""Progress of long work: one event type and one printer, for every tool.

Switches and stops (``control/switch.py``, streamed over the controller's socket as JSON lines),
``bench``/``canary``/``gate``/``soak`` and image builds all report through a ``Progress``: a
callable that takes one ``ProgressEvent``. The work never prints; the command that started it
chooses the ``ProgressPrinter`` (or the controller its log).

``event`` says which keys matter:

    phase    a switch phase: ``phase``, ``status`` (start | done | failed), ``duration_s``,
             ``detail`` or ``failed`` (the first line of the error), ``elapsed_s`` at start
    step     a line inside a phase: ``phase``, ``text``
    failure  a switch's new container failed: ``error``, ``log_tail``
    queued   the controller runs ``ahead`` commands before this one
    note     a line of a long run: ``text``, and ``done``/``total`` for a counter;
             ``verbose`` True for a line shown only with ``--verbose``

It is a ``TypedDict`` because it crosses the control socket as JSON unchanged.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal, TextIO, TypedDict


class ProgressEvent(TypedDict, total=False):
    event: Literal["phase", "step", "failure", "queued", "note"]
    phase: str
    name: str  # the phase record's own name (the switch report's ``phases`` entry)
    status: Literal["start", "done", "failed"]
    elapsed_s: float
    duration_s: float
    detail: str
    verbose: bool  # a note only --verbose shows
    failed: str
    text: str
    error: str | None
    log_tail: str | None
    ahead: int
    done: int | None
    total: int | None


Progress = Callable[[ProgressEvent], None]


def phase_end(record: Mapping[str, Any], status: Literal["done", "failed"]) -> ProgressEvent:
    """The end of a switch phase from its report record (``name``, ``duration_s``, and
    ``detail`` or ``failed``)."""
    event: ProgressEvent = {
        "event": "phase",
        "phase": str(record["name"]),
        "name": str(record["name"]),
        "status": status,
        "duration_s": float(record.get("duration_s", 0.0)),
    }
    if record.get("detail"):
        event["detail"] = str(record["detail"])
    if record.get("failed"):
        event["failed"] = str(record["failed"])
    return event


def note(text: str, done: int | None = None, total: int | None = None) -> ProgressEvent:
    """A line of a long run; with ``done``/``total``, a counter."""
    return {"event": "note", "text": text, "done": done, "total": total}


def detail(text: str) -> ProgressEvent:
    """A line only ``--verbose`` shows (a pip command line, a docker build step)."""
    return {"event": "note", "text": text, "verbose": True}


def quiet(_: ProgressEvent) -> None:
    """A ``Progress`` that drops everything."""


def render(event: ProgressEvent) -> str | None:
    """The line for one event, without the time stamp; None for an event not shown."""
    kind = event.get("event")
    if kind == "phase":
        if event.get("status") == "start":
            return f"{event.get('phase')} ..."
        mark = "ok" if event.get("status") == "done" else "FAILED"
        why = event.get("detail") or event.get("failed") or ""
        line = f"{event.get('phase')} {mark} in {event.get('duration_s', 0):.2f}s"
        return f"{line}  {why}" if why else line
    if kind == "step":
        return f"  {event.get('phase')}: {event.get('text')}"
    if kind == "queued":
        return f"queued behind {event.get('ahead')} command(s) at the controller"
    if kind == "failure":
        line = f"FAILED: {event.get('error')}"
        tail = event.get("log_tail") or ""
        if tail:
            lines = tail.rstrip().splitlines()[-40:]
            line += "\n  last log lines of the new container:\n" + "\n".join(
                f"    {text}" for text in lines
            )
        return line
    if kind == "note":
        done, total = event.get("done"), event.get("total")
        count = f" {done}/{total}" if done is not None and total is not None else ""
        indent = "  " if event.get("verbose") else ""
        return f"{indent}{event.get('text', '')}{count}"
    return None


class ProgressPrinter:
    """Prints events as they come, each line stamped with the time since the printer started
    (``[label    1.2s]``). Counters print at most once a second, and always their last line;
    ``verbose`` notes only when ``verbose``."""

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        label: str = "",
        quiet: bool = False,
        verbose: bool = False,
        decimals: int = 2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream  # None: sys.stderr when printing (pytest's capsys swaps it)
        self._label = label
        self._quiet = quiet
        self._verbose = verbose
        self._decimals = decimals  # switch phases take fractions of a second; builds take hours
        self._clock = clock
        self._start = clock()
        self._last_count: float | None = None

    @property
    def elapsed_s(self) -> float:
        return self._clock() - self._start

    def __call__(self, event: ProgressEvent) -> None:
        if self._quiet or (event.get("verbose") and not self._verbose):
            return
        done, total = event.get("done"), event.get("total")
        if done is not None and total is not None:
            now = self._clock()
            if done < total and self._last_count is not None and now - self._last_count < 1.0:
                return
            self._last_count = now
        line = render(event)
        if line is None:
            return
        label = f"{self._label} " if self._label else ""
        stream = self._stream or sys.stderr
        stream.write(f"[{label}{self.elapsed_s:7.{self._decimals}f}s] {line}\n")
        stream.flush()

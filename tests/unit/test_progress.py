"""The one progress event type and its printer, as switches, bench and image builds use it."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

from orchestrator.progress import ProgressEvent, ProgressPrinter, detail, note, phase_end, render

PACKAGE = Path(__file__).resolve().parents[2] / "orchestrator"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def printed(*events: ProgressEvent, quiet: bool = False, verbose: bool = False) -> list[str]:
    stream = io.StringIO()
    printer = ProgressPrinter(stream, quiet=quiet, verbose=verbose, clock=Clock())
    for event in events:
        printer(event)
    return stream.getvalue().splitlines()


def test_switch_phase_events_render_as_the_switch_command_prints_them() -> None:
    start: ProgressEvent = {"event": "phase", "phase": "ready", "status": "start"}
    done = phase_end({"name": "ready", "duration_s": 1.5, "detail": "200 from /health"}, "done")
    failed = phase_end({"name": "ready", "duration_s": 2, "failed": "exited"}, "failed")
    assert render(start) == "ready ..."
    assert render(done) == "ready ok in 1.50s  200 from /health"
    assert render(failed) == "ready FAILED in 2.00s  exited"
    assert render({"event": "step", "phase": "stop", "text": "TERM"}) == "  stop: TERM"
    assert render({"event": "queued", "ahead": 2}) == "queued behind 2 command(s) at the controller"


def test_a_failure_shows_the_last_log_lines_of_the_container() -> None:
    tail = "\n".join(f"line {n}" for n in range(60))
    text = render({"event": "failure", "error": "exited 1", "log_tail": tail})
    assert text is not None
    lines = text.splitlines()
    assert lines[0] == "FAILED: exited 1"
    assert lines[2] == "    line 20"  # the last 40 lines only
    assert lines[-1] == "    line 59"


def test_events_cross_the_control_socket_as_json_unchanged() -> None:
    event = phase_end({"name": "flip", "duration_s": 0.25}, "done")
    assert json.loads(json.dumps(event)) == event


def test_lines_carry_the_label_and_elapsed_time() -> None:
    clock = Clock()
    stream = io.StringIO()
    printer = ProgressPrinter(stream, label="bench", decimals=1, clock=clock)
    clock.now += 3.25
    printer(note("level 1/2 c=1: running"))
    assert stream.getvalue() == "[bench     3.2s] level 1/2 c=1: running\n"
    plain = printed(note("x"))
    assert plain == ["[   0.00s] x"]


def test_counters_print_at_most_once_a_second_and_always_the_last() -> None:
    clock = Clock()
    stream = io.StringIO()
    printer = ProgressPrinter(stream, clock=clock)
    printer(note("requests", 1, 4))
    printer(note("requests", 2, 4))  # same instant: dropped
    clock.now += 1.0
    printer(note("requests", 3, 4))
    printer(note("requests", 4, 4))  # the last one always prints
    counts = [line.rsplit(" ", 1)[1] for line in stream.getvalue().splitlines()]
    assert counts == ["1/4", "3/4", "4/4"]


def test_verbose_lines_only_with_verbose_and_nothing_when_quiet() -> None:
    assert printed(detail("pip download x")) == []
    assert printed(detail("pip download x"), verbose=True) == ["[   0.00s]   pip download x"]
    assert printed(note("a"), quiet=True) == []


def test_no_other_progress_or_printer_class_in_the_package() -> None:
    """One event type, one printer: switches, bench, images and the slot CLI had four."""
    pattern = re.compile(r"^class \w*(Progress|Printer)\w*\b", re.MULTILINE)
    found = [
        f"{path.relative_to(PACKAGE)}: {match.group(0)}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for match in pattern.finditer(path.read_text(encoding="utf-8"))
    ]
    assert found == [
        "progress.py: class ProgressEvent",
        "progress.py: class ProgressPrinter",
    ]

"""The watchdog's policy and runner against a fake port: every verdict, the budget, no false alarm.

The clock is a number the test moves; the port is a fake whose probes answer what the test says.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import pytest

from orchestrator.control.watchdog import (
    Baseline,
    Fault,
    FrontdoorLiveness,
    Probe,
    ProbeKind,
    ProbeResult,
    Restart,
    VerdictChanged,
    Watchdog,
    WatchdogSettings,
)
from orchestrator.control.watchdog_runner import WatchdogRunner

SETTINGS = WatchdogSettings(
    probe_interval_s=10,
    wedge_s=20,
    restart_budget=2,
    restart_window_s=3600,
    decode_interval_s=60,
    decode_tokens=16,
    degraded_fraction=0.5,
    degraded_probes=3,
)
IDLE = FrontdoorLiveness(active=0, last_token_age_s=None)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def ok(kind: ProbeKind = "liveness", rate: float | None = None) -> ProbeResult:
    return ProbeResult(kind, ok=True, latency_s=0.1, tokens=16 if rate else 1, decode_tok_s=rate)


def timeout(kind: ProbeKind = "liveness") -> ProbeResult:
    return ProbeResult(kind, ok=False, latency_s=20, timed_out=True, error="timed out")


@dataclass
class FakePort:
    """Implements ``WatchdogPort``. Probe answers are queued by the test; each probe may move the
    clock (a timeout takes ``wedge_s``)."""

    clock: Clock
    frontdoor: FrontdoorLiveness | None = IDLE
    #: When set, the last token was relayed at this clock time (its age grows with the clock);
    #: otherwise ``frontdoor``'s figures are returned as they are (a flowing stream: always fresh).
    token_at: float | None = None
    relay_during_probe: bool = False  # a client's generation finishes while the probe waits
    answers: deque[ProbeResult] = field(default_factory=deque)
    probes: list[ProbeKind] = field(default_factory=list)
    restarts: list[str] = field(default_factory=list)
    faults: list[str] = field(default_factory=list)
    changes: list[tuple[str, str]] = field(default_factory=list)
    published: list[dict[str, object]] = field(default_factory=list)

    def liveness(self) -> FrontdoorLiveness | None:
        fd = self.frontdoor
        if fd is None or self.token_at is None:
            return fd
        age = self.clock.now - self.token_at
        return FrontdoorLiveness(fd.active, last_token_age_s=age, oldest_active_silent_s=age)

    def probe(self, kind: ProbeKind, settings: WatchdogSettings) -> ProbeResult:
        """The first queued answer of this kind, else a healthy one (decode: 50 tok/s)."""
        self.probes.append(kind)
        answer = next((a for a in self.answers if a.kind == kind), None)
        if answer is None:
            answer = ok(kind, 50.0 if kind == "decode" else None)
        else:
            self.answers.remove(answer)
        self.clock.now += settings.wedge_s if answer.timed_out else answer.latency_s
        if self.relay_during_probe:
            self.token_at = self.clock.now - 1
        return answer

    def restart(self, reason: str) -> None:
        self.restarts.append(reason)

    def fault(self, reason: str) -> None:
        self.faults.append(reason)

    def changed(self, change: VerdictChanged, view: dict[str, object]) -> None:
        assert view["reason"]  # the view goes with the change (it may already be further on)
        self.changes.append((change.before, change.after))

    def publish(self, view: dict[str, object]) -> None:
        self.published.append(view)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def port(clock: Clock) -> FakePort:
    return FakePort(clock)


@pytest.fixture
def runner(port: FakePort, clock: Clock) -> WatchdogRunner:
    runner = WatchdogRunner(port, clock=clock)
    runner.arm(SETTINGS, "hash-a", Baseline(50.0, "gate test"), fresh=True)
    return runner


def advance(runner: WatchdogRunner, clock: Clock, seconds: float, step: float = 1.0) -> None:
    end = clock.now + seconds
    while clock.now < end:
        clock.now += step
        runner.step()


def test_armed_is_unknown_until_a_probe_proves_it(
    runner: WatchdogRunner, port: FakePort, clock: Clock
) -> None:
    assert runner.verdict == "unknown"
    runner.step()  # idle and no decode figure yet: a decode probe first
    assert port.probes == ["decode"]
    assert runner.verdict == "ok"
    view = runner.view()
    assert view["last_proof"] == "probe" and view["decode_tok_s"] == 50.0


def test_idle_model_is_probed_once_per_interval(
    runner: WatchdogRunner, port: FakePort, clock: Clock
) -> None:
    advance(runner, clock, 35)
    # t=1 decode, then a 1-token probe each time 10 s pass without proof
    assert port.probes.count("decode") == 1
    assert 3 <= port.probes.count("liveness") <= 4
    assert runner.verdict == "ok"


def test_a_probe_timing_out_idle_is_a_wedge_and_restarts(
    runner: WatchdogRunner, port: FakePort, clock: Clock
) -> None:
    runner.step()
    port.answers.append(timeout())
    advance(runner, clock, 15)
    assert runner.verdict == "wedged"
    assert port.changes[-1] == ("ok", "wedged")
    assert len(port.restarts) == 1 and "restart 1 of 2" in port.restarts[0]
    assert "timed out" in port.restarts[0]


def test_fast_errors_are_retried_until_the_wedge_bound(
    runner: WatchdogRunner, port: FakePort, clock: Clock
) -> None:
    runner.step()
    error = ProbeResult("liveness", ok=False, latency_s=0.01, error="HTTP 500")
    port.answers.extend([error] * 10)
    advance(runner, clock, 12)
    assert runner.verdict == "ok", "one fast error is not a wedge"
    advance(runner, clock, 25)
    assert runner.verdict == "wedged"
    assert "HTTP 500" in port.restarts[0]


def test_a_fast_error_then_an_answer_is_no_wedge(
    runner: WatchdogRunner, port: FakePort, clock: Clock
) -> None:
    runner.step()
    port.answers.append(ProbeResult("liveness", ok=False, latency_s=0.01, error="HTTP 503"))
    advance(runner, clock, 60)
    assert runner.verdict == "ok" and port.restarts == []


def test_busy_at_the_cap_with_tokens_flowing_is_not_a_wedge_and_not_probed(
    runner: WatchdogRunner, port: FakePort, clock: Clock
) -> None:
    runner.step()
    probes_before = len(port.probes)
    # every place taken by long generations, tokens relayed a moment ago, for many intervals
    port.frontdoor = FrontdoorLiveness(active=4, last_token_age_s=0.05, oldest_active_silent_s=0.05)
    port.answers.extend([timeout()] * 10)  # a probe would time out: none must be sent
    advance(runner, clock, 120)
    assert len(port.probes) == probes_before
    assert runner.verdict == "ok" and port.restarts == []
    assert runner.view()["last_proof"] == "traffic"


def test_busy_and_silent_gets_a_probe_and_an_answer_clears_it(
    runner: WatchdogRunner, port: FakePort, clock: Clock
) -> None:
    runner.step()
    # non-streaming generations: nothing relayed for a while, but the engine is alive
    port.frontdoor = FrontdoorLiveness(active=2, last_token_age_s=None)
    port.token_at = clock.now - 30
    advance(runner, clock, 30)
    assert "liveness" in port.probes and "decode" not in port.probes[1:]
    assert runner.verdict == "ok" and port.restarts == []


def test_busy_and_silent_with_a_dead_probe_is_a_wedge(
    runner: WatchdogRunner, port: FakePort, clock: Clock
) -> None:
    runner.step()
    port.frontdoor = FrontdoorLiveness(active=2, last_token_age_s=None)
    port.token_at = clock.now - 15
    port.answers.append(timeout())
    advance(runner, clock, 12)  # the last proof (the first probe) is an interval old
    assert runner.verdict == "wedged"
    assert "(2 active, the oldest silent 45s)" in port.restarts[0]


def test_tokens_relayed_while_the_probe_hung_mean_alive(clock: Clock) -> None:
    dog = Watchdog()
    dog.arm(clock.now, SETTINGS, "h", Baseline(50, "gate"), fresh=True)
    clock.now += 11
    actions = dog.tick(clock.now, FrontdoorLiveness(active=1, last_token_age_s=11))
    assert actions == [Probe("liveness")]
    clock.now += 20
    dog.tick(clock.now, FrontdoorLiveness(active=1, last_token_age_s=1))  # a token, mid-probe
    assert dog.probe_done(clock.now, timeout()) == []
    assert dog.verdict == "ok"


def test_restart_budget_then_faulted_and_it_stays(
    runner: WatchdogRunner, port: FakePort, clock: Clock
) -> None:
    for n in (1, 2):
        runner.step()
        port.answers.append(timeout())
        advance(runner, clock, 15)
        assert len(port.restarts) == n
        runner.arm(SETTINGS, "hash-a", Baseline(50.0, "gate test"), fresh=False)  # restarted
        assert runner.verdict == "unknown"
    port.answers.append(timeout())
    advance(runner, clock, 15)
    assert len(port.restarts) == 2
    assert runner.verdict == "faulted"
    assert len(port.faults) == 1 and "restart budget spent (2 in hour)" in port.faults[0]
    # faulted stays: no probes, and a restart's re-arm does not clear it
    probes = len(port.probes)
    runner.arm(SETTINGS, "hash-a", None, fresh=False)
    advance(runner, clock, 100)
    assert runner.verdict == "faulted" and len(port.probes) == probes
    runner.disarm("switching")
    assert runner.verdict == "faulted"
    # an operator's switch clears it
    runner.arm(SETTINGS, "hash-a", None, fresh=True)
    assert runner.verdict == "unknown" and runner.view()["restarts_in_window"] == 0


def test_the_budget_window_slides(clock: Clock) -> None:
    dog = Watchdog()
    dog.arm(clock.now, SETTINGS, "h", None, fresh=True)
    dog.restarts.extend([clock.now - 3599, clock.now - 10])
    assert dog.restarts_in_window(clock.now) == 2
    clock.now += 2
    assert dog.restarts_in_window(clock.now) == 1


def test_degraded_after_n_slow_decode_probes_then_clears(
    runner: WatchdogRunner, port: FakePort, clock: Clock
) -> None:
    runner.step()  # decode 50 (the baseline)
    slow = [ok("decode", 20.0)] * 3
    port.answers.extend(slow[:2])
    advance(runner, clock, 121)
    assert runner.verdict == "ok", "two slow probes are not enough"
    port.answers.append(slow[2])
    advance(runner, clock, 60)
    assert runner.verdict == "degraded"
    view = runner.view()
    assert view["decode_tok_s"] == 20.0 and view["baseline_tok_s"] == 50.0
    assert view["degraded_below_tok_s"] == 25.0
    assert "20.0, 20.0, 20.0" in str(view["reason"]) and "gate test" in str(view["reason"])
    assert port.restarts == [], "restart-on-degraded is off by default"
    port.answers.append(ok("decode", 48.0))
    advance(runner, clock, 60)
    assert runner.verdict == "ok"
    assert ("ok", "degraded") in port.changes and ("degraded", "ok") in port.changes


def test_a_slow_probe_between_fast_ones_is_not_degraded(
    runner: WatchdogRunner, port: FakePort, clock: Clock
) -> None:
    runner.step()
    port.answers.extend(
        [ok("decode", 20.0), ok("decode", 45.0), ok("decode", 20.0), ok("decode", 20.0)]
    )
    advance(runner, clock, 250)
    assert runner.verdict == "ok"


def test_decode_probes_wait_for_idle(runner: WatchdogRunner, port: FakePort, clock: Clock) -> None:
    port.frontdoor = FrontdoorLiveness(active=1, last_token_age_s=0.1, oldest_active_silent_s=0.1)
    advance(runner, clock, 200)
    assert port.probes == []
    port.frontdoor = IDLE
    advance(runner, clock, 1)
    assert port.probes == ["decode"]


def test_restart_on_degraded_uses_the_budget_but_never_faults(port: FakePort, clock: Clock) -> None:
    settings = WatchdogSettings(
        **{**SETTINGS.__dict__, "restart_on_degraded": True, "restart_budget": 1}
    )
    runner = WatchdogRunner(port, clock=clock)
    runner.arm(settings, "h", Baseline(50.0, "bench x"), fresh=True)
    port.answers.extend([ok("decode", 10.0)] * 20)
    advance(runner, clock, 130)
    assert runner.verdict == "degraded" and len(port.restarts) == 1
    runner.arm(settings, "h", Baseline(50.0, "bench x"), fresh=False)
    advance(runner, clock, 200)
    assert runner.verdict == "degraded" and len(port.restarts) == 1 and port.faults == []


def test_without_a_gate_figure_the_first_probes_make_the_baseline(
    port: FakePort, clock: Clock
) -> None:
    runner = WatchdogRunner(port, clock=clock)
    runner.arm(SETTINGS, "h", None, fresh=True)
    port.answers.extend([ok("decode", 40.0), ok("decode", 44.0), ok("decode", 42.0)])
    advance(runner, clock, 25)  # one decode probe per probe interval while building it
    assert port.probes.count("decode") == 3
    view = runner.view()
    assert view["baseline_tok_s"] == 42.0 and view["baseline_source"] == "first probes after start"


def test_disabled_profile_is_never_probed(port: FakePort, clock: Clock) -> None:
    runner = WatchdogRunner(port, clock=clock)
    runner.arm(WatchdogSettings(enabled=False), "h", None, fresh=True)
    advance(runner, clock, 100)
    assert runner.verdict == "off" and port.probes == []


def test_a_probe_result_after_disarm_is_dropped(clock: Clock) -> None:
    dog = Watchdog()
    dog.arm(clock.now, SETTINGS, "h", Baseline(50, "gate"), fresh=True)
    assert dog.tick(clock.now, IDLE) == [Probe("decode")]
    dog.disarm("switching to another profile")
    assert dog.probe_done(clock.now + 20, timeout("decode")) == []
    assert dog.verdict == "off"


def test_a_new_profile_starts_a_new_budget(clock: Clock) -> None:
    dog = Watchdog()
    dog.arm(clock.now, SETTINGS, "a", None, fresh=True)
    dog.restarts.append(clock.now)
    dog.arm(clock.now, SETTINGS, "b", None, fresh=False)
    assert dog.restarts_in_window(clock.now) == 0


def test_actions_are_typed(clock: Clock) -> None:
    dog = Watchdog()
    dog.arm(clock.now, WatchdogSettings(restart_budget=0), "h", None, fresh=True)
    dog.tick(clock.now + 31, IDLE)
    actions = dog.probe_done(clock.now + 91, timeout("decode"))
    assert [type(a) for a in actions] == [VerdictChanged, VerdictChanged, Fault]
    assert not any(isinstance(a, Restart) for a in actions)


def test_the_view_is_published_on_changes_and_at_least_every_publish_interval(
    runner: WatchdogRunner, port: FakePort, clock: Clock
) -> None:
    on_arm = port.published[-1]
    assert on_arm["verdict"] == "unknown"
    runner.step()
    after = port.published[-1]
    assert after["verdict"] == "ok" and after["verdict_changes"] == 2
    count = len(port.published)
    advance(runner, clock, 9)  # nothing happens for 9 s: nothing published
    assert len(port.published) == count
    advance(runner, clock, 2)  # a probe (10 s) and the publish interval
    assert len(port.published) > count
    assert port.published[-1]["last_probe"] is not None


def test_a_probe_queued_behind_busy_generations_that_finish_meanwhile_is_no_wedge(
    runner: WatchdogRunner, port: FakePort, clock: Clock
) -> None:
    """Non-streamed generations fill vLLM's sequences; the probe waits behind them and times out,
    but one of them finishes (and is relayed) meanwhile: the engine generates."""
    runner.step()
    port.frontdoor = FrontdoorLiveness(active=2, last_token_age_s=None)
    port.token_at = clock.now - 15
    port.relay_during_probe = True
    port.answers.append(timeout())
    advance(runner, clock, 40)
    assert runner.verdict == "ok" and port.restarts == []


def test_a_watchdog_restart_keeps_the_measured_baseline_but_a_switch_does_not(
    port: FakePort, clock: Clock
) -> None:
    """A device still slow after a restart must not become its own baseline."""
    runner = WatchdogRunner(port, clock=clock)
    runner.arm(SETTINGS, "h", None, fresh=True)
    port.answers.extend([ok("decode", 40.0)] * 3)
    advance(runner, clock, 25)
    assert runner.view()["baseline_tok_s"] == 40.0
    runner.arm(SETTINGS, "h", None, fresh=False)  # the watchdog's own restart
    assert runner.view()["baseline_tok_s"] == 40.0
    runner.arm(SETTINGS, "h", None, fresh=True)  # an operator's switch: measure anew
    assert runner.view()["baseline_tok_s"] is None

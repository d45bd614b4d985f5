"""The watchdog's policy: is the model still generating, and at its usual speed?

Pure logic: no I/O, no threads, no clock of its own. The runner (``watchdog_runner.py``) feeds it
what it saw (the frontdoor's liveness figures, probe results, the time) and carries out what it
answers (probe now, restart, fault). Everything it decides is in this file, tested against fakes.

**Alive is real tokens.** Running and answering ``/health`` proves nothing: vLLM's API server
keeps answering while its engine is stopped (the B70 Level Zero wedge; SIGSTOP of
``VLLM::EngineCore`` in miniature). Proof of life is one of

- the frontdoor relayed a token (a body chunk of a 2xx generation response) recently, or
- a probe (a real generation sent straight to the model container, never through the frontdoor,
  so it never takes a client's place under the cap) returned tokens.

**Verdicts.**

- ``unknown``: armed, no proof yet (the switch's ready check was the last proof);
- ``ok``: proof of life within the last probe interval, decode not degraded;
- ``wedged``: the model was asked (a probe was sent) and gave nothing — no probe answer and no
  relayed token — for ``wedge_s``. Busy at the cap with tokens flowing is *not* a wedge: the flow
  is the proof and no probe is needed. Busy with silent (non-streaming) generations gets a probe,
  which answers when the engine is alive;
- ``degraded``: the last ``degraded_probes`` decode probes all ran below
  ``baseline * (1 - degraded_fraction)``. The baseline is the gate's (or last bench's) decode figure
  for this profile hash when there is one, else the median of the first decode probes after a
  start. One probe at or above the threshold clears it;
- ``faulted``: wedged with the restart budget spent. Nothing restarts until an operator switches
  (``arm(..., fresh=True)``).

**Actions.** ``Probe(kind)``; ``Restart(reason)`` while fewer than ``restart_budget`` restarts
happened in the last ``restart_window_s`` (and on ``degraded`` only with ``restart_on_degraded``);
``Fault(reason)`` when a wedge finds the budget spent. A degraded model with the budget spent stays
degraded and serving: slow beats down.
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from orchestrator.profiles.store import Profile

Verdict = Literal["off", "unknown", "ok", "wedged", "degraded", "faulted"]
ProbeKind = Literal["liveness", "decode"]

#: How soon a probe that failed fast (an error, not a timeout) is repeated while a wedge is
#: suspected; at most this, at least the probe interval when that is shorter.
RETRY_AFTER_ERROR_S = 5.0
#: Decode probes after a start that make the baseline when no gate or bench figure exists.
BASELINE_PROBES = 3


@dataclass(frozen=True)
class WatchdogSettings:
    """``MODEL_SLOT_WATCHDOG_*`` of the active profile (profiles/schema.py has the defaults)."""

    enabled: bool = True
    probe_interval_s: float = 30.0
    wedge_s: float = 60.0
    restart_budget: int = 3
    restart_window_s: float = 3600.0
    decode_interval_s: float = 300.0
    decode_tokens: int = 32
    degraded_fraction: float = 0.5
    degraded_probes: int = 3
    restart_on_degraded: bool = False

    @classmethod
    def from_profile(cls, profile: Profile) -> WatchdogSettings:
        """The profile's values (validated by the schema), defaults filled in."""

        def number(key: str) -> float:
            return float(profile.get(f"MODEL_SLOT_WATCHDOG_{key}"))

        return cls(
            enabled=profile.get("MODEL_SLOT_WATCHDOG") == "1",
            probe_interval_s=number("PROBE_INTERVAL_S"),
            wedge_s=number("WEDGE_S"),
            restart_budget=int(number("RESTART_BUDGET")),
            restart_window_s=number("RESTART_WINDOW_S"),
            decode_interval_s=number("DECODE_INTERVAL_S"),
            decode_tokens=int(number("DECODE_TOKENS")),
            degraded_fraction=number("DEGRADED_FRACTION"),
            degraded_probes=int(number("DEGRADED_PROBES")),
            restart_on_degraded=profile.get("MODEL_SLOT_WATCHDOG_RESTART_ON_DEGRADED") == "1",
        )


@dataclass(frozen=True)
class FrontdoorLiveness:
    """What the frontdoor's ``GET /admin/liveness`` says, as ages at the time it answered."""

    active: int
    last_token_age_s: float | None  # None: no token relayed since the frontdoor started
    oldest_active_silent_s: float | None = None  # None: nothing active


@dataclass(frozen=True)
class ProbeResult:
    kind: ProbeKind
    ok: bool
    latency_s: float
    timed_out: bool = False
    tokens: int = 0
    decode_tok_s: float | None = None  # decode probes: tokens after the first / their time
    error: str | None = None
    note: str | None = None  # e.g. the probe waited, but vLLM generated tokens meanwhile


@dataclass(frozen=True)
class Baseline:
    decode_tok_s: float
    source: str  # "gate <file>", "bench <file>", "first probes after start"


@dataclass(frozen=True)
class Probe:
    kind: ProbeKind


@dataclass(frozen=True)
class Restart:
    reason: str


@dataclass(frozen=True)
class Fault:
    reason: str


@dataclass(frozen=True)
class VerdictChanged:
    before: Verdict
    after: Verdict
    reason: str


Action = Probe | Restart | Fault | VerdictChanged


@dataclass
class _Probing:
    kind: ProbeKind
    sent_at: float


@dataclass
class Watchdog:
    settings: WatchdogSettings = field(default_factory=WatchdogSettings)
    verdict: Verdict = "off"
    reason: str = "not armed"
    profile_hash: str | None = None
    baseline: Baseline | None = None
    armed_at: float | None = None
    last_proof_at: float | None = None  # the last time the model demonstrably generated
    last_proof: str | None = None  # "probe", "traffic", "ready check"
    last_probe: ProbeResult | None = None
    last_probe_at: float | None = None
    last_decode_at: float | None = None
    decode_now: float | None = None
    suspect_since: float | None = None  # first unanswered probe of a suspected wedge
    frontdoor: FrontdoorLiveness | None = None
    restarts: deque[float] = field(default_factory=deque)
    probing: _Probing | None = None
    verdict_changes: int = 0
    _decode_history: deque[float] = field(default_factory=deque)
    _first_decodes: list[float] = field(default_factory=list)

    # ---- arming --------------------------------------------------------------------------
    def arm(
        self,
        now: float,
        settings: WatchdogSettings,
        profile_hash: str,
        baseline: Baseline | None,
        *,
        fresh: bool,
    ) -> list[Action]:
        """A model became ready (the ready check included a real generation: that is proof).
        ``fresh``: an operator's switch or a boot, which forgets the restart history and a
        fault; a watchdog restart passes False so its budget carries on."""
        same = not fresh and profile_hash == self.profile_hash
        if not same:
            self.restarts.clear()
        elif self.verdict == "faulted":
            return []  # only an operator's switch clears a fault
        if baseline is None and same and self.baseline is not None:
            # A watchdog restart of the same profile keeps the baseline it measured: a device
            # still slow after the restart must not become its own baseline.
            baseline = self.baseline
        self.settings = settings
        self.profile_hash = profile_hash
        self.baseline = baseline
        self.armed_at = now
        self.last_proof_at, self.last_proof = now, "ready check"
        self.last_decode_at = None
        self.decode_now = None
        self.suspect_since = None
        self.probing = None
        self._decode_history = deque(maxlen=max(1, settings.degraded_probes))
        self._first_decodes = []
        if not settings.enabled:
            return self._set("off", "MODEL_SLOT_WATCHDOG=0 for this profile")
        return self._set("unknown", "armed after the ready check")

    def disarm(self, reason: str) -> list[Action]:
        """No model to watch (stopped, switching, down): no probes, no verdicts."""
        self.probing = None
        self.suspect_since = None
        if self.verdict == "faulted":
            return []
        return self._set("off", reason)

    # ---- what to do now ------------------------------------------------------------------
    def tick(self, now: float, frontdoor: FrontdoorLiveness | None) -> list[Action]:
        """Take the frontdoor's figures (None: no frontdoor, or it did not answer: then nothing
        is known of clients, and the model counts as idle) and say what to do."""
        if self.verdict in ("off", "faulted") or self.armed_at is None:
            return []
        actions = self.observe(now, frontdoor)
        if self.probing is not None:
            return actions  # one probe at a time; its result decides
        s = self.settings
        if self.suspect_since is not None:
            retry = min(RETRY_AFTER_ERROR_S, s.probe_interval_s)
            if self.last_probe_at is None or now - self.last_probe_at >= retry:
                actions.append(self._send(now, "liveness"))
            return actions
        idle = frontdoor is None or frontdoor.active == 0
        if idle and self._decode_due(now):
            actions.append(self._send(now, "decode"))
        elif (self.last_proof_at is None or now - self.last_proof_at >= s.probe_interval_s) and (
            self.last_probe_at is None or now - self.last_probe_at >= s.probe_interval_s
        ):
            # Idle, or busy with no token relayed for an interval (non-streaming generations,
            # or a wedge): a 1-token probe straight to the model decides which.
            actions.append(self._send(now, "liveness"))
        return actions

    def observe(self, now: float, frontdoor: FrontdoorLiveness | None) -> list[Action]:
        """Take the frontdoor's figures only (the runner calls it again after a probe, so that
        tokens relayed while the probe waited count before the probe's result is judged)."""
        if self.verdict in ("off", "faulted") or self.armed_at is None:
            return []
        self.frontdoor = frontdoor
        if frontdoor is None or frontdoor.last_token_age_s is None:
            return []
        token_at = now - frontdoor.last_token_age_s
        if token_at <= (self.last_proof_at or 0.0):
            return []
        self.last_proof_at, self.last_proof = token_at, "traffic"
        if self.suspect_since is not None and token_at >= self.suspect_since:
            self.suspect_since = None  # tokens flowed after the probe went out
        if self.verdict in ("unknown", "wedged"):
            return self._set("ok", "tokens relayed to clients")
        return []

    def probe_done(self, now: float, result: ProbeResult) -> list[Action]:
        """The result of the probe ``tick`` asked for."""
        probing, self.probing = self.probing, None
        if probing is None or self.verdict in ("off", "faulted"):
            return []  # disarmed (a switch) while the probe ran: stale
        self.last_probe, self.last_probe_at = result, now
        if result.ok:
            self.last_proof_at, self.last_proof = now, "probe"
            self.suspect_since = None
            if result.kind == "decode" and result.decode_tok_s is not None:
                return self._decoded(now, result.decode_tok_s)
            if self.verdict in ("unknown", "wedged"):
                return self._set("ok", result.note or f"probe answered in {result.latency_s:.2f}s")
            return []
        if self.suspect_since is None:
            self.suspect_since = probing.sent_at
        if self.last_proof_at is not None and self.last_proof_at > self.suspect_since:
            self.suspect_since = None  # traffic proved life while the probe failed
            return []
        silent = now - self.suspect_since
        if not result.timed_out and silent < self.settings.wedge_s:
            return []  # a fast error: retried soon, until wedge_s has passed
        # (a timed-out probe waited the whole bound: the port's timeout is ``wedge_s``)
        what = "timed out" if result.timed_out else f"failed ({result.error})"
        reason = (
            f"no tokens for {silent:.0f}s: a {result.kind} probe {what} and the frontdoor "
            f"relayed nothing{self._fd_note()}"
        )
        self.suspect_since = None
        return self._set("wedged", reason) + self._restart_or_fault(now, reason, wedged=True)

    # ---- restarts ------------------------------------------------------------------------
    def restarts_in_window(self, now: float) -> int:
        window = self.settings.restart_window_s
        while self.restarts and now - self.restarts[0] >= window:
            self.restarts.popleft()
        return len(self.restarts)

    def _restart_or_fault(self, now: float, reason: str, *, wedged: bool) -> list[Action]:
        s = self.settings
        used = self.restarts_in_window(now)
        if used < s.restart_budget:
            self.restarts.append(now)
            return [Restart(f"{reason}; restart {used + 1} of {s.restart_budget} per {_dur(s)}")]
        if not wedged:
            return []  # degraded and the budget spent: keep serving, slowly
        why = f"{reason}; restart budget spent ({used} in {_dur(s)}); not restarting"
        return [*self._set("faulted", why), Fault(why)]

    # ---- decode --------------------------------------------------------------------------
    def _decode_due(self, now: float) -> bool:
        s = self.settings
        if s.decode_tokens < 2:
            return False
        if self.last_decode_at is None:
            return True
        if self.baseline is None:  # building the baseline: one decode probe per probe interval
            return now - self.last_decode_at >= s.probe_interval_s
        return now - self.last_decode_at >= s.decode_interval_s

    def _decoded(self, now: float, rate: float) -> list[Action]:
        s = self.settings
        self.decode_now = rate
        actions: list[Action] = []
        if self.verdict in ("unknown", "wedged"):
            actions += self._set("ok", f"decode probe: {rate:.1f} tok/s")
        if self.baseline is None:
            self._first_decodes.append(rate)
            if len(self._first_decodes) >= BASELINE_PROBES:
                median = statistics.median(self._first_decodes)
                self.baseline = Baseline(median, "first probes after start")
            return actions
        threshold = self.baseline.decode_tok_s * (1 - s.degraded_fraction)
        self._decode_history.append(rate)
        slow = len(self._decode_history) == self._decode_history.maxlen and all(
            r < threshold for r in self._decode_history
        )
        if slow and self.verdict != "degraded":
            figures = ", ".join(f"{r:.1f}" for r in self._decode_history)
            reason = (
                f"decode {figures} tok/s in the last {len(self._decode_history)} probes, below "
                f"{threshold:.1f} ({1 - s.degraded_fraction:.0%} of the baseline "
                f"{self.baseline.decode_tok_s:.1f} from {self.baseline.source})"
            )
            actions += self._set("degraded", reason)
            if s.restart_on_degraded:
                actions += self._restart_or_fault(now, reason, wedged=False)
        elif self.verdict == "degraded" and rate >= threshold:
            actions += self._set("ok", f"decode {rate:.1f} tok/s, back above {threshold:.1f} tok/s")
            self._decode_history.clear()
        return actions

    # ---- helpers -------------------------------------------------------------------------
    def _send(self, now: float, kind: ProbeKind) -> Probe:
        self.probing = _Probing(kind, now)
        if kind == "decode":
            self.last_decode_at = now
        return Probe(kind)

    def _set(self, verdict: Verdict, reason: str) -> list[Action]:
        before, self.verdict, self.reason = self.verdict, verdict, reason
        if before == verdict:
            return []
        self.verdict_changes += 1
        return [VerdictChanged(before, verdict, reason)]

    def _fd_note(self) -> str:
        fd = self.frontdoor
        if fd is None or fd.active == 0:
            return ""
        silent = fd.oldest_active_silent_s
        note = f" ({fd.active} active"
        return note + (f", the oldest silent {silent:.0f}s)" if silent is not None else ")")

    def view(self, now: float) -> dict[str, object]:
        """The watchdog in ``/status``, ``status`` and the metrics."""
        probe = self.last_probe
        fd = self.frontdoor
        threshold = (
            None
            if self.baseline is None
            else round(self.baseline.decode_tok_s * (1 - self.settings.degraded_fraction), 2)
        )
        return {
            "verdict": self.verdict,
            "reason": self.reason,
            "profile_hash": self.profile_hash,
            "last_proof": self.last_proof,
            "last_proof_age_s": _age(now, self.last_proof_at),
            "last_probe_age_s": _age(now, self.last_probe_at),
            "last_probe": None
            if probe is None
            else {
                "kind": probe.kind,
                "ok": probe.ok,
                "latency_s": round(probe.latency_s, 3),
                "timed_out": probe.timed_out,
                "error": probe.error,
                "note": probe.note,
            },
            "probing": None if self.probing is None else self.probing.kind,
            "active_generations": None if fd is None else fd.active,
            "silent_for_s": _round(fd.last_token_age_s) if fd else None,
            "oldest_active_silent_s": _round(fd.oldest_active_silent_s) if fd else None,
            "restarts_in_window": self.restarts_in_window(now),
            "restart_budget": self.settings.restart_budget,
            "restart_window_s": self.settings.restart_window_s,
            "decode_tok_s": _round(self.decode_now),
            "baseline_tok_s": None
            if self.baseline is None
            else round(self.baseline.decode_tok_s, 2),
            "baseline_source": None if self.baseline is None else self.baseline.source,
            "degraded_below_tok_s": threshold,
            "verdict_changes": self.verdict_changes,
        }


def _age(now: float, at: float | None) -> float | None:
    return None if at is None else round(max(0.0, now - at), 2)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _dur(s: WatchdogSettings) -> str:
    w = s.restart_window_s
    return "hour" if w == 3600 else f"{w:g}s"

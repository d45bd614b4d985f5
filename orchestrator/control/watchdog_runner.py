"""The watchdog's thread: feeds the policy (``watchdog.py``) and carries out what it answers.

The runner never changes the slot itself. ``restart`` and ``fault`` go to the controller's queue
(its worker is the one writer) through the ``WatchdogPort``; the controller then calls ``arm`` or
``disarm`` back when the model is ready again or gone. Probes are blocking HTTP calls of up to
``wedge_s``, which is why they run here and not on the controller's worker: a switch never waits
behind a probe.

Locking: ``_lock`` guards the policy object, which the controller's worker (``arm``/``disarm``)
and this thread (``step``) both touch. It is never held across I/O (a liveness call or a probe),
so ``arm`` never waits for a probe; a probe that was running across an ``arm`` comes back to a
policy that no longer expects it and is dropped (``Watchdog.probe_done``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from orchestrator.control.watchdog import (
    Action,
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

log = logging.getLogger("orchestrator.watchdog")

#: How often the runner looks (at the frontdoor's figures, and whether a probe is due).
TICK_S = 1.0
#: The view is published after every round that did something, and at least this often.
PUBLISH_S = 10.0


class WatchdogPort(Protocol):
    """What the runner needs from the rest of the orchestrator (a fake in the tests)."""

    def liveness(self) -> FrontdoorLiveness | None:
        """The frontdoor's figures; None without a frontdoor or when it does not answer."""

    def probe(self, kind: ProbeKind, settings: WatchdogSettings) -> ProbeResult:
        """One probe straight to the model container, bounded by ``settings.wedge_s``. Never
        raises: a failure is a result."""

    def restart(self, reason: str) -> None:
        """Ask the controller to restart the same profile (returns at once)."""

    def fault(self, reason: str) -> None:
        """Ask the controller to put the route ``faulted`` and remember why (returns at once)."""

    def changed(self, change: VerdictChanged, view: dict[str, object]) -> None:
        """A verdict changed: the event log line and whatever else wants to know."""

    def publish(self, view: dict[str, object]) -> None:
        """The current view, for ``/status``, ``status`` and the metrics. Never raises."""


class WatchdogRunner:
    def __init__(
        self,
        port: WatchdogPort,
        clock: Callable[[], float] = time.monotonic,
        tick_s: float = TICK_S,
        publish_s: float = PUBLISH_S,
    ) -> None:
        self.port = port
        self.clock = clock
        self.tick_s = tick_s
        self.publish_s = publish_s
        self._published_at: float | None = None
        self._policy = Watchdog()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- from the controller's worker ----------------------------------------------------
    def arm(
        self,
        settings: WatchdogSettings,
        profile_hash: str,
        baseline: Baseline | None,
        *,
        fresh: bool,
    ) -> None:
        with self._lock:
            actions = self._policy.arm(self.clock(), settings, profile_hash, baseline, fresh=fresh)
        self._carry_out(actions)
        self._publish()
        self._wake.set()

    def disarm(self, reason: str) -> None:
        with self._lock:
            actions = self._policy.disarm(reason)
        self._carry_out(actions)
        self._publish()

    def view(self) -> dict[str, object]:
        with self._lock:
            return self._policy.view(self.clock())

    @property
    def verdict(self) -> str:
        with self._lock:
            return self._policy.verdict

    # ---- the thread ----------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except Exception:  # the watchdog must outlive anything one round does
                log.exception("watchdog round failed")
            self._wake.wait(self.tick_s)
            self._wake.clear()

    def step(self) -> None:
        """One round: look, decide, probe if asked, decide again. Public for the tests."""
        with self._lock:
            watching = self._policy.verdict not in ("off", "faulted")
        if not watching:
            if self._due():
                self._publish()
            return
        liveness = self.port.liveness()  # I/O outside the lock
        with self._lock:
            actions = self._policy.tick(self.clock(), liveness)
            settings = self._policy.settings
        self._carry_out(actions)
        for action in actions:
            if isinstance(action, Probe):
                result = self.port.probe(action.kind, settings)
                # Tokens relayed while the probe waited (it may queue behind busy sequences in
                # vLLM) are proof too: look again before the result is judged.
                after_probe = self.port.liveness() if not result.ok else None
                with self._lock:
                    after = self._policy.observe(self.clock(), after_probe) if after_probe else []
                    after += self._policy.probe_done(self.clock(), result)
                self._carry_out(after)
        if actions or self._due():
            self._publish()

    def _due(self) -> bool:
        return self._published_at is None or self.clock() - self._published_at >= self.publish_s

    def _publish(self) -> None:
        self._published_at = self.clock()
        self.port.publish(self.view())

    def _carry_out(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, VerdictChanged):
                view = self.view()
                log.log(
                    logging.INFO if action.after in ("ok", "unknown", "off") else logging.WARNING,
                    "watchdog: %s -> %s: %s",
                    action.before,
                    action.after,
                    action.reason,
                )
                self.port.changed(action, view)
            elif isinstance(action, Restart):
                log.warning("watchdog: restarting the profile: %s", action.reason)
                self.port.restart(action.reason)
            elif isinstance(action, Fault):
                log.error("watchdog: %s", action.reason)
                self.port.fault(action.reason)

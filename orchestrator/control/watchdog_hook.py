"""What the controller calls to run the watchdog: the runner, the real port, and the budget's
memory across restarts. The controller stays the one writer: a restart or a fault the watchdog
decides comes back to it as a command on its queue (``enqueue``), carrying the container id it
was about, so a command that a switch overtook is recognised as stale and dropped.

The controller's duties, all on its worker thread:

- ``watch(profile, probe_url, container_id)`` whenever the slot is serving a container (after a
  switch, a start, a restart, an adoption);
- ``unwatch(reason)`` whenever it is not (a switch or stop begins, the container exited, the
  route went down or faulted);
- on the ``watchdog-restart`` command: ``restarting(...)``, then restart the profile the way it
  restarts after an exit (stop, create, ready with a real generation, flip), then ``watch``;
- on the ``watchdog-fault`` command: the route ``faulted`` with the reason, persisted, no
  restarts until an operator switches (as for a device fault).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, Literal

from orchestrator.control import watchdog_baseline
from orchestrator.control.frontdoor_client import FrontdoorClient
from orchestrator.control.watchdog import WatchdogSettings
from orchestrator.control.watchdog_port import SlotWatchdogPort
from orchestrator.control.watchdog_runner import WatchdogRunner
from orchestrator.profiles.store import Profile

log = logging.getLogger("orchestrator.watchdog")

WatchdogOp = Literal["watchdog-restart", "watchdog-fault"]
RESTART: Final = "watchdog-restart"
FAULT: Final = "watchdog-fault"

#: ``enqueue(op, args)``: put a command on the controller's queue.
Enqueue = Callable[[WatchdogOp, dict[str, Any]], None]


class WatchdogHook:
    def __init__(
        self,
        state_dir: Path,
        frontdoor: FrontdoorClient | None,
        enqueue: Enqueue,
        port: SlotWatchdogPort | None = None,
        tick_s: float | None = None,
    ) -> None:
        self.state_dir = state_dir
        self._enqueue = enqueue
        self._container_id: str | None = None
        self._restarting: str | None = None  # the profile hash a watchdog restart is bringing up
        self.port = port or SlotWatchdogPort(
            state_dir, frontdoor, self._ask_restart, self._ask_fault
        )
        self.runner = (
            WatchdogRunner(self.port)
            if tick_s is None
            else WatchdogRunner(self.port, tick_s=tick_s)
        )

    def start(self) -> None:
        self.runner.start()

    def stop(self) -> None:
        self.runner.stop()

    # ---- from the controller's worker ----------------------------------------------------
    def watch(self, profile: Profile, probe_url: str, container_id: str) -> None:
        fresh = self._restarting != profile.hash
        self._restarting = None
        self._container_id = container_id
        self.port.aim(probe_url, profile.served_model_name)
        baseline = watchdog_baseline.find(self.state_dir, profile.hash)
        self.runner.arm(WatchdogSettings.from_profile(profile), profile.hash, baseline, fresh=fresh)
        log.info(
            "watchdog: watching %s (%s) at %s%s",
            profile.name,
            container_id[:12],
            probe_url,
            f"; decode baseline {baseline.decode_tok_s:.1f} tok/s from {baseline.source}"
            if baseline
            else "",
        )

    def unwatch(self, reason: str) -> None:
        if self._container_id is None:
            return  # not watching: nothing to say again
        self._container_id = None
        self.port.aim(None, None)
        self.runner.disarm(reason)

    def watching(self, container_id: str) -> bool:
        return self._container_id == container_id

    def restarting(self, profile_hash: str) -> None:
        """The controller is about to restart this profile for the watchdog: the next ``watch``
        of it keeps the restart budget's history."""
        self._restarting = profile_hash

    def is_current(self, args: dict[str, Any]) -> bool:
        """Whether a watchdog command is about the container watched now (else it is stale)."""
        return bool(args.get("container_id")) and args.get("container_id") == self._container_id

    def view(self) -> dict[str, object]:
        return self.runner.view()

    # ---- from the runner's thread --------------------------------------------------------
    def _ask_restart(self, reason: str) -> None:
        self._enqueue(RESTART, {"reason": reason, "container_id": self._container_id})

    def _ask_fault(self, reason: str) -> None:
        self._enqueue(FAULT, {"reason": reason, "container_id": self._container_id})

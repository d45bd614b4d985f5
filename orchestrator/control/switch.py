"""Switching: which profile runs, and how the host gets there safely. Policy only.

The sequence (DESIGN.md "Switching"): lock -> resolve -> preflight -> frontdoor ``switching``
-> drain -> stop the old container -> create the new -> wait until ready -> startup facts ->
flip the route -> persist -> report. The CLI (in-process) and the controller (over its control
socket) both call ``Switcher.switch``.

``Switcher`` is the one writer of the slot's state (``state.Phase`` and the rest of
``SlotState``): every operation runs under the slot lock (taken here if the caller does not
hold it already), every change of phase goes through ``_enter``, and the route the frontdoor
gets is derived from the phase (``route.route_for``), never chosen ad hoc. A route the
frontdoor did not acknowledge stays pending (``route_acked`` False) until ``publish`` lands it:
the controller re-sends it every few seconds, the in-process CLI for a bounded time before it
exits (non-zero if it never landed). docs/slot.md has the table of what each operation does
from each phase.

Three rules shape the code:

- nothing on the host changes until preflight has passed (invariant 3);
- the old model is not stopped until the frontdoor has drained it; if the drain call fails, the
  switch is aborted and the old model keeps serving (invariant 4);
- if the new profile does not become ready, the previous one is brought back, checked again
  and the route flipped back to it; the report says so and the switch fails (non-zero exit).

Every phase is timed and announced through ``progress`` as it starts and ends, so the operator
sees where a switch spends its time and the benchmark can subtract vLLM's own cold start.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

from orchestrator.config import Paths
from orchestrator.control.frontdoor_client import FrontdoorClient
from orchestrator.control.lock import SlotLock
from orchestrator.control.route import RouteResult, route_for
from orchestrator.control.state import Phase, SlotState, StateStore
from orchestrator.errors import (
    FrontdoorError,
    ModelSlotError,
    NotReadyError,
    PreflightError,
    ProfileError,
    SlotError,
    SwitchFailedError,
)
from orchestrator.profiles.store import Profile, ProfileStore
from orchestrator.progress import Progress, ProgressEvent, phase_end
from orchestrator.slot import facts as facts_mod
from orchestrator.slot.protocol import ContainerInfo, Slot

#: Default bound on draining in-flight generations before the old model stops.
DEFAULT_DRAIN_TIMEOUT_S = 30.0
#: How long a boot or restart waits for the frontdoor to accept the `switching` route.
ANNOUNCE_WAIT_S = 15.0
#: How long the in-process CLI re-sends a route the frontdoor missed before it gives up.
DEFAULT_ROUTE_ACK_TIMEOUT_S = 30.0
#: Pause between two sends of a route the frontdoor missed.
ROUTE_RESEND_S = 0.5


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _quiet(_: ProgressEvent) -> None:
    return


@dataclass
class Report:
    """What one switch (or stop, start, adopt) did, phase by phase."""

    action: str
    profile: str | None
    previous: str | None
    outcome: str = "running"
    phases: list[dict[str, Any]] = field(default_factory=list)
    startup_facts: dict[str, Any] = field(default_factory=dict)
    frontdoor: str = ""
    route_acked: bool = True
    serving: str | None = None  # the profile the host serves when the report ends
    container_id: str | None = None
    error: str | None = None
    log_tail: str | None = None
    started_at: str = field(default_factory=_now)
    finished_at: str | None = None
    total_s: float = 0.0
    _t0: float = field(default_factory=time.monotonic, repr=False)
    #: Told every finished report (the operator page's board: control/publish.py, set up by
    #: cli/slot.py). Must not raise; a report that finishes twice is told twice.
    on_finish: ClassVar[Callable[[dict[str, Any]], None] | None] = None
    #: Told each phase as it starts: (action, profile, phase). Must not raise or block long.
    on_phase: ClassVar[Callable[[str, str | None, str], None] | None] = None

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "outcome": self.outcome,
            "profile": self.profile,
            "previous": self.previous,
            "serving": self.serving,
            "phases": self.phases,
            "total_s": self.total_s,
            "startup_facts": self.startup_facts,
            "frontdoor": self.frontdoor,
            "route_acked": self.route_acked,
            "container_id": self.container_id,
            "error": self.error,
            "log_tail": self.log_tail,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }

    def finish(self, outcome: str) -> None:
        self.outcome = outcome
        self.finished_at = _now()
        self.total_s = round(time.monotonic() - self._t0, 3)
        if Report.on_finish is not None:
            Report.on_finish(self.to_json())

    def routed(self, result: RouteResult) -> None:
        self.frontdoor = result.text
        self.route_acked = result.acked


class Switcher:
    """Runs switches, stops and (re)starts against one slot; the one writer of its state."""

    def __init__(
        self,
        store: ProfileStore,
        slot: Slot,
        *,
        state: StateStore,
        frontdoor: FrontdoorClient | None,
        paths: Paths,
        drain_timeout_s: float = DEFAULT_DRAIN_TIMEOUT_S,
        route_ack_timeout_s: float = DEFAULT_ROUTE_ACK_TIMEOUT_S,
    ) -> None:
        self.store = store
        self.slot = slot
        self.state = state
        self.frontdoor = frontdoor
        self.paths = paths
        self.drain_timeout_s = drain_timeout_s
        self.route_ack_timeout_s = route_ack_timeout_s
        self.lock = SlotLock(state.directory, "switch")
        #: The state as last written; only this object changes it, always under the lock.
        self._state = state.load()
        #: False while the route derived from ``_state`` has not been acknowledged.
        self.route_acked = True

    # ---- the one state ---------------------------------------------------------------------
    @property
    def snapshot(self) -> SlotState:
        """The state as this writer last set it (a copy: changes go through ``_enter``)."""
        return replace(self._state)

    @property
    def route_pending(self) -> bool:
        return not self.route_acked

    @contextmanager
    def _writing(self) -> Iterator[SlotState]:
        """Hold the slot lock for one operation (the controller holds it all along) and start
        from the persisted state; a corrupt file is moved aside here, by the writer only."""
        took = not self.lock.held
        if took:
            self.lock.acquire()
        try:
            self._state = self.state.recover(self.lock)
            yield self.snapshot
        finally:
            if took:
                self.lock.release()

    def _enter(self, new: SlotState, persist: bool = True) -> RouteResult:
        """Make ``new`` the slot's state (and save it), then send the route derived from it."""
        new.updated_at = _now()
        self._state = new
        if persist:
            self.state.save(new)
        return self.publish()

    def _save(self) -> None:
        self.state.save(self._state)

    def publish(self) -> RouteResult:
        """Send the route the current state implies; remember whether it landed."""
        state = self._state
        route = route_for(state, self._load_quiet(state.current), self._load_quiet(state.target))
        result = self._send(route)
        self.route_acked = result.acked
        return result

    def settle_route(self, timeout_s: float, progress: Progress | None = None) -> RouteResult:
        """Re-send a pending route until the frontdoor acknowledges it or ``timeout_s`` passes.
        For a caller that exits afterwards (the in-process CLI): nobody re-sends after it."""
        progress = progress or _quiet
        result = self.publish() if self.route_pending else self._acked_result()
        deadline = time.monotonic() + timeout_s
        while not result.acked and time.monotonic() < deadline:
            progress({"event": "step", "phase": "frontdoor", "text": result.text + "; re-sending"})
            time.sleep(ROUTE_RESEND_S)  # the frontdoor is down or frozen: nothing to wait on
            result = self.publish()
        return result

    def _acked_result(self) -> RouteResult:
        state = self._state
        where = self.frontdoor.base_url if self.frontdoor is not None else None
        return RouteResult(route_for(state, None)["state"], True, where)

    def _send(self, route: dict[str, Any]) -> RouteResult:
        if self.frontdoor is None:
            return RouteResult(route["state"], True, None)
        try:
            self.frontdoor.put_route(route)
        except FrontdoorError as exc:
            return RouteResult(route["state"], False, self.frontdoor.base_url, str(exc))
        return RouteResult(route["state"], True, self.frontdoor.base_url)

    def mark(self, phase: Phase, reason: str) -> RouteResult:
        """The controller's verdicts: ``down`` (an exit, a failed start), ``faulted`` (a device
        fault) with the reason; the committed profile stays."""
        with self._writing() as state:
            return self._enter(replace(state, phase=phase, reason=reason, target=None))

    def load(self) -> SlotState:
        """The persisted state, as the writer sees it (for the controller's reconcile)."""
        with self._writing() as state:
            return state

    # ---- phases ---------------------------------------------------------------------------
    @contextmanager
    def _phase(self, report: Report, name: str, progress: Progress) -> Iterator[dict[str, Any]]:
        """Time one phase; the body may put a ``detail`` into the yielded dict."""
        record: dict[str, Any] = {"name": name}
        start = time.monotonic()
        if Report.on_phase is not None:
            Report.on_phase(report.action, report.profile, name)
        progress(
            {
                "event": "phase",
                "phase": name,
                "status": "start",
                "elapsed_s": round(start - report._t0, 3),
            }
        )
        try:
            yield record
        except BaseException as exc:
            record["duration_s"] = round(time.monotonic() - start, 3)
            record["failed"] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            report.phases.append(record)
            progress(phase_end(record, "failed"))
            raise
        record["duration_s"] = round(time.monotonic() - start, 3)
        report.phases.append(record)
        progress(phase_end(record, "done"))

    def _step(self, progress: Progress, phase: str) -> Callable[[str], None]:
        def step(text: str) -> None:
            progress({"event": "step", "phase": phase, "text": text})

        return step

    def _routed(self, report: Report, result: RouteResult, progress: Progress) -> str:
        report.routed(result)
        if result.where is not None:
            progress({"event": "step", "phase": "frontdoor", "text": result.text})
        return result.text

    # ---- preflight ------------------------------------------------------------------------
    def preflight(self, profile: Profile, force: bool) -> list[str]:
        """Checks that must pass before the running model is touched. Returns what was checked;
        raises PreflightError listing every failed check."""
        checked: list[str] = []
        problems: list[str] = []
        if profile.refused_without_force:
            if force:
                checked.append(f"status {profile.status}: allowed by --force")
            else:
                problems.append(
                    f"{profile.name} has status {profile.status}: rejected-* and blocked-* "
                    "profiles need --force"
                )
        else:
            checked.append(f"status {profile.status}")
        model_dir = profile.model_dir(self.paths.model_root)
        if model_dir is None:
            checked.append(f"model carried by the image at {profile.get('VLLM_MODEL')}")
        elif not model_dir.is_dir():
            problems.append(
                f"model directory {model_dir} does not exist (MODEL_DIR="
                f"{profile.get('MODEL_DIR')}, model root {self.paths.model_root})"
            )
        elif not (model_dir / "config.json").is_file():
            problems.append(f"model directory {model_dir} has no config.json: not a model")
        else:
            checked.append(f"model directory {model_dir}")
        try:
            if self.slot.image_exists(profile.image):
                checked.append(f"image {profile.image}")
            else:
                problems.append(f"image {profile.image} does not exist on this host (build it)")
        except SlotError as exc:
            problems.append(str(exc))
        missing = [device for device in profile.devices if not Path(device).exists()]
        if missing:
            problems.append(f"devices missing: {', '.join(missing)}")
        elif profile.devices:
            held = self.slot.device_holders(profile.devices)
            if held.holders:
                problems.append(
                    f"devices {', '.join(profile.devices)} held by others ({held.how}): "
                    + "; ".join(held.holders)
                    + ". Stop them first; the model would fail to start or share a GPU"
                )
            else:
                checked.append(f"devices {', '.join(profile.devices)}, not held ({held.how})")
        problems += self.slot.cpu_problems(profile)
        if self.frontdoor is not None:
            try:
                self.frontdoor.get_route()
                checked.append(f"frontdoor admin {self.frontdoor.base_url}")
            except FrontdoorError as exc:
                problems.append(f"frontdoor unreachable: {exc}")
        if problems:
            raise PreflightError(
                f"switch to {profile.name} refused before anything changed:\n  - "
                + "\n  - ".join(problems)
            )
        return checked

    # ---- helpers --------------------------------------------------------------------------
    def _load_quiet(self, name: str | None) -> Profile | None:
        if not name:
            return None
        try:
            return self.store.load(name)
        except ProfileError:
            return None

    def _read_facts(self) -> dict[str, Any]:
        return facts_mod.parse(self.slot.logs(timestamps=True).splitlines())

    def _bring_up(
        self, report: Report, profile: Profile, progress: Progress
    ) -> tuple[ContainerInfo, dict[str, Any]]:
        """create -> ready -> facts, as phases. Raises NotReadyError/SlotError on failure."""
        with self._phase(report, "create", progress) as phase:
            info = self.slot.create(profile, self.paths.model_root)
            phase["detail"] = f"{info.short_id} {profile.image}"
            report.container_id = info.id
        with self._phase(report, "ready", progress) as phase:
            self.slot.wait_ready(profile, on_step=self._step(progress, "ready"))
            phase["detail"] = "health, models, generation"
        with self._phase(report, "facts", progress) as phase:
            found = self._read_facts()
            found["ready_s"] = round(
                sum(p["duration_s"] for p in report.phases if p["name"] in ("create", "ready")),
                3,
            )
            phase["detail"] = facts_mod.describe(found)
        return info, found

    def _serving(
        self,
        profile: Profile,
        info: ContainerInfo,
        found: dict[str, Any],
        previous: str | None,
        last_switch: dict[str, Any] | None,
    ) -> SlotState:
        return SlotState(
            phase=Phase.SERVING,
            current=profile.name,
            current_hash=profile.hash,
            container_id=info.id,
            previous=previous,
            upstream=self.slot.upstream_url(profile, info),
            facts=found,
            last_switch=last_switch,
        )

    def _flip(self, report: Report, serving: SlotState, progress: Progress) -> None:
        """Enter ``serving`` (not saved yet: ``persist`` does that) and send its route. A
        frontdoor that does not take it (e.g. still starting at boot) must not undo a ready
        model: the route stays pending and is re-sent until it lands."""
        with self._phase(report, "flip", progress) as phase:
            phase["detail"] = self._routed(report, self._enter(serving, persist=False), progress)
        report.serving = serving.current

    # ---- switch ---------------------------------------------------------------------------
    def switch(
        self,
        name: str,
        force: bool = False,
        progress: Progress | None = None,
        lock_wait_s: float = 0.0,
    ) -> Report:
        """Move the slot to profile ``name``."""
        progress = progress or _quiet
        with self._writing() as before:
            return self._switch(before, name, force, progress, lock_wait_s)

    def _switch(
        self, before: SlotState, name: str, force: bool, progress: Progress, lock_wait_s: float
    ) -> Report:
        report = Report("switch", name, before.current)
        report.serving = before.current if before.phase is Phase.SERVING else None
        report.phases.append({"name": "lock", "duration_s": round(lock_wait_s, 3)})
        try:
            with self._phase(report, "resolve", progress) as phase:
                profile = self.store.load(name)
                phase["detail"] = f"{profile.name} ({profile.status}) {profile.hash[:12]}"
            with self._phase(report, "preflight", progress) as phase:
                phase["detail"] = "; ".join(self.preflight(profile, force))
        except (ProfileError, PreflightError) as exc:
            report.error = str(exc)
            report.finish("refused")
            raise
        old = self._load_quiet(before.current)
        running = self.slot.current()
        if (
            running is not None
            and running.status == "running"
            and running.profile_hash == profile.hash
            and before.current == profile.name
            and before.phase is not Phase.FAULTED
        ):
            return self._reconfirm(report, profile, running, before, progress)

        # From here on the host changes.
        old_upstream = self.slot.upstream_url(old, running) if old is not None and running else None
        switching = replace(
            before,
            phase=Phase.SWITCHING,
            target=profile.name,
            reason=f"switching to {profile.name}",
            upstream=old_upstream,
        )
        with self._phase(report, "switching", progress) as phase:
            phase["detail"] = self._routed(report, self._enter(switching), progress)
        if not report.route_acked:
            return self._abort(report, before, profile, report.frontdoor, progress)
        try:
            with self._phase(report, "drain", progress) as phase:
                if self.frontdoor is None:
                    phase["detail"] = "skipped (no frontdoor)"
                elif running is None:
                    phase["detail"] = "nothing running"
                else:
                    drained = self.frontdoor.drain(self.drain_timeout_s)
                    phase["detail"] = (
                        f"drained={drained.get('drained')} after {drained.get('waited_s')}s, "
                        f"{drained.get('active_generations')} still active"
                    )
        except FrontdoorError as exc:
            return self._abort(report, before, profile, f"the drain failed: {exc}", progress)
        try:
            with self._phase(report, "stop", progress) as phase:
                grace = old.stop_timeout_s if old is not None else profile.stop_timeout_s
                removed = self.slot.stop(grace, on_step=self._step(progress, "stop"))
                phase["detail"] = f"removed {', '.join(r[:12] for r in removed) or 'nothing'}"
            report.serving = None
            info, found = self._bring_up(report, profile, progress)
        except (NotReadyError, SlotError) as exc:
            return self._rollback(
                report, profile=profile, old=old, before=before, failure=exc, progress=progress
            )
        report.startup_facts = found
        previous = before.current if before.current != profile.name else before.previous
        serving = self._serving(profile, info, found, previous, None)
        self._flip(report, serving, progress)
        report.finish("switched")
        with self._phase(report, "persist", progress):
            self._state.last_switch = report.to_json()
            self._save()
        return report

    def _abort(
        self,
        report: Report,
        before: SlotState,
        profile: Profile,
        why: str,
        progress: Progress,
    ) -> Report:
        """The frontdoor failed before the old model was touched: back to the state before the
        switch (its route re-sent until it lands), and the switch fails saying what serves."""
        report.error = why
        report.serving = before.current if before.phase is Phase.SERVING else None
        progress({"event": "failure", "error": why, "log_tail": ""})
        back = self._enter(replace(before, last_switch=None))
        report.routed(back)
        report.finish("aborted")
        self._state.last_switch = report.to_json()
        self._save()
        serves = f"{report.serving} still serves" if report.serving else "nothing was running"
        route = "" if back.acked else f"; the {back.text} (it is re-sent until it lands)"
        raise SwitchFailedError(
            f"switch to {profile.name} aborted before the running model was touched: {why}\n"
            f"{serves}{route}",
            report.to_json(),
        )

    def _reconfirm(
        self,
        report: Report,
        profile: Profile,
        running: ContainerInfo,
        before: SlotState,
        progress: Progress,
    ) -> Report:
        """The profile asked for already runs: check it is ready and re-send its route."""
        with self._phase(report, "ready", progress) as phase:
            self.slot.wait_ready(profile, timeout_s=60, on_step=self._step(progress, "ready"))
            phase["detail"] = f"{running.short_id} already runs {profile.name}"
        found = before.facts or self._read_facts()
        report.container_id = running.id
        report.startup_facts = found
        self._flip(report, self._serving(profile, running, found, before.previous, None), progress)
        report.finish("unchanged")
        self._state.last_switch = report.to_json()
        self._save()
        return report

    def _rollback(
        self,
        report: Report,
        *,
        profile: Profile,
        old: Profile | None,
        before: SlotState,
        failure: ModelSlotError,
        progress: Progress,
    ) -> Report:
        """The new profile failed: back to the previous one, checked, route flipped back."""
        tail = failure.log_tail if isinstance(failure, NotReadyError) else ""
        report.error = str(failure)
        report.log_tail = tail or self.slot.log_tail()
        report.serving = None
        progress({"event": "failure", "error": report.error, "log_tail": report.log_tail})
        try:
            with self._phase(report, "rollback-stop", progress):
                self.slot.stop(
                    profile.stop_timeout_s, on_step=self._step(progress, "rollback-stop")
                )
            if old is None:
                raise _NothingToRestore
            info, found = self._bring_up(report, old, progress)
        except (NotReadyError, SlotError, _NothingToRestore) as exc:
            if isinstance(exc, _NothingToRestore):
                reason = f"switch to {profile.name} failed and there is no previous profile"
            else:
                restoring = old.name if old is not None else "the slot"
                reason = f"switch to {profile.name} failed; restoring {restoring} failed too: {exc}"
            failed = SlotState(phase=Phase.FAILED, previous=before.current, reason=reason)
            report.routed(self._enter(failed, persist=False))
            report.error = f"{report.error}\n{reason}"
            report.finish("failed")
            self._state.last_switch = report.to_json()
            self._save()
            raise SwitchFailedError(report.error, report.to_json()) from None
        report.startup_facts = found
        self._flip(report, self._serving(old, info, found, before.previous, None), progress)
        report.finish("rolled-back")
        self._state.last_switch = report.to_json()
        self._save()
        raise SwitchFailedError(
            f"switch to {profile.name} failed; {old.name} restored and serving again.\n"
            f"{report.error}",
            report.to_json(),
        )

    def _announce(self, state: SlotState, report: Report, progress: Progress) -> None:
        """Enter ``starting`` (route ``switching``) before a model is (re)started with nothing
        to roll back to.

        The frontdoor restores its last route when it starts (after a reboot, that route names
        a container that is gone), and at boot it starts just after the orchestrator. So wait a
        bounded time for it to answer: until the route says ``switching``, requests would fail
        with 502 against the old upstream instead of being held or refused with Retry-After.
        Past the bound the route stays pending; the controller re-sends it once it is free.
        """
        result = self._enter(state)
        deadline = time.monotonic() + ANNOUNCE_WAIT_S
        while not result.acked and time.monotonic() < deadline:
            time.sleep(ROUTE_RESEND_S)  # the frontdoor is starting; nothing to wait on but its port
            result = self.publish()
        self._routed(report, result, progress)

    # ---- stop -----------------------------------------------------------------------------
    def stop(self, progress: Progress | None = None, lock_wait_s: float = 0.0) -> Report:
        """No model on the host, route ``down``; ``up`` will not bring one back until a switch.
        An operator's order: a frontdoor that fails on the way does not hold it up."""
        progress = progress or _quiet
        with self._writing() as before:
            report = Report("stop", None, before.current)
            report.phases.append({"name": "lock", "duration_s": round(lock_wait_s, 3)})
            old = self._load_quiet(before.current)
            stopping = replace(before, phase=Phase.STOPPING, reason="stopping the model")
            with self._phase(report, "switching", progress):
                self._routed(report, self._enter(stopping), progress)
            with self._phase(report, "drain", progress) as phase:
                if self.frontdoor is not None and self.slot.current() is not None:
                    try:
                        drained = self.frontdoor.drain(self.drain_timeout_s)
                        phase["detail"] = f"drained={drained.get('drained')}"
                    except FrontdoorError as exc:
                        phase["detail"] = f"not drained: {exc}"
            with self._phase(report, "stop", progress) as phase:
                grace = old.stop_timeout_s if old is not None else 30.0
                removed = self.slot.stop(grace, on_step=self._step(progress, "stop"))
                phase["detail"] = f"removed {', '.join(r[:12] for r in removed) or 'nothing'}"
            stopped = SlotState(
                phase=Phase.STOPPED,
                previous=before.current or before.previous,
                reason="stopped by the operator",
            )
            with self._phase(report, "down", progress):
                self._routed(report, self._enter(stopped, persist=False), progress)
            report.finish("stopped")
            self._state.last_switch = report.to_json()
            self._save()
            return report

    # ---- the controller's entries ---------------------------------------------------------
    def start(self, profile: Profile, action: str, progress: Progress | None = None) -> Report:
        """Sweep the slot and bring ``profile`` up (boot, or a restart after an exit). No
        rollback: there is nothing running to go back to. Raises NotReadyError/SlotError (the
        controller then marks the slot ``down`` or ``faulted``)."""
        progress = progress or _quiet
        with self._writing() as before:
            report = Report(action, profile.name, before.previous)
            starting = SlotState(
                phase=Phase.STARTING,
                current=profile.name,
                current_hash=profile.hash,
                previous=before.previous,
                reason=f"{action}: starting {profile.name}",
                last_switch=before.last_switch,
            )
            self._announce(starting, report, progress)
            with self._phase(report, "stop", progress) as phase:
                removed = self.slot.stop(
                    profile.stop_timeout_s, on_step=self._step(progress, "stop")
                )
                phase["detail"] = f"removed {', '.join(r[:12] for r in removed) or 'nothing'}"
            try:
                info, found = self._bring_up(report, profile, progress)
            except (NotReadyError, SlotError) as exc:
                report.error = str(exc)
                report.log_tail = exc.log_tail if isinstance(exc, NotReadyError) else ""
                report.finish("failed")
                raise
            return self._serve(report, profile, (info, found), before, progress)

    def adopt(
        self, profile: Profile, info: ContainerInfo, progress: Progress | None = None
    ) -> Report:
        """Take over a running container of ``profile`` (same hash) without recreating it."""
        progress = progress or _quiet
        with self._writing() as before:
            report = Report("adopt", profile.name, before.previous)
            report.container_id = info.id
            with self._phase(report, "ready", progress) as phase:
                self.slot.wait_ready(
                    profile,
                    timeout_s=profile.startup_timeout_s,
                    on_step=self._step(progress, "ready"),
                )
                phase["detail"] = f"adopted {info.short_id}"
            return self._serve(report, profile, (info, self._read_facts()), before, progress)

    def _serve(
        self,
        report: Report,
        profile: Profile,
        brought: tuple[ContainerInfo, dict[str, Any]],
        before: SlotState,
        progress: Progress,
    ) -> Report:
        """The end of a start or an adopt: ``serving``, its route flipped, saved."""
        info, found = brought
        report.startup_facts = found
        serving = self._serving(profile, info, found, before.previous, before.last_switch)
        self._flip(report, serving, progress)
        report.finish("adopted" if report.action == "adopt" else "started")
        self._save()
        return report


class _NothingToRestore(Exception):  # a control-flow signal inside _rollback
    pass

"""Switching: which profile runs, and how the host gets there safely. Policy only.

The sequence (DESIGN.md "Switching"): lock -> resolve -> preflight -> frontdoor ``switching``
-> drain -> stop the old container -> create the new -> wait until ready -> startup facts ->
flip the route -> persist -> report. The caller holds the slot lock (``lock.py``); the CLI
(in-process) and the controller (over its control socket) both call ``Switcher.switch``.

Two rules shape the code:

- nothing on the host changes until preflight has passed (invariant 3);
- if the new profile does not become ready, the previous one is brought back, checked again
  and the route flipped back to it; the report says so and the switch fails (non-zero exit).

Every phase is timed and announced through ``progress`` as it starts and ends, so the operator
sees where a switch spends its time and the benchmark can subtract vLLM's own cold start.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker.errors

from orchestrator.config import Paths
from orchestrator.control.frontdoor_client import FrontdoorClient, build_route
from orchestrator.control.state import SlotState, StateStore
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
from orchestrator.slot.docker_slot import ContainerInfo, Slot

#: Default bound on draining in-flight generations before the old model stops.
DEFAULT_DRAIN_TIMEOUT_S = 30.0
#: How long a boot or restart waits for the frontdoor to accept the `switching` route.
ANNOUNCE_WAIT_S = 15.0


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
    container_id: str | None = None
    error: str | None = None
    log_tail: str | None = None
    started_at: str = field(default_factory=_now)
    finished_at: str | None = None
    total_s: float = 0.0
    _t0: float = field(default_factory=time.monotonic, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "outcome": self.outcome,
            "profile": self.profile,
            "previous": self.previous,
            "phases": self.phases,
            "total_s": self.total_s,
            "startup_facts": self.startup_facts,
            "frontdoor": self.frontdoor,
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


class Switcher:
    """Runs switches, stops and (re)starts against one slot. Holds no lock itself."""

    def __init__(
        self,
        store: ProfileStore,
        slot: Slot,
        *,
        state: StateStore,
        frontdoor: FrontdoorClient | None,
        paths: Paths,
        drain_timeout_s: float = DEFAULT_DRAIN_TIMEOUT_S,
    ) -> None:
        self.store = store
        self.slot = slot
        self.state = state
        self.frontdoor = frontdoor
        self.paths = paths
        self.drain_timeout_s = drain_timeout_s
        #: True when the last route could not be sent; ``resend_route`` retries it.
        self.route_pending = False

    # ---- phases ---------------------------------------------------------------------------
    @contextmanager
    def _phase(self, report: Report, name: str, progress: Progress) -> Iterator[dict[str, Any]]:
        """Time one phase; the body may put a ``detail`` into the yielded dict."""
        record: dict[str, Any] = {"name": name}
        start = time.monotonic()
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
            self.slot.client.images.get(profile.image)
            checked.append(f"image {profile.image}")
        except docker.errors.ImageNotFound:
            problems.append(f"image {profile.image} does not exist on this host (build it)")
        except docker.errors.APIError as exc:
            problems.append(f"cannot ask Docker about image {profile.image}: {exc}")
        missing = [device for device in profile.devices if not Path(device).exists()]
        if missing:
            problems.append(f"devices missing: {', '.join(missing)}")
        elif profile.devices:
            checked.append(f"devices {', '.join(profile.devices)}")
            holders = self._device_holders(profile.devices)
            if holders:
                problems.append("devices held by other containers: " + "; ".join(holders))
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

    def _device_holders(self, devices: tuple[str, ...]) -> list[str]:
        """Running containers, other than this slot's, that map any of ``devices``."""
        ours = self.slot.config.container_name
        holders = []
        for container in self.slot.client.containers.list():
            name = (container.attrs.get("Name") or "").lstrip("/")
            if name == ours:
                continue
            mapped = container.attrs.get("HostConfig", {}).get("Devices") or []
            for mapping in mapped:
                host = mapping.get("PathOnHost", "")
                if any(host == d or host.startswith(d.rstrip("/") + "/") for d in devices):
                    holders.append(f"{name} ({host})")
        return holders

    # ---- helpers --------------------------------------------------------------------------
    def _load_quiet(self, name: str | None) -> Profile | None:
        if not name:
            return None
        try:
            return self.store.load(name)
        except ProfileError:
            return None

    def _put_route(self, report: Report, route: dict[str, Any], progress: Progress) -> None:
        if self.frontdoor is None:
            report.frontdoor = "skipped (MODEL_SLOT_FRONTDOOR_ADMIN_URL not set)"
            return
        self.frontdoor.put_route(route)
        report.frontdoor = f"route {route['state']} at {self.frontdoor.base_url}"
        progress({"event": "step", "phase": "frontdoor", "text": f"route {route['state']}"})

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
            phase["detail"] = facts_line(found)
        return info, found

    def _flip(
        self,
        report: Report,
        profile: Profile,
        info: ContainerInfo,
        found: dict[str, Any],
        progress: Progress,
    ) -> None:
        with self._phase(report, "flip", progress) as phase:
            try:
                self._put_route(
                    report,
                    build_route(
                        "serving",
                        upstream=self.slot.upstream_url(profile, info),
                        profile=profile,
                        facts=found,
                    ),
                    progress,
                )
                self.route_pending = False
            except FrontdoorError as exc:
                # The model is ready; a frontdoor that is down (e.g. still starting at boot)
                # must not undo that. The controller re-sends the route until it lands.
                report.frontdoor = f"flip failed (will be re-sent): {exc}"
                self.route_pending = True
            phase["detail"] = report.frontdoor

    # ---- switch ---------------------------------------------------------------------------
    def switch(
        self,
        name: str,
        force: bool = False,
        progress: Progress | None = None,
        lock_wait_s: float = 0.0,
    ) -> Report:
        """Move the slot to profile ``name``. The caller holds the slot lock."""
        progress = progress or _quiet
        before = self.state.load()
        report = Report("switch", name, before.current)
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
            and not before.fault
        ):
            return self._reconfirm(report, profile, running, before, progress)

        # From here on the host changes.
        old_upstream = self.slot.upstream_url(old, running) if old is not None and running else None
        with self._phase(report, "switching", progress) as phase:
            self._put_route(
                report,
                build_route(
                    "switching",
                    upstream=old_upstream,
                    profile=old or profile,
                    reason=f"switching to {profile.name}",
                    facts=before.facts,
                ),
                progress,
            )
            phase["detail"] = report.frontdoor
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
        with self._phase(report, "stop", progress) as phase:
            grace = old.stop_timeout_s if old is not None else profile.stop_timeout_s
            removed = self.slot.stop(grace, on_step=self._step(progress, "stop"))
            phase["detail"] = f"removed {', '.join(r[:12] for r in removed) or 'nothing'}"
        try:
            info, found = self._bring_up(report, profile, progress)
        except (NotReadyError, SlotError) as exc:
            return self._rollback(
                report, profile=profile, old=old, before=before, failure=exc, progress=progress
            )
        report.startup_facts = found
        try:
            self._flip(report, profile, info, found, progress)
        except FrontdoorError as exc:
            report.frontdoor = f"flip failed: {exc}"
        with self._phase(report, "persist", progress):
            report.finish("switched")
            previous = before.current if before.current != profile.name else before.previous
            self._save_running(profile, info, found, previous, report.to_json())
        report.finish("switched")
        return report

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
        self._flip(report, profile, running, found, progress)
        report.finish("unchanged")
        before.last_switch = report.to_json()
        before.container_id = running.id
        before.updated_at = _now()
        self.state.save(before)
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
        progress({"event": "failure", "error": report.error, "log_tail": report.log_tail})
        state = SlotState(
            current=None,
            previous=before.current,
            last_switch=None,
            updated_at=_now(),
        )
        with self._phase(report, "rollback-stop", progress):
            self.slot.stop(profile.stop_timeout_s, on_step=self._step(progress, "rollback-stop"))
        if old is None:
            reason = f"switch to {profile.name} failed and there is no previous profile"
            self._route_quiet(report, "down", None, reason, progress)
            report.finish("failed")
            state.last_switch = report.to_json()
            self.state.save(state)
            raise SwitchFailedError(f"{report.error}\n{reason}", report.to_json())
        try:
            info, found = self._bring_up(report, old, progress)
        except (NotReadyError, SlotError) as exc:
            reason = f"switch to {profile.name} failed; restoring {old.name} failed too: {exc}"
            self._route_quiet(report, "down", old, reason, progress)
            report.finish("failed")
            report.error = f"{report.error}\n{reason}"
            state.last_switch = report.to_json()
            self.state.save(state)
            raise SwitchFailedError(report.error, report.to_json()) from None
        try:
            self._flip(report, old, info, found, progress)
        except FrontdoorError as exc:
            report.frontdoor = f"flip back failed: {exc}"
        report.startup_facts = found
        report.finish("rolled-back")
        self._save_running(old, info, found, before.previous, report.to_json())
        raise SwitchFailedError(
            f"switch to {profile.name} failed; {old.name} restored and serving again.\n"
            f"{report.error}",
            report.to_json(),
        )

    def _route_quiet(
        self,
        report: Report,
        state: str,
        profile: Profile | None,
        reason: str,
        progress: Progress,
    ) -> None:
        """Tell the frontdoor, but never let a frontdoor problem hide the real failure."""
        try:
            self._put_route(
                report, build_route(state, upstream=None, profile=profile, reason=reason), progress
            )
        except FrontdoorError as exc:
            report.frontdoor = f"route {state} not sent: {exc}"

    def _announce(self, report: Report, profile: Profile, reason: str, progress: Progress) -> None:
        """Route ``switching`` before a model is (re)started with nothing to roll back to.

        The frontdoor restores its last route when it starts (after a reboot, that route names
        a container that is gone), and at boot it starts just after the orchestrator. So wait a
        bounded time for it to answer: until the route says ``switching``, requests would fail
        with 502 against the old upstream instead of being held or refused with Retry-After.
        """
        if self.frontdoor is None:
            return
        deadline = time.monotonic() + ANNOUNCE_WAIT_S
        while True:
            self._route_quiet(report, "switching", profile, reason, progress)
            if "not sent" not in report.frontdoor:
                return
            if time.monotonic() >= deadline:
                self.route_pending = True  # the controller re-sends once it is free
                return
            time.sleep(0.5)  # the frontdoor is starting; nothing to wait on but its port

    # ---- stop -----------------------------------------------------------------------------
    def stop(self, progress: Progress | None = None, lock_wait_s: float = 0.0) -> Report:
        """No model on the host, route ``down``; ``up`` will not bring one back until a switch."""
        progress = progress or _quiet
        before = self.state.load()
        old = self._load_quiet(before.current)
        report = Report("stop", None, before.current)
        report.phases.append({"name": "lock", "duration_s": round(lock_wait_s, 3)})
        with self._phase(report, "switching", progress):
            self._route_quiet(report, "switching", old, "stopping the model", progress)
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
        with self._phase(report, "down", progress):
            self._route_quiet(report, "down", old, "stopped by the operator", progress)
        report.finish("stopped")
        self.state.save(
            SlotState(
                current=None,
                previous=before.current or before.previous,
                stopped=True,
                last_switch=report.to_json(),
                updated_at=_now(),
            )
        )
        return report

    # ---- the controller's entries ---------------------------------------------------------
    def start(self, profile: Profile, action: str, progress: Progress | None = None) -> Report:
        """Sweep the slot and bring ``profile`` up (boot, or a restart after an exit). No
        rollback: there is nothing running to go back to. Raises NotReadyError/SlotError."""
        progress = progress or _quiet
        before = self.state.load()
        report = Report(action, profile.name, before.previous)
        self._announce(report, profile, f"{action}: starting {profile.name}", progress)
        with self._phase(report, "stop", progress) as phase:
            removed = self.slot.stop(profile.stop_timeout_s, on_step=self._step(progress, "stop"))
            phase["detail"] = f"removed {', '.join(r[:12] for r in removed) or 'nothing'}"
        try:
            info, found = self._bring_up(report, profile, progress)
        except (NotReadyError, SlotError) as exc:
            report.error = str(exc)
            report.log_tail = exc.log_tail if isinstance(exc, NotReadyError) else ""
            report.finish("failed")
            raise
        report.startup_facts = found
        self._flip(report, profile, info, found, progress)
        report.finish("started")
        self._save_running(profile, info, found, before.previous, before.last_switch)
        return report

    def adopt(
        self, profile: Profile, info: ContainerInfo, progress: Progress | None = None
    ) -> Report:
        """Take over a running container of ``profile`` (same hash) without recreating it."""
        progress = progress or _quiet
        before = self.state.load()
        report = Report("adopt", profile.name, before.previous)
        report.container_id = info.id
        with self._phase(report, "ready", progress) as phase:
            self.slot.wait_ready(
                profile, timeout_s=profile.startup_timeout_s, on_step=self._step(progress, "ready")
            )
            phase["detail"] = f"adopted {info.short_id}"
        found = self._read_facts()
        report.startup_facts = found
        self._flip(report, profile, info, found, progress)
        report.finish("adopted")
        self._save_running(profile, info, found, before.previous, before.last_switch)
        return report

    def _save_running(
        self,
        profile: Profile,
        info: ContainerInfo,
        found: dict[str, Any],
        previous: str | None,
        last_switch: dict[str, Any] | None,
    ) -> None:
        """Persist that ``profile`` runs in ``info``'s container."""
        self.state.save(
            SlotState(
                current=profile.name,
                current_hash=profile.hash,
                container_id=info.id,
                previous=previous,
                facts=found,
                last_switch=last_switch,
                updated_at=_now(),
            )
        )

    def resend_route(self) -> bool:
        """Send the route that the persisted state and the container imply. True if it landed
        (or there is no frontdoor)."""
        if self.frontdoor is None:
            self.route_pending = False
            return True
        state = self.state.load()
        profile = self._load_quiet(state.current)
        info = self.slot.current()
        if state.fault:
            route = build_route("faulted", upstream=None, profile=profile, reason=state.fault)
        elif state.stopped or profile is None:
            route = build_route("down", upstream=None, profile=None, reason="no model")
        elif info is not None and info.status == "running" and info.profile_hash == profile.hash:
            route = build_route(
                "serving",
                upstream=self.slot.upstream_url(profile, info),
                profile=profile,
                facts=state.facts,
            )
        else:
            route = build_route(
                "down", upstream=None, profile=profile, reason="the model container is not running"
            )
        try:
            self.frontdoor.put_route(route)
        except FrontdoorError:
            self.route_pending = True
            return False
        self.route_pending = False
        return True

    def mark(self, state: str, reason: str, profile: Profile | None) -> str:
        """Put the route in ``down``/``faulted`` with a reason; returns what happened."""
        report = Report("mark", profile.name if profile else None, None)
        self._route_quiet(report, state, profile, reason, _quiet)
        self.route_pending = "not sent" in report.frontdoor
        return report.frontdoor


def facts_line(found: dict[str, Any]) -> str:
    parts = []
    if "kv_cache_tokens" in found:
        parts.append(f"KV cache {found['kv_cache_tokens']:,} tokens")
    if "max_concurrency" in found:
        parts.append(
            f"max concurrency {found['max_concurrency']}x at "
            f"{found.get('max_concurrency_context_tokens')} tokens"
        )
    for key, label in (
        ("model_load_s", "load"),
        ("weights_load_s", "weights"),
        ("torch_compile_s", "compile"),
        ("graph_capture_s", "graphs"),
        ("engine_init_s", "engine init"),
        ("cold_start_s", "cold start"),
    ):
        if key in found:
            parts.append(f"{label} {found[key]}s")
    return ", ".join(parts) or "no facts in the log"

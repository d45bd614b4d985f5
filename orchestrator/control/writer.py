"""Run a ``switch`` or ``stop`` as the slot's one writer, from any caller.

When a controller runs (``up``), the request goes to it over the control socket and its progress
streams back; otherwise this process takes the slot lock and runs the same ``Switcher`` itself.
The ``switch`` and ``stop`` commands and ``gate --switch`` all come through here, so a switch is
one code path whoever asks for it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.config import Paths
from orchestrator.control import controller
from orchestrator.control.frontdoor_client import FrontdoorClient
from orchestrator.control.publish import Publisher
from orchestrator.control.state import StateStore
from orchestrator.control.switch import DEFAULT_ROUTE_ACK_TIMEOUT_S, Report, Switcher
from orchestrator.errors import (
    BusyError,
    ControlError,
    ModelSlotError,
    PreflightError,
    ProfileError,
    SlotError,
    SwitchFailedError,
)
from orchestrator.profiles.store import ProfileStore
from orchestrator.progress import Progress
from orchestrator.slot import connect
from orchestrator.slot.discovery import ControllerContainer, find_controllers
from orchestrator.slot.docker_slot import SlotConfig


@dataclass(frozen=True)
class WriteResult:
    """How one ``switch``/``stop`` ended. ``report`` is the switch report (``Report.to_json``)
    when the work started; ``outcome`` names a refusal (``refused``, ``busy``, ``error``)."""

    ok: bool
    report: dict[str, Any] | None = None
    error: str | None = None
    outcome: str | None = None
    by_controller: bool = False

    @classmethod
    def from_answer(cls, answer: dict[str, Any], *, by_controller: bool) -> WriteResult:
        report = answer.get("report")
        return cls(
            ok=bool(answer.get("ok")),
            report=dict(report) if isinstance(report, dict) else None,
            error=None if answer.get("error") is None else str(answer["error"]),
            outcome=None if answer.get("outcome") is None else str(answer["outcome"]),
            by_controller=by_controller,
        )


def seconds_setting(name: str, default: float) -> float:
    """A setting in seconds from the environment; a value that is not a number is an error."""
    value = os.environ.get(name, str(default))
    try:
        return float(value)
    except ValueError:
        raise SlotError(f"{name}={value!r}: expected seconds") from None


def state_dir(found: list[ControllerContainer], strict: bool = True) -> Path:
    """The state directory of this host's slot, wherever the command was started.

    A running controller container of this slot instance names it (its state mount). A
    ``MODEL_SLOT_STATE_DIR`` that names another directory is refused (``strict``) or, for a
    reader, answered with the controller's directory."""
    paths = Paths.from_env()
    instance = SlotConfig.from_env().instance
    explicit = "MODEL_SLOT_STATE_DIR" in os.environ
    if not found:
        return paths.state_dir
    mine = paths.state_dir.resolve()
    in_container = Path("/.dockerenv").exists()
    for ctl in found:
        if ctl.state_dir.resolve() == mine or (in_container and ctl.state_dir_inside == mine):
            return paths.state_dir
    names = ", ".join(f"{c.name} (state {c.state_dir})" for c in found)
    if len(found) > 1:
        raise ControlError(
            f"several controllers run for slot instance {instance!r}: {names}; set "
            "MODEL_SLOT_STATE_DIR to the state directory of the one to use"
        )
    ctl = found[0]
    if explicit and strict:
        raise ControlError(
            f"a controller for slot instance {instance!r} runs in container {ctl.name} with its "
            f"state in {ctl.state_dir}, but MODEL_SLOT_STATE_DIR={paths.state_dir}: this command "
            "would not find it and would fight it over the model container. Unset "
            f"MODEL_SLOT_STATE_DIR or set it to {ctl.state_dir}"
        )
    return ctl.state_dir


def switcher_from_env(paths: Paths | None = None, *, strict: bool = True) -> Switcher:
    """The ``Switcher`` this host is configured for (profiles, Docker slot, state, frontdoor).

    The state directory is the running controller's when one runs (``state_dir``); ``strict``
    False lets a reader (``status``) follow it instead of refusing a differing setting."""
    paths = paths or Paths.from_env()
    slot = connect.docker_slot()
    state = StateStore(state_dir(find_controllers(slot.client, slot.config.instance), strict))
    store, frontdoor = ProfileStore(paths.profiles_dir), FrontdoorClient.from_env()
    publisher = Publisher(frontdoor, store, state.directory)  # the operator page's board
    Report.on_finish, Report.on_phase = publisher, publisher.phase
    return Switcher(
        store,
        slot,
        state=state,
        frontdoor=frontdoor,
        paths=paths,
        drain_timeout_s=seconds_setting("MODEL_SLOT_DRAIN_TIMEOUT_S", 30),
        route_ack_timeout_s=seconds_setting(
            "MODEL_SLOT_ROUTE_ACK_TIMEOUT_S", DEFAULT_ROUTE_ACK_TIMEOUT_S
        ),
    )


def switch(name: str, progress: Progress, *, force: bool = False) -> WriteResult:
    """Move the slot to profile ``name`` (lock, preflight, rollback and all)."""
    return _write({"op": "switch", "profile": name, "force": force}, progress, f"switch {name}")


def stop(progress: Progress) -> WriteResult:
    """Remove the model; the route goes down."""
    return _write({"op": "stop"}, progress, "stop")


def _write(request: dict[str, Any], progress: Progress, purpose: str) -> WriteResult:
    try:
        switcher = switcher_from_env()
        answer = controller.ask(switcher.state.directory, request, progress)
    except ModelSlotError as exc:
        return WriteResult(ok=False, error=str(exc), outcome=_refusal_outcome(exc))
    if answer is not None:
        return WriteResult.from_answer(answer, by_controller=True)
    return _in_process(switcher, request, progress, purpose)


def _refusal_outcome(exc: ModelSlotError) -> str:
    if isinstance(exc, (PreflightError, ProfileError)):
        return "refused"
    if isinstance(exc, BusyError):
        return "busy"
    return "error"


def _in_process(
    switcher: Switcher, request: dict[str, Any], progress: Progress, purpose: str
) -> WriteResult:
    # The switcher's own lock: a second SlotLock on the same file in this process would make
    # the switcher's acquire fail as busy.
    lock = switcher.lock
    lock.purpose = purpose
    start = time.monotonic()
    try:
        lock.acquire()
    except ModelSlotError as exc:
        return WriteResult(ok=False, error=str(exc), outcome=_refusal_outcome(exc))
    try:
        waited = time.monotonic() - start
        result: WriteResult
        try:
            if request["op"] == "switch":
                report = switcher.switch(
                    request["profile"],
                    force=request["force"],
                    progress=progress,
                    lock_wait_s=waited,
                )
            else:
                report = switcher.stop(progress=progress, lock_wait_s=waited)
            result = WriteResult(ok=True, report=report.to_json())
        except SwitchFailedError as exc:
            result = WriteResult(ok=False, report=exc.report, error=str(exc))
        except ModelSlotError as exc:
            result = WriteResult(ok=False, error=str(exc), outcome=_refusal_outcome(exc))
        # No controller re-sends a missed route once this process exits: land it now or fail.
        route = switcher.settle_route(switcher.route_ack_timeout_s, progress)
        if not route.acked:
            what = f" {request['profile']}" if request["op"] == "switch" else ""
            missed = (
                f"the {route.text}; re-sent for {switcher.route_ack_timeout_s:g}s and not "
                "acknowledged, so the frontdoor still serves its old route and nothing re-sends "
                f"it after this command. Run `{request['op']}{what}` again once the frontdoor "
                "answers, or run the controller (`up`), which re-sends it until it lands"
            )
            report_json = result.report
            if report_json is not None:
                report_json = {**report_json, "frontdoor": route.text}
            result = WriteResult(
                ok=False,
                report=report_json,
                error=f"{result.error}\n{missed}" if result.error else missed,
                outcome=result.outcome,
            )
        return result
    finally:
        lock.release()

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
from typing import Any

from orchestrator.config import Paths
from orchestrator.control import controller
from orchestrator.control.frontdoor_client import FrontdoorClient
from orchestrator.control.lock import SlotLock
from orchestrator.control.state import StateStore
from orchestrator.control.switch import Switcher
from orchestrator.errors import (
    BusyError,
    ModelSlotError,
    PreflightError,
    ProfileError,
    SlotError,
    SwitchFailedError,
)
from orchestrator.profiles.store import ProfileStore
from orchestrator.progress import Progress
from orchestrator.slot.connect import docker_slot


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


def switcher_from_env(paths: Paths | None = None) -> Switcher:
    """The ``Switcher`` this host is configured for (profiles, Docker slot, state, frontdoor)."""
    paths = paths or Paths.from_env()
    drain = os.environ.get("MODEL_SLOT_DRAIN_TIMEOUT_S", "30")
    try:
        drain_s = float(drain)
    except ValueError:
        raise SlotError(f"MODEL_SLOT_DRAIN_TIMEOUT_S={drain!r}: expected seconds") from None
    return Switcher(
        ProfileStore(paths.profiles_dir),
        docker_slot(),
        state=StateStore(paths.state_dir),
        frontdoor=FrontdoorClient.from_env(),
        paths=paths,
        drain_timeout_s=drain_s,
    )


def switch(name: str, progress: Progress, *, force: bool = False) -> WriteResult:
    """Move the slot to profile ``name`` (lock, preflight, rollback and all)."""
    return _write({"op": "switch", "profile": name, "force": force}, progress, f"switch {name}")


def stop(progress: Progress) -> WriteResult:
    """Remove the model; the route goes down."""
    return _write({"op": "stop"}, progress, "stop")


def _write(request: dict[str, Any], progress: Progress, purpose: str) -> WriteResult:
    paths = Paths.from_env()
    answer = controller.ask(paths.state_dir, request, progress)
    if answer is not None:
        return WriteResult.from_answer(answer, by_controller=True)
    return _in_process(request, progress, purpose, paths)


def _refusal_outcome(exc: ModelSlotError) -> str:
    if isinstance(exc, (PreflightError, ProfileError)):
        return "refused"
    if isinstance(exc, BusyError):
        return "busy"
    return "error"


def _in_process(
    request: dict[str, Any], progress: Progress, purpose: str, paths: Paths
) -> WriteResult:
    lock = SlotLock(paths.state_dir, purpose)
    start = time.monotonic()
    try:
        lock.acquire()
        switcher = switcher_from_env(paths)
        waited = time.monotonic() - start
        if request["op"] == "switch":
            report = switcher.switch(
                request["profile"], force=request["force"], progress=progress, lock_wait_s=waited
            )
        else:
            report = switcher.stop(progress=progress, lock_wait_s=waited)
    except SwitchFailedError as exc:
        return WriteResult(ok=False, report=exc.report, error=str(exc))
    except ModelSlotError as exc:
        return WriteResult(ok=False, error=str(exc), outcome=_refusal_outcome(exc))
    finally:
        lock.release()
    return WriteResult(ok=True, report=report.to_json())

"""``switch``, ``status``, ``stop`` and ``up``: the slot's commands.

``switch`` and ``stop`` change the host, so they need the one writer. When a controller runs
(``up``), they ask it over ``$MODEL_SLOT_STATE_DIR/control.sock`` and stream its progress;
otherwise they take the slot lock and do the same work in-process with the same ``Switcher``.
``status`` only reads and never waits for the lock.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from types import FrameType
from typing import Any

import docker
import docker.errors
import httpx

from orchestrator import output
from orchestrator.config import Paths
from orchestrator.control import controller
from orchestrator.control.frontdoor_client import FrontdoorClient
from orchestrator.control.lock import SlotLock
from orchestrator.control.publish import Publisher
from orchestrator.control.state import StateStore
from orchestrator.control.switch import Report, Switcher, facts_line
from orchestrator.errors import (
    BusyError,
    FrontdoorError,
    ModelSlotError,
    PreflightError,
    ProfileError,
    SlotError,
    SwitchFailedError,
)
from orchestrator.profiles.store import ProfileStore
from orchestrator.slot.docker_slot import Slot, SlotConfig


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("switch", help="move the slot to another profile, safely")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--force", action="store_true", help="allow rejected-*/blocked-* profiles")
    p.add_argument("--json", action="store_true", help="the report as JSON (progress: stderr)")
    p.set_defaults(func=cmd_switch)

    p = subparsers.add_parser("status", help="what the slot runs, its health and route")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = subparsers.add_parser("stop", help="remove the model; the route goes down")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_stop)

    p = subparsers.add_parser("up", help="the controller: reconcile, watch, serve the CLI")
    p.set_defaults(func=cmd_up)


# ---- wiring -------------------------------------------------------------------------------
def _switcher() -> Switcher:
    paths = Paths.from_env()
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except docker.errors.DockerException as exc:
        raise SlotError(
            f"cannot reach the Docker engine ({exc}); is the socket mounted / DOCKER_HOST set?"
        ) from None
    drain = os.environ.get("MODEL_SLOT_DRAIN_TIMEOUT_S", "30")
    try:
        drain_s = float(drain)
    except ValueError:
        raise SlotError(f"MODEL_SLOT_DRAIN_TIMEOUT_S={drain!r}: expected seconds") from None
    store, frontdoor = ProfileStore(paths.profiles_dir), FrontdoorClient.from_env()
    publisher = Publisher(frontdoor, store, paths.state_dir)  # the operator page's board
    Report.on_finish, Report.on_phase = publisher, publisher.phase
    return Switcher(
        store,
        Slot(SlotConfig.from_env(), client),
        state=StateStore(paths.state_dir),
        frontdoor=frontdoor,
        paths=paths,
        drain_timeout_s=drain_s,
    )


class Printer:
    """Progress as it happens: to stdout, or to stderr when stdout carries JSON."""

    def __init__(self, as_json: bool) -> None:
        self.out = sys.stderr if as_json else sys.stdout
        self.t0 = time.monotonic()

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        at = f"[{time.monotonic() - self.t0:7.2f}s]"
        if kind == "phase":
            status = event.get("status")
            if status == "start":
                line = f"{at} {event.get('phase')} ..."
            else:
                detail = event.get("detail") or event.get("failed") or ""
                mark = "ok" if status == "done" else "FAILED"
                line = f"{at} {event.get('phase')} {mark} in {event.get('duration_s', 0):.2f}s" + (
                    f"  {detail}" if detail else ""
                )
        elif kind == "step":
            line = f"{at}   {event.get('phase')}: {event.get('text')}"
        elif kind == "queued":
            line = f"{at} queued behind {event.get('ahead')} command(s) at the controller"
        elif kind == "failure":
            line = f"{at} FAILED: {event.get('error')}"
            tail = event.get("log_tail") or ""
            if tail:
                line += "\n  last log lines of the new container:\n" + _indent(tail)
        else:
            return
        print(line, file=self.out, flush=True)


def _indent(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line for line in text.rstrip().splitlines()[-40:])


def _print_report(report: dict[str, Any]) -> None:
    outcome = report.get("outcome")
    total = report.get("total_s", 0)
    if report.get("action") == "stop":
        print(f"stopped in {total:.2f}s (was: {report.get('previous') or 'nothing'})")
    elif outcome in ("switched", "unchanged"):
        print(
            f"{outcome}: {report.get('profile')} serving in {total:.2f}s "
            f"(previous: {report.get('previous') or 'none'})"
        )
    else:
        print(f"{outcome}: switch to {report.get('profile')} after {total:.2f}s")
    facts = report.get("startup_facts") or {}
    if facts:
        print(f"  startup facts: {facts_line(facts)}")
    if report.get("frontdoor"):
        print(f"  frontdoor: {report['frontdoor']}")
    phases = report.get("phases") or []
    if phases:
        print("  phases: " + ", ".join(f"{p['name']} {p['duration_s']:.2f}s" for p in phases))


def _refusal_outcome(exc: ModelSlotError) -> str:
    if isinstance(exc, (PreflightError, ProfileError)):
        return "refused"
    if isinstance(exc, BusyError):
        return "busy"
    return "error"


def _run_writer(request: dict[str, Any], as_json: bool, purpose: str, action: str) -> int:
    """Run ``switch``/``stop`` through the controller if one listens, else in-process."""
    paths = Paths.from_env()
    progress = Printer(as_json)
    result = controller.ask(paths.state_dir, request, progress)
    if result is None:
        result = _in_process(request, progress, purpose)
    else:
        progress({"event": "step", "phase": "control", "text": "done by the running controller"})
    report = result.get("report")
    if as_json:
        body = dict(report) if report else {"action": action, "profile": request.get("profile")}
        if not result.get("ok"):
            body.setdefault("outcome", result.get("outcome", "error"))
            if report is None or body.get("outcome") in (None, "running"):
                body["outcome"] = result.get("outcome", "error")
            body["error"] = result.get("error")
        output.print_json(body)
    elif report:
        _print_report(report)
    if not result.get("ok"):
        if not as_json:
            output.error(str(result.get("error")))
        return 1
    return 0


def _in_process(request: dict[str, Any], progress: Printer, purpose: str) -> dict[str, Any]:
    paths = Paths.from_env()
    lock = SlotLock(paths.state_dir, purpose)
    start = time.monotonic()
    try:
        lock.acquire()
        switcher = _switcher()
        waited = time.monotonic() - start
        if request["op"] == "switch":
            report = switcher.switch(
                request["profile"], force=request["force"], progress=progress, lock_wait_s=waited
            )
        else:
            report = switcher.stop(progress=progress, lock_wait_s=waited)
    except SwitchFailedError as exc:
        return {"ok": False, "error": str(exc), "report": exc.report}
    except ModelSlotError as exc:
        return {"ok": False, "error": str(exc), "outcome": _refusal_outcome(exc)}
    finally:
        lock.release()
    return {"ok": True, "report": report.to_json()}


# ---- commands -----------------------------------------------------------------------------
def cmd_switch(args: argparse.Namespace) -> int:
    request = {"op": "switch", "profile": args.name, "force": bool(args.force)}
    return _run_writer(request, args.json, f"switch {args.name}", "switch")


def cmd_stop(args: argparse.Namespace) -> int:
    return _run_writer({"op": "stop"}, bool(getattr(args, "json", False)), "stop", "stop")


def collect_status() -> dict[str, Any]:
    """Everything ``status`` shows, as one JSON-able dict. Reads only; takes no lock."""
    paths = Paths.from_env()
    switcher = _switcher()
    state = switcher.state.load()
    status: dict[str, Any] = {
        "current": state.current,
        "previous": state.previous,
        "stopped": state.stopped,
        "fault": state.fault,
        "profile": None,
        "container": None,
        "containers": 0,
        "health": None,
        "route": None,
        "frontdoor": None,
        "controller": None,
        "startup_facts": state.facts,
        "last_switch": None,
    }
    profile = None
    if state.current:
        try:
            profile = switcher.store.load(state.current)
            status["profile"] = profile.metadata()
        except ProfileError as exc:
            status["profile"] = {"name": state.current, "error": str(exc)}
    infos = switcher.slot.containers()
    status["containers"] = len(infos)
    info = switcher.slot.current()
    if info is not None:
        status["container"] = {
            "id": info.id,
            "name": info.name,
            "status": info.status,
            "profile": info.profile,
            "profile_hash": info.profile_hash,
            "exit_code": info.exit_code,
            "started_at": info.started_at,
            "matches_profile": bool(profile and profile.hash == info.profile_hash),
        }
        if info.status == "running" and profile is not None:
            url = switcher.slot.probe_url(profile, info)
            try:
                health = httpx.get(f"{url}/health", timeout=3)
                status["health"] = f"{health.status_code} from {url}/health"
            except httpx.HTTPError as exc:
                status["health"] = f"no answer from {url}/health: {exc!r}"
    if switcher.frontdoor is None:
        # The admin API is not reachable from the host when the stack runs under compose (it is
        # on the compose network only); the public /status carries the same route.
        public = os.environ.get("MODEL_SLOT_FRONTDOOR_URL", "http://127.0.0.1:8000")
        try:
            body = httpx.get(f"{public}/status", timeout=3).json()
            route = dict(body.get("route") or {})
            route.setdefault("upstream", (body.get("frontdoor") or {}).get("backend"))
            status["route"] = route
            status["frontdoor"] = f"{public} (public /status; admin API not configured here)"
        except (httpx.HTTPError, ValueError):
            status["frontdoor"] = (
                f"no admin API configured (MODEL_SLOT_FRONTDOOR_ADMIN_URL) and no frontdoor "
                f"answering on {public} (MODEL_SLOT_FRONTDOOR_URL)"
            )
    else:
        status["frontdoor"] = switcher.frontdoor.base_url
        try:
            status["route"] = switcher.frontdoor.get_route()
        except FrontdoorError as exc:
            status["route"] = {"error": str(exc)}
    try:
        answer = controller.ask(paths.state_dir, {"op": "status"}, lambda _: None)
    except ModelSlotError as exc:
        answer = {"error": str(exc)}
    status["controller"] = answer if answer is not None else "not running"
    last = state.last_switch
    if last:
        status["last_switch"] = {
            key: last.get(key)
            for key in (
                "action",
                "outcome",
                "profile",
                "previous",
                "total_s",
                "finished_at",
                "error",
            )
        }
    return status


def cmd_status(args: argparse.Namespace) -> int:
    status = collect_status()
    if args.json:
        output.print_json(status)
        return 0
    profile = status["profile"] or {}
    if status["current"]:
        print(
            f"profile:     {status['current']}  ({profile.get('status', '?')})  "
            f"{profile.get('title', '')}"
        )
    else:
        print("profile:     none" + ("  (stopped by the operator)" if status["stopped"] else ""))
    if status["previous"]:
        print(f"previous:    {status['previous']}")
    container = status["container"]
    if container:
        match = "" if container["matches_profile"] else "  (does NOT match the profile!)"
        code = (
            f" (exit code {container['exit_code']})" if container["exit_code"] is not None else ""
        )
        print(
            f"container:   {container['id'][:12]} {container['name']} {container['status']}"
            f"{code}{match}"
        )
    else:
        print("container:   none")
    if status["containers"] > 1:
        print(f"WARNING:     {status['containers']} labelled containers exist")
    if status["health"]:
        print(f"health:      {status['health']}")
    route = status["route"]
    if isinstance(route, dict) and "state" in route:
        reason = f"  ({route['reason']})" if route.get("reason") else ""
        print(f"route:       {route['state']} -> {route.get('upstream')}{reason}")
    elif isinstance(route, dict):
        print(f"route:       unknown: {route.get('error')}")
    else:
        print(f"route:       {status['frontdoor']}")
    if status["fault"]:
        print(f"FAULT:       {status['fault']}")
        print("             (no restarts until an operator switches)")
    facts = status["startup_facts"]
    if facts:
        print(f"facts:       {facts_line(facts)}")
    ctl = status["controller"]
    print(
        "controller:  "
        + (
            f"running (pid {ctl.get('pid')})"
            if isinstance(ctl, dict) and ctl.get("controller")
            else str(ctl)
        )
    )
    last = status["last_switch"]
    if last:
        print(
            f"last switch: {last['outcome']} {last.get('previous')} -> {last.get('profile')} "
            f"in {last.get('total_s')}s at {last.get('finished_at')}"
        )
        if last.get("error"):
            print("             " + str(last["error"]).splitlines()[0])
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=os.environ.get("MODEL_SLOT_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per readiness probe is noise
    ctl = controller.Controller(
        _switcher(), default_profile=controller.Controller.default_profile_from_env()
    )

    def on_signal(signum: int, frame: FrameType | None) -> None:
        logging.getLogger("orchestrator.control.controller").info(
            "signal %d: shutting down", signum
        )
        ctl.shutdown()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    ctl.run()
    return 0

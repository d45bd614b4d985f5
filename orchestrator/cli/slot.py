"""``switch``, ``status``, ``stop`` and ``up``: the slot's commands.

``switch`` and ``stop`` change the host, so they need the one writer. When a controller runs
(``up``), they ask it over ``<state dir>/control.sock`` and stream its progress; otherwise they
take the slot lock and do the same work in-process with the same ``Switcher``, and re-send a
route the frontdoor missed for a bounded time before exiting (non-zero if it never landed:
nobody re-sends it after this process). ``status`` only reads and never waits for the lock.

The state directory is found the same way from anywhere on the host: a running controller
container of this slot instance (``slot/discovery.py``) names its state mount; without one,
``MODEL_SLOT_STATE_DIR`` or the checkout's ``state/``. A CLI whose setting names another
directory than the running controller's is refused: it would fight that controller over the
one model container. Both ways live in ``control/writer.py``, which ``gate --switch`` uses
too.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from types import FrameType
from typing import Any

import httpx

from orchestrator import output
from orchestrator.cli import watchdog_status
from orchestrator.control import controller, writer
from orchestrator.control.writer import WriteResult
from orchestrator.errors import FrontdoorError, ModelSlotError, ProfileError
from orchestrator.progress import Progress, ProgressPrinter
from orchestrator.slot.facts import describe as facts_line


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


def _printer(as_json: bool) -> ProgressPrinter:
    """Progress as it happens: to stdout, or to stderr when stdout carries JSON."""
    return ProgressPrinter(sys.stderr if as_json else sys.stdout)


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


def _render_result(
    result: WriteResult, progress: Progress, as_json: bool, body: dict[str, Any]
) -> int:
    """Render how a ``switch``/``stop`` ended; ``body`` is the JSON when there is no report."""
    if result.by_controller:
        progress({"event": "step", "phase": "control", "text": "done by the running controller"})
    if as_json:
        out = dict(result.report) if result.report else body
        if not result.ok:
            out.setdefault("outcome", result.outcome or "error")
            if result.report is None or out.get("outcome") in (None, "running"):
                out["outcome"] = result.outcome or "error"
            out["error"] = result.error
        output.print_json(out)
    elif result.report:
        _print_report(result.report)
    if not result.ok:
        if not as_json:
            output.error(str(result.error))
        return 1
    return 0


# ---- commands -----------------------------------------------------------------------------
def cmd_switch(args: argparse.Namespace) -> int:
    progress = _printer(args.json)
    result = writer.switch(args.name, progress, force=bool(args.force))
    return _render_result(result, progress, args.json, {"action": "switch", "profile": args.name})


def cmd_stop(args: argparse.Namespace) -> int:
    as_json = bool(getattr(args, "json", False))
    progress = _printer(as_json)
    result = writer.stop(progress)
    return _render_result(result, progress, as_json, {"action": "stop", "profile": None})


def collect_status() -> dict[str, Any]:
    """Everything ``status`` shows, as one JSON-able dict. Reads only; takes no lock."""
    switcher = writer.switcher_from_env(strict=False)
    loaded = switcher.state.read()
    state = loaded.state
    status: dict[str, Any] = {
        "phase": state.phase.value,
        "reason": state.reason,
        "target": state.target,
        "state_dir": str(switcher.state.directory),
        "state_problem": loaded.problem,
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
        answer = controller.ask(switcher.state.directory, {"op": "status"}, lambda _: None)
    except ModelSlotError as exc:
        answer = {"error": str(exc)}
    status["controller"] = answer if answer is not None else "not running"
    running = isinstance(answer, dict) and bool(answer.get("controller"))
    status["watchdog"] = watchdog_status.collect(switcher.state.directory, running)
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
    phase = status["phase"]
    if status["target"] and phase == "switching":
        phase += f" to {status['target']}"
    print(f"slot:        {phase}" + (f"  ({status['reason']})" if status["reason"] else ""))
    if status["state_problem"]:
        print(
            f"WARNING:     {status['state_dir']}/slot.json is unreadable "
            f"({status['state_problem']}); the writer moves it aside at its next operation"
        )
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
    for line in watchdog_status.render(status["watchdog"]):
        print(line)
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
        writer.switcher_from_env(),
        default_profile=controller.Controller.default_profile_from_env(),
        backoff=controller.Backoff(
            base_s=writer.seconds_setting("MODEL_SLOT_RESTART_BACKOFF_S", 1.0)
        ),
    )

    def on_signal(signum: int, frame: FrameType | None) -> None:
        logging.getLogger("orchestrator.controller").info("signal %d: shutting down", signum)
        ctl.shutdown()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    ctl.run()
    return 0

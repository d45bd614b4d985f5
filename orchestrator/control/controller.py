"""The controller: ``python -m orchestrator up``, the long-running compose service.

It is the one writer while it runs: it takes the slot lock at start and keeps it. One thread,
the worker (``run``), owns every change to the slot; everything else sends it commands through
one queue and waits for the answer, as llama-swap's process does. Nothing here reads the state
and then acts on it from another thread: that would race.

- **Reconcile at start**, per phase (docs/slot.md): exactly one container for the *committed*
  profile, ready, route flipped; with no state, the one running container's profile if its
  labels still match, else ``MODEL_SLOT_DEFAULT_PROFILE``. A running container whose
  ``modelslot.profile-hash`` label matches is adopted, not recreated. Strays are removed. After
  ``stop``, a fault or a failed switch with nothing committed, nothing starts.
- **Watch**: Docker ``die`` events of this slot's containers arrive on the queue. An exit of the
  current container puts the route ``down`` and schedules a restart with backoff; a device fault
  in its log (``UR_RESULT_ERROR_DEVICE_LOST`` / ``..._OUT_OF_RESOURCES``) puts it ``faulted``
  instead, and nothing restarts until an operator switches (the lab's practice: do not hammer a
  lost device).
- **Control socket** ``$MODEL_SLOT_STATE_DIR/control.sock``: JSON lines. A request is one line,
  ``{"op": "switch", "profile": ..., "force": false}``, ``{"op": "stop"}`` or
  ``{"op": "status"}``; the answer is a stream of progress events and a final
  ``{"event": "result", "ok": ..., "report": ..., "error": ...}``. The CLI uses it when a
  controller runs, and does the same work in-process otherwise: both run ``Switcher``, the one
  writer of the slot's state (``state.Phase``); this module only decides *when* (reconcile,
  exits, backoff, faults) and never touches Docker but through the ``Slot`` Protocol.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from orchestrator.control.state import Phase
from orchestrator.control.switch import Switcher
from orchestrator.control.watchdog_hook import FAULT, RESTART, WatchdogHook
from orchestrator.errors import (
    ControlError,
    ModelSlotError,
    NotReadyError,
    ProfileError,
    SlotError,
    SwitchFailedError,
)
from orchestrator.profiles.store import Profile
from orchestrator.progress import Progress, ProgressEvent
from orchestrator.slot import facts as facts_mod
from orchestrator.slot.protocol import DieEvents

log = logging.getLogger("orchestrator.controller")  # the name operators grep for

SOCKET_NAME = "control.sock"
DEFAULT_PROFILE = "cpu-smollm2-135m"
#: How often a route the frontdoor missed is re-sent.
ROUTE_RETRY_S = 2.0


#: What the worker's queue carries.
Op = Literal["switch", "stop", "die", "tick", "shutdown", "watchdog-restart", "watchdog-fault"]


@dataclass
class Command:
    op: Op
    args: dict[str, Any] = field(default_factory=dict)
    reply: queue.Queue[dict[str, Any]] | None = None

    def send(self, event: dict[str, Any]) -> None:
        if self.reply is not None:
            self.reply.put(event)


@dataclass
class Backoff:
    base_s: float = 1.0
    max_s: float = 60.0
    stable_s: float = 300.0  # ran this long: the next exit starts from base again
    current_s: float = 0.0

    def next(self, ran_s: float | None) -> float:
        if ran_s is not None and ran_s >= self.stable_s:
            self.current_s = 0.0
        self.current_s = self.base_s if self.current_s == 0 else min(self.current_s * 2, self.max_s)
        return self.current_s


class Controller:
    def __init__(
        self,
        switcher: Switcher,
        default_profile: str = DEFAULT_PROFILE,
        backoff: Backoff | None = None,
    ) -> None:
        self.switcher = switcher
        self.slot = switcher.slot
        self.state_dir = switcher.state.directory
        self.default_profile = default_profile
        self.backoff = backoff or Backoff()
        self.commands: queue.Queue[Command] = queue.Queue()
        self.lock = switcher.lock
        self.lock.purpose = "controller (python -m orchestrator up)"
        self.socket_path = self.state_dir / SOCKET_NAME
        self._server: socket.socket | None = None
        self._events: DieEvents | None = None
        # The worker's timers. The slot's state itself lives in the Switcher (phase `down`
        # is what makes a restart due); these only say when.
        self._restart_at: float | None = None
        self._ready_at: float | None = None
        self._reconcile_due = False  # the boot reconcile failed: the timer runs it again
        self._stopping = threading.Event()
        self.ready = threading.Event()  # set once reconciled and listening (tests wait on it)
        # The watchdog's thread probes; its restarts and faults come back here as commands.
        self.watchdog = WatchdogHook(
            self.state_dir,
            switcher.frontdoor,
            lambda op, args: self.commands.put(Command(op, args)),
        )

    # ---- life ----------------------------------------------------------------------------
    @classmethod
    def default_profile_from_env(cls) -> str:
        return os.environ.get("MODEL_SLOT_DEFAULT_PROFILE", DEFAULT_PROFILE)

    def run(self, lock_wait_s: float = 3600.0) -> None:
        """Take the lock (waiting for an in-process switch to finish), reconcile, then serve
        commands and events until ``shutdown``."""
        log.info("waiting for the slot lock %s", self.lock.path)
        self.lock.acquire(wait_s=lock_wait_s)
        try:
            self._listen()
            self._watch_events()
            self._try_reconcile()
            self._sync_watchdog()
            self.watchdog.start()
            self.ready.set()
            self._loop()
            self._leave()
        finally:
            self.watchdog.stop()
            self._close()
            self.lock.release()

    def shutdown(self) -> None:
        """Ask the worker to stop (from a signal handler or a test). Leaves the model running:
        the next ``up`` adopts it."""
        self._stopping.set()
        self.commands.put(Command("shutdown"))

    def _leave(self) -> None:
        """On shutdown: keep the model for the next ``up`` to adopt, unless the whole compose
        stack is going down (its frontdoor already stopped: compose stops it first), where the
        model must go too, or the stack's network could not be removed."""
        project = os.environ.get("MODEL_SLOT_COMPOSE_PROJECT", "")
        if not project or os.environ.get("MODEL_SLOT_KEEP_MODEL_ON_DOWN", "0") == "1":
            return
        if self.slot.service_running(project, "frontdoor"):
            log.info("frontdoor still runs: leaving the model for the next controller to adopt")
            return
        log.info("the stack is going down: removing the model container (state kept)")
        profile = self._load(self.switcher.snapshot.current)
        self.slot.stop(profile.stop_timeout_s if profile else 30.0)

    def _close(self) -> None:
        if self._events is not None:
            with contextlib.suppress(Exception):
                self._events.close()
        if self._server is not None:
            with contextlib.suppress(OSError):
                self._server.close()
            with contextlib.suppress(OSError):
                self.socket_path.unlink()

    def _loop(self) -> None:
        while True:
            timeout = None
            if self._restart_at is not None:
                timeout = max(0.0, self._restart_at - time.monotonic())
            if self.switcher.route_pending:
                # The frontdoor missed a route (down or still starting): re-send it soon.
                timeout = min(timeout if timeout is not None else ROUTE_RETRY_S, ROUTE_RETRY_S)
            try:
                command = self.commands.get(timeout=timeout)
            except queue.Empty:
                command = Command("tick")
            if command.op == "shutdown":
                return
            try:
                self._handle(command)
            except Exception as exc:  # the worker must survive anything one command does
                log.exception("command %s failed", command.op)
                command.send({"event": "result", "ok": False, "error": f"{exc!r}"})
            self._sync_watchdog()

    def _handle(self, command: Command) -> None:
        if command.op == "tick":  # a timer is due: a restart, or a route to re-send
            if self._restart_at is not None and time.monotonic() >= self._restart_at:
                self._restart_at = None
                if self._reconcile_due:
                    self._try_reconcile()
                else:
                    self.restart_due()
            elif self.switcher.route_pending and self.switcher.publish().acked:
                log.info("route re-sent to the frontdoor")
        elif command.op == "switch":
            self._restart_at = None
            self.watchdog.unwatch("an operator's switch")
            self._op_switch(command)
        elif command.op == "stop":
            self._restart_at = None
            self._reconcile_due = False
            self.watchdog.unwatch("an operator's stop")
            self._op_stop(command)
        elif command.op == "die":
            self.container_exited(command.args)
        elif command.op == RESTART:
            self._watchdog_restart(command.args)
        elif command.op == FAULT:
            self._watchdog_fault(command.args)

    # ---- the watchdog (orchestrator/control/watchdog*.py) ----------------------------------
    def _sync_watchdog(self) -> None:
        """Watch the container exactly while it serves the committed profile."""
        state = self.switcher.snapshot
        info = self.slot.current() if state.phase is Phase.SERVING else None
        serving = (
            self._restart_at is None
            and info is not None
            and info.status == "running"
            and info.id == state.container_id
        )
        if not serving or info is None:
            self.watchdog.unwatch("no model serving")
            return
        if self.watchdog.watching(info.id):
            return
        profile = self._load(state.current)
        if profile is None:
            self.watchdog.unwatch("profile not loadable")
            return
        self.watchdog.watch(profile, self.slot.probe_url(profile, info), info.id)

    def _watchdog_restart(self, args: dict[str, Any]) -> None:
        """The watchdog found the serving container wedged (or degraded, where the profile asks
        for a restart then) and its budget allows one: restart the committed profile."""
        if not self.watchdog.is_current(args):
            log.info("watchdog restart for a container no longer served: dropped")
            return
        profile = self._load(self.switcher.snapshot.current)
        if profile is None:
            return
        reason = f"watchdog: {args.get('reason')}; restarting {profile.name}"
        self.watchdog.unwatch("watchdog restart")
        self.watchdog.restarting(profile.hash)
        # Route down first: new and held requests get 503 + Retry-After at once, and the stop
        # closes the active ones' upstream connections (the frontdoor answers them in-band).
        self.switcher.mark(Phase.DOWN, reason)
        self._start(profile, "watchdog-restart")

    def _watchdog_fault(self, args: dict[str, Any]) -> None:
        """The restart budget is spent: ``faulted`` (persisted), nothing restarts until an
        operator switches, as for a device fault."""
        if not self.watchdog.is_current(args):
            return
        reason = f"watchdog: {args.get('reason')}"
        log.error("%s; not restarting until an operator switches", reason)
        self.switcher.mark(Phase.FAULTED, reason)  # _sync_watchdog then unwatches
        self._restart_at = None

    # ---- reconcile -----------------------------------------------------------------------
    def _try_reconcile(self) -> None:
        """Reconcile; if the mechanism fails (e.g. a Docker engine too busy to answer in time),
        keep serving the CLI, say why in the route, and try again after a backoff."""
        self._reconcile_due = False
        try:
            self.reconcile()
        except ModelSlotError as exc:
            delay = self.backoff.next(None)
            log.exception("reconcile failed; trying again in %gs", delay)
            phase = self.switcher.snapshot.phase
            if phase is not Phase.SERVING:  # the phase stays: the retry must see what was
                self.switcher.mark(phase, f"reconcile failed: {exc}; retry in {delay:g}s")
            self._reconcile_due = True
            self._restart_at = time.monotonic() + delay

    def reconcile(self) -> None:
        """Boot, per phase (docs/slot.md): only the *committed* profile is ever started, and
        the default profile only on a fresh host."""
        state = self.switcher.load()
        phase = state.phase
        if phase is Phase.STOPPED or phase is Phase.STOPPING:
            log.info("the operator stopped the slot; reconcile removes strays only")
            if phase is Phase.STOPPING:
                self.switcher.stop(progress=_log_progress)  # finish the interrupted stop
            else:
                self.slot.stop(30.0)
                self.switcher.publish()
            return
        if phase is Phase.FAULTED:
            log.warning("slot faulted: %s; not restarting until an operator switches", state.reason)
            self.switcher.publish()
            return
        if phase is Phase.FAILED:
            log.warning("the last switch failed with nothing to restore: %s", state.reason)
            log.warning("starting nothing until an operator switches")
            self.switcher.publish()
            return
        if phase is Phase.EMPTY:  # a fresh host, or a state file that had to be moved aside
            name: str | None = self._running_profile() or self.default_profile
        else:  # serving, down, or starting/switching interrupted by a crash
            name = state.current
            if phase is Phase.SWITCHING:
                log.warning(
                    "a switch to %s was interrupted; bringing back the committed profile %s",
                    state.target,
                    name,
                )
        if name is None:
            reason = (
                f"the switch to {state.target} was interrupted before anything was committed; "
                "switch to start a model"
            )
            log.warning("%s", reason)
            self.switcher.mark(Phase.FAILED, reason)
            return
        profile = self._load(name)
        if profile is None:
            self.switcher.mark(Phase.DOWN, f"profile {name} cannot be loaded; switch to another")
            return
        infos = self.slot.containers()
        ours = [
            info
            for info in infos
            if info.name == self.slot.container_name
            and info.status == "running"
            and info.profile_hash == profile.hash
        ]
        if len(infos) == 1 and ours:
            log.info("adopting running container %s (%s)", ours[0].short_id, profile.name)
            try:
                report = self.switcher.adopt(profile, ours[0], _log_progress)
                self._ready_at = time.monotonic()
                log.info("adopted: %s", report.outcome)
                return
            except (NotReadyError, SlotError) as exc:
                log.warning("could not adopt %s: %s; recreating", ours[0].short_id, exc)
        self._start(profile, "boot")

    def _running_profile(self) -> str | None:
        """With no state: the profile of the one running container, if its labels name a
        profile that still resolves to the same hash (it is what this slot ran)."""
        infos = self.slot.containers()
        if len(infos) != 1 or infos[0].status != "running":
            return None
        profile = self._load(infos[0].profile)
        if profile is None or profile.hash != infos[0].profile_hash:
            return None
        log.warning("no slot state: adopting what runs, %s (%s)", profile.name, infos[0].short_id)
        return profile.name

    def _load(self, name: str | None) -> Profile | None:
        if not name:
            return None
        try:
            return self.switcher.store.load(name)
        except ProfileError as exc:
            log.error("profile %s: %s", name, exc)
            return None

    def _start(self, profile: Profile, action: str) -> bool:
        try:
            self.switcher.start(profile, action, _log_progress)
        except (NotReadyError, SlotError) as exc:
            tail = exc.log_tail if isinstance(exc, NotReadyError) else ""
            if self._fault_from(tail.splitlines() or self._log_lines()):
                return False
            delay = self.backoff.next(None)
            reason = f"{profile.name} failed to start: {exc}; retry in {delay:g}s"
            log.warning("%s", reason)
            self.switcher.mark(Phase.DOWN, reason)
            self._restart_at = time.monotonic() + delay
            return False
        self._ready_at = time.monotonic()
        return True

    # ---- events --------------------------------------------------------------------------
    def _watch_events(self) -> None:
        """Docker ``die`` events of this slot's containers, onto the worker's queue."""
        stream = self._events = self.slot.die_events()

        def pump() -> None:
            try:
                for event in stream:
                    self.commands.put(
                        Command("die", {"id": event.id, "exit_code": event.exit_code})
                    )
            except Exception:  # the stream is closed on shutdown
                if not self._stopping.is_set():
                    log.exception("docker event stream broke; shutting down")
                    self.shutdown()

        threading.Thread(target=pump, name="docker-events", daemon=True).start()

    def container_exited(self, event: dict[str, Any]) -> None:
        """A container exit: only the serving container's counts (docs/slot.md); the worker
        itself removes containers during switches, and their exits arrive here afterwards."""
        state = self.switcher.snapshot
        if state.phase is not Phase.SERVING or event.get("id") != state.container_id:
            return
        current = self.slot.current()
        if current is not None and current.id == state.container_id and current.status == "running":
            return
        if self._fault_from(self._log_lines()):
            return
        ran = time.monotonic() - self._ready_at if self._ready_at else None
        delay = self.backoff.next(ran)
        code = event.get("exit_code")
        reason = f"model container exited (code {code}); restarting in {delay:g}s"
        log.warning("%s", reason)
        self.switcher.mark(Phase.DOWN, reason)
        self._restart_at = time.monotonic() + delay

    def _log_lines(self) -> list[str]:
        return self.slot.logs(tail=200).splitlines()

    def _fault_from(self, lines: list[str]) -> bool:
        """A device fault in the log: route ``faulted``, remembered, no restart."""
        line = facts_mod.device_fault(lines)
        if line is None:
            return False
        reason = f"device fault: {line}"
        log.error("%s; not restarting until an operator switches", reason)
        self.switcher.mark(Phase.FAULTED, reason)
        self._restart_at = None
        return True

    def restart_due(self) -> None:
        state = self.switcher.snapshot
        if state.phase is not Phase.DOWN:
            return
        profile = self._load(state.current)
        if profile is None:
            return
        log.info("restarting %s", profile.name)
        self._start(profile, "restart")

    # ---- operator commands ---------------------------------------------------------------
    def _op_switch(self, command: Command) -> None:
        name = str(command.args.get("profile", ""))
        force = bool(command.args.get("force", False))
        try:
            report = self.switcher.switch(name, force=force, progress=_both(command.send))
        except SwitchFailedError as exc:
            command.send({"event": "result", "ok": False, "error": str(exc), "report": exc.report})
            return
        except ModelSlotError as exc:
            command.send(
                {"event": "result", "ok": False, "error": str(exc), "kind": type(exc).__name__}
            )
            return
        self._ready_at = time.monotonic()
        self.backoff.current_s = 0.0
        command.send({"event": "result", "ok": True, "report": report.to_json()})

    def _op_stop(self, command: Command) -> None:
        report = self.switcher.stop(progress=_both(command.send))
        command.send({"event": "result", "ok": True, "report": report.to_json()})

    # ---- control socket ------------------------------------------------------------------
    def _listen(self) -> None:
        # We hold the lock, so a socket file left here belongs to a dead controller.
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(self.socket_path))
        _share_with_docker_group(self.socket_path)
        server.listen(16)
        self._server = server
        threading.Thread(target=self._accept, args=(server,), name="control", daemon=True).start()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return  # closed on shutdown
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rwb") as stream:

            def send(event: dict[str, Any]) -> None:
                stream.write(json.dumps(event, default=str).encode() + b"\n")
                stream.flush()

            try:
                request = json.loads(stream.readline() or b"{}")
                op = request.get("op")
                if op == "status":
                    send(
                        {
                            "event": "result",
                            "ok": True,
                            "controller": True,
                            "pid": os.getpid(),
                            "queued": self.commands.qsize(),
                            "reconciled": self.ready.is_set(),
                        }
                    )
                    return
                if op not in ("switch", "stop"):
                    send({"event": "result", "ok": False, "error": f"unknown op {op!r}"})
                    return
                reply: queue.Queue[dict[str, Any]] = queue.Queue()
                if self.commands.qsize():
                    send({"event": "queued", "ahead": self.commands.qsize()})
                self.commands.put(Command(op, request, reply))
                while True:
                    event = reply.get()
                    send(event)
                    if event.get("event") == "result":
                        return
            except (OSError, ValueError) as exc:
                log.info("control connection ended: %r", exc)


def _share_with_docker_group(path: Path) -> None:
    """Whoever may use the Docker socket may drive the slot (it is root-equivalent anyway): give
    the control socket the Docker socket's group, mode 0660. Best effort."""
    try:
        gid = os.stat(os.environ.get("MODEL_SLOT_DOCKER_SOCKET", "/var/run/docker.sock")).st_gid
        os.chown(path, -1, gid)
    except OSError:
        pass
    with contextlib.suppress(OSError):
        os.chmod(path, 0o660)


def _both(send: Callable[[dict[str, Any]], None]) -> Progress:
    """Progress to the asking CLI and to the controller's own log."""

    def progress(event: ProgressEvent) -> None:
        _log_progress(event)
        send(dict(event))

    return progress


def _log_progress(event: ProgressEvent) -> None:
    if event.get("event") == "phase" and event.get("status") != "start":
        log.info(
            "%s %s %s %s",
            event.get("phase"),
            event.get("status"),
            event.get("duration_s"),
            event.get("detail") or event.get("failed") or "",
        )
    elif event.get("event") == "step":
        log.info("  %s: %s", event.get("phase"), event.get("text"))


# ---- the client side ---------------------------------------------------------------------
def ask(state_dir: Path, request: dict[str, Any], progress: Progress) -> dict[str, Any] | None:
    """Send one request to a running controller and stream its events to ``progress``.
    Returns the final result, or None when no controller listens (then do it in-process)."""
    path = state_dir / SOCKET_NAME
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        client.connect(str(path))
    except (FileNotFoundError, ConnectionRefusedError):
        client.close()
        return None
    except PermissionError:
        client.close()
        raise ControlError(
            f"a controller listens at {path} but this user may not talk to it: run as root or "
            "as a member of the Docker socket's group"
        ) from None
    except OSError as exc:
        client.close()
        raise ControlError(f"cannot connect to the controller at {path}: {exc}") from None
    op = request.get("op")
    try:
        with client, client.makefile("rwb") as stream:
            stream.write(json.dumps(request).encode() + b"\n")
            stream.flush()
            for line in stream:
                event = json.loads(line)
                if event.get("event") == "result":
                    return dict(event)
                progress(event)
    except (OSError, ValueError) as exc:
        raise ControlError(_gone(op, path, f"{type(exc).__name__}: {exc}")) from None
    raise ControlError(_gone(op, path, "it closed the control socket without a result"))


def _gone(op: object, path: Path, how: str) -> str:
    return (
        f"the controller at {path} went away before the {op} finished ({how}): it was killed "
        "or restarted. Its outcome is unknown here; when the controller runs again it brings "
        "back the last committed profile (an interrupted switch is not resumed). "
        "Check with `python -m orchestrator status`, then switch again if needed."
    )

"""The controller: ``python -m orchestrator up``, the long-running compose service.

It is the one writer while it runs: it takes the slot lock at start and keeps it. One thread,
the worker (``run``), owns every change to the slot; everything else sends it commands through
one queue and waits for the answer, as llama-swap's process does. Nothing here reads the state
and then acts on it from another thread: that would race.

- **Reconcile at start**: exactly one container for the persisted profile (or
  ``MODEL_SLOT_DEFAULT_PROFILE`` on a fresh host), ready, route flipped. A running container
  whose ``modelslot.profile-hash`` label matches is adopted, not recreated. Strays are removed.
- **Watch**: Docker ``die`` events of this slot's containers arrive on the queue. An exit of the
  current container puts the route ``down`` and schedules a restart with backoff; a device fault
  in its log (``UR_RESULT_ERROR_DEVICE_LOST`` / ``..._OUT_OF_RESOURCES``) puts it ``faulted``
  instead, and nothing restarts until an operator switches (the lab's practice: do not hammer a
  lost device).
- **Control socket** ``$MODEL_SLOT_STATE_DIR/control.sock``: JSON lines. A request is one line,
  ``{"op": "switch", "profile": ..., "force": false}``, ``{"op": "stop"}`` or
  ``{"op": "status"}``; the answer is a stream of progress events and a final
  ``{"event": "result", "ok": ..., "report": ..., "error": ...}``. The CLI uses it when a
  controller runs, and does the same work in-process otherwise: both run ``Switcher``.
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
from typing import Any

from orchestrator.control.lock import SlotLock
from orchestrator.control.switch import Switcher
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

log = logging.getLogger("orchestrator.controller")  # the name operators grep for

SOCKET_NAME = "control.sock"
DEFAULT_PROFILE = "cpu-smollm2-135m"
#: How often a route the frontdoor missed is re-sent.
ROUTE_RETRY_S = 2.0


@dataclass
class Command:
    op: str  # switch, stop, die, restart, shutdown
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
        self.lock = SlotLock(self.state_dir, "controller (python -m orchestrator up)")
        self.socket_path = self.state_dir / SOCKET_NAME
        self._server: socket.socket | None = None
        self._events: Any = None
        self._restart_at: float | None = None
        self._ready_at: float | None = None
        self._stopping = threading.Event()
        self.ready = threading.Event()  # set once reconciled and listening (tests wait on it)

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
            self._reconcile()
            self.ready.set()
            self._loop()
            self._leave()
        finally:
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
        running = self.slot.client.containers.list(
            sparse=True,
            filters={
                "label": [
                    f"com.docker.compose.project={project}",
                    "com.docker.compose.service=frontdoor",
                ]
            },
        )
        if running:
            log.info("frontdoor still runs: leaving the model for the next controller to adopt")
            return
        log.info("the stack is going down: removing the model container (state kept)")
        profile = self._load(self.switcher.state.load().current)
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
                if self._restart_at is not None and time.monotonic() >= self._restart_at:
                    self._restart_at = None
                    self._restart()
                elif self.switcher.route_pending and self.switcher.resend_route():
                    log.info("route re-sent to the frontdoor")
                continue
            if command.op == "shutdown":
                return
            try:
                self._handle(command)
            except Exception as exc:  # the worker must survive anything one command does
                log.exception("command %s failed", command.op)
                command.send({"event": "result", "ok": False, "error": f"{exc!r}"})

    def _handle(self, command: Command) -> None:
        if command.op == "switch":
            self._restart_at = None
            self._op_switch(command)
        elif command.op == "stop":
            self._restart_at = None
            self._op_stop(command)
        elif command.op == "die":
            self._on_die(command.args)

    # ---- reconcile -----------------------------------------------------------------------
    def _reconcile(self) -> None:
        state = self.switcher.state.load()
        if state.stopped:
            log.info("the operator stopped the slot; reconcile removes strays only")
            self.slot.stop(30.0)
            self.switcher.mark("down", "stopped by the operator; switch to start a model", None)
            return
        if state.fault:
            log.warning("slot faulted: %s; not restarting until an operator switches", state.fault)
            profile = self._load(state.current)
            self.switcher.mark("faulted", state.fault, profile)
            return
        name = state.current or (None if self.switcher.state.exists() else self.default_profile)
        name = name or self.default_profile
        profile = self._load(name)
        if profile is None:
            self.switcher.mark("down", f"profile {name} cannot be loaded; switch to another", None)
            return
        infos = self.slot.containers()
        ours = [
            info
            for info in infos
            if info.name == self.slot.config.container_name
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
            if self._fault_from(tail.splitlines() or self._log_lines(), profile):
                return False
            delay = self.backoff.next(None)
            self.switcher.mark(
                "down", f"{profile.name} failed to start: {exc}; retry in {delay:g}s", profile
            )
            self._restart_at = time.monotonic() + delay
            return False
        self._ready_at = time.monotonic()
        return True

    # ---- events --------------------------------------------------------------------------
    def _watch_events(self) -> None:
        """Docker ``die`` events of this slot's containers, onto the worker's queue."""
        self._events = self.slot.client.events(
            decode=True,
            filters={"type": "container", "event": ["die"], "label": self.slot.labels_filter()},
        )
        stream = self._events

        def pump() -> None:
            try:
                for event in stream:
                    actor = event.get("Actor") or {}
                    self.commands.put(
                        Command(
                            "die",
                            {
                                "id": event.get("id") or actor.get("ID"),
                                "exit_code": (actor.get("Attributes") or {}).get("exitCode"),
                            },
                        )
                    )
            except Exception:  # the stream is closed on shutdown
                if not self._stopping.is_set():
                    log.exception("docker event stream broke; shutting down")
                    self.shutdown()

        threading.Thread(target=pump, name="docker-events", daemon=True).start()

    def _on_die(self, event: dict[str, Any]) -> None:
        state = self.switcher.state.load()
        if not state.container_id or event.get("id") != state.container_id:
            return  # an old container this worker stopped itself
        current = self.slot.current()
        if current is not None and current.id == state.container_id and current.status == "running":
            return
        profile = self._load(state.current)
        lines = self._log_lines()
        if self._fault_from(lines, profile):
            return
        ran = time.monotonic() - self._ready_at if self._ready_at else None
        delay = self.backoff.next(ran)
        code = event.get("exit_code")
        reason = f"model container exited (code {code}); restarting in {delay:g}s"
        log.warning("%s", reason)
        self.switcher.mark("down", reason, profile)
        self._restart_at = time.monotonic() + delay

    def _log_lines(self) -> list[str]:
        return self.slot.logs(tail=200).splitlines()

    def _fault_from(self, lines: list[str], profile: Profile | None) -> bool:
        """A device fault in the log: route ``faulted``, remembered, no restart."""
        line = facts_mod.device_fault(lines)
        if line is None:
            return False
        reason = f"device fault: {line}"
        log.error("%s; not restarting until an operator switches", reason)
        self.switcher.mark("faulted", reason, profile)
        state = self.switcher.state.load()
        state.fault = reason
        self.switcher.state.save(state)
        self._restart_at = None
        return True

    def _restart(self) -> None:
        state = self.switcher.state.load()
        if state.fault or state.stopped:
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
    with client, client.makefile("rwb") as stream:
        stream.write(json.dumps(request).encode() + b"\n")
        stream.flush()
        for line in stream:
            event = json.loads(line)
            if event.get("event") == "result":
                return dict(event)
            progress(event)
    raise ControlError("the controller closed the control socket without a result")

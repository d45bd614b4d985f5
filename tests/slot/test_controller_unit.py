"""The controller's worker, control socket and backoff against the fake slot (no Docker)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.control import controller, switch
from orchestrator.control.controller import Backoff, Command, Controller
from orchestrator.control.frontdoor_client import FrontdoorClient
from orchestrator.control.lock import SlotLock
from orchestrator.control.state import Phase
from orchestrator.control.watchdog_hook import FAULT, RESTART, WatchdogOp
from orchestrator.errors import BusyError, ControlError, SlotError
from orchestrator.profiles.store import Profile
from orchestrator.progress import ProgressEvent
from orchestrator.slot.protocol import ContainerInfo, OnStep
from tests.slot.conftest import ADMIN_TOKEN, Frontdoor
from tests.slot.fakes import FakeSlot
from tests.slot.test_switch_policy import make_switcher
from tests.support import wait_until


def boot(
    tmp_path: Path, profiles_dir: Path, fake: FakeSlot, frontdoor: Frontdoor
) -> tuple[Controller, threading.Thread]:
    """A controller on the fake slot, reconciled and listening, on its own thread."""
    ctl = Controller(
        make_switcher(tmp_path, profiles_dir, fake, frontdoor.client()),
        default_profile="cpu-tiny",
        backoff=Backoff(base_s=0.05, max_s=0.2),
    )
    thread = threading.Thread(target=ctl.run, daemon=True)
    thread.start()
    assert ctl.ready.wait(10)
    return ctl, thread


@pytest.fixture
def running(
    tmp_path: Path, profiles_dir: Path, frontdoor: Frontdoor
) -> Iterator[tuple[Controller, FakeSlot]]:
    fake = FakeSlot()
    ctl, thread = boot(tmp_path, profiles_dir, fake, frontdoor)
    yield ctl, fake
    ctl.shutdown()
    thread.join(10)
    assert not thread.is_alive()


def test_fresh_host_starts_the_default_profile_and_holds_the_lock(
    running: tuple[Controller, FakeSlot], tmp_path: Path, frontdoor: Frontdoor
) -> None:
    ctl, fake = running
    assert fake.calls == ["stop", "create cpu-tiny", "ready cpu-tiny"]
    assert frontdoor.route()["state"] == "serving"
    with pytest.raises(BusyError, match="controller"):
        SlotLock(ctl.state_dir, "switch").acquire()


def test_cli_requests_go_through_the_socket_with_progress(
    running: tuple[Controller, FakeSlot], frontdoor: Frontdoor
) -> None:
    ctl, fake = running
    events: list[ProgressEvent] = []
    result = controller.ask(
        ctl.state_dir,
        {"op": "switch", "profile": "cpu-smollm2-135m", "force": False},
        events.append,
    )
    assert result is not None
    assert result["ok"] is True
    assert result["report"]["outcome"] == "switched"
    assert "ready" in [e.get("phase") for e in events]
    assert frontdoor.route()["profile"]["name"] == "cpu-smollm2-135m"

    refused = controller.ask(
        ctl.state_dir, {"op": "switch", "profile": "test-rejected", "force": False}, events.append
    )
    assert refused is not None
    assert refused["ok"] is False
    assert "need --force" in refused["error"]

    stopped = controller.ask(ctl.state_dir, {"op": "stop"}, events.append)
    assert stopped is not None
    assert stopped["report"]["outcome"] == "stopped"
    assert fake.running is None
    assert frontdoor.route()["state"] == "down"


def test_an_exit_puts_the_route_down_and_restarts(
    running: tuple[Controller, FakeSlot], frontdoor: Frontdoor
) -> None:
    _ctl, fake = running
    before = fake.running
    assert before is not None
    fake.die()
    wait_until(lambda: fake.running is not None and fake.running.id != before.id, 10, "a restart")
    wait_until(lambda: frontdoor.route()["state"] == "serving", 10, "the route back")


def test_no_controller_means_no_answer(tmp_path: Path) -> None:
    assert controller.ask(tmp_path, {"op": "status"}, lambda _: None) is None


def test_backoff_doubles_to_a_cap_and_resets_after_a_stable_run() -> None:
    backoff = Backoff(base_s=1, max_s=8, stable_s=300)
    assert [backoff.next(1) for _ in range(5)] == [1, 2, 4, 8, 8]
    assert backoff.next(600) == 1


def test_a_frontdoor_that_comes_up_late_gets_the_route(tmp_path: Path, profiles_dir: Path) -> None:
    """At boot compose starts the frontdoor after the controller: the route is re-sent."""
    admin = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    admin.bind(("127.0.0.1", 0))  # reserved, not listening yet: connections are refused
    late = FrontdoorClient(f"http://127.0.0.1:{admin.getsockname()[1]}", ADMIN_TOKEN)
    ctl = Controller(
        make_switcher(tmp_path, profiles_dir, FakeSlot(), late), default_profile="cpu-tiny"
    )
    thread = threading.Thread(target=ctl.run, daemon=True)
    thread.start()
    try:
        assert ctl.ready.wait(switch.ANNOUNCE_WAIT_S + 10)
        assert ctl.switcher.route_pending
        admin.listen(64)
        admin.setblocking(False)
        frontdoor = Frontdoor(tmp_path / "fd", admin=admin)
        try:
            wait_until(lambda: frontdoor.route()["state"] == "serving", 10, "the re-sent route")
            assert frontdoor.route()["profile"]["name"] == "cpu-tiny"
        finally:
            frontdoor.stop()
    finally:
        ctl.shutdown()
        thread.join(10)
        admin.close()


def test_boot_routes_switching_while_the_model_starts_not_a_stale_serving_route(
    tmp_path: Path, profiles_dir: Path, frontdoor: Frontdoor
) -> None:
    """After a reboot the frontdoor restores its last route, whose container is gone: the
    controller must say `switching` before it waits for the new model, or requests get 502."""
    client = frontdoor.client()
    client.put_route({"upstream": "http://127.0.0.1:9", "state": "serving", "reason": None})
    seen: list[str] = []

    class Watching(FakeSlot):
        def wait_ready(
            self, profile: Profile, timeout_s: float | None = None, on_step: OnStep | None = None
        ) -> None:
            seen.append(frontdoor.route()["state"])
            super().wait_ready(profile, timeout_s, on_step)

    ctl = Controller(
        make_switcher(tmp_path, profiles_dir, Watching(), client), default_profile="cpu-tiny"
    )
    thread = threading.Thread(target=ctl.run, daemon=True)
    thread.start()
    try:
        assert ctl.ready.wait(10)
        assert seen == ["switching"]
        assert frontdoor.route()["state"] == "serving"
    finally:
        ctl.shutdown()
        thread.join(10)


def test_a_controller_that_dies_mid_switch_is_reported_not_waited_for(tmp_path: Path) -> None:
    """kill -9 of the controller closes its socket: the waiting CLI must say so and stop."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(tmp_path / controller.SOCKET_NAME))
    server.listen(1)

    def die_after_one_event() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(4096)
            conn.sendall(b'{"event": "phase", "phase": "ready", "status": "start"}\n{"ev')

    thread = threading.Thread(target=die_after_one_event, daemon=True)
    thread.start()
    events: list[ProgressEvent] = []
    try:
        with pytest.raises(ControlError, match="went away before the switch finished") as gone:
            controller.ask(tmp_path, {"op": "switch", "profile": "cpu-tiny"}, events.append)
    finally:
        thread.join(5)
        server.close()
    assert events == [{"event": "phase", "phase": "ready", "status": "start"}]
    assert "status" in str(gone.value)


def test_a_docker_engine_that_fails_at_boot_is_retried_not_fatal(
    tmp_path: Path, profiles_dir: Path, frontdoor: Frontdoor
) -> None:
    """Seen on a loaded host: the engine did not answer in time during the boot reconcile and
    the controller died. It must keep serving the CLI, say why, and try again."""
    seen: list[str] = []

    class BusyEngine(FakeSlot):
        def containers(self) -> list[ContainerInfo]:
            if not seen:
                seen.append(frontdoor.route()["state"])
                raise SlotError("the Docker engine failed during containers: ReadTimeout")
            return super().containers()

    ctl = Controller(
        make_switcher(tmp_path, profiles_dir, BusyEngine(), frontdoor.client()),
        default_profile="cpu-tiny",
        backoff=Backoff(base_s=0.05),
    )
    thread = threading.Thread(target=ctl.run, daemon=True)
    thread.start()
    try:
        assert ctl.ready.wait(10)
        wait_until(lambda: frontdoor.route()["state"] == "serving", 10, "the retried reconcile")
        assert frontdoor.route()["profile"]["name"] == "cpu-tiny"
    finally:
        ctl.shutdown()
        thread.join(10)


# ---- the watchdog's verdicts reach the slot through the controller (issue 13 on issue 10) ----
def _watchdog_command(ctl: Controller, op: WatchdogOp, container_id: str) -> None:
    ctl.commands.put(
        Command(op, {"reason": "wedged: probe silent 30s", "container_id": container_id})
    )


def _barrier(ctl: Controller) -> None:
    """Wait until the worker has handled everything queued before: one worker, FIFO, so the
    answer to a request queued behind them (a switch to no profile, refused) comes after."""
    answer = controller.ask(ctl.state_dir, {"op": "switch", "profile": "no-such"}, lambda _: None)
    assert answer is not None and answer["ok"] is False


def test_the_watchdog_watches_the_serving_container_only(
    running: tuple[Controller, FakeSlot],
) -> None:
    ctl, fake = running
    serving = fake.running
    assert serving is not None
    wait_until(lambda: ctl.watchdog.watching(serving.id), 10, "the watchdog armed")
    stopped = controller.ask(ctl.state_dir, {"op": "stop"}, lambda _: None)
    assert stopped is not None and stopped["ok"]
    assert not ctl.watchdog.watching(serving.id)  # unwatched before the stop began


def test_a_watchdog_restart_brings_the_same_profile_back_on_a_new_container(
    running: tuple[Controller, FakeSlot], frontdoor: Frontdoor
) -> None:
    ctl, fake = running
    before = fake.running
    assert before is not None
    wait_until(lambda: ctl.watchdog.watching(before.id), 10, "the watchdog armed")
    _watchdog_command(ctl, RESTART, before.id)
    wait_until(lambda: fake.running is not None and fake.running.id != before.id, 10, "restart")
    wait_until(lambda: frontdoor.route()["state"] == "serving", 10, "the route back")
    assert fake.running is not None and fake.running.profile == before.profile
    assert fake.calls[-3:] == ["stop", f"create {before.profile}", f"ready {before.profile}"]
    after = fake.running
    wait_until(lambda: ctl.watchdog.watching(after.id), 10, "watching the new one")
    assert ctl.switcher.snapshot.phase is Phase.SERVING


def test_a_stale_watchdog_command_is_dropped(
    running: tuple[Controller, FakeSlot], frontdoor: Frontdoor
) -> None:
    """A verdict about a container a switch already replaced must not touch the new one."""
    ctl, fake = running
    before = fake.running
    assert before is not None
    calls = len(fake.calls)
    _watchdog_command(ctl, RESTART, "not-the-serving-container")
    _watchdog_command(ctl, FAULT, "not-the-serving-container")
    _barrier(ctl)
    assert fake.running is not None and fake.running.id == before.id
    assert len(fake.calls) == calls
    assert frontdoor.route()["state"] == "serving"


def test_a_spent_budget_faults_the_slot_and_nothing_restarts_it(
    tmp_path: Path, profiles_dir: Path, frontdoor: Frontdoor
) -> None:
    """The watchdog's fault is persisted like a device fault: a new controller (a reboot)
    starts nothing until an operator switches."""
    fake = FakeSlot()
    ctl, thread = boot(tmp_path, profiles_dir, fake, frontdoor)
    try:
        serving = fake.running
        assert serving is not None
        wait_until(lambda: ctl.watchdog.watching(serving.id), 10, "the watchdog armed")
        _watchdog_command(ctl, FAULT, serving.id)
        wait_until(lambda: frontdoor.route()["state"] == "faulted", 10, "the route faulted")
        assert "watchdog: wedged" in frontdoor.route()["reason"]
        assert ctl.switcher.snapshot.phase is Phase.FAULTED
        assert not ctl.watchdog.watching(serving.id)
        fake.die()  # an exit while faulted restarts nothing
        _barrier(ctl)
        assert fake.calls.count("create cpu-tiny") == 1
    finally:
        ctl.shutdown()
        thread.join(10)
    calls = len(fake.calls)
    ctl, thread = boot(tmp_path, profiles_dir, fake, frontdoor)
    try:
        assert ctl.switcher.snapshot.phase is Phase.FAULTED
        assert [c for c in fake.calls[calls:] if c.startswith("create")] == []
        assert frontdoor.route()["state"] == "faulted"
    finally:
        ctl.shutdown()
        thread.join(10)

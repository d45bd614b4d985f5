"""The controller's worker, control socket and backoff against the fake slot (no Docker)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.control import controller, switch
from orchestrator.control.controller import Backoff, Controller
from orchestrator.control.frontdoor_client import FrontdoorClient
from orchestrator.control.lock import SlotLock
from orchestrator.errors import BusyError
from orchestrator.progress import ProgressEvent
from tests.slot.conftest import ADMIN_TOKEN, Frontdoor
from tests.slot.fakes import FakeSlot
from tests.slot.test_switch_policy import make_switcher
from tests.support import wait_until


@pytest.fixture
def running(
    tmp_path: Path, profiles_dir: Path, frontdoor: Frontdoor
) -> Iterator[tuple[Controller, FakeSlot]]:
    fake = FakeSlot()
    ctl = Controller(
        make_switcher(tmp_path, profiles_dir, fake, frontdoor.client()),
        default_profile="cpu-tiny",
        backoff=Backoff(base_s=0.05, max_s=0.2),
    )
    thread = threading.Thread(target=ctl.run, daemon=True)
    thread.start()
    assert ctl.ready.wait(10)
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
            self, profile: Any, timeout_s: float | None = None, on_step: Any = None
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

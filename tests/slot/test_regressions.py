"""Regression tests, one per bug of issue 10, each named for the failure it catches.

They run the policy against the fake slot and the real frontdoor (no Docker, no vLLM); the
frontdoor's failures are injected at the client, the one seam the orchestrator talks through.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from orchestrator.cli import slot as slot_cli
from orchestrator.config import Paths
from orchestrator.control import writer
from orchestrator.control.controller import Controller
from orchestrator.control.frontdoor_client import FrontdoorClient
from orchestrator.control.state import StateStore
from orchestrator.control.switch import Switcher
from orchestrator.errors import FrontdoorError, ModelSlotError, SwitchFailedError
from tests.slot.conftest import ADMIN_TOKEN, Frontdoor
from tests.slot.fakes import FakeSlot
from tests.slot.test_switch_policy import make_switcher


class DrainFails(FrontdoorClient):
    """The frontdoor froze during the drain (seen live: ``docker pause`` for 45 s)."""

    def drain(self, timeout_s: float) -> dict[str, Any]:
        raise FrontdoorError(f"frontdoor admin POST {self.base_url}/admin/drain: ReadTimeout")


class ServingRouteFails(FrontdoorClient):
    """The frontdoor takes every route but ``serving``: the final flip never lands."""

    def __init__(self, base_url: str, token: str) -> None:
        super().__init__(base_url, token)
        self.serving_attempts = 0

    def put_route(self, route: dict[str, Any]) -> dict[str, Any]:
        if route["state"] == "serving":
            self.serving_attempts += 1
            raise FrontdoorError(f"frontdoor admin PUT {self.base_url}/admin/route: ReadTimeout")
        return super().put_route(route)


def test_a_failed_drain_does_not_leave_the_route_switching(
    tmp_path: Path, profiles_dir: Path, frontdoor: Frontdoor
) -> None:
    fake = FakeSlot()
    switcher = make_switcher(
        tmp_path, profiles_dir, fake, DrainFails(frontdoor.admin_url, ADMIN_TOKEN)
    )
    switcher.switch("cpu-smollm2-135m")  # nothing runs yet: no drain
    before = fake.running
    assert before is not None

    with pytest.raises(SwitchFailedError) as failed:
        switcher.switch("cpu-tiny")

    report = failed.value.report
    assert report["outcome"] == "aborted"
    assert "drain" in str(report["error"])
    assert "cpu-smollm2-135m still serves" in str(failed.value)
    assert fake.running == before  # the old model was never touched
    route = frontdoor.route()
    assert route["state"] == "serving"
    assert route["profile"]["name"] == "cpu-smollm2-135m"
    assert switcher.state.load().current == "cpu-smollm2-135m"


def test_switch_without_a_controller_exits_non_zero_when_the_final_flip_is_not_acknowledged(
    tmp_path: Path,
    profiles_dir: Path,
    frontdoor: Frontdoor,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    client = ServingRouteFails(frontdoor.admin_url, ADMIN_TOKEN)
    switcher = make_switcher(tmp_path, profiles_dir, FakeSlot(), client)
    switcher.route_ack_timeout_s = 1.0
    monkeypatch.setenv("MODEL_SLOT_STATE_DIR", str(switcher.state.directory))

    def configured(paths: Paths | None = None, *, strict: bool = True) -> Switcher:
        return switcher

    monkeypatch.setattr(writer, "switcher_from_env", configured)

    code = slot_cli.cmd_switch(argparse.Namespace(name="cpu-tiny", force=False, json=True))

    body = json.loads(capsys.readouterr().out)
    assert code == 1
    assert client.serving_attempts > 1  # re-sent until the bound, not sent once and forgotten
    assert "not acknowledged" in str(body["error"])
    assert "cpu-tiny" in str(body["error"])
    assert frontdoor.route()["state"] == "switching"  # what the frontdoor really says


def test_status_reading_a_corrupt_state_file_does_not_move_it(tmp_path: Path) -> None:
    (tmp_path / "slot.json").write_text("{half a file")
    state = StateStore(tmp_path).load()
    assert state.current is None
    assert (tmp_path / "slot.json").read_text() == "{half a file"
    assert not (tmp_path / "slot.json.bad").exists()


def test_a_corrupt_state_file_is_moved_aside_by_the_writer_with_a_warning(
    tmp_path: Path, profiles_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    switcher = make_switcher(tmp_path, profiles_dir, FakeSlot(), None)
    path = switcher.state.path
    path.parent.mkdir(parents=True)
    path.write_text("{half a file")

    with caplog.at_level(logging.WARNING):
        switcher.switch("cpu-tiny")

    aside = path.with_name("slot.json.bad")
    assert aside.read_text() == "{half a file"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(path) in w and str(aside) in w for w in warnings), warnings
    assert switcher.state.load().current == "cpu-tiny"


def test_up_after_a_failed_first_switch_starts_nothing_and_says_why(
    tmp_path: Path, profiles_dir: Path, frontdoor: Frontdoor
) -> None:
    fake = FakeSlot(fail_ready={"test-exits"})
    first = make_switcher(tmp_path, profiles_dir, fake, frontdoor.client())
    with pytest.raises(SwitchFailedError):
        first.switch("test-exits")  # a fresh host, no controller: nothing to roll back to
    fake.calls.clear()

    ctl = Controller(
        make_switcher(tmp_path, profiles_dir, fake, frontdoor.client()),
        default_profile="cpu-tiny",
    )
    thread = threading.Thread(target=ctl.run, daemon=True)
    thread.start()
    try:
        assert ctl.ready.wait(10)
        assert [call for call in fake.calls if call.startswith("create")] == []
        route = frontdoor.route()
        assert route["state"] == "down"
        assert "test-exits" in str(route["reason"])
    finally:
        ctl.shutdown()
        thread.join(10)


def test_the_state_dir_does_not_depend_on_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = []
    for cwd in (tmp_path, Path("/")):
        monkeypatch.chdir(cwd)
        seen.append(Paths.from_env({}).state_dir)
    assert seen[0] == seen[1]
    assert seen[0].is_absolute()
    assert os.fspath(seen[0]) != "state"


def test_a_relative_state_dir_setting_is_refused() -> None:
    with pytest.raises(ModelSlotError, match="MODEL_SLOT_STATE_DIR=state is relative"):
        Paths.from_env({"MODEL_SLOT_STATE_DIR": "state"})

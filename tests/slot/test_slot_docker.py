"""The slot with real Docker, real vLLM CPU containers and the real frontdoor.

One slot instance serves the whole module, in order, because a vLLM start costs ~40 s on the
CI box: each test starts from whatever the previous one left and says what it expects. The
switch tests drive ``python -m orchestrator`` as subprocesses, the way an operator does; the
controller tests run ``python -m orchestrator up`` as a subprocess too.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import httpx
import openai
import pytest

from orchestrator.control import controller
from orchestrator.control.state import StateStore
from tests.slot.conftest import REPO, Frontdoor, SlotUnderTest
from tests.support import wait_until

pytestmark = [pytest.mark.docker, pytest.mark.vllm]

A, A_SERVED = "cpu-tiny", "tiny-llama"
B, B_SERVED = "cpu-smollm2-135m", "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def fd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Frontdoor]:
    running = Frontdoor(tmp_path_factory.mktemp("frontdoor") / "state")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def slot(module_slot: SlotUnderTest, fd: Frontdoor) -> SlotUnderTest:
    module_slot.with_frontdoor(fd)
    return module_slot


def served_via_frontdoor(fd: Frontdoor) -> list[str]:
    with openai.OpenAI(base_url=f"{fd.url}/v1", api_key="unused", max_retries=0) as client:
        return [model.id for model in client.models.list().data]


def the_one_container(slot: SlotUnderTest) -> Any:
    containers = slot.labelled()
    assert len(containers) == 1, [c.name for c in containers]
    return containers[0]


def switch(slot: SlotUnderTest, name: str, *extra: str) -> tuple[int, dict[str, Any]]:
    return slot.cli_json("switch", name, *extra)


# ---- switching ----------------------------------------------------------------------------
def test_switch_a_b_a_serves_the_right_model_each_time(slot: SlotUnderTest, fd: Frontdoor) -> None:
    for name, served in ((A, A_SERVED), (B, B_SERVED), (A, A_SERVED)):
        code, report = switch(slot, name)
        assert code == 0, report
        assert report["outcome"] == "switched"
        assert served_via_frontdoor(fd) == [served]
        route = fd.route()
        assert route["state"] == "serving"
        assert route["profile"]["name"] == name
        assert route["startup_facts"].get("kv_cache_tokens", 0) > 0, route["startup_facts"]
        container = the_one_container(slot)
        assert container.labels["modelslot.profile"] == name
        assert container.id == report["container_id"]
    assert report["previous"] == B


def test_status_shows_profile_container_route_and_facts(slot: SlotUnderTest) -> None:
    done = slot.cli("status", "--json")
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert status["current"] == A
    assert status["previous"] == B
    assert status["container"]["status"] == "running"
    assert status["container"]["matches_profile"] is True
    assert status["health"].startswith("200")
    assert status["route"]["state"] == "serving"
    assert status["startup_facts"]["kv_cache_tokens"] > 0
    assert status["last_switch"]["outcome"] == "switched"
    assert status["controller"] == "not running"
    human = slot.cli("status")
    assert f"profile:     {A}" in human.stdout


def test_missing_model_dir_is_refused_and_the_old_container_untouched(slot: SlotUnderTest) -> None:
    before = the_one_container(slot).id
    code, report = switch(slot, "test-missing-model")
    assert code == 1
    assert report["outcome"] == "refused"
    assert "does not exist" in report["error"]
    assert the_one_container(slot).id == before
    assert slot.cli("status", "--json").returncode == 0


def test_rejected_profile_is_refused_without_force(slot: SlotUnderTest) -> None:
    before = the_one_container(slot).id
    code, report = switch(slot, "test-rejected")
    assert code == 1
    assert report["outcome"] == "refused"
    assert "need --force" in report["error"]
    assert the_one_container(slot).id == before


def test_profile_that_exits_is_rolled_back_and_the_previous_answers(
    slot: SlotUnderTest, fd: Frontdoor
) -> None:
    before = the_one_container(slot).id
    done = slot.cli("switch", "test-exits")
    assert done.returncode == 1
    assert "exited during startup" in done.stderr + done.stdout
    assert "modelslot-no-such-flag" in done.stdout  # the new container's last log lines
    state = StateStore(slot.state_dir).load()
    assert state.current == A
    assert state.last_switch is not None
    assert state.last_switch["outcome"] == "rolled-back"
    restored = the_one_container(slot)
    assert restored.id != before  # a fresh container of the previous profile, checked again
    assert restored.labels["modelslot.profile"] == A
    assert served_via_frontdoor(fd) == [A_SERVED]
    assert fd.route()["state"] == "serving"


def test_racing_switches_never_make_two_containers(slot: SlotUnderTest, fd: Frontdoor) -> None:
    if StateStore(slot.state_dir).load().current != A:  # run alone (-k): A runs, B is the target
        assert switch(slot, A)[0] == 0
    before = the_one_container(slot).id
    counts: list[int] = []
    done = threading.Event()

    def sample() -> None:
        # The low-level list: one API call, no per-container inspect that could race a removal.
        client = docker.from_env()
        label = f"modelslot.instance={slot.instance}"
        while not done.is_set():
            counts.append(len(client.api.containers(all=True, filters={"label": [label]})))
        client.close()

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    racers = [
        subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "switch", name, "--json"],
            env=slot.env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in (B, B, B, B)  # B is not running: the winner really stops and creates
    ]
    outcomes = []
    for racer in racers:
        out, _ = racer.communicate(timeout=600)
        outcomes.append((racer.returncode, json.loads(out)["outcome"]))
    done.set()
    sampler.join(10)

    assert max(counts) <= 1, "two model containers existed at once"
    assert len(counts) > 50, "the sampler did not sample"
    for code, outcome in outcomes:  # every switch ends with a clear outcome
        assert (code, outcome) in ((0, "switched"), (0, "unchanged"), (1, "busy")), outcomes
    assert [outcome for _, outcome in outcomes].count("switched") == 1, outcomes
    after = the_one_container(slot)
    assert after.id != before  # the old container really went and a new one came
    assert after.labels["modelslot.profile"] == B
    assert StateStore(slot.state_dir).load().current == B
    assert served_via_frontdoor(fd) == [B_SERVED]


# ---- the controller -----------------------------------------------------------------------
class Controller:
    def __init__(self, slot: SlotUnderTest, log_path: Path) -> None:
        self.slot = slot
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**self.slot.env, "MODEL_SLOT_DEFAULT_PROFILE": A}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "orchestrator", "up"],
                env=env,
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until(self.reconciled, 300, "the controller to reconcile")

    def reconciled(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"controller exited:\n{self.log_path.read_text()[-3000:]}")
        answer = controller.ask(self.slot.state_dir, {"op": "status"}, lambda _: None)
        return bool(answer and answer.get("reconciled"))

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(60)
        self.proc = None

    def log(self) -> str:
        return self.log_path.read_text()


@pytest.fixture(scope="module")
def ctl(slot: SlotUnderTest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Controller]:
    running = Controller(slot, tmp_path_factory.mktemp("controller") / "controller.log")
    yield running
    running.stop()


def test_controller_adopts_the_running_container(
    slot: SlotUnderTest, fd: Frontdoor, ctl: Controller
) -> None:
    before = the_one_container(slot).id
    ctl.start()
    assert the_one_container(slot).id == before
    assert "adopting running container" in ctl.log()
    assert fd.route()["state"] == "serving"
    status = json.loads(slot.cli("status", "--json").stdout)
    assert status["controller"]["controller"] is True


def test_killed_container_route_goes_down_and_the_controller_recovers(
    slot: SlotUnderTest, fd: Frontdoor, ctl: Controller
) -> None:
    victim = the_one_container(slot)
    served = json.loads(slot.cli("status", "--json").stdout)["profile"]["name"]
    try:
        victim.kill()
    except docker.errors.APIError as exc:
        # Docker 20.10 answers 500 "PID ... is zombie" when vLLM's PID 1 died at once but its
        # engine processes take longer than 2 s to be torn down: the kill was delivered.
        if "zombie" not in str(exc):
            raise
    down = wait_until(
        lambda: fd.route() if fd.route()["state"] == "down" else None, 60, "route down"
    )
    assert "exited" in down["reason"]
    wait_until(
        lambda: fd.route()["state"] == "serving", 300, "the controller to bring the model back"
    )
    recovered = the_one_container(slot)
    assert recovered.id != victim.id
    assert recovered.labels["modelslot.profile"] == served
    assert served_via_frontdoor(fd) == [B_SERVED if served == B else A_SERVED]


def test_controller_restart_adopts_instead_of_recreating(
    slot: SlotUnderTest, ctl: Controller
) -> None:
    before = the_one_container(slot).id
    ctl.stop()
    assert the_one_container(slot).id == before  # the model outlives its controller
    ctl.start()
    assert the_one_container(slot).id == before
    assert the_one_container(slot).status == "running"


def test_device_fault_is_faulted_and_not_restarted(
    slot: SlotUnderTest, fd: Frontdoor, ctl: Controller, fault_image: str
) -> None:
    if ctl.proc is None:  # run alone (-k): a controller of our own
        ctl.start()
    # Through the running controller: the CLI asks it and streams its progress.
    done = slot.cli("switch", "test-fault")
    assert done.returncode == 0, done.stderr
    assert "done by the running controller" in done.stdout
    faulty = the_one_container(slot)
    port = faulty.attrs["NetworkSettings"]["Ports"]["8000/tcp"][0]["HostPort"]
    httpx.post(f"http://127.0.0.1:{port}/test/fault", timeout=10)

    route = wait_until(
        lambda: fd.route() if fd.route()["state"] == "faulted" else None, 30, "route faulted"
    )
    assert "UR_RESULT_ERROR_DEVICE_LOST" in route["reason"]
    # No restart loop: the controller's backoff starts at 1 s; watch well past two rounds.
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        container = the_one_container(slot)
        assert container.id == faulty.id
        assert container.status == "exited"
    status = json.loads(slot.cli("status", "--json").stdout)
    assert "UR_RESULT_ERROR_DEVICE_LOST" in status["fault"]
    after_fault = ctl.log().split("UR_RESULT_ERROR_DEVICE_LOST")[-1]
    assert "restarting in" not in after_fault
    assert "restarting test-fault" not in after_fault

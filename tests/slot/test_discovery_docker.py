"""The CLI finds the running controller through Docker, from any directory (issue 10).

A stand-in for the compose service (a real container with the service label, the instance and
the state mount) and a real controller on that state directory: the CLI, started elsewhere with
no state setting, must talk to that controller; with a setting that names another directory it
must refuse, not run a second writer that fights the controller over the model container.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest

from orchestrator.control.controller import Controller
from tests.slot.conftest import BASE_IMAGE, REPO
from tests.slot.fakes import FakeSlot
from tests.slot.test_switch_policy import make_switcher

pytestmark = pytest.mark.docker


@dataclass
class Found:
    instance: str
    container: str
    state_dir: Path
    env: dict[str, str]


@pytest.fixture
def controller_container(
    tmp_path: Path, profiles_dir: Path, docker_client: docker.DockerClient
) -> Iterator[Found]:
    instance = f"d{uuid.uuid4().hex[:10]}"
    ctl = Controller(make_switcher(tmp_path, profiles_dir, FakeSlot(), None), "cpu-tiny")
    state_dir = ctl.state_dir
    state_dir.mkdir(parents=True, exist_ok=True)
    container = docker_client.containers.run(
        BASE_IMAGE,
        ["sleep", "600"],
        detach=True,
        name=f"modelslot-{instance}-orchestrator",
        labels={"com.docker.compose.service": "orchestrator"},
        environment={"MODEL_SLOT_INSTANCE": instance, "MODEL_SLOT_STATE_DIR": "/var/lib/ms"},
        volumes={str(state_dir): {"bind": "/var/lib/ms", "mode": "rw"}},
        network_mode="none",
    )
    thread = threading.Thread(target=ctl.run, daemon=True)
    thread.start()
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(REPO),
        "MODEL_SLOT_INSTANCE": instance,
        "MODEL_SLOT_CONTAINER_NAME": f"modelslot-{instance}-model",
        "MODEL_SLOT_PROFILES_DIR": str(profiles_dir),
        "MODEL_SLOT_FRONTDOOR_URL": "http://127.0.0.1:9",
    }
    try:
        assert ctl.ready.wait(10)
        yield Found(instance, container.name or "", state_dir, env)
    finally:
        ctl.shutdown()
        thread.join(10)
        container.remove(force=True)


def cli(found: Found, cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        cwd=cwd,
        env={**found.env, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_cli_started_elsewhere_finds_the_running_controller_through_docker(
    controller_container: Found, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = cli(controller_container, elsewhere, "status", "--json")
    assert done.returncode == 0, done.stderr
    status = json.loads(done.stdout)
    assert status["state_dir"] == str(controller_container.state_dir)
    assert isinstance(status["controller"], dict), status["controller"]
    assert status["controller"]["controller"] is True


def test_a_cli_pointed_at_another_state_dir_is_refused_not_a_second_writer(
    controller_container: Found, tmp_path: Path
) -> None:
    other = tmp_path / "other-state"
    done = cli(
        controller_container, tmp_path, "switch", "cpu-tiny", MODEL_SLOT_STATE_DIR=str(other)
    )
    assert done.returncode == 1
    assert controller_container.container in done.stderr
    assert str(controller_container.state_dir) in done.stderr
    assert "Unset MODEL_SLOT_STATE_DIR" in done.stderr
    assert not (other / "slot.lock").exists()  # it never became a writer

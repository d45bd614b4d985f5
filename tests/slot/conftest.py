"""Fixtures for the slot's tests.

Every test slot is its own instance: its own container name, its own ``modelslot.instance``
label value and its own state directory, so parallel runs (and other engineers' tests on the
same engine) never see each other's containers. The label key stays ``modelslot.role=model``.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

from orchestrator.config import Paths
from orchestrator.control.frontdoor_client import FrontdoorClient
from orchestrator.control.state import StateStore
from orchestrator.control.switch import Switcher
from orchestrator.profiles.store import ProfileStore
from orchestrator.slot.docker_slot import INSTANCE_LABEL, DockerSlot, SlotConfig

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
ADMIN_TOKEN = "slot-test-admin-token"
FAULT_IMAGE = "modelslot/slot-test-fault:local"
BASE_IMAGE = os.environ.get("MODEL_SLOT_TEST_BASE_IMAGE", "modelslot/debian:bookworm-local")


def make_profiles_dir(target: Path) -> Path:
    """The shipped CPU profiles plus the test-only ones."""
    target.mkdir(parents=True, exist_ok=True)
    for source in [*(REPO / "profiles").glob("cpu-*.env"), *(HERE / "profiles").glob("*.env")]:
        shutil.copy(source, target / source.name)
    return target


@pytest.fixture
def profiles_dir(tmp_path: Path) -> Path:
    return make_profiles_dir(tmp_path / "profiles")


# ---- a real frontdoor, in this process, on port-0 sockets ---------------------------------
class Frontdoor:
    """The real frontdoor (``images/frontdoor``) serving on its own thread."""

    def __init__(self, state_dir: Path, admin: socket.socket | None = None) -> None:
        import uvloop
        from frontdoor.core import Frontdoor as Core
        from frontdoor.server import Servers, bind
        from frontdoor.settings import Settings

        public, admin = bind("127.0.0.1", 0), admin or bind("127.0.0.1", 0)
        settings = Settings(
            admin_token=ADMIN_TOKEN,
            state_dir=state_dir,
            port=public.getsockname()[1],
            admin_port=admin.getsockname()[1],
        )
        self.core = Core(settings)
        self.servers = Servers(self.core, public, admin)
        self.url = f"http://127.0.0.1:{settings.port}"
        self.admin_url = f"http://127.0.0.1:{settings.admin_port}"
        self.loop = uvloop.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_until_complete, args=(self.servers.serve(),), daemon=True
        )
        self._thread.start()

    def route(self) -> dict[str, Any]:
        response = httpx.get(
            f"{self.admin_url}/admin/route",
            headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=5,
        )
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def client(self) -> FrontdoorClient:
        return FrontdoorClient(self.admin_url, ADMIN_TOKEN)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.servers.stop)
        self._thread.join(20)
        asyncio.set_event_loop(None)


@pytest.fixture
def frontdoor(tmp_path: Path) -> Iterator[Frontdoor]:
    running = Frontdoor(tmp_path / "frontdoor-state")
    yield running
    running.stop()


# ---- one isolated slot instance -----------------------------------------------------------
@dataclass
class SlotUnderTest:
    instance: str
    env: dict[str, str]  # the whole environment for CLI/controller subprocesses
    state_dir: Path
    profiles_dir: Path
    client: docker.DockerClient

    @property
    def container_name(self) -> str:
        return self.env["MODEL_SLOT_CONTAINER_NAME"]

    def labelled(self) -> list[Any]:
        return list(
            self.client.containers.list(
                all=True, filters={"label": [f"{INSTANCE_LABEL}={self.instance}"]}
            )
        )

    def switcher(self, frontdoor: FrontdoorClient | None = None) -> Switcher:
        paths = Paths.from_env(self.env)
        return Switcher(
            ProfileStore(paths.profiles_dir),
            DockerSlot(SlotConfig.from_env(self.env), self.client),
            state=StateStore(paths.state_dir),
            frontdoor=frontdoor,
            paths=paths,
            drain_timeout_s=5,
        )

    def cli(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "orchestrator", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=REPO,
        )

    def cli_json(self, *args: str) -> tuple[int, dict[str, Any]]:
        done = self.cli(*args, "--json")
        try:
            body = json.loads(done.stdout)
        except json.JSONDecodeError:
            raise AssertionError(f"not JSON: {done.stdout!r}\nstderr: {done.stderr}") from None
        return done.returncode, body

    def with_frontdoor(self, frontdoor: Frontdoor) -> None:
        self.env["MODEL_SLOT_FRONTDOOR_ADMIN_URL"] = frontdoor.admin_url
        self.env["MODEL_SLOT_ADMIN_TOKEN"] = ADMIN_TOKEN

    def remove_all(self) -> None:
        for container in self.labelled():
            container.remove(force=True, v=True)


def new_test_slot(base: Path, client: docker.DockerClient) -> SlotUnderTest:
    instance = f"t{uuid.uuid4().hex[:10]}"
    state_dir = base / "state"
    profiles = make_profiles_dir(base / "profiles")
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("MODEL_SLOT_", "FRONTDOOR_"))
    }
    env.update(
        {
            "MODEL_SLOT_CONTAINER_NAME": f"modelslot-test-{instance}",
            "MODEL_SLOT_INSTANCE": instance,
            "MODEL_SLOT_BACKEND_PORT": "0",
            "MODEL_SLOT_STATE_DIR": str(state_dir),
            "MODEL_SLOT_PROFILES_DIR": str(profiles),
            "MODEL_SLOT_MODEL_ROOT": str(base / "models"),
            "MODEL_SLOT_DRAIN_TIMEOUT_S": "5",
            "PYTHONPATH": str(REPO),
        }
    )
    return SlotUnderTest(instance, env, state_dir, profiles, client)


@pytest.fixture(scope="module")
def module_slot(
    tmp_path_factory: pytest.TempPathFactory, docker_client: docker.DockerClient, cpu_image: str
) -> Iterator[SlotUnderTest]:
    """One slot instance shared by a module's tests (a vLLM start costs ~40 s here)."""
    slot = new_test_slot(tmp_path_factory.mktemp("slot"), docker_client)
    try:
        yield slot
    finally:
        slot.remove_all()


@pytest.fixture(scope="session")
def fault_image(docker_client: docker.DockerClient) -> str:
    """The planted-fault stand-in image (``fault_image/``), built from the local base."""
    docker_client.images.build(
        path=str(HERE / "fault_image"),
        tag=FAULT_IMAGE,
        buildargs={"BASE_IMAGE": BASE_IMAGE},
        rm=True,
        network_mode="none",
    )
    return FAULT_IMAGE

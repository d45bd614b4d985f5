"""The compose stacks of the end-to-end tests (``conftest.py`` makes one per package).

One compose project with its own name, network, ports, state dir and slot name, so it cannot
touch a developer's stack. A vLLM start costs ~40 s here, so the host-life modules of tests/e2e
use the same project, in file order: test_stack.py walks a host's life first,
test_stack_faults.py breaks it in the ways issue 10 names (each test leaves it serving), then
test_ui.py looks at it with a browser and Prometheus. test_fleet.py does not use it: it brings
up two stacks of its own (two hosts behind a LiteLLM proxy), each on its own CPUs.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker
import httpx
import openai
import pytest

from orchestrator.images.build import IMAGES as BUILT
from tests.support import wait_until

REPO = Path(__file__).resolve().parents[2]
# The tags `images build` gives (they follow the same variables compose.yaml reads).
IMAGES = tuple(BUILT[key].tag for key in ("frontdoor", "orchestrator", "cpu"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Stack:
    project: str
    env: dict[str, str]
    port: int
    state_dir: Path
    container_name: str
    client: docker.DockerClient
    log: list[str] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self, argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv,
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def compose(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        result = self._run(["docker", "compose", "-p", self.project, *args], timeout)
        self.log.append(f"$ docker compose {' '.join(args)}\n{result.stdout}{result.stderr}")
        assert result.returncode == 0, f"docker compose {args} failed:\n{result.stderr}"
        return result

    def cli(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return self._run([sys.executable, "-m", "orchestrator", *args], timeout)

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = httpx.get(f"{self.base_url}/status", timeout=5).json()
        return body

    def serving(self, profile: str, since: str = "") -> bool:
        """The route serves ``profile``, flipped by the orchestrator at or after ``since``."""
        status = self.status()
        route = status.get("route") or {}
        return (
            route.get("state") == "serving"
            and status["model_slot"]["name"] == profile
            and str(route.get("updated_at") or "") >= since
        )

    def wait_serving(self, profile: str, timeout_s: float = 420, since: str = "") -> None:
        wait_until(lambda: self.serving(profile, since), timeout_s, f"the stack to serve {profile}")

    def model(self) -> Any:
        return self.client.containers.get(self.container_name)

    def openai(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.base_url}/v1", api_key="unused", max_retries=0)


@contextlib.contextmanager
def compose_stack(
    docker_client: docker.DockerClient,
    tmp_path_factory: pytest.TempPathFactory,
    tag: str,
    default_profile: str = "cpu-smollm2-135m",
    settings: dict[str, str] | None = None,
) -> Iterator[Stack]:
    """A compose project of its own (name, network, ports, state dir and slot name from
    ``tag``), taken down with its model container at the end. ``settings`` are more of the
    host's ``.env`` lines (``MODEL_SLOT_CPUSET`` ...). Not started: call
    ``stack.compose("up", "-d")``."""
    for image in IMAGES:
        try:
            docker_client.images.get(image)
        except docker.errors.ImageNotFound:
            pytest.fail(f"{image} is not built; `python -m orchestrator images build` builds it")
    state_dir = tmp_path_factory.mktemp(f"state-{tag}")
    models = tmp_path_factory.mktemp(f"models-{tag}")
    port = free_port()
    env = {
        **os.environ,
        "MODEL_SLOT_PORT": str(port),
        "MODEL_SLOT_BIND": "127.0.0.1",
        "MODEL_SLOT_BACKEND_PORT": str(free_port()),
        "MODEL_SLOT_NETWORK": f"modelslot-{tag}",
        "MODEL_SLOT_CONTAINER_NAME": f"modelslot-{tag}-model",
        "MODEL_SLOT_INSTANCE": tag,
        "MODEL_SLOT_STATE_HOST_DIR": str(state_dir),
        "MODEL_SLOT_STATE_DIR": str(state_dir),  # the host CLI finds the controller here
        "MODEL_SLOT_MODEL_ROOT": str(models),
        "MODEL_SLOT_DEFAULT_PROFILE": default_profile,
        "MODEL_SLOT_DRAIN_TIMEOUT_S": "5",  # the paused-frontdoor test waits out one drain
        "MODEL_SLOT_RESTART_BACKOFF_S": "5",  # long enough to see the route `down` after an exit
        **(settings or {}),
    }
    stack = Stack(
        f"modelslot-{tag}", env, port, state_dir, env["MODEL_SLOT_CONTAINER_NAME"], docker_client
    )
    try:
        yield stack
    finally:
        subprocess.run(
            ["docker", "compose", "-p", stack.project, "down", "-v"],
            cwd=REPO,
            env=env,
            capture_output=True,
            timeout=300,
            check=False,
        )
        with contextlib.suppress(docker.errors.NotFound):
            docker_client.containers.get(stack.container_name).remove(force=True, v=True)


def now() -> str:
    """The frontdoor's ``updated_at`` format (ISO-8601, UTC, seconds)."""
    return datetime.now(UTC).replace(microsecond=0).isoformat()

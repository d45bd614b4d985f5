"""The compose stack the end-to-end tests share (``conftest.py`` makes it one per package).

One compose project with its own name, network, ports, state dir and slot name, so it cannot
touch a developer's stack. A vLLM start costs ~40 s here, so every module of tests/e2e uses the
same project, in file order: test_stack.py walks a host's life first, then test_ui.py looks at
it with a browser and Prometheus.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import httpx
import openai

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

    def compose(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["docker", "compose", "-p", self.project, *args],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        self.log.append(f"$ docker compose {' '.join(args)}\n{result.stdout}{result.stderr}")
        assert result.returncode == 0, f"docker compose {args} failed:\n{result.stderr}"
        return result

    def cli(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "orchestrator", *args],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

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

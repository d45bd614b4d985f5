"""The whole stack as an operator runs it: `docker compose` with the real images, real vLLM CPU.

One compose project (its own name, network, ports, state dir and slot name, so it cannot touch
a developer's stack) goes through the life of a host, in order: first boot on the default
profile, frontdoor restart, orchestrator restart under load, a switch from the CLI, and a
down/up that stands in for a reboot. The tests share the project because each vLLM start costs
~40 s here; each test asserts its own step.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
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

pytestmark = [pytest.mark.docker, pytest.mark.vllm, pytest.mark.e2e]

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


@contextlib.contextmanager
def compose_stack(
    docker_client: docker.DockerClient,
    tmp_path_factory: pytest.TempPathFactory,
    tag: str,
    default_profile: str = "cpu-smollm2-135m",
) -> Iterator[Stack]:
    """A compose project of its own (name, network, ports, state dir and slot name from
    ``tag``), taken down with its model container at the end. Not started: call
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


@pytest.fixture(scope="module")
def stack(
    docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    with compose_stack(docker_client, tmp_path_factory, f"e2e{os.getpid()}") as running:
        yield running


def now() -> str:
    """The frontdoor's ``updated_at`` format (ISO-8601, UTC, seconds)."""
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def served_models(stack: Stack) -> list[str]:
    with stack.openai() as client:
        return [model.id for model in client.models.list()]


def stream_chat(stack: Stack, model: str) -> str:
    with stack.openai() as client:
        stream = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "Say hello."}],
            max_tokens=16,
            temperature=0,
            stream=True,
        )
        return "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)


def test_compose_up_from_nothing_serves_the_default_profile(stack: Stack) -> None:
    stack.compose("up", "-d")
    stack.wait_serving("cpu-smollm2-135m")
    assert stream_chat(stack, "smollm2-135m-instruct").strip()
    status = stack.status()
    assert status["ok"] is True
    assert status["model_slot"]["name"] == "cpu-smollm2-135m"
    assert status["frontdoor"]["max_active_generations"] == 4
    labelled = stack.client.containers.list(
        all=True,
        filters={
            "label": [
                "modelslot.role=model",
                f"modelslot.instance={stack.env['MODEL_SLOT_INSTANCE']}",
            ]
        },
    )
    assert [c.name for c in labelled] == [stack.container_name]


def test_frontdoor_restart_keeps_the_model_and_serves_again(stack: Stack) -> None:
    before = stack.model()
    stack.compose("restart", "frontdoor")
    wait_until(lambda: stack.serving("cpu-smollm2-135m"), 30, "the frontdoor to serve again")
    assert stream_chat(stack, "smollm2-135m-instruct").strip()
    after = stack.model()
    assert after.id == before.id
    assert after.attrs["State"]["StartedAt"] == before.attrs["State"]["StartedAt"]


def test_orchestrator_restart_reloads_nothing_and_drops_nothing(stack: Stack) -> None:
    before = stack.model()
    outcomes: list[int | str] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=stack.base_url, timeout=60) as client:
            while not stop.is_set():
                try:
                    response = client.post(
                        "/v1/completions",
                        json={
                            "model": "smollm2-135m-instruct",
                            "prompt": "One, two,",
                            "max_tokens": 4,
                        },
                    )
                    outcomes.append(response.status_code)
                except httpx.HTTPError as exc:
                    outcomes.append(repr(exc))

    thread = threading.Thread(target=load)
    thread.start()
    try:
        wait_until(lambda: len(outcomes) >= 1, 60, "the first request under load")
        stack.compose("restart", "orchestrator")
        orchestrator = stack.compose("ps", "-q", "orchestrator").stdout.strip()
        wait_until(
            lambda: stack.client.containers.get(orchestrator).status == "running",
            60,
            "the orchestrator to run again",
        )
        wait_until((stack.state_dir / "control.sock").exists, 60, "the controller's socket")
        seen = len(outcomes)
        wait_until(lambda: len(outcomes) >= seen + 2, 60, "requests after the restart")
    finally:
        stop.set()
        thread.join(timeout=90)
    assert outcomes, "no request was sent"
    assert all(code == 200 for code in outcomes), outcomes
    after = stack.model()
    assert after.id == before.id
    assert after.attrs["State"]["StartedAt"] == before.attrs["State"]["StartedAt"]


def test_switch_from_the_cli_while_the_stack_runs(stack: Stack) -> None:
    result = stack.cli("switch", "cpu-tiny")
    assert result.returncode == 0, result.stdout + result.stderr
    stack.wait_serving("cpu-tiny", timeout_s=30)
    assert served_models(stack) == ["tiny-llama"]
    with stack.openai() as client:
        answer = client.completions.create(model="tiny-llama", prompt="a b c", max_tokens=8)
    assert answer.usage is not None
    assert answer.usage.completion_tokens > 0
    assert stack.model().labels["modelslot.profile"] == "cpu-tiny"


def test_down_then_up_brings_back_the_last_profile(stack: Stack) -> None:
    stack.compose("down")
    with pytest.raises(docker.errors.NotFound):
        stack.model()  # `down` took the model container with it
    started = now()
    stack.compose("up", "-d")
    # The frontdoor restores its last route from its volume at once; what counts is the
    # orchestrator bringing the model back and flipping the route again.
    stack.wait_serving("cpu-tiny", since=started)
    assert served_models(stack) == ["tiny-llama"]
    assert stack.model().labels["modelslot.profile"] == "cpu-tiny"

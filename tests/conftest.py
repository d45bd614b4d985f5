"""Fixtures shared across the test tree: the Docker engine and a real vLLM CPU server.

The real server is the ``modelslot/vllm-cpu:local`` image started with nothing but a shipped CPU
profile's environment, exactly as the orchestrator starts it. It is session-scoped because a vLLM
start costs ~40 s on a 2-core machine; tests that must not share state start their own.
"""

from __future__ import annotations

import os

# testcontainers' reaper image cannot be pulled here (no registry); our fixtures clean up.
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest
from testcontainers.core.container import DockerContainer

from orchestrator.profiles.store import Profile, ProfileStore
from tests.support import wait_until

REPO = Path(__file__).resolve().parents[1]
CPU_IMAGE = os.environ.get("MODEL_SLOT_TEST_CPU_IMAGE", "modelslot/vllm-cpu:local")


@dataclass
class VllmServer:
    base_url: str  # http://127.0.0.1:PORT, no /v1
    served_model_name: str
    max_model_len: int
    profile: Profile
    container: Any  # docker.models.containers.Container


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        pytest.fail(f"these tests need a Docker engine ({exc}); `./run test` starts one")
    yield client
    client.close()


@pytest.fixture(scope="session")
def cpu_image(docker_client: docker.DockerClient) -> str:
    try:
        docker_client.images.get(CPU_IMAGE)
    except docker.errors.ImageNotFound:
        pytest.fail(f"{CPU_IMAGE} is not built; `python -m orchestrator images build` builds it")
    return CPU_IMAGE


def shipped_profile(name: str) -> Profile:
    return ProfileStore(REPO / "profiles").load(name)


def start_vllm(profile: Profile, image: str) -> tuple[DockerContainer, VllmServer]:
    """Start the CPU image the way the orchestrator does: the profile's container environment
    and its shm size, nothing else; wait until it serves.

    vLLM CPU's multiprocessing executor allocates several hundred MiB of /dev/shm ring buffers,
    more than Docker's 64 MiB default, so the profile's ``MODEL_SLOT_SHM_SIZE`` is part of it.
    """
    container = (
        DockerContainer(image)
        .with_exposed_ports(profile.container_port)
        .with_kwargs(shm_size=profile.get("MODEL_SLOT_SHM_SIZE") or "1g")
    )
    for key, value in profile.container_env().items():
        container = container.with_env(key, value)
    container.start()
    port = container.get_exposed_port(profile.container_port)
    base_url = f"http://127.0.0.1:{port}"
    wrapped = container.get_wrapped_container()

    def ready() -> bool:
        wrapped.reload()
        if wrapped.status == "exited":
            logs = wrapped.logs(tail=40).decode(errors="replace")
            raise pytest.fail.Exception(f"vLLM exited during startup:\n{logs}")
        return httpx.get(f"{base_url}/v1/models", timeout=2).status_code == 200

    wait_until(ready, profile.startup_timeout_s, f"vLLM ({profile.name}) to serve")
    server = VllmServer(
        base_url=base_url,
        served_model_name=profile.served_model_name,
        max_model_len=profile.max_model_len,
        profile=profile,
        container=wrapped,
    )
    return container, server


@pytest.fixture(scope="session")
def vllm_cpu_server(cpu_image: str) -> Iterator[VllmServer]:
    """A real vLLM CPU server running SmolLM2-135M-Instruct (the embedded default profile).

    Shared by the whole session: tests that use it must leave it as they found it.
    """
    container, server = start_vllm(shipped_profile("cpu-smollm2-135m"), cpu_image)
    try:
        yield server
    finally:
        container.stop()


@pytest.fixture(scope="session")
def tiny_cpu_server(cpu_image: str) -> Iterator[VllmServer]:
    """A real vLLM CPU server running the tiny deterministic test model (profile cpu-tiny)."""
    container, server = start_vllm(shipped_profile("cpu-tiny"), cpu_image)
    try:
        yield server
    finally:
        container.stop()

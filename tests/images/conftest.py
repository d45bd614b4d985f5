"""Model containers for the image tests, started the way the orchestrator starts them: the
profile's container environment and its shm size, nothing else.

vLLM CPU's multiprocessing executor allocates several hundred MiB of /dev/shm ring buffers, more
than Docker's 64 MiB default, so the profile's ``MODEL_SLOT_SHM_SIZE`` is part of "the profile".
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from testcontainers.core.container import DockerContainer

from orchestrator.profiles import Profile
from tests.conftest import VllmServer, shipped_profile
from tests.support import wait_until


def start_model_container(profile: Profile, image: str) -> tuple[DockerContainer, VllmServer]:
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


@pytest.fixture(scope="module")
def smollm2_server(cpu_image: str) -> Iterator[VllmServer]:
    container, server = start_model_container(shipped_profile("cpu-smollm2-135m"), cpu_image)
    try:
        yield server
    finally:
        container.stop()


@pytest.fixture(scope="module")
def tiny_server(cpu_image: str) -> Iterator[VllmServer]:
    container, server = start_model_container(shipped_profile("cpu-tiny"), cpu_image)
    try:
        yield server
    finally:
        container.stop()

"""The end-to-end fixtures: one compose stack for the whole tests/e2e package (see stack.py)."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator

import docker
import pytest

from tests.e2e.stack import IMAGES, REPO, Stack, free_port


@pytest.fixture(scope="package")
def stack(
    docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    for image in IMAGES:
        try:
            docker_client.images.get(image)
        except docker.errors.ImageNotFound:
            pytest.fail(f"{image} is not built; `python -m orchestrator images build` builds it")
    tag = f"e2e{os.getpid()}"
    state_dir = tmp_path_factory.mktemp("state")
    models = tmp_path_factory.mktemp("models")
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
        "MODEL_SLOT_DEFAULT_PROFILE": "cpu-smollm2-135m",
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

"""The end-to-end fixtures: one compose stack for the whole tests/e2e package (see stack.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import docker
import pytest

from tests.e2e.stack import Stack, compose_stack


@pytest.fixture(scope="package")
def stack(
    docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    with compose_stack(docker_client, tmp_path_factory, f"e2e{os.getpid()}") as running:
        yield running

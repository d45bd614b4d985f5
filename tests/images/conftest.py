"""The image tests use the session's real model containers (see ``tests/conftest.py``), which
are started the way the orchestrator starts them: the profile's container environment and its
shm size, nothing else."""

from __future__ import annotations

import pytest

from tests.conftest import VllmServer


@pytest.fixture
def smollm2_server(vllm_cpu_server: VllmServer) -> VllmServer:
    return vllm_cpu_server


@pytest.fixture
def tiny_server(tiny_cpu_server: VllmServer) -> VllmServer:
    return tiny_cpu_server

"""The frontdoor image: runs non-root, keeps its route in its volume across a restart, stops
cleanly on SIGTERM, and refuses in OpenAI shape when the upstream is unreachable."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import docker
import httpx
import pytest

from orchestrator.images.build import IMAGES as BUILT
from tests.support import wait_until

pytestmark = pytest.mark.docker

IMAGE = BUILT["frontdoor"].tag  # follows MODEL_SLOT_FRONTDOOR_IMAGE, as compose.yaml does
TOKEN = "image-test-token"
LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+) \(admin 127\.0\.0\.1:(\d+)\)")


@pytest.fixture
def frontdoor_container(docker_client: docker.DockerClient) -> Iterator[Any]:
    try:
        docker_client.images.get(IMAGE)
    except docker.errors.ImageNotFound:
        pytest.fail(f"{IMAGE} is not built; `python -m orchestrator images build` builds it")
    name = f"frontdoor-image-test-{uuid.uuid4().hex[:8]}"
    volume = docker_client.volumes.create(name)
    container = docker_client.containers.run(
        IMAGE,
        name=name,
        detach=True,
        network_mode="host",  # ports 0: the kernel picks, the log line says which
        environment={
            "FRONTDOOR_HOST": "127.0.0.1",
            "FRONTDOOR_PORT": "0",
            "FRONTDOOR_ADMIN_HOST": "127.0.0.1",
            "FRONTDOOR_ADMIN_PORT": "0",
            "FRONTDOOR_ADMIN_TOKEN": TOKEN,
        },
        volumes={name: {"bind": "/var/lib/frontdoor", "mode": "rw"}},
    )
    try:
        yield container
    finally:
        container.remove(force=True, v=True)
        volume.remove(force=True)


def _ports(container: Any, after: int = 0) -> tuple[int, int]:
    def found() -> tuple[int, int] | None:
        matches = LISTENING.findall(container.logs().decode(errors="replace"))
        if len(matches) > after:
            return int(matches[after][0]), int(matches[after][1])
        container.reload()
        assert container.status != "exited", container.logs().decode(errors="replace")
        return None

    return wait_until(found, 30, "the frontdoor container to listen")


def test_image_non_root_persistent_route_clean_stop(frontdoor_container: Any) -> None:
    container = frontdoor_container
    port, admin_port = _ports(container)
    url, admin = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin_port}"
    auth = {"authorization": f"Bearer {TOKEN}"}

    uid = container.exec_run(["id", "-u"]).output.decode().strip()
    assert uid != "0"
    assert httpx.get(url + "/health").status_code == 200
    assert httpx.get(url + "/status").json()["route"]["state"] == "down"

    route = {
        "upstream": "http://127.0.0.1:9",  # nothing listens there
        "state": "serving",
        "profile": {"name": "image-test", "status": "experiment-image"},
        "limits": {"max_active_generations": 2, "queue_timeout_s": 0},
    }
    assert httpx.put(admin + "/admin/route", json=route, headers=auth).status_code == 200
    refused = httpx.post(url + "/v1/chat/completions", json={"messages": []})
    assert refused.status_code == 502
    assert refused.json()["error"]["type"] == "backend_error"

    container.restart(timeout=20)
    port, _ = _ports(container, after=1)
    status = httpx.get(f"http://127.0.0.1:{port}/status").json()
    assert status["model_slot"]["name"] == "image-test"
    assert status["frontdoor"]["max_active_generations"] == 2
    assert status["route"]["origin"] == "restored from /var/lib/frontdoor/route.json"
    # Its upstream does not answer, so the restored route is held as switching, not served 502s.
    assert status["route"]["state"] == "switching"
    assert "waiting for http://127.0.0.1:9 to answer" in status["route"]["reason"]

    container.stop(timeout=20)
    container.reload()
    assert container.attrs["State"]["ExitCode"] == 0  # SIGTERM handled, not killed


def test_the_image_carries_no_http_client_only_its_tests_need(
    docker_client: docker.DockerClient,
) -> None:
    """httpx was a runtime dependency though only the frontdoor's tests import it."""
    probe = "import importlib.util as u; print(sorted(m for m in {} if u.find_spec(m)))"
    wanted = ("httpx", "httpcore", "fastapi", "uvicorn")
    out = docker_client.containers.run(
        IMAGE,
        entrypoint=["/opt/venv/bin/python3", "-c", probe.format(wanted)],
        remove=True,
    )
    assert out.decode().strip() == "['fastapi', 'uvicorn']"

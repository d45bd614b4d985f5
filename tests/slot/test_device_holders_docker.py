"""Preflight's "nothing else holds the devices", through real Docker and a stand-in xpu-smi.

Two real containers: one under the slot's own name (its processes are the slot's, not "else")
and one that maps a device of the profile (named once, as the container). ``xpu-smi ps -j``
answers in its documented format (tests/watchdog/data/xpu-smi-ps.json) with the host PIDs that
``docker top`` gives for both containers plus a host process outside Docker: only that
process and the other container may be reported.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import replace

import docker
import pytest
from docker.models.containers import Container

from orchestrator.slot.docker_slot import DockerSlot, SlotConfig
from orchestrator.slot.xpu_smi import XpuSmi, XpuSmiError
from tests.slot.conftest import BASE_IMAGE

pytestmark = pytest.mark.docker

OUTSIDE = 5225  # a host process outside Docker (llama-server in the documented sample)


def _pids(container: Container) -> list[int]:
    top = container.top()
    column = top["Titles"].index("PID")
    return [int(row[column]) for row in top["Processes"]]


def _ps_json(rows: Sequence[tuple[int, str, int]]) -> str:
    return json.dumps(
        {
            "device_util_by_proc_list": [
                {"process_id": pid, "process_name": name, "device_id": device, "mem_size": 1024}
                for pid, name, device in rows
            ]
            + [{"process_id": 1, "process_name": "xpu-smi", "device_id": 0, "mem_size": 0}]
        }
    )


@pytest.fixture
def two_containers(
    docker_client: docker.DockerClient,
) -> Iterator[tuple[SlotConfig, Container, Container]]:
    tag = uuid.uuid4().hex[:10]
    config = replace(SlotConfig(), container_name=f"modelslot-{tag}-model", instance=tag)
    own = docker_client.containers.run(
        BASE_IMAGE, ["sleep", "600"], detach=True, name=config.container_name, network_mode="none"
    )
    other = docker_client.containers.run(
        BASE_IMAGE,
        ["sleep", "600"],
        detach=True,
        name=f"modelslot-{tag}-other",
        network_mode="none",
        devices=["/dev/null:/dev/xpu-stand-in:rwm"],
    )
    try:
        yield config, own, other
    finally:
        own.remove(force=True)
        other.remove(force=True)


def test_only_processes_that_are_not_the_slots_are_holders(
    docker_client: docker.DockerClient, two_containers: tuple[SlotConfig, Container, Container]
) -> None:
    config, own, other = two_containers
    rows = [(pid, "sleep", 0) for pid in _pids(own)]
    rows += [(pid, "sleep", 1) for pid in _pids(other)]
    rows.append((OUTSIDE, "llama-server", 1))
    smi = XpuSmi(runner=lambda argv: _ps_json(rows), which=lambda _: "/usr/bin/xpu-smi")
    slot = DockerSlot(config, docker_client, xpu_smi=smi)

    held = slot.device_holders(("/dev/null",))

    assert held.holders == [
        f"container {other.name} (/dev/null)",
        f"GPU 1: pid {OUTSIDE} (llama-server), 1 MiB",
    ]
    assert held.how == "Docker's device mappings and xpu-smi ps"


def test_without_xpu_smi_the_check_says_what_it_could_not_see(
    docker_client: docker.DockerClient, two_containers: tuple[SlotConfig, Container, Container]
) -> None:
    config, _own, other = two_containers
    slot = DockerSlot(config, docker_client, xpu_smi=XpuSmi(which=lambda _: None))
    held = slot.device_holders(("/dev/null",))
    assert held.holders == [f"container {other.name} (/dev/null)"]
    assert "xpu-smi is not on the PATH, host processes not checked" in held.how


def test_a_failing_xpu_smi_is_said_not_raised(
    docker_client: docker.DockerClient, two_containers: tuple[SlotConfig, Container, Container]
) -> None:
    config, _own, _other = two_containers

    def broken(argv: Sequence[str]) -> str:
        raise XpuSmiError(f"{' '.join(argv)} exited 1: permission denied")

    smi = XpuSmi(runner=broken, which=lambda _: "/usr/bin/xpu-smi")
    held = DockerSlot(config, docker_client, xpu_smi=smi).device_holders(("/dev/null",))
    assert "permission denied" in held.how

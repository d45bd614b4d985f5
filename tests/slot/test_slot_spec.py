"""What ``Slot.create`` asks Docker for, checked on a recording client (no Docker)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, ClassVar

import pytest

from orchestrator.errors import SlotError
from orchestrator.profiles.store import ProfileStore
from orchestrator.slot.docker_slot import DockerSlot, SlotConfig, device_groups

REPO = Path(__file__).resolve().parents[2]


class _Container:
    id = "f" * 64
    attrs: ClassVar[dict[str, Any]] = {"Name": "/modelslot-model", "State": {"Status": "running"}}

    def start(self) -> None:
        return

    def reload(self) -> None:
        return


class _Containers:
    def __init__(self) -> None:
        self.created: list[tuple[str, dict[str, Any]]] = []

    def create(self, image: str, **kwargs: Any) -> _Container:
        self.created.append((image, kwargs))
        return _Container()


class _Client:
    def __init__(self) -> None:
        self.containers = _Containers()


def create(
    profile_name: str, config: SlotConfig, model_root: Path, profiles: Path = REPO / "profiles"
) -> tuple[str, dict[str, Any]]:
    client = _Client()
    profile = ProfileStore(profiles).load(profile_name)
    DockerSlot(config, client).create(profile, model_root)
    return client.containers.created[0]


def test_gpu_profile_container_spec(tmp_path: Path) -> None:
    image, spec = create(
        "gemma4-12b-it-int4-autoround-c8", SlotConfig(network="model-slot"), tmp_path
    )
    assert image == "modelslot/vllm-xpu:local"
    assert spec["name"] == "modelslot-model"
    assert spec["labels"]["modelslot.role"] == "model"
    assert spec["labels"]["modelslot.profile"] == "gemma4-12b-it-int4-autoround-c8"
    assert len(spec["labels"]["modelslot.profile-hash"]) == 64
    assert spec["restart_policy"] == {"Name": "no"}
    assert spec["ipc_mode"] == "host"
    assert spec["shm_size"] == "16g"
    assert spec["devices"] == ["/dev/dri:/dev/dri:rwm"]
    assert spec["group_add"]  # the render group, by gid where /dev/dri is readable
    assert spec["ports"] == {"8000/tcp": ("127.0.0.1", 18080)}
    assert spec["network"] == "model-slot"
    mounts = {m["Target"]: m for m in spec["mounts"]}
    model = mounts["/model"]
    assert model["Source"] == str(tmp_path / "gemma-4-12b-it-int4-AutoRound")
    assert model["ReadOnly"] is True
    assert model["Type"] == "bind"
    cache = mounts["/var/cache/vllm"]
    assert (cache["Type"], cache["Source"]) == (
        "volume",
        "modelslot-cache-gemma4-12b-it-int4-autoround-c8",
    )
    assert "MODEL_DIR" not in spec["environment"]
    assert not any(key.startswith("FRONTDOOR_") for key in spec["environment"])


def test_cpu_profile_has_no_devices_and_no_swap(tmp_path: Path) -> None:
    _, spec = create("cpu-tiny", SlotConfig(backend_port=0), tmp_path)
    assert "devices" not in spec
    assert "group_add" not in spec
    assert spec["mem_limit"] == 6 * 1024**3
    assert spec["memswap_limit"] == spec["mem_limit"]  # no swap on top of the limit
    assert spec["ports"] == {"8000/tcp": ("127.0.0.1",)}  # Docker picks the port
    assert [m["Target"] for m in spec["mounts"]] == ["/var/cache/vllm"]  # model in the image


def test_group_names_become_the_device_nodes_gids(tmp_path: Path) -> None:
    assert device_groups("", ("/dev/dri",)) == []
    assert device_groups("44", ()) == ["44"]
    assert device_groups("render", (str(tmp_path / "missing"),)) == ["render"]
    node = tmp_path / "renderD128"
    node.touch()
    gid = node.stat().st_gid
    assert device_groups("render", (str(tmp_path),)) == ([str(gid)] if gid else ["render"])


def test_the_host_cpuset_confines_the_container_and_auto_binds_inside_it(tmp_path: Path) -> None:
    _, spec = create("cpu-tiny", SlotConfig(cpuset=frozenset({1, 2, 3, 5})), tmp_path)
    assert spec["cpuset_cpus"] == "1-3,5"
    # vLLM CPU's `auto` binding reads the container's affinity: the profile need not know.
    assert "VLLM_CPU_OMP_THREADS_BIND" not in spec["environment"]
    _, spec = create("cpu-tiny", SlotConfig(), tmp_path)
    assert "cpuset_cpus" not in spec  # unset: every CPU of the host


def test_a_fixed_binding_outside_the_cpuset_is_never_started(tmp_path: Path) -> None:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    for name in ("cpu-smollm2-135m", "cpu-tiny"):
        shutil.copy(REPO / "profiles" / f"{name}.env", profiles)
    (profiles / "pinned.env").write_text(
        "MODEL_SLOT_EXTENDS=cpu-tiny\nVLLM_CPU_OMP_THREADS_BIND=0-1\n"
    )
    config = SlotConfig(cpuset=frozenset({1}))
    problems = config.cpu_problems(ProfileStore(profiles).load("pinned"))
    assert problems == [
        "pinned binds vLLM's OpenMP threads to CPUs 0 (VLLM_CPU_OMP_THREADS_BIND=0-1), outside "
        "this slot's MODEL_SLOT_CPUSET=1: its engine could not start. Use "
        "VLLM_CPU_OMP_THREADS_BIND=auto (it binds inside the container's CPUs) or CPUs the "
        "container has"
    ]
    with pytest.raises(SlotError, match="outside this slot's MODEL_SLOT_CPUSET=1"):
        create("pinned", config, tmp_path, profiles)
    _, spec = create("pinned", SlotConfig(cpuset=frozenset({0, 1})), tmp_path, profiles)
    assert (spec["cpuset_cpus"], spec["environment"]["VLLM_CPU_OMP_THREADS_BIND"]) == ("0-1", "0-1")

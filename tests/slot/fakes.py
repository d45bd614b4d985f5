"""A fake slot mechanism, so the switch policy can be tested without Docker (llama-swap's
``fakeProcess``). It records what was asked of it and fails where a test says so."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import docker.errors

from orchestrator.errors import NotReadyError
from orchestrator.profiles.store import Profile
from orchestrator.slot.docker_slot import ContainerInfo, SlotConfig


class _Images:
    def __init__(self, present: set[str]) -> None:
        self.present = present

    def get(self, name: str) -> object:
        if name not in self.present:
            raise docker.errors.ImageNotFound(name)
        return object()


class _Containers:
    def list(self, **_: Any) -> list[Any]:
        return []


class FakeEvents:
    """A Docker event stream that a test feeds; ``close`` ends it like docker-py's."""

    _END = object()

    def __init__(self) -> None:
        self.queue: queue.Queue[object] = queue.Queue()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while (item := self.queue.get()) is not self._END:
            yield cast(dict[str, Any], item)

    def close(self) -> None:
        self.queue.put(self._END)


class FakeClient:
    def __init__(self, images: set[str]) -> None:
        self.images = _Images(images)
        self.containers = _Containers()
        self.event_stream = FakeEvents()

    def events(self, **_: Any) -> FakeEvents:
        return self.event_stream


@dataclass
class FakeSlot:
    images: set[str] = field(default_factory=lambda: {"modelslot/vllm-cpu:local"})
    fail_ready: set[str] = field(default_factory=set)  # profile names that never get ready
    config: SlotConfig = field(default_factory=lambda: SlotConfig(container_name="fake-model"))
    running: ContainerInfo | None = None
    calls: list[str] = field(default_factory=list)
    max_alive: int = 0
    _n: int = 0

    def __post_init__(self) -> None:
        self.client = FakeClient(self.images)

    def labels_filter(self) -> list[str]:
        return ["modelslot.role=model"]

    def die(self) -> None:
        """The container exits as if killed from outside; Docker reports ``die``."""
        assert self.running is not None
        self.running = ContainerInfo(**{**self.running.__dict__, "status": "exited"})
        self.client.event_stream.queue.put(
            {"id": self.running.id, "Actor": {"Attributes": {"exitCode": "137"}}}
        )

    def current(self) -> ContainerInfo | None:
        return self.running

    def containers(self) -> list[ContainerInfo]:
        return [self.running] if self.running else []

    def stop(self, grace_s: float, on_step: Any = None) -> list[str]:
        self.calls.append("stop")
        removed = [self.running.id] if self.running else []
        self.running = None
        return removed

    def create(self, profile: Profile, model_root: Path) -> ContainerInfo:
        self.calls.append(f"create {profile.name}")
        assert self.running is None, "created a second container"
        self._n += 1
        self.running = ContainerInfo(
            id=f"c{self._n:063d}",
            name=self.config.container_name,
            status="running",
            profile=profile.name,
            profile_hash=profile.hash,
            exit_code=None,
            started_at=None,
            published_port=18080,
        )
        self.max_alive = max(self.max_alive, 1)
        return self.running

    def wait_ready(
        self, profile: Profile, timeout_s: float | None = None, on_step: Any = None
    ) -> None:
        self.calls.append(f"ready {profile.name}")
        if profile.name in self.fail_ready:
            assert self.running is not None
            self.running = ContainerInfo(**{**self.running.__dict__, "status": "exited"})
            raise NotReadyError(f"{profile.name}: exited during startup (exit code 1)", "boom\n")

    def logs(self, tail: int | None = None, timestamps: bool = False) -> str:
        return (
            "2026-11-27T15:00:00.000000000Z INFO start\n"
            "2026-11-27T15:00:03.500000000Z INFO CPU KV cache size: 43,680 tokens\n"
            "2026-11-27T15:00:09.000000000Z INFO Application startup complete.\n"
        )

    def log_tail(self, lines: int = 40) -> str:
        return "boom\n"

    def upstream_url(self, profile: Profile, info: ContainerInfo | None = None) -> str:
        return "http://127.0.0.1:18080"

    def probe_url(self, profile: Profile, info: ContainerInfo | None = None) -> str:
        return "http://127.0.0.1:18080"

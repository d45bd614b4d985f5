"""A fake slot mechanism, so the policy can be tested without Docker (llama-swap's
``fakeProcess``). It implements the ``Slot`` Protocol (mypy checks that, no ``cast``), records
what was asked of it and fails where a test says so."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from orchestrator.errors import NotReadyError, SlotError
from orchestrator.profiles.store import Profile
from orchestrator.slot.protocol import ContainerInfo, DeviceHolders, DieEvent, OnStep, Slot

LOG = (
    "2026-11-27T15:00:00.000000000Z INFO start\n"
    "2026-11-27T15:00:03.500000000Z INFO CPU KV cache size: 43,680 tokens\n"
    "2026-11-27T15:00:09.000000000Z INFO Application startup complete.\n"
)


class FakeEvents:
    """A die-event stream that a test feeds; ``close`` ends it like docker-py's."""

    def __init__(self) -> None:
        self.queue: queue.Queue[DieEvent | None] = queue.Queue()

    def __iter__(self) -> Iterator[DieEvent]:
        while (item := self.queue.get()) is not None:
            yield item

    def close(self) -> None:
        self.queue.put(None)


@dataclass
class FakeSlot:
    images: set[str] = field(default_factory=lambda: {"modelslot/vllm-cpu:local"})
    fail_ready: set[str] = field(default_factory=set)  # profile names that never get ready
    fail_stop: bool = False  # stop raises SlotError (a container that survives SIGKILL)
    log: str = LOG
    holders: list[str] = field(default_factory=list)
    cpu_refusals: list[str] = field(default_factory=list)  # what cpu_problems answers
    services: set[str] = field(default_factory=set)  # "project/service" pairs that run
    running: ContainerInfo | None = None
    calls: list[str] = field(default_factory=list)
    events: FakeEvents = field(default_factory=FakeEvents)
    _n: int = 0

    @property
    def container_name(self) -> str:
        return "fake-model"

    def die(self, exit_code: str = "137") -> None:
        """The container exits as if killed from outside; Docker reports ``die``."""
        assert self.running is not None
        self.running = replace(self.running, status="exited")
        self.events.queue.put(DieEvent(self.running.id, exit_code))

    def run_stray(self, profile: Profile) -> ContainerInfo:
        """A container of ``profile`` that this fake did not create through the policy."""
        self._n += 1
        self.running = self._info(profile)
        return self.running

    def _info(self, profile: Profile) -> ContainerInfo:
        return ContainerInfo(
            id=f"c{self._n:063d}",
            name=self.container_name,
            status="running",
            profile=profile.name,
            profile_hash=profile.hash,
            exit_code=None,
            started_at=None,
            published_port=18080,
        )

    # ---- the Protocol ---------------------------------------------------------------------
    def current(self) -> ContainerInfo | None:
        return self.running

    def containers(self) -> list[ContainerInfo]:
        return [self.running] if self.running else []

    def stop(self, grace_s: float, on_step: OnStep | None = None) -> list[str]:
        self.calls.append("stop")
        if self.fail_stop:
            raise SlotError("container c0001 survived SIGKILL for 60s")
        removed = [self.running.id] if self.running else []
        self.running = None
        return removed

    def create(self, profile: Profile, model_root: Path) -> ContainerInfo:
        self.calls.append(f"create {profile.name}")
        assert self.running is None, "created a second container"
        self._n += 1
        self.running = self._info(profile)
        return self.running

    def wait_ready(
        self, profile: Profile, timeout_s: float | None = None, on_step: OnStep | None = None
    ) -> None:
        self.calls.append(f"ready {profile.name}")
        if profile.name in self.fail_ready:
            assert self.running is not None
            self.running = replace(self.running, status="exited")
            raise NotReadyError(f"{profile.name}: exited during startup (exit code 1)", "boom\n")

    def logs(self, tail: int | None = None, timestamps: bool = False) -> str:
        return self.log

    def log_tail(self, lines: int = 40) -> str:
        return "boom\n"

    def image_exists(self, image: str) -> bool:
        return image in self.images

    def device_holders(self, devices: tuple[str, ...]) -> DeviceHolders:
        return DeviceHolders(list(self.holders), "the fake's list")

    def cpu_problems(self, profile: Profile) -> list[str]:
        return list(self.cpu_refusals)

    def die_events(self) -> FakeEvents:
        return self.events

    def service_running(self, project: str, service: str) -> bool:
        return f"{project}/{service}" in self.services

    def upstream_url(self, profile: Profile, info: ContainerInfo | None = None) -> str:
        return "http://127.0.0.1:18080"

    def probe_url(self, profile: Profile, info: ContainerInfo | None = None) -> str:
        return "http://127.0.0.1:18080"


def _conforms(fake: FakeSlot) -> Slot:  # mypy: the fake implements the Protocol, no cast
    return fake

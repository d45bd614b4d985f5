"""What policy (``orchestrator/control/``) may ask of the slot mechanism, and nothing more.

``Slot`` is a Protocol: ``docker_slot.DockerSlot`` implements it through the Docker API, and the
policy tests implement it with a fake. Policy never sees docker-py: every Docker fact it needs
comes back as one of the plain types below.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from orchestrator.profiles.store import Profile

#: Receives one line of progress text from a long mechanism call (stop, wait_ready).
OnStep = Callable[[str], None]


@dataclass(frozen=True)
class ContainerInfo:
    """What the slot knows about one labelled container."""

    id: str
    name: str
    status: str  # created, running, restarting, exited, dead, removing, paused
    profile: str
    profile_hash: str
    exit_code: int | None
    started_at: str | None
    published_port: int | None

    @property
    def short_id(self) -> str:
        return self.id[:12]


@dataclass(frozen=True)
class DieEvent:
    """A container of this slot exited (Docker's ``die`` event)."""

    id: str
    exit_code: str | None


@dataclass(frozen=True)
class DeviceHolders:
    """Preflight's "nothing else holds the devices": who does, and how that was found out."""

    holders: list[str]  # one line each: a container and the device it maps, or a process
    how: str  # what was asked (Docker's device mappings; xpu-smi ps, or why not)


class DieEvents(Protocol):
    """A blocking stream of die events; ``close`` (from another thread) ends the iteration."""

    def __iter__(self) -> Iterator[DieEvent]: ...

    def close(self) -> None: ...


class Slot(Protocol):
    """The one model container of one slot instance (DESIGN.md, invariant 1)."""

    @property
    def container_name(self) -> str: ...

    def create(self, profile: Profile, model_root: Path) -> ContainerInfo:
        """Create and start the container for ``profile`` under the fixed name."""
        ...

    def stop(self, grace_s: float, on_step: OnStep | None = None) -> list[str]:
        """Remove every container of this slot (TERM, grace, KILL, gone); the ids removed."""
        ...

    def current(self) -> ContainerInfo | None:
        """The container under the fixed name, if any."""
        ...

    def containers(self) -> list[ContainerInfo]:
        """Every container of this slot, in any state."""
        ...

    def wait_ready(
        self, profile: Profile, timeout_s: float | None = None, on_step: OnStep | None = None
    ) -> None:
        """Return once ready (invariant 2); NotReadyError otherwise, at once on an exit."""
        ...

    def logs(self, tail: int | None = None, timestamps: bool = False) -> str: ...

    def log_tail(self, lines: int = 40) -> str: ...

    def image_exists(self, image: str) -> bool:
        """True if the image is on this host; SlotError if Docker cannot say."""
        ...

    def device_holders(self, devices: tuple[str, ...]) -> DeviceHolders:
        """Running containers other than this slot's that map any of ``devices``, and (where
        xpu-smi runs) processes on the GPUs that are not this slot's container's."""
        ...

    def cpu_problems(self, profile: Profile) -> list[str]:
        """Why ``profile`` cannot run on the CPUs this slot's container may use (empty: it can)."""
        ...

    def die_events(self) -> DieEvents:
        """Die events of this slot's containers, from now on."""
        ...

    def service_running(self, project: str, service: str) -> bool:
        """Whether a container of compose ``project``'s ``service`` runs."""
        ...

    def upstream_url(self, profile: Profile, info: ContainerInfo | None = None) -> str:
        """What the frontdoor is told to proxy to."""
        ...

    def probe_url(self, profile: Profile, info: ContainerInfo | None = None) -> str:
        """Where the orchestrator reaches vLLM."""
        ...

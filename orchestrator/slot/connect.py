"""The Docker-backed slot, its engine checked before any policy runs."""

from __future__ import annotations

import docker
import docker.errors

from orchestrator.errors import SlotError
from orchestrator.slot.docker_slot import Slot, SlotConfig


def docker_slot(config: SlotConfig | None = None) -> Slot:
    """A ``Slot`` on the Docker engine of the environment (``DOCKER_HOST`` or the socket).

    Raises ``SlotError`` naming what to check when the engine does not answer, so a caller never
    meets a docker-py exception (or a traceback) for a missing socket."""
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except docker.errors.DockerException as exc:
        raise SlotError(
            f"cannot reach the Docker engine ({exc}); is the socket mounted / DOCKER_HOST set?"
        ) from None
    return Slot(config or SlotConfig.from_env(), client)

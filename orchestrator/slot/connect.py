"""The Docker-backed slot, its engine checked before any policy runs."""

from __future__ import annotations

import docker
import docker.errors

from orchestrator.errors import SlotError
from orchestrator.slot.docker_slot import DockerSlot, SlotConfig


def docker_client() -> docker.DockerClient:
    """The Docker engine of the environment (``DOCKER_HOST`` or the socket), checked to answer.

    Raises ``SlotError`` naming what to check when the engine does not answer, so a caller never
    meets a docker-py exception (or a traceback) for a missing socket."""
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except docker.errors.DockerException as exc:
        raise SlotError(
            f"cannot reach the Docker engine ({exc}); is the socket mounted / DOCKER_HOST set?"
        ) from None
    return client


def docker_slot(
    config: SlotConfig | None = None, client: docker.DockerClient | None = None
) -> DockerSlot:
    """A ``DockerSlot`` on ``client`` (default: the environment's engine, see ``docker_client``)."""
    return DockerSlot(config or SlotConfig.from_env(), client or docker_client())

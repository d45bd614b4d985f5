"""Finding the running controller through Docker: the compose service's container and its
state mount. Mechanism only; the CLI decides what to do with the answer.

A controller is a running container labelled ``com.docker.compose.service=orchestrator`` whose
environment names the slot instance (``MODEL_SLOT_INSTANCE``, default ``default``) and the state
directory inside it (``MODEL_SLOT_STATE_DIR``); the mount at that path says where the state
lives on this host. So a CLI started anywhere on the host, with no settings, finds the lock and
the control socket of the controller that owns its slot.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors

from orchestrator.errors import SlotError

SERVICE_LABEL = "com.docker.compose.service"
SERVICE = "orchestrator"


@dataclass(frozen=True)
class ControllerContainer:
    name: str
    id: str
    state_dir: Path  # on this host (the mount's source)
    state_dir_inside: Path  # in the container (its MODEL_SLOT_STATE_DIR)


def find_controllers(client: docker.DockerClient, instance: str) -> list[ControllerContainer]:
    """Running controller containers of slot ``instance`` that mount their state dir."""
    try:
        candidates = client.containers.list(filters={"label": f"{SERVICE_LABEL}={SERVICE}"})
    except docker.errors.APIError as exc:
        raise SlotError(f"cannot list containers to find the controller: {exc}") from None
    found = []
    for container in candidates:
        attrs = container.attrs
        env = dict(
            item.partition("=")[::2] for item in (attrs.get("Config") or {}).get("Env") or []
        )
        if env.get("MODEL_SLOT_INSTANCE", "default") != instance:
            continue
        inside = env.get("MODEL_SLOT_STATE_DIR")
        if not inside:
            continue
        for mount in attrs.get("Mounts") or []:
            if mount.get("Destination") == inside and mount.get("Source"):
                found.append(
                    ControllerContainer(
                        name=(attrs.get("Name") or "").lstrip("/"),
                        id=container.id or "",
                        state_dir=Path(mount["Source"]),
                        state_dir_inside=Path(inside),
                    )
                )
    return found

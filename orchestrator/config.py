"""Where things live on this host, from the environment, with defaults that suit a checkout.

- ``MODEL_SLOT_PROFILES_DIR`` (the checkout's ``profiles/``): the profile files.
- ``MODEL_SLOT_STATE_DIR`` (the checkout's ``state/``, which compose mounts by default):
  current profile, last switch, lock, control socket. It must be absolute: the one writer is
  found through this directory, so it must not depend on where a command was started. The CLI
  also finds a running controller's state directory through Docker (``cli/slot.py``).
- ``MODEL_SLOT_MODEL_ROOT`` (``/srv/model-slot/models``): where relative ``MODEL_DIR``s start.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import ModelSlotError

#: The checkout (or installed tree) this package lives in: defaults hang off it, not off the cwd.
CHECKOUT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Paths:
    profiles_dir: Path
    state_dir: Path
    model_root: Path

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Paths:
        env = dict(os.environ) if environ is None else environ
        state = env.get("MODEL_SLOT_STATE_DIR", "").strip()
        if state and not Path(state).is_absolute():
            raise ModelSlotError(
                f"MODEL_SLOT_STATE_DIR={state} is relative: give an absolute path (the state "
                f"directory must be the same wherever a command starts; e.g. "
                f"{Path(state).resolve()})"
            )
        return cls(
            profiles_dir=Path(env.get("MODEL_SLOT_PROFILES_DIR") or CHECKOUT / "profiles"),
            state_dir=Path(state) if state else CHECKOUT / "state",
            model_root=Path(env.get("MODEL_SLOT_MODEL_ROOT", "/srv/model-slot/models")),
        )

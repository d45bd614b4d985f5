"""Where things live on this host, from the environment, with defaults that suit a checkout.

- ``MODEL_SLOT_PROFILES_DIR`` (``./profiles``): the profile files.
- ``MODEL_SLOT_STATE_DIR`` (``./state``): current profile, last switch, lock, control socket.
- ``MODEL_SLOT_MODEL_ROOT`` (``/srv/model-slot/models``): where relative ``MODEL_DIR``s start.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Paths:
    profiles_dir: Path
    state_dir: Path
    model_root: Path

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Paths:
        env = dict(os.environ) if environ is None else environ
        return cls(
            profiles_dir=Path(env.get("MODEL_SLOT_PROFILES_DIR", "profiles")),
            state_dir=Path(env.get("MODEL_SLOT_STATE_DIR", "state")),
            model_root=Path(env.get("MODEL_SLOT_MODEL_ROOT", "/srv/model-slot/models")),
        )

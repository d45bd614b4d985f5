"""What the slot remembers across restarts, in ``$MODEL_SLOT_STATE_DIR/slot.json``.

- ``current``: the profile the host should run (None after ``stop``), its hash and container id;
- ``previous``: the profile that ran before it (what a failed switch goes back to);
- ``stopped``: True after an operator's ``stop``, so that ``up`` does not bring a model back;
- ``fault``: why the slot is faulted (a device fault line), until an operator switches;
- ``last_switch``: the last switch report; ``facts``: the current model's startup facts.

Writes are atomic (temp file, fsync, rename): a crash leaves the old file or the new, never half.
Only the holder of the slot lock writes; anyone may read.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STATE_FILE = "slot.json"


@dataclass
class SlotState:
    current: str | None = None
    current_hash: str | None = None
    container_id: str | None = None
    previous: str | None = None
    stopped: bool = False
    fault: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    last_switch: dict[str, Any] | None = None
    updated_at: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> SlotState:
        known = {key: raw[key] for key in cls.__dataclass_fields__ if key in raw}
        return cls(**known)


class StateStore:
    """The state file of one state directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / STATE_FILE

    def exists(self) -> bool:
        return self.path.exists()

    def load(self) -> SlotState:
        """The persisted state; a fresh one when there is none. An unreadable file is moved
        aside (``slot.json.bad``) rather than trusted or silently overwritten."""
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return SlotState()
        except (OSError, json.JSONDecodeError):
            os.replace(self.path, self.path.with_suffix(".json.bad"))
            return SlotState()
        return SlotState.from_json(raw) if isinstance(raw, dict) else SlotState()

    def save(self, state: SlotState) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".slot.", suffix=".tmp", dir=self.directory)
        try:
            os.fchmod(fd, 0o644)  # mkstemp makes 0600; `status` by another user must read it
            with os.fdopen(fd, "w") as fh:
                json.dump(state.to_json(), fh, indent=2, default=str)
                fh.write("\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

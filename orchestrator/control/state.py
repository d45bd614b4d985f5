"""The slot's one state value and its file, ``$MODEL_SLOT_STATE_DIR/slot.json``.

``Phase`` says what the slot is doing; docs/slot.md has the table of what every operation does
from every phase. The rest of ``SlotState`` qualifies it:

- ``current``: the *committed* profile, the one the host runs or should run (None when none is:
  after ``stop``, or after a failed switch with nothing to restore), its hash and container id;
- ``target``: during ``switching``, the profile being switched to (not committed yet);
- ``previous``: the profile that ran before ``current`` (what a failed switch goes back to);
- ``reason``: why the slot is ``down``, ``faulted``, ``failed``, ``stopped`` or ``switching``;
- ``upstream``: where the route points while a model runs; ``facts``: its startup facts;
- ``last_switch``: the last switch report.

One writer: only the holder of the slot lock writes (``switch.Switcher`` is the only code that
calls ``save``). Writes are atomic (temp file, fsync, rename): a crash leaves the old file or
the new, never half. Anyone may ``load``; ``load`` never writes, so ``status`` (no lock) cannot
race the writer. A file that cannot be read is moved aside by the writer only (``recover``),
with a warning that names both paths.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from orchestrator.control.lock import SlotLock
from orchestrator.errors import BusyError

log = logging.getLogger("orchestrator.state")

STATE_FILE = "slot.json"


class Phase(StrEnum):
    """What the slot is doing. The route the frontdoor gets is derived from it (route.py)."""

    EMPTY = "empty"  # fresh host: no state yet
    STARTING = "starting"  # the controller brings ``current`` up (boot, restart after an exit)
    SERVING = "serving"  # ``current`` runs and is ready
    SWITCHING = "switching"  # a switch to ``target`` is under way; ``current`` still committed
    STOPPING = "stopping"  # an operator's stop is under way
    STOPPED = "stopped"  # no model, by the operator's choice
    DOWN = "down"  # ``current``'s container exited or failed to start; a restart is due
    FAULTED = "faulted"  # a device fault; nothing restarts until an operator switches
    FAILED = "failed"  # a switch failed and nothing could be restored; nothing committed


@dataclass
class SlotState:
    phase: Phase = Phase.EMPTY
    current: str | None = None
    current_hash: str | None = None
    container_id: str | None = None
    target: str | None = None
    previous: str | None = None
    reason: str | None = None
    upstream: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    last_switch: dict[str, Any] | None = None
    updated_at: str | None = None

    @property
    def stopped(self) -> bool:
        return self.phase is Phase.STOPPED

    @property
    def fault(self) -> str | None:
        return self.reason if self.phase is Phase.FAULTED else None

    def to_json(self) -> dict[str, Any]:
        raw = asdict(self)
        raw["phase"] = self.phase.value
        return raw

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> SlotState:
        known = {key: raw[key] for key in cls.__dataclass_fields__ if key in raw}
        phase = raw.get("phase")
        known["phase"] = Phase(phase) if phase in {p.value for p in Phase} else _phase_of(raw)
        if "reason" not in raw and raw.get("fault"):
            known["reason"] = raw["fault"]
        return cls(**known)


def _phase_of(raw: dict[str, Any]) -> Phase:
    """The phase of a file written before phases existed (``stopped``/``fault`` flags)."""
    if raw.get("fault"):
        return Phase.FAULTED
    if raw.get("stopped"):
        return Phase.STOPPED
    return Phase.SERVING if raw.get("current") else Phase.FAILED


@dataclass(frozen=True)
class Loaded:
    """What ``read`` found: the state, and why the file could not be used if it could not."""

    state: SlotState
    problem: str | None = None


class StateStore:
    """The state file of one state directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / STATE_FILE

    def read(self) -> Loaded:
        """The persisted state (a fresh one when there is none). Never writes."""
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return Loaded(SlotState())
        except (OSError, ValueError) as exc:
            return Loaded(SlotState(), f"{type(exc).__name__}: {exc}")
        if not isinstance(raw, dict):
            return Loaded(SlotState(), f"not a JSON object: {type(raw).__name__}")
        try:
            return Loaded(SlotState.from_json(raw))
        except (TypeError, ValueError) as exc:
            return Loaded(SlotState(), f"{type(exc).__name__}: {exc}")

    def load(self) -> SlotState:
        """The persisted state for a reader; an unreadable file reads as a fresh state."""
        return self.read().state

    def recover(self, lock: SlotLock) -> SlotState:
        """The writer's load: an unreadable file is moved aside (``slot.json.bad``), never
        trusted or silently overwritten, and the log says where it went."""
        if not lock.held:
            raise BusyError(f"{self.path}: only the holder of {lock.path} may recover the state")
        loaded = self.read()
        if loaded.problem is None:
            return loaded.state
        aside = self.path.with_name(STATE_FILE + ".bad")
        os.replace(self.path, aside)
        log.warning(
            "state file %s is unreadable (%s): moved it to %s; starting from an empty state",
            self.path,
            loaded.problem,
            aside,
        )
        return loaded.state

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

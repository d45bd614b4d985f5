"""The board: what the orchestrator publishes for the operator's page (``PUT /admin/board``).

The frontdoor cannot know profiles, switch history or evidence (it never reads profile files,
evidence files or Docker), so the orchestrator sends a summary of them. Every model forbids
extra keys and bounds every string and list: the page shows exactly these fields and nothing
else, so a value the orchestrator did not mean to publish (a host path, a token, a profile
value beyond ``python -m orchestrator list``'s columns) cannot ride along unnoticed.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections import Counter
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger("frontdoor.board")

# Bounds: generous for real values, small enough that a board stays a few hundred KiB.
Short = Annotated[str, Field(max_length=200)]
Text = Annotated[str, Field(max_length=2000)]
Seconds = Annotated[float, Field(ge=0, le=1e7)]

MAX_PROFILES = 200
MAX_SWITCHES = 50
MAX_PHASES = 30
MAX_POINTS = 64
MAX_CYCLES = 500


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BoardProfile(_Strict):
    """One row of ``python -m orchestrator list --json`` (its columns only)."""

    name: Short
    title: Short = ""
    hf_id: Short = ""
    status: Short = ""
    modalities: Short = ""
    purpose: Text = ""
    extends: Short = ""


class Phase(_Strict):
    name: Short
    duration_s: Seconds
    failed: bool = False


class SwitchRecord(_Strict):
    """One finished switch, stop, boot start, restart or adoption: outcome and phase timings.
    No error text or phase detail: those can name host paths and images."""

    action: Short
    outcome: Short
    profile: Short | None = None
    previous: Short | None = None
    started_at: Short
    finished_at: Short | None = None
    total_s: Seconds = 0.0
    phases: list[Phase] = Field(default_factory=list, max_length=MAX_PHASES)


class GateSummary(_Strict):
    passed: bool
    finished_at: Short
    profile_hash: Short = ""


class BenchPoint(_Strict):
    concurrency: int = Field(ge=1, le=100_000)
    output_tok_s: float | None = Field(default=None, ge=0)
    ttft_p50_s: float | None = Field(default=None, ge=0)


class BenchSummary(_Strict):
    finished_at: Short
    points: list[BenchPoint] = Field(default_factory=list, max_length=MAX_POINTS)


class SoakCycle(_Strict):
    cycle: int = Field(ge=0)
    time: Short
    status: Short
    wall_tok_s: float | None = None


class SoakSummary(_Strict):
    started_at: Short
    finished_at: Short | None = None
    cycles: list[SoakCycle] = Field(default_factory=list, max_length=MAX_CYCLES)
    anomalies: int = Field(default=0, ge=0)


class Evidence(_Strict):
    gate: GateSummary | None = None
    bench: BenchSummary | None = None
    soak: SoakSummary | None = None


class LivePhase(_Strict):
    """The phase a running slot operation has reached (``PUT /admin/board/phase``)."""

    action: Short
    profile: Short | None = None
    phase: Short
    started_at: Short


class Board(_Strict):
    published_at: Short | None = None
    profiles: list[BoardProfile] = Field(default_factory=list, max_length=MAX_PROFILES)
    #: Newest last.
    switches: list[SwitchRecord] = Field(default_factory=list, max_length=MAX_SWITCHES)
    evidence: dict[Short, Evidence] = Field(default_factory=dict, max_length=MAX_PROFILES)


class BoardKeeper:
    """The one owner of the current board. The admin API replaces it (``put``); the page and
    ``/metrics`` read it. It is kept in ``$FRONTDOOR_STATE_DIR/board.json`` (atomic write), so a
    restart of the frontdoor alone still shows the history until the next publication.

    ``switch_outcomes`` counts each switch record the first time it is seen (by its
    ``started_at``), for ``frontdoor_switches_total``; a counter that resets with the process,
    as Prometheus counters may.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.board = Board()
        self.switch_outcomes: Counter[tuple[str, str]] = Counter()
        #: The running operation's phase; not persisted, cleared when its board arrives.
        self.live: LivePhase | None = None
        self._seen: set[str] = set()
        if path is not None:
            try:
                self.board = Board.model_validate_json(path.read_bytes())
            except FileNotFoundError:
                pass
            except (OSError, ValueError) as exc:
                log.warning("ignoring unreadable %s: %s", path, exc)
        self._seen = {s.started_at for s in self.board.switches}

    def put(self, board: Board) -> str | None:
        """Apply ``board`` at once; returns why it was not persisted, if it was not."""
        for record in board.switches:
            if record.started_at not in self._seen:
                self._seen.add(record.started_at)
                self.switch_outcomes[(record.action, record.outcome)] += 1
        # Bound the dedup set to what the board can hold (older ones cannot come back).
        if len(self._seen) > 4 * MAX_SWITCHES:
            self._seen = {s.started_at for s in board.switches}
        self.board = board
        self.live = None  # a board is published when an operation has finished
        if self.path is None:
            return None
        try:
            _save(self.path, board.model_dump_json(indent=2).encode())
        except OSError as exc:
            log.error("could not persist the board to %s: %s", self.path, exc)
            return f"board applied but not persisted: {exc}"
        return None


def _save(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".board.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

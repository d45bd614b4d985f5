"""The board for the operator's page: what the orchestrator publishes to the frontdoor.

The frontdoor never reads profile files, evidence files or Docker, so after every slot
operation (switch, stop, boot, restart, adopt) the orchestrator sends it a summary over the
admin API (``PUT /admin/board``, docs/CONTRACTS.md):

- the profiles, with ``python -m orchestrator list``'s columns only;
- the last switches: action, outcome and phase timings (no error text or phase detail, which
  can name host paths and images); kept in ``$MODEL_SLOT_STATE_DIR/switch_history.json``;
- the latest evidence per profile from ``$MODEL_SLOT_STATE_DIR/evidence/``: the gate's
  verdict and date, the last bench ladder (``bench --json-out`` into that folder) and the last
  soak (its own ``profile``, which the frontdoor's /status named during the soak; older soaks
  without one are attributed to the profile that was serving when they started).

Publishing is best effort: a frontdoor that is down, old or refuses the board is logged and
never fails the operation that triggered it.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from orchestrator.control.frontdoor_client import FrontdoorClient, now_iso
from orchestrator.errors import FrontdoorError
from orchestrator.profiles.store import ProfileStore

log = logging.getLogger("orchestrator.publish")

HISTORY_FILE = "switch_history.json"
#: Switches kept and published (the frontdoor's board accepts up to 50).
HISTORY_LEN = 20
#: Soak cycles published per profile (the newest).
SOAK_CYCLES = 200
#: Evidence files read per publication (newest first), so a huge folder stays cheap.
MAX_EVIDENCE_FILES = 500
_SERVING_OUTCOMES = ("switched", "started", "adopted", "unchanged")


def switch_record(report: dict[str, Any]) -> dict[str, Any]:
    """A report reduced to what the board shows."""
    return {
        "action": str(report.get("action") or ""),
        "outcome": str(report.get("outcome") or ""),
        "profile": report.get("profile"),
        "previous": report.get("previous"),
        "started_at": str(report.get("started_at") or now_iso()),
        "finished_at": report.get("finished_at"),
        "total_s": float(report.get("total_s") or 0.0),
        "phases": [
            {
                "name": str(p.get("name")),
                "duration_s": float(p.get("duration_s") or 0.0),
                "failed": "failed" in p,
            }
            for p in report.get("phases") or []
            if isinstance(p, dict) and p.get("name")
        ][:30],
    }


class History:
    """The last switches, newest last, in the state directory. Written by the slot lock's
    holder only (reports finish under it); a report that finishes twice replaces itself."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / HISTORY_FILE

    def load(self) -> list[dict[str, Any]]:
        try:
            raw = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return []
        return [r for r in raw if isinstance(r, dict)] if isinstance(raw, list) else []

    def add(self, record: dict[str, Any]) -> list[dict[str, Any]]:
        records = [r for r in self.load() if r.get("started_at") != record["started_at"]]
        records = [*records, record][-HISTORY_LEN:]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".history.", suffix=".tmp", dir=self.path.parent)
        try:
            os.fchmod(fd, 0o644)
            with os.fdopen(fd, "w") as fh:
                json.dump(records, fh, indent=1)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return records


def profiles(store: ProfileStore) -> list[dict[str, str]]:
    loaded, _errors = store.load_all()
    return [
        {
            "name": p.name,
            "title": p.title,
            "hf_id": p.hf_id,
            "status": p.status,
            "modalities": p.modalities,
            "purpose": p.purpose,
            "extends": p.chain[1] if len(p.chain) > 1 else "",
        }
        for p in loaded
    ]


def evidence(folder: Path, history: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The newest gate, bench and soak per profile found under ``folder``."""
    found: dict[str, dict[str, Any]] = {}
    try:
        files = sorted(folder.rglob("*.json"), key=_mtime, reverse=True)[:MAX_EVIDENCE_FILES]
    except OSError:
        return found
    for path in reversed(files):  # oldest first, so the newest of each kind wins
        doc = _read(path)
        if doc is None:
            continue
        kind = doc.get("kind")
        if kind == "model-slot-gate":
            name, summary = _gate(doc)
            slot = "gate"
        elif kind == "model-slot-bench":
            name, summary = _bench(doc)
            slot = "bench"
        elif kind == "model-slot-soak":
            name, summary = _soak(doc, path.parent, history)
            slot = "soak"
        else:
            continue
        if name and summary is not None:
            found.setdefault(name, {})[slot] = summary
    return found


def _gate(doc: dict[str, Any]) -> tuple[str | None, dict[str, Any] | None]:
    profile = _dict(doc.get("profile"))
    summary = {
        "passed": bool(doc.get("passed")),
        "finished_at": str(doc.get("finished_at") or ""),
        "profile_hash": str(profile.get("hash") or "")[:12],
    }
    return profile.get("name"), summary


def _bench(doc: dict[str, Any]) -> tuple[str | None, dict[str, Any] | None]:
    profile = _dict(doc.get("profile"))
    points = []
    for level in doc.get("levels") or []:
        summary = level.get("summary") if isinstance(level, dict) else None
        if not isinstance(summary, dict) or not summary.get("concurrency"):
            continue
        ttft = _dict(summary.get("ttft"))
        points.append(
            {
                "concurrency": int(summary["concurrency"]),
                "output_tok_s": _float(summary.get("output_tok_s")),
                "ttft_p50_s": _float(ttft.get("p50")),
            }
        )
    return profile.get("name"), {
        "finished_at": str(doc.get("finished_at") or ""),
        "points": points[:64],
    }


def _soak(
    doc: dict[str, Any], folder: Path, history: list[dict[str, Any]]
) -> tuple[str | None, dict[str, Any] | None]:
    started = str(doc.get("started_at") or "")
    cycles = []
    try:
        lines = (folder / "soak.jsonl").read_text().splitlines()
    except OSError:
        lines = []
    for line in lines[-SOAK_CYCLES:]:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            cycles.append(
                {
                    "cycle": int(row.get("cycle") or 0),
                    "time": str(row.get("time") or ""),
                    "status": str(row.get("status") or ""),
                    "wall_tok_s": _float(row.get("wall_tok_s")),
                }
            )
    anomalies = doc.get("anomalies")
    summary = {
        "started_at": started,
        "finished_at": doc.get("finished_at"),
        "cycles": cycles,
        "anomalies": len(anomalies) if isinstance(anomalies, list) else 0,
    }
    named = doc.get("profile")  # soaks since the profile was recorded per cycle
    return (str(named) if named else _serving_at(started, history)), summary


def _serving_at(when: str, history: list[dict[str, Any]]) -> str | None:
    """The profile that was serving at ``when`` by the switch history (ISO strings compare)."""
    name = None
    for record in history:
        if str(record.get("finished_at") or "") > when:
            break
        if record.get("outcome") in _SERVING_OUTCOMES:
            name = record.get("profile")
        elif record.get("outcome") == "rolled-back":
            name = record.get("previous")
        elif record.get("outcome") == "stopped":
            name = None
    return name


def _read(path: Path) -> dict[str, Any] | None:
    try:
        if path.stat().st_size > 8 * 1024 * 1024:
            return None
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _float(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return round(float(value), 4)
    return None


class Publisher:
    """Records each finished report and publishes the board. Never raises."""

    def __init__(self, frontdoor: FrontdoorClient | None, store: ProfileStore, state_dir: Path):
        self.frontdoor = frontdoor
        self.store = store
        self.state_dir = state_dir
        self.history = History(state_dir)

    def board(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "published_at": now_iso(),
            "profiles": profiles(self.store),
            "switches": records,
            "evidence": evidence(self.state_dir / "evidence", records),
        }

    def phase(self, action: str, profile: str | None, phase: str) -> None:
        """Tell the page which phase the running operation is in (best effort, 2 s at most)."""
        if self.frontdoor is None:
            return
        body = {"action": action, "profile": profile, "phase": phase, "started_at": now_iso()}
        try:
            self.frontdoor.put_phase(body)
        except FrontdoorError as exc:
            log.info("phase not published: %s", exc)

    def __call__(self, report: dict[str, Any]) -> None:
        try:
            records = self.history.add(switch_record(report))
            if self.frontdoor is not None:
                self.frontdoor.put_board(self.board(records))
        except (FrontdoorError, OSError, ValueError) as exc:
            log.warning("board not published: %s", exc)
        except Exception:  # a page must never break a switch
            log.exception("board not published")

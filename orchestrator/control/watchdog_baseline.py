"""The decode baseline for a profile hash: the newest gate report's decode step, else the newest
bench document's c1 decode figure, from ``$MODEL_SLOT_STATE_DIR/evidence/`` (where ``gate``
saves its reports; save a bench there with ``--json-out state/evidence/bench-....json``).

Only documents of exactly this profile hash count: a changed profile is a different model
setup, and its old figure would be a false baseline. None when there is no such document; the
watchdog then takes the first decode probes after a start.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from orchestrator.control.watchdog import Baseline

GATE_KIND = "model-slot-gate"  # orchestrator/evidence/gate.py KIND
BENCH_KIND = "model-slot-bench"  # orchestrator/evidence/bench/report.py KIND
#: Reading stops after this many candidate files (newest first): the folder grows forever.
MAX_FILES = 200


def find(state_dir: Path, profile_hash: str) -> Baseline | None:
    folder = state_dir / "evidence"
    try:
        files = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    except OSError:
        return None
    for path in files[:MAX_FILES]:
        try:
            if path.stat().st_size > 64 << 20:
                continue  # a bench with every record can be large; not a gate report
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        figure = _decode_figure(document, profile_hash)
        if figure is not None:
            kind = "gate" if document.get("kind") == GATE_KIND else "bench"
            return Baseline(figure, f"{kind} {path.name}")
    return None


def _decode_figure(document: Any, profile_hash: str) -> float | None:
    if not isinstance(document, dict):
        return None
    profile = document.get("profile")
    if not isinstance(profile, dict) or profile.get("hash") != profile_hash:
        return None
    if document.get("kind") == GATE_KIND:
        for step in document.get("steps") or []:
            if (
                isinstance(step, dict)
                and step.get("name") == "decode"
                and step.get("result") == "pass"
            ):
                return _positive((step.get("numbers") or {}).get("decode_tok_s"))
        return None
    if document.get("kind") == BENCH_KIND:
        for level in document.get("levels") or []:
            if isinstance(level, dict) and level.get("concurrency") == 1:
                return _positive((level.get("summary") or {}).get("decode_tok_s"))
    return None


def _positive(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and value > 0 else None

"""The evidence store: every result kept by profile and profile hash, with its fingerprint.

Layout, under the state directory::

    evidence/<profile>/<hash12>/<UTC stamp>-<kind>.json

Each file is the tool's own JSON document (a bench, canary, gate, soak or tune result) with two
keys added: ``evidence`` (kind, profile, full hash, when, the file's id) and ``fingerprint``
(``fingerprint.py``: image, vLLM, patches, kernel, XPU). The id of a result is its path
relative to ``evidence/``; ``evidence diff A B`` takes ids, unique parts of ids, or paths.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator import output
from orchestrator.errors import ModelSlotError

DIRECTORY = "evidence"
#: ``kind`` of a stored document -> the short name in the listing.
KINDS = {
    "model-slot-bench": "bench",
    "model-slot-gate": "gate",
    "model-slot-canary": "canary",
    "model-slot-soak": "soak",
    "model-slot-tune-context": "tune-context",
}


@dataclass(frozen=True)
class Entry:
    id: str
    path: Path
    kind: str
    profile: str
    hash: str
    saved_at: str
    document: dict[str, Any]

    @property
    def image_id(self) -> str | None:
        image = (self.document.get("fingerprint") or {}).get("image") or {}
        value = image.get("id")
        return str(value) if value else None

    @property
    def vllm_version(self) -> str | None:
        value = ((self.document.get("fingerprint") or {}).get("vllm") or {}).get("version")
        return str(value) if value else None


def kind_of(document: dict[str, Any]) -> str:
    kind = str(document.get("kind") or "result")
    if kind == "model-slot-bench" and document.get("tune"):
        return "tune-concurrency"
    return KINDS.get(kind, kind.removeprefix("model-slot-"))


class EvidenceStore:
    def __init__(self, state_dir: Path) -> None:
        self.root = state_dir / DIRECTORY

    def save(
        self,
        document: dict[str, Any],
        *,
        profile: str,
        profile_hash: str,
        fingerprint: dict[str, Any],
        kind: str | None = None,
    ) -> Path:
        """Store one result; returns its path. The document gets ``evidence``/``fingerprint``."""
        now = dt.datetime.now(dt.UTC)
        kind = kind or kind_of(document)
        directory = self.root / _safe(profile) / (profile_hash[:12] or "unknown")
        stamp = now.strftime("%Y%m%dT%H%M%S.%fZ")
        path = directory / f"{stamp}-{kind}.json"
        document["fingerprint"] = fingerprint
        document["evidence"] = {
            "id": str(path.relative_to(self.root)),
            "kind": kind,
            "profile": profile,
            "hash": profile_hash,
            "saved_at": now.isoformat(timespec="seconds"),
        }
        output.write_json(path, document)
        return path

    def entries(self, profile: str | None = None) -> list[Entry]:
        """Every stored result (of one profile), oldest first. Unreadable files are skipped."""
        base = self.root / _safe(profile) if profile else self.root
        found = []
        for path in sorted(base.glob("**/*.json")) if base.is_dir() else []:
            entry = self._entry(path)
            if entry is not None:
                found.append(entry)
        return sorted(found, key=lambda e: (e.saved_at, e.id))

    def _entry(self, path: Path) -> Entry | None:
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        meta = document.get("evidence") if isinstance(document, dict) else None
        if not isinstance(meta, dict):
            return None
        return Entry(
            id=str(path.relative_to(self.root)),
            path=path,
            kind=str(meta.get("kind")),
            profile=str(meta.get("profile")),
            hash=str(meta.get("hash")),
            saved_at=str(meta.get("saved_at")),
            document=document,
        )

    def find(self, ref: str) -> Entry:
        """An entry by path, id, or a part of an id that only one entry has."""
        path = Path(ref)
        if path.is_file():
            entry = self._entry(path)
            if entry is None:
                raise ModelSlotError(f"{ref}: not a stored evidence file (no 'evidence' key)")
            return entry
        every = self.entries()
        exact = [e for e in every if e.id == ref]
        matches = exact or [e for e in every if ref in e.id]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise ModelSlotError(
                f"no evidence matches {ref!r} under {self.root}; "
                "`python -m orchestrator evidence` lists the ids"
            )
        shown = ", ".join(e.id for e in matches[:4])
        raise ModelSlotError(f"{ref!r} matches {len(matches)} results ({shown}...): say more")


def _safe(name: str | None) -> str:
    text = str(name or "unknown")
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text) or "unknown"


# ---- summaries and differences ------------------------------------------------------------
def headline(entry: Entry) -> str:
    """One line of numbers for the listing."""
    doc = entry.document
    if entry.kind in ("bench", "tune-concurrency"):
        levels = [lv["summary"] for lv in doc.get("levels", [])]
        best = max(levels, key=lambda s: s.get("output_tok_s") or 0, default=None)
        text = ""
        if best is not None:
            text = f"best c{best['concurrency']} {best.get('output_tok_s') or 0:.1f} tok/s"
        if doc.get("tune"):
            text += f", knee c{doc['tune'].get('knee')}"
        return text
    if entry.kind == "gate":
        return ("passed" if doc.get("passed") else "FAILED") + (
            ", promoted" if doc.get("promoted") else ""
        )
    if entry.kind == "tune-context":
        winner = doc.get("winner") or {}
        return f"{len(doc.get('rows', []))} starts, selected {winner.get('max_model_len', '-')}"
    if entry.kind == "canary":
        return "passed" if doc.get("passed") else "FAILED"
    return ""


def flatten(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from flatten(item, f"{prefix}{key}.")
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        for index, item in enumerate(value):
            yield from flatten(item, f"{prefix}{index}.")
    else:
        yield prefix.rstrip("."), value


def fingerprint_changes(a: Entry, b: Entry) -> list[tuple[str, str, str]]:
    left = dict(flatten(a.document.get("fingerprint") or {}))
    right = dict(flatten(b.document.get("fingerprint") or {}))
    rows = []
    for key in sorted(set(left) | set(right)):
        va, vb = left.get(key), right.get(key)
        if va != vb:
            rows.append((key, _short(va), _short(vb)))
    return rows


def _short(value: Any) -> str:
    text = "-" if value is None else json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."


def number_changes(a: Entry, b: Entry) -> list[tuple[str, str, str, str]]:
    """Numbers that differ between the two results, with the change in percent."""
    skip = ("fingerprint.", "evidence.", "records", "levels.")
    left = {k: v for k, v in flatten(_numbers(a.document)) if not k.startswith(skip)}
    right = {k: v for k, v in flatten(_numbers(b.document)) if not k.startswith(skip)}
    rows = []
    for key in sorted(set(left) & set(right)):
        va, vb = left[key], right[key]
        if not _is_number(va) or not _is_number(vb) or va == vb:
            continue
        change = f"{(vb - va) / va * 100:+.1f}%" if va else "-"
        rows.append((key, _fmt(va), _fmt(vb), change))
    return rows


def _numbers(doc: dict[str, Any]) -> dict[str, Any]:
    """The parts of a document whose numbers are worth comparing."""
    out: dict[str, Any] = {}
    for level in doc.get("levels", []) or []:
        summary = dict(level.get("summary") or {})
        summary.pop("errors", None)
        out[f"c{level.get('concurrency')}"] = summary
    for step in doc.get("steps", []) or []:
        out[f"step{step.get('number')}.{step.get('name')}"] = step.get("numbers") or {}
    for row in doc.get("rows", []) or []:
        out[f"len{row.get('max_model_len')}"] = {
            "kv_cache_tokens": row.get("kv_cache_tokens"),
            "max_concurrency": row.get("max_concurrency"),
            "start_s": row.get("start_s"),
        }
    if doc.get("tune"):
        out["tune"] = {"knee": doc["tune"].get("knee")}
    if doc.get("winner"):
        out["winner"] = {"max_model_len": doc["winner"].get("max_model_len")}
    return out


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and not (isinstance(value, float) and math.isnan(value))
    )


def _fmt(value: float) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)

"""Keep a result in the evidence store with the fingerprint of what produced it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from orchestrator.config import Paths
from orchestrator.errors import ModelSlotError
from orchestrator.evidence import fingerprint
from orchestrator.evidence.store import EvidenceStore
from orchestrator.profiles.store import Profile, ProfileStore


def profile_of(document: dict[str, Any]) -> tuple[str, str]:
    """(name, hash) of the profile a document says it measured; ``unknown`` when none."""
    profile = document.get("profile") or {}
    name = profile.get("name") if isinstance(profile, dict) else None
    digest = profile.get("hash") if isinstance(profile, dict) else None
    return str(name or "unknown"), str(digest or "")


def _served_profile(base_url: str | None) -> dict[str, Any] | None:
    """``/status``'s active profile (name, and hash when the route has it), if a frontdoor
    answers at ``base_url``; None otherwise."""
    if not base_url:
        return None
    try:
        status = httpx.get(base_url.rstrip("/") + "/status", timeout=5).json()
    except (httpx.HTTPError, ValueError):
        return None
    slot = status.get("model_slot") if isinstance(status, dict) else None
    if not isinstance(slot, dict) or not slot.get("name"):
        return None
    route = status.get("route") or {}
    routed = route.get("profile") if isinstance(route, dict) else None
    digest = slot.get("hash") or (routed.get("hash") if isinstance(routed, dict) else None)
    return {"name": slot["name"], "hash": digest or ""}


def record(
    document: dict[str, Any],
    *,
    base_url: str | None,
    profile: Profile | None = None,
    state_dir: Path | None = None,
    kind: str | None = None,
) -> Path:
    """Fingerprint and store ``document``; returns the stored file's path."""
    if profile is None and not isinstance(document.get("profile"), dict):
        served = _served_profile(base_url)
        if served is not None:
            document["profile"] = served
    if profile is None:
        name, _ = profile_of(document)
        try:
            profile = ProfileStore(Paths.from_env().profiles_dir).load(name)
        except ModelSlotError:
            profile = None
    name, digest = profile_of(document)
    if profile is not None and name == "unknown":
        name, digest = profile.name, profile.hash
    found = fingerprint.from_slot(profile, base_url, expect_hash=digest or None)
    store = EvidenceStore(state_dir or Paths.from_env().state_dir)
    return store.save(document, profile=name, profile_hash=digest, fingerprint=found, kind=kind)

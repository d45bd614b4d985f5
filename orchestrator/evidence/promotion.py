"""Whether a result may promote a profile: it must come from what the profile is *now*.

A gate run is evidence for one resolved profile (its hash) on one image (its ID). If the file
was edited since (another hash) or the image was rebuilt (another ID), the evidence is about
something else, and ``gate --promote`` refuses, saying which and what to do.
"""

from __future__ import annotations

from typing import Any

from orchestrator.profiles.store import Profile


def refusals(profile: Profile, document: dict[str, Any], image_id: str | None) -> list[str]:
    """Why ``document`` cannot promote ``profile`` (empty: it can). ``image_id``: the ID the
    profile's ``MODEL_SLOT_IMAGE`` has on this engine now (None: unknown)."""
    why = []
    meta = document.get("evidence") or {}
    measured = document.get("profile") or {}
    name = meta.get("profile") or measured.get("name")
    digest = meta.get("hash") or measured.get("hash")
    if name and name != profile.name:
        why.append(f"the evidence is for profile {name!r}, not {profile.name!r}")
    if digest != profile.hash:
        why.append(
            f"the evidence was produced by {name or 'a profile'} with hash "
            f"{str(digest)[:12]}, but {profile.name} now resolves to {profile.hash[:12]} "
            "(edited since?): run the gate again on the profile as it is"
        )
    fingerprint = document.get("fingerprint") or {}
    used = (fingerprint.get("image") or {}).get("id")
    if used and image_id and used != image_id:
        why.append(
            f"the evidence was measured on image {used[:19]}, but {profile.image} is now "
            f"{image_id[:19]} (rebuilt since?): switch to the new image and run the gate again"
        )
    return why

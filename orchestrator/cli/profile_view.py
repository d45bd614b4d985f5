"""How ``list`` and ``show`` render a profile's identity: checkpoint, purpose, the gate's image
step. The lab's own table has the columns Profile, Status, Modalities, Purpose; ``list --wide``
prints exactly those."""

from __future__ import annotations

from collections.abc import Sequence

from orchestrator import output
from orchestrator.profiles.store import Profile

#: What ``list`` and ``show`` print for a profile whose ``MODEL_SLOT_HF_ID`` is empty: the lab
#: named no checkpoint, and none is invented.
NOT_RECORDED = "not recorded"


def checkpoint(profile: Profile) -> str:
    return profile.hf_id or NOT_RECORDED


def image_step(profile: Profile) -> str:
    """Whether ``gate`` step 3 (a real image request) applies; the gate asks the same property."""
    if profile.supports_images:
        return (
            f"applies (modalities {profile.modalities}): step 3 sends a PNG to /v1/chat/completions"
        )
    return f"does not apply (modalities {profile.modalities}): step 3 is skipped"


def list_table(profiles: Sequence[Profile], *, wide: bool) -> str:
    if wide:
        return output.table(
            ("NAME", "STATUS", "MODALITIES", "PURPOSE"),
            [(p.name, p.status, p.modalities, p.purpose) for p in profiles],
        )
    return output.table(
        ("NAME", "STATUS", "MODALITIES", "CHECKPOINT", "TITLE"),
        [(p.name, p.status, p.modalities, checkpoint(p), p.title) for p in profiles],
    )


def identity_lines(profile: Profile) -> list[str]:
    """``show``'s lines under the header: checkpoint, purpose, gate image step."""
    return [
        f"  checkpoint: {checkpoint(profile)}",
        f"  purpose:    {profile.purpose or '-'}",
        f"  gate image step: {image_step(profile)}",
    ]

"""A derived profile file: ``MODEL_SLOT_EXTENDS`` the source, a few keys, and how it was found.

The tools write profiles the way the lab wrote its variants by hand: a small file that extends
the profile it was derived from and overrides only what the experiment changed. The comment
block at its top says which command found the values and what it measured, so the file alone
tells a reader where it came from. A file this module did not write is never overwritten.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from orchestrator.errors import ModelSlotError

#: The first line of every file written here; only such files may be overwritten.
MARKER = "# Written by `python -m orchestrator tune`"


def render(source: str, keys: Mapping[str, str], comment: Sequence[str]) -> str:
    lines = [MARKER]
    lines += [f"# {line}".rstrip() for line in comment]
    lines.append(f"MODEL_SLOT_EXTENDS={source}")
    lines += [f"{key}={value}" for key, value in keys.items()]
    return "\n".join(lines) + "\n"


def ours(path: Path) -> bool:
    try:
        return path.read_text(encoding="utf-8").startswith(MARKER)
    except FileNotFoundError:
        return True  # nothing there to protect
    except OSError:
        return False


def write(path: Path, source: str, keys: Mapping[str, str], comment: Sequence[str]) -> Path:
    """Write the file; refuse to replace a profile somebody wrote by hand."""
    if not ours(path):
        raise ModelSlotError(
            f"{path} exists and was not written by `tune`; not overwriting it. Move it away "
            "or pass another --name"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(source, keys, comment), encoding="utf-8")
    return path

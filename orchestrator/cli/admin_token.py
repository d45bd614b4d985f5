"""The frontdoor admin token: made once, kept in a file only the stack's parts can read."""

from __future__ import annotations

import argparse
import os
import secrets
from pathlib import Path


def ensure(path: Path, owner: int | None = None) -> bool:
    """Create ``path`` with a fresh token unless it holds one. Returns True when created.

    The file is written under a temporary name and renamed, so a reader never sees a half token.
    """
    if path.exists() and path.read_text().strip():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o400)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(32) + "\n")
    if owner is not None:
        os.chown(tmp, owner, owner)
    tmp.replace(path)
    return True


def read(path: Path) -> str:
    return path.read_text().strip()


def cmd_admin_token(args: argparse.Namespace) -> int:
    created = ensure(Path(args.ensure), args.owner)
    print(f"{'created' if created else 'kept'} {args.ensure}")
    return 0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser("admin-token", help="create the frontdoor admin token file once")
    p.add_argument("--ensure", required=True, metavar="PATH", help="token file to create")
    p.add_argument("--owner", type=int, default=None, help="uid (and gid) to own the file")
    p.set_defaults(func=cmd_admin_token)

"""The ``images`` command: ``base``, ``wheels``, ``lock``, ``build``, ``list``.

``register(subparsers)`` adds it to the orchestrator's parser; every handler takes the parsed
namespace and returns an exit code. Offline (the default) the images are built FROM the local
bases (``modelslot/debian:bookworm-local`` and, for XPU, the substitute); ``--public-bases`` keeps
the Dockerfiles' digest-pinned public bases instead.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import docker
import docker.errors

from orchestrator.errors import ImageError
from orchestrator.images import base as base_mod
from orchestrator.images import build as build_mod
from orchestrator.images import wheelhouse
from orchestrator.progress import Progress, ProgressPrinter, note

BUILD_TIMEOUT_S = 3600


def _client() -> docker.DockerClient:
    try:
        return docker.from_env(timeout=BUILD_TIMEOUT_S)
    except docker.errors.DockerException as exc:
        raise ImageError(f"cannot reach the Docker engine: {exc}") from None


def _run(args: argparse.Namespace, body: Any) -> int:
    progress = ProgressPrinter(verbose=bool(getattr(args, "verbose", False)), decimals=1)
    try:
        result: int = body(progress)
    except ImageError as exc:
        print(f"images: {exc}", file=sys.stderr)
        return 1
    progress(note("done"))
    return result


def _locks_for(only: str | None) -> list[str]:
    if only is None:
        return list(wheelhouse.LOCK_SPECS)
    return [build_mod.IMAGES[only].lock]


def cmd_base(args: argparse.Namespace) -> int:
    def body(progress: Progress) -> int:
        base_mod.ensure_base(_client(), progress, tag=args.tag, force=args.force)
        return 0

    return _run(args, body)


def cmd_wheels(args: argparse.Namespace) -> int:
    def body(progress: Progress) -> int:
        for name in _locks_for(args.only):
            wheelhouse.fetch(name, progress)
        return 0

    return _run(args, body)


def cmd_lock(args: argparse.Namespace) -> int:
    def body(progress: Progress) -> int:
        for name in _locks_for(args.only):
            wheelhouse.lock(name, progress)
        return 0

    return _run(args, body)


def cmd_build(args: argparse.Namespace) -> int:
    def body(progress: Progress) -> int:
        client = _client()
        offline = not args.public_bases
        if offline:
            base_mod.ensure_base(client, progress)
        keys = [args.only] if args.only else list(build_mod.BUILD_ORDER)
        results = build_mod.build(client, keys, progress, offline=offline, no_cache=args.no_cache)
        for result in results:
            what = "up to date" if result.skipped else f"built in {result.seconds:.0f}s"
            print(f"{result.tag:40} {what:18} {result.size_bytes / 2**30:6.2f} GiB")
        return 0

    return _run(args, body)


def cmd_list(args: argparse.Namespace) -> int:
    def body(progress: Progress) -> int:
        rows = build_mod.status(_client(), offline=not args.public_bases)
        print(f"{'image':16} {'tag':38} {'built':5} {'created':19} {'git rev':18} state")
        for row in rows:
            if not row.built:
                state = "not built"
            elif row.stale:
                shown = row.stale[:3]
                more = f"; {len(row.stale) - 3} more" if len(row.stale) > 3 else ""
                state = "STALE: " + "; ".join(shown) + more
            else:
                state = "up to date"
            built = "yes" if row.built else "no"
            print(
                f"{row.key:16} {row.tag:38} {built:5} {row.created:19} "
                f"{row.git_revision:18} {state}"
            )
        return 0

    return _run(args, body)


def register(subparsers: Any) -> None:
    """Add ``images`` and its subcommands to an ``argparse`` subparsers object."""
    images = subparsers.add_parser(
        "images",
        help="build the images offline: base, wheelhouses, locks, builds, list",
        description=__doc__,
    )
    commands = images.add_subparsers(dest="images_command", required=True)

    base = commands.add_parser("base", help="build the local Debian base (debootstrap)")
    base.add_argument("--tag", default=base_mod.LOCAL_BASE)
    base.add_argument("--force", action="store_true", help="rebuild even if the tag exists")
    base.set_defaults(func=cmd_base)

    choices = sorted(build_mod.IMAGES)
    wheels = commands.add_parser("wheels", help="fill the wheelhouses from the lock files")
    wheels.add_argument("--only", choices=choices)
    wheels.set_defaults(func=cmd_wheels)

    lock = commands.add_parser("lock", help="re-resolve and re-hash the lock files")
    lock.add_argument("--only", choices=choices)
    lock.set_defaults(func=cmd_lock)

    build = commands.add_parser("build", help="build images whose inputs changed")
    build.add_argument("--only", choices=choices)
    build.add_argument("--no-cache", action="store_true", help="rebuild without layer cache")
    build.add_argument(
        "--public-bases",
        action="store_true",
        help="build FROM the Dockerfiles' digest-pinned public bases (needs a registry)",
    )
    build.set_defaults(func=cmd_build)

    listing = commands.add_parser("list", help="show built images and which are STALE")
    listing.add_argument("--public-bases", action="store_true")
    listing.set_defaults(func=cmd_list)

    for parser in (base, wheels, lock, build, listing):
        parser.add_argument("-v", "--verbose", action="store_true", help="show every log line")

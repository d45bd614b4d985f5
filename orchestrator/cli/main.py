"""``python -m orchestrator``: the one command line of the slot.

Profiles (``list``, ``show``, ``validate``, ``keys``) live here; the other commands register
themselves from their own modules: the slot (``switch``, ``status``, ``stop``, ``up``:
``cli/slot.py``), the evidence tools (``bench``, ``canary``, ``gate``, ``soak``:
``cli/evidence.py``), ``images``, ``demo`` and ``admin-token``.

Each command is a function ``(args) -> exit code``. Deliberate errors (``ModelSlotError``) are
printed to stderr without a traceback and exit 1; usage errors exit 2 (argparse's own).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence

from orchestrator import output
from orchestrator.cli import admin_token, demo, parsing, profile_view
from orchestrator.cli import evidence as evidence_cli
from orchestrator.cli import evidence_store as evidence_store_cli
from orchestrator.cli import slot as slot_cli
from orchestrator.cli import tune as tune_cli
from orchestrator.config import Paths
from orchestrator.errors import ModelSlotError
from orchestrator.images import cli as images_cli
from orchestrator.profiles import schema
from orchestrator.profiles.store import Profile, ProfileStore


def _store() -> ProfileStore:
    return ProfileStore(Paths.from_env().profiles_dir)


def _summary(profile: Profile) -> dict[str, str | bool]:
    return {
        "name": profile.name,
        "title": profile.title,
        "hf_id": profile.hf_id,
        "status": profile.status,
        "modalities": profile.modalities,
        "purpose": profile.purpose,
        "gate_image_step": profile.supports_images,
        "extends": profile.chain[1] if len(profile.chain) > 1 else "",
        "hash": profile.hash,
    }


def cmd_list(args: argparse.Namespace) -> int:
    store = _store()
    profiles, errors = store.load_all()
    if args.json:
        output.print_json([_summary(profile) for profile in profiles])
    else:
        print(profile_view.list_table(profiles, wide=args.wide))
    for exc in errors:
        output.error(str(exc))
    if not profiles and not errors:
        output.error(f"no profiles in {store.directory} (set MODEL_SLOT_PROFILES_DIR?)")
        return 1
    return 1 if errors else 0


def cmd_show(args: argparse.Namespace) -> int:
    profile = _store().load(args.name)
    command = profile.serve_command()
    if args.json:
        output.print_json(
            {
                **_summary(profile),
                "chain": list(profile.chain),
                "env": profile.env,
                "origin": profile.origin,
                "container_env": profile.container_env(),
                "argv": command,
                "frontdoor": profile.frontdoor_limits(),
            }
        )
        return 0
    print(f"{profile.name}  ({profile.status})  {profile.title}")
    print(f"  file:    {profile.path}")
    if len(profile.chain) > 1:
        print(f"  extends: {' -> '.join(profile.chain[1:])}")
    print(f"  hash:    {profile.hash[:16]}")
    print("\n".join(profile_view.identity_lines(profile)))
    print()
    rows = [(key, value, profile.origin.get(key, "")) for key, value in sorted(profile.env.items())]
    print(output.table(("KEY", "VALUE", "FROM"), rows))
    print()
    print("argv (exec'd by the image's entrypoint, no shell):")
    print("  " + " ".join(shlex.quote(arg) for arg in command))
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    store = _store()
    names = args.names or store.names()
    if not names:
        output.error(f"no profiles in {store.directory}")
        return 1
    profiles, errors = store.load_all(names)
    for profile in profiles:
        print(f"ok       {profile.name}")
    for exc in errors:
        output.error(str(exc))
    print(f"{len(profiles)} valid, {len(errors)} invalid")
    return 1 if errors else 0


def cmd_keys(args: argparse.Namespace) -> int:
    rows = [
        (key, spec.group, spec.default if spec.default is not None else "", spec.help)
        for key, spec in schema.KEYS.items()
    ]
    print(output.table(("KEY", "GROUP", "DEFAULT", "WHAT"), rows))
    print("\nAny other key passes through to the model container, and so do vLLM's own")
    print("environment variables (VLLM_CPU_*, VLLM_XPU_*, VLLM_CACHE_ROOT, ...).")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m orchestrator",
        allow_abbrev=False,
        description="Serve one model at a time behind one OpenAI-compatible endpoint.",
    )
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", action=parsing.Commands
    )

    p = commands.add_parser("list", help="the profile table")
    p.add_argument("--json", action="store_true", help="one JSON object per profile")
    p.add_argument("--wide", action="store_true", help="the lab's columns, with each purpose")
    p.set_defaults(func=cmd_list)

    p = commands.add_parser("show", help="a resolved profile and its vLLM argv")
    p.add_argument("name")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_show)

    p = commands.add_parser("validate", help="validate profiles (all when none named)")
    p.add_argument("names", nargs="*", metavar="NAME")
    p.set_defaults(func=cmd_validate)

    p = commands.add_parser("keys", help="the keys a profile may set")
    p.set_defaults(func=cmd_keys)

    _register_extensions(commands)
    return parser


def _register_extensions(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Commands that live in their own modules register themselves here."""
    slot_cli.register(commands)
    evidence_cli.register(commands)
    tune_cli.register(commands)
    evidence_store_cli.register(commands)
    images_cli.register(commands)
    demo.register(commands)
    admin_token.register(commands)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except ModelSlotError as exc:
        output.error(str(exc))
        return 1
    except KeyboardInterrupt:
        output.error("interrupted")
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())

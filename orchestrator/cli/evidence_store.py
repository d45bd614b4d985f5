"""``python -m orchestrator evidence [PROFILE]`` and ``evidence diff A B``."""

from __future__ import annotations

import argparse
from pathlib import Path

from orchestrator import output
from orchestrator.config import Paths
from orchestrator.errors import ModelSlotError
from orchestrator.evidence import store as store_mod
from orchestrator.evidence.store import EvidenceStore


def _store(args: argparse.Namespace) -> EvidenceStore:
    return EvidenceStore(Path(args.state_dir) if args.state_dir else Paths.from_env().state_dir)


def cmd_evidence(args: argparse.Namespace) -> int:
    words = list(args.words)
    store = _store(args)
    if words and words[0] == "diff":
        if len(words) != 3:
            raise ModelSlotError("usage: evidence diff A B (ids from `evidence`, or paths)")
        return _diff(store, words[1], words[2], args.json)
    if len(words) > 1:
        raise ModelSlotError("usage: evidence [PROFILE] | evidence diff A B")
    entries = store.entries(words[0] if words else None)
    if args.json:
        output.print_json(
            [
                {
                    "id": e.id,
                    "kind": e.kind,
                    "profile": e.profile,
                    "hash": e.hash,
                    "saved_at": e.saved_at,
                    "image_id": e.image_id,
                    "vllm_version": e.vllm_version,
                    "headline": store_mod.headline(e),
                }
                for e in entries
            ]
        )
        return 0
    if not entries:
        where = f" for {words[0]}" if words else ""
        print(f"no evidence{where} under {store.root}")
        return 0
    rows = [
        (
            e.saved_at.replace("+00:00", "Z"),
            e.kind,
            e.profile,
            e.hash[:12],
            (e.image_id or "-").removeprefix("sha256:")[:12],
            e.vllm_version or "-",
            store_mod.headline(e),
            e.id,
        )
        for e in entries
    ]
    headers = ("SAVED", "KIND", "PROFILE", "HASH", "IMAGE", "VLLM", "RESULT", "ID")
    print(output.table(headers, rows))
    return 0


def _diff(store: EvidenceStore, ref_a: str, ref_b: str, as_json: bool) -> int:
    a, b = store.find(ref_a), store.find(ref_b)
    fingerprint = store_mod.fingerprint_changes(a, b)
    numbers = store_mod.number_changes(a, b)
    if as_json:
        output.print_json(
            {
                "a": a.id,
                "b": b.id,
                "profile": [[a.profile, a.hash], [b.profile, b.hash]],
                "fingerprint": [dict(zip(("key", "a", "b"), r, strict=True)) for r in fingerprint],
                "numbers": [
                    dict(zip(("key", "a", "b", "change"), r, strict=True)) for r in numbers
                ],
            }
        )
        return 0
    print(f"A: {a.id} ({a.kind}, {a.profile} {a.hash[:12]})")
    print(f"B: {b.id} ({b.kind}, {b.profile} {b.hash[:12]})")
    if (a.profile, a.hash) != (b.profile, b.hash):
        print(f"profile: {a.profile} {a.hash[:12]} -> {b.profile} {b.hash[:12]}")
    print()
    if fingerprint:
        print("what produced them:")
        print(output.table(("FINGERPRINT", "A", "B"), fingerprint))
    else:
        print("what produced them: the same (image, vLLM, patches, kernel, XPU)")
    print()
    if numbers:
        print(output.table(("NUMBER", "A", "B", "B vs A"), numbers))
    else:
        print("numbers: none differ (or none in common)")
    return 0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser(
        "evidence",
        help="stored results by profile and hash; `evidence diff A B` compares two",
        description="List the results kept under $MODEL_SLOT_STATE_DIR/evidence (all, or one "
        "PROFILE's), or `evidence diff A B`: what changed between two (fingerprint, numbers).",
    )
    p.add_argument("words", nargs="*", metavar="PROFILE | diff A B")
    p.add_argument("--state-dir", help="default $MODEL_SLOT_STATE_DIR or ./state")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_evidence)

"""``python -m orchestrator gate PROFILE``: the validation gate (``evidence/gate.py``), rendered
and kept in the evidence store (``evidence/<profile>/<hash12>/<time>-gate.json``) with the
fingerprint of what produced it. ``--promote`` refuses when that fingerprint or the profile
hash is not what the profile is now; ``--promote --evidence ID`` promotes on a stored run."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from orchestrator import output
from orchestrator.cli.bench import add_base_url
from orchestrator.config import Paths
from orchestrator.errors import ModelSlotError
from orchestrator.evidence import canary, fingerprint, html_report, promotion
from orchestrator.evidence.gate import KIND, GateConfig, GateReport, promote, run_gate
from orchestrator.evidence.store import EvidenceStore
from orchestrator.profiles.store import Profile, ProfileStore
from orchestrator.progress import ProgressPrinter


def _flat(numbers: dict[str, Any], prefix: str = "") -> list[str]:
    """``key=value`` pairs, nested dicts as ``outer.inner``, long text shortened."""
    pairs: list[str] = []
    for key, value in numbers.items():
        if isinstance(value, dict):
            pairs += _flat(value, f"{prefix}{key}.")
        elif isinstance(value, str):
            text = json.dumps(value)
            pairs.append(f"{prefix}{key}={text[:40] + '...' if len(text) > 40 else text}")
        else:
            pairs.append(f"{prefix}{key}={value}")
    return pairs


def render(report: GateReport) -> str:
    rows = [(step.number, step.name, step.result.upper(), step.reason) for step in report.steps]
    profile = report.profile
    lines = [
        f"gate {profile.name} (hash {profile.hash[:12]}, status {profile.status}) "
        f"at {report.config.base_url}",
        output.table(("#", "STEP", "RESULT", "WHY"), rows),
        "",
    ]
    for step in report.steps:
        if step.numbers:
            lines.append(f"{step.number} {step.name}: " + " ".join(_flat(step.numbers)))
    lines.append("PASSED: every step passed or does not apply" if report.passed else "FAILED")
    return "\n".join(lines)


def _tuple(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 2,4, not {text!r}") from None


def cmd_gate(args: argparse.Namespace) -> int:
    paths = Paths.from_env()
    store = ProfileStore(Path(args.profiles_dir) if args.profiles_dir else paths.profiles_dir)
    profile = store.load(args.profile)
    if args.evidence:
        return promote_from_evidence(args, store, profile)
    config = GateConfig(
        base_url=args.base_url,
        decode_prompt_tokens=args.decode_prompt_tokens,
        decode_tokens=args.decode_tokens,
        ttft_contexts=args.ttft_contexts,
        ttft_output_tokens=args.ttft_output_tokens,
        levels=args.levels,
        requests_per_level=args.requests_per_level,
        min_decode_tok_s=args.min_decode_tok_s,
        max_ttft_s=args.max_ttft_s,
        canary_expect=args.canary_expect,
        canary_baseline=canary.load_baseline(Path(args.canary_baseline))
        if args.canary_baseline
        else None,
    )
    report = run_gate(
        profile,
        config,
        ProgressPrinter(label="gate", quiet=args.quiet, decimals=1),
        switch=args.switch,
    )
    state_dir = Path(args.state_dir) if args.state_dir else paths.state_dir
    document = report.to_json()
    document["fingerprint"] = fingerprint.from_slot(profile, args.base_url)
    refused = promotion.refusals(profile, document, fingerprint.image_id(profile.image))
    if args.promote and report.passed and not refused:
        report.promoted = promote(store, profile)
        document["promoted"] = report.promoted
    document["refused"] = refused if args.promote and report.passed else []
    path = EvidenceStore(state_dir).save(
        document,
        profile=profile.name,
        profile_hash=profile.hash,
        fingerprint=document["fingerprint"],
    )
    if args.html:
        html_report.write(Path(args.html), document)
    if args.json:
        output.print_json(document)
    else:
        print(render(report))
        print(f"report: {path}" + (f" and {args.html}" if args.html else ""))
    if args.promote and document["refused"]:
        if not args.json:
            print(f"not promoted: {'; '.join(document['refused'])}")
        return 1
    if args.promote and not args.json:  # with --json, the report's "promoted" says it
        if report.passed:
            print(f"promoted: {report.promoted}")
        else:
            print(f"not promoted: a step failed; {profile.name} stays {profile.status}")
    return 0 if report.passed else 1


def promote_from_evidence(args: argparse.Namespace, store: ProfileStore, profile: Profile) -> int:
    """``gate PROFILE --promote --evidence ID``: promote on a stored, passing gate result of
    this very profile hash and image; refuse (exit 1) saying why otherwise."""
    if not args.promote:
        raise ModelSlotError("--evidence is for --promote: promote on a stored gate result")
    state_dir = Path(args.state_dir) if args.state_dir else Paths.from_env().state_dir
    entry = EvidenceStore(state_dir).find(args.evidence)
    if entry.document.get("kind") != KIND:
        raise ModelSlotError(f"{entry.id} is a {entry.kind} result; --evidence needs a gate result")
    refused = promotion.refusals(profile, entry.document, fingerprint.image_id(profile.image))
    if not entry.document.get("passed"):
        refused.insert(0, "that gate run did not pass")
    if refused:
        output.error(f"not promoted on {entry.id}: " + "; ".join(refused))
        return 1
    print(f"promoted on {entry.id}: {promote(store, profile)}")
    return 0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser(
        "gate",
        help="the 7-step validation gate; --promote marks a passing profile production",
        description="Validation gate against the live endpoint, which must serve PROFILE.",
    )
    p.add_argument("profile", metavar="PROFILE")
    add_base_url(p)
    p.add_argument("--switch", action="store_true", help="switch to PROFILE first if needed")
    p.add_argument("--promote", action="store_true", help="set status production if all pass")
    p.add_argument(
        "--evidence",
        metavar="ID",
        help="with --promote: promote on a stored gate result (`evidence` lists ids) instead "
        "of running the gate; refused if it came from another profile hash or image",
    )
    p.add_argument("--decode-prompt-tokens", type=int, default=128)
    p.add_argument("--decode-tokens", type=int, default=256, help="steps 4 and 6")
    p.add_argument(
        "--ttft-contexts", type=_tuple, default=(16384, 32768), help="step 5, e.g. 16384,32768"
    )
    p.add_argument("--ttft-output-tokens", type=int, default=16)
    p.add_argument("--levels", type=_tuple, default=(2, 4), help="step 6 concurrency levels")
    p.add_argument("--requests-per-level", type=int, help="step 6; default 2 x concurrency")
    p.add_argument("--min-decode-tok-s", type=float, help="step 4 fails below this")
    p.add_argument("--max-ttft-s", type=float, help="step 5 fails above this")
    p.add_argument("--canary-expect", choices=("answers", "baseline"), default="answers")
    p.add_argument("--canary-baseline", help="a saved canary result (needed for baseline)")
    p.add_argument("--profiles-dir", help="default $MODEL_SLOT_PROFILES_DIR or ./profiles")
    p.add_argument("--state-dir", help="default $MODEL_SLOT_STATE_DIR or ./state")
    p.add_argument("--html", help="also write a self-contained HTML report here")
    p.add_argument("--json", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_gate)

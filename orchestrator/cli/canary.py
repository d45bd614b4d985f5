"""``python -m orchestrator canary``: the quality canaries (``evidence/canary.py``), rendered."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from orchestrator import output
from orchestrator.cli.bench import add_base_url
from orchestrator.errors import ModelSlotError
from orchestrator.evidence.canary import CanaryConfig, CanaryRun, load_baseline, run_canary
from orchestrator.evidence.record import record
from orchestrator.progress import ProgressPrinter


def render(run: CanaryRun) -> str:
    rows = [
        (
            r.case,
            r.run,
            "ok" if r.success else "ERROR",
            "yes" if r.expected_pass else "no",
            r.baseline,
            r.sha256[:12],
            (r.usage or {}).get("completion_tokens", "-"),
            json.dumps(r.content)[:48],
        )
        for r in run.results
    ]
    lines = [
        f"canary: {run.model} at {run.base_url} (expect: {run.expect}, "
        f"temperature 0, top_p 1, seed {run.settings.get('seed')})",
        output.table(
            ("CASE", "RUN", "REQUEST", "EXPECTED", "BASELINE", "SHA256", "TOKENS", "CONTENT"), rows
        ),
    ]
    lines += [f"skipped {name}: {why}" for name, why in run.skipped.items()]
    if run.baseline_model and run.baseline_model != run.model:
        lines.append(f"note: the baseline is from model {run.baseline_model}, not {run.model}")
    lines += [f"FAIL {problem}" for problem in run.failures]
    lines.append("PASS" if run.passed else f"FAILED ({len(run.failures)} problems)")
    return "\n".join(lines)


def baseline_origin(baseline: dict[str, Any] | None) -> dict[str, Any] | None:
    """Which profile, hash and image a baseline came from (kept in the evidence store)."""
    if baseline is None:
        return None
    meta = baseline.get("evidence") or {}
    image = (baseline.get("fingerprint") or {}).get("image") or {}
    return {
        "profile": meta.get("profile") or (baseline.get("profile") or {}).get("name"),
        "hash": meta.get("hash"),
        "image_id": image.get("id"),
        "evidence_id": meta.get("id"),
    }


def cmd_canary(args: argparse.Namespace) -> int:
    config = CanaryConfig(
        base_url=args.base_url,
        model=args.model,
        image=args.image,
        repeat=args.repeat,
        expect=args.expect,
        baseline=load_baseline(Path(args.baseline)) if args.baseline else None,
        saving_baseline=bool(args.save_baseline),
    )
    if args.repeat < 1:
        raise ModelSlotError("--repeat must be at least 1")
    run = asyncio.run(
        run_canary(config, ProgressPrinter(label="canary", quiet=args.quiet, decimals=1))
    )
    document = run.to_json()
    document["baseline_of"] = baseline_origin(config.baseline)
    kept = record(document, base_url=args.base_url)  # a saved baseline carries its fingerprint
    if args.save_baseline:
        if not all(r.success for r in run.results):
            output.error("not saving a baseline from a run with failed requests")
        else:
            output.write_json(Path(args.save_baseline), document)
    if args.json_out:
        output.write_json(Path(args.json_out), document)
    if args.json:
        output.print_json(document)
    else:
        print(render(run))
        origin = document["baseline_of"] or {}
        if origin.get("profile"):
            print(
                f"baseline of profile {origin['profile']} (hash {str(origin['hash'])[:12]}, "
                f"image {str(origin['image_id'] or '-').removeprefix('sha256:')[:12]})"
            )
        if args.save_baseline:
            print(f"baseline saved to {args.save_baseline}")
        print(f"evidence: {kept}")
    return 0 if run.passed else 1


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser(
        "canary",
        help="deterministic quality canaries, compared with a saved baseline",
        description="The lab's quality canaries (exact_ok, copy_phrase, small_arithmetic, and "
        "red_image for image profiles) at temperature 0, top_p 1, a fixed seed; per-case sha256 "
        "compared with a saved baseline. Exit 1 on a wrong answer or a baseline mismatch.",
    )
    add_base_url(p)
    p.add_argument("--model", help="default: the first model /v1/models lists")
    p.add_argument("--repeat", type=int, default=1, help="run every case N times (stress loop)")
    p.add_argument(
        "--expect",
        choices=("answers", "baseline"),
        default="answers",
        help="answers: the expected answer must come; baseline: only the hashes count "
        "(tiny models)",
    )
    p.add_argument("--baseline", help="a canary result saved earlier; hashes must match")
    p.add_argument("--save-baseline", metavar="FILE", help="save this run as a baseline")
    image = p.add_mutually_exclusive_group()
    image.add_argument("--image", dest="image", action="store_true", default=None)
    image.add_argument("--no-image", dest="image", action="store_false")
    p.add_argument("--json-out", help="write the JSON result here")
    p.add_argument("--json", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_canary)

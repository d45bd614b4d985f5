"""``python -m orchestrator soak``: the soak (``evidence/soak.py``) on the real clock, rendered."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

from orchestrator import output
from orchestrator.cli.bench import add_base_url
from orchestrator.config import Paths
from orchestrator.errors import ModelSlotError
from orchestrator.evidence import canary
from orchestrator.evidence.record import record
from orchestrator.evidence.soak import RealClock, Soak, SoakConfig, check_cycle
from orchestrator.progress import ProgressPrinter


def render(summary: dict[str, Any]) -> str:
    rate, ttft = summary["wall_tok_s"], summary["ttft_ms"]
    lines = [
        f"soak: {summary['clean_cycles']}/{summary['cycles']} cycles clean over "
        f"{summary['elapsed_s']:.0f}s (interval {summary['interval_s']:.0f}s, "
        f"{summary['missed_slots']} slots skipped)",
        f"wall tok/s: mean {rate['mean']} range {rate['min']}..{rate['max']}",
        f"TTFT ms:    mean {ttft['mean']} range {ttft['min']}..{ttft['max']}",
    ]
    lines += [
        f"anomaly cycle {a['cycle']} at {a['time']}: {a['detail']}" for a in summary["anomalies"]
    ]
    lines.append(f"rows: {summary['out_dir']}/soak.tsv, soak.jsonl; summary.json")
    return "\n".join(lines)


def cmd_soak(args: argparse.Namespace) -> int:
    config = SoakConfig(
        base_url=args.base_url,
        duration_s=args.duration_s,
        interval_s=args.interval_s,
        prompt_tokens=args.prompt_tokens,
        output_tokens=args.output_tokens,
        canary_expect=args.canary_expect,
        baseline=canary.load_baseline(Path(args.baseline)) if args.baseline else None,
        model=args.model,
    )
    if config.canary_expect == "baseline" and config.baseline is None:
        raise ModelSlotError("--canary-expect baseline needs --baseline FILE")
    progress = ProgressPrinter(label="soak", quiet=args.quiet, decimals=1)
    if args.out_dir:
        out_dir = Path(args.out_dir)
    else:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        out_dir = Paths.from_env().state_dir / "evidence" / f"soak-{stamp}"

    def cycle(number: int) -> dict[str, Any]:
        return asyncio.run(check_cycle(config, progress))

    soak = Soak(
        config.duration_s,
        config.interval_s,
        cycle,
        out_dir=out_dir,
        clock=RealClock(),
        progress=progress,
    )
    summary = soak.run()
    record(dict(summary), base_url=args.base_url)  # a copy, with its fingerprint
    if args.json:
        output.print_json(summary)
    else:
        print(render(summary))
    return 0 if summary["passed"] else 1


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser(
        "soak",
        help="canary + decode check every interval for a duration; TSV/JSON rows and a summary",
        description="Soak: every --interval-s for --duration-s, check /status, /v1/models, "
        "the canary and a decode check.",
    )
    add_base_url(p)
    p.add_argument("--duration-s", type=float, default=28800.0)
    p.add_argument("--interval-s", type=float, default=900.0)
    p.add_argument("--prompt-tokens", type=int, default=128, help="decode check shape")
    p.add_argument("--output-tokens", type=int, default=128, help="decode check shape")
    p.add_argument("--canary-expect", choices=("answers", "baseline"), default="answers")
    p.add_argument("--baseline", help="canary baseline to compare hashes with")
    p.add_argument("--model", help="default: the first model /v1/models lists")
    p.add_argument("--out-dir", help="default $MODEL_SLOT_STATE_DIR/evidence/soak-<time>")
    p.add_argument("--json", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_soak)

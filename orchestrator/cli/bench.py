"""``python -m orchestrator bench``: the concurrency ladder, its probes, and ``bench compare``."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from orchestrator import output
from orchestrator.cli.parsing import NestedCommands
from orchestrator.errors import ModelSlotError
from orchestrator.evidence import html_report
from orchestrator.evidence.bench import report
from orchestrator.evidence.bench.run import DEFAULT_BASE_URL, BenchConfig, run_bench
from orchestrator.evidence.bench.workload import Shape
from orchestrator.evidence.record import record
from orchestrator.progress import ProgressPrinter


def _levels(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected e.g. 1,2,4,8, not {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"concurrency levels must be >= 1: {text!r}")
    return values


def cmd_bench(args: argparse.Namespace) -> int:
    config = BenchConfig(
        base_url=args.base_url,
        shape=Shape(
            prompt_tokens=args.prompt_tokens,
            output_tokens=args.output_tokens,
            chat=args.chat,
            shared_prefix_tokens=args.shared_prefix_tokens,
            seed=args.seed,
        ),
        concurrency=args.concurrency,
        requests_per_level=args.requests_per_level,
        duration_s=args.duration_s,
        model=args.model,
        probes=args.probes,
        warmup=not args.no_warmup,
        timeout_s=args.timeout_s,
    )
    result = asyncio.run(
        run_bench(config, ProgressPrinter(label="bench", quiet=args.quiet, decimals=1))
    )
    document = result.to_json()
    kept = record(document, base_url=config.base_url)
    if args.json_out:
        output.write_json(Path(args.json_out), document)
    if args.html:
        html_report.write(Path(args.html), document)
    if args.plot:
        report.plot(document, Path(args.plot))
    if args.json:
        output.print_json(document)
    else:
        shape = result.shape
        print(
            f"{result.model} at {result.base_url}: {shape.prompt_tokens} prompt / "
            f"{shape.output_tokens} output tokens, {shape.mode}, "
            f"{'chat' if shape.chat else 'completions'}"
        )
        print(report.table([level.summary for level in result.levels]))
        for probe in result.probes:
            verdict = "pass" if probe.passed else "FAIL"
            print(
                f"probe {probe.name}: {verdict} ({probe.prompt_tokens} + "
                f"{probe.output_tokens} tokens, expected {probe.expected}: {probe.detail})"
            )
        if args.json_out:
            print(f"saved {args.json_out}" + (f" and {args.plot}" if args.plot else ""))
        if args.html:
            print(f"report: {args.html}")
        print(f"evidence: {kept}")
    return 1 if result.failed else 0


def cmd_compare(args: argparse.Namespace) -> int:
    try:
        a, b = report.load(Path(args.a)), report.load(Path(args.b))
    except (OSError, ValueError) as exc:
        raise ModelSlotError(str(exc)) from None
    print(report.compare_text(a, b, Path(args.a).stem, Path(args.b).stem))
    return 0


def add_base_url(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--base-url",
        default=DEFAULT_BASE_URL,
        help=f"OpenAI-compatible endpoint, without /v1 (default {DEFAULT_BASE_URL}, the frontdoor)",
    )


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser(
        "bench",
        help="concurrency ladder: TTFT, TPOT, ITL, wall output tok/s (bench compare A B)",
        description="Concurrency ladder against an OpenAI-compatible endpoint. Output tokens "
        "come from the server's usage; prompts are exact token counts from /tokenize.",
    )
    add_base_url(p)
    p.add_argument("--concurrency", type=_levels, default=(1, 2, 4), help="e.g. 1,2,4,8,16,64")
    p.add_argument("--prompt-tokens", type=int, default=128)
    p.add_argument("--output-tokens", type=int, default=128)
    p.add_argument("--requests-per-level", type=int, help="default: 2 x concurrency")
    p.add_argument("--duration-s", type=float, help="stop taking new requests after this long")
    p.add_argument("--shared-prefix-tokens", type=int, default=0, help="0 = cold prompts")
    p.add_argument("--chat", action="store_true", help="stream /v1/chat/completions")
    p.add_argument("--model", help="default: the first model /v1/models lists")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--probes", action="store_true", help="near-limit and over-limit prompts")
    p.add_argument("--no-warmup", action="store_true")
    p.add_argument("--timeout-s", type=float, default=600.0, help="per request")
    p.add_argument("--json-out", help="write the JSON result here")
    p.add_argument("--plot", help="write a PNG plot of the ladder here")
    p.add_argument("--html", help="write a self-contained HTML report (tables, charts) here")
    p.add_argument("--json", action="store_true", help="print the JSON result")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=cmd_bench)
    sub = p.add_subparsers(dest="bench_command", metavar="compare", action=NestedCommands)
    c = sub.add_parser("compare", help="differences between two bench results")
    c.add_argument("a", metavar="A.json")
    c.add_argument("b", metavar="B.json")
    c.set_defaults(func=cmd_compare)

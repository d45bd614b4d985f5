"""``python -m orchestrator bench``: the concurrency ladder, its probes, and ``bench compare``."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator import output
from orchestrator.errors import ModelSlotError
from orchestrator.evidence.bench import report
from orchestrator.evidence.bench.client import make_client
from orchestrator.evidence.bench.probes import run_probes
from orchestrator.evidence.bench.progress import Progress
from orchestrator.evidence.bench.runner import LevelResult, no_model, run_level, server_info, warm
from orchestrator.evidence.bench.workload import PromptBuilder, ServerTokenizer, Shape, Workload

DEFAULT_BASE_URL = "http://127.0.0.1:8000"


@dataclass(frozen=True)
class BenchConfig:
    base_url: str
    shape: Shape
    concurrency: tuple[int, ...]
    requests_per_level: int | None = None  # None: 2 x concurrency (at least 2)
    duration_s: float | None = None
    model: str | None = None
    probes: bool = False
    warmup: bool = True
    timeout_s: float = 600.0

    def requests_for(self, concurrency: int) -> int:
        if self.requests_per_level is not None:
            return self.requests_per_level
        return max(2, 2 * concurrency)


async def run_bench(config: BenchConfig, progress: Progress) -> dict[str, Any]:
    """Run the ladder and return the JSON document (see ``docs/evidence.md``)."""
    widest = max(config.concurrency)
    started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    async with make_client(widest, config.timeout_s) as client:
        info = await server_info(client, config.base_url)
        model = config.model or info["model"]
        if not model:
            raise no_model(config.base_url, info)
        builder = PromptBuilder(
            ServerTokenizer(client, config.base_url, model),
            chat=config.shape.chat,
            seed=config.shape.seed,
        )
        workload = Workload(builder, config.shape)
        await workload.prepare()
        levels: list[LevelResult] = []
        for number, conc in enumerate(config.concurrency, start=1):
            count = config.requests_for(conc)
            if config.duration_s is not None and config.requests_per_level is None:
                # a duration-bound level still needs a bounded set of prebuilt prompts
                count = max(count, 64 * conc)
            progress(f"level {number}/{len(config.concurrency)} c={conc}: building {count} prompts")
            prompts = await workload.prompts(count)
            if config.warmup or workload.prefix is not None:
                await warm(client, config.base_url, model, workload)
            progress(f"level {number}/{len(config.concurrency)} c={conc}: running")
            level = await run_level(
                client,
                config.base_url,
                model,
                config.shape,
                prompts=prompts,
                concurrency=conc,
                duration_s=config.duration_s,
                progress=progress,
            )
            levels.append(level)
            s = level.summary
            progress(
                f"c={conc} done: {s.completed}/{s.requests} ok, "
                f"{s.output_tok_s:.1f} out tok/s, TTFT mean {s.ttft.mean * 1000:.0f} ms"
            )
        probes = []
        if config.probes:
            if not info["max_model_len"]:
                raise ModelSlotError("probes need max_model_len from /v1/models; none reported")
            progress("probes: near-limit and over-limit")
            probes = await run_probes(
                client,
                config.base_url,
                model,
                builder,
                max_model_len=int(info["max_model_len"]),
                output_tokens=config.shape.output_tokens,
                chat=config.shape.chat,
            )
    status = info["status"]
    profile = _profile(status)
    return {
        "kind": report.KIND,
        "version": 1,
        "started_at": started,
        "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "base_url": config.base_url,
        "model": model,
        "max_model_len": info["max_model_len"],
        "models": info["models"],
        "status": status,
        "profile": profile,
        "shape": config.shape.to_json(),
        "concurrency": list(config.concurrency),
        "requests_per_level": config.requests_per_level,
        "duration_s": config.duration_s,
        "levels": [level.to_json() for level in levels],
        "probes": [probe.to_json() for probe in probes],
    }


def _profile(status: Any) -> dict[str, Any] | None:
    """``/status``'s ``model_slot``, with the routed profile's hash when the frontdoor has it."""
    if not isinstance(status, dict) or not isinstance(status.get("model_slot"), dict):
        return None
    profile = dict(status["model_slot"])
    route = status.get("route")
    routed = route.get("profile") if isinstance(route, dict) else None
    if isinstance(routed, dict) and routed.get("hash") and "hash" not in profile:
        profile["hash"] = routed["hash"]
    return profile


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
    document = asyncio.run(run_bench(config, Progress("bench", quiet=args.quiet)))
    kept = _keep(document, config.base_url)
    if args.json_out:
        output.write_json(Path(args.json_out), document)
    if args.html:
        from orchestrator.evidence import html_report  # noqa: PLC0415

        html_report.write(Path(args.html), document)
    if args.plot:
        report.plot(document, Path(args.plot))
    if args.json:
        output.print_json(document)
    else:
        shape = document["shape"]
        print(
            f"{document['model']} at {document['base_url']}: {shape['prompt_tokens']} prompt / "
            f"{shape['output_tokens']} output tokens, {shape['mode']}, "
            f"{'chat' if shape['chat'] else 'completions'}"
        )
        print(report.table(report.summaries_of(document)))
        for probe in document["probes"]:
            verdict = "pass" if probe["passed"] else "FAIL"
            print(
                f"probe {probe['name']}: {verdict} ({probe['prompt_tokens']} + "
                f"{probe['output_tokens']} tokens, expected {probe['expected']}: {probe['detail']})"
            )
        if args.json_out:
            print(f"saved {args.json_out}" + (f" and {args.plot}" if args.plot else ""))
        if args.html:
            print(f"report: {args.html}")
        if kept:
            print(f"evidence: {kept}")
    failed = sum(level["summary"]["failed"] for level in document["levels"])
    failed += sum(not probe["passed"] for probe in document["probes"])
    return 1 if failed else 0


def _keep(document: dict[str, Any], base_url: str) -> Path | None:
    """Into the evidence store, with its fingerprint. Inside a model container (the fidelity
    runs copy only the bench package there) there is no store: nothing is kept."""
    try:
        from orchestrator.evidence.record import record  # noqa: PLC0415 (docker SDK)
    except ImportError:
        return None
    return record(document, base_url=base_url)


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
    sub = p.add_subparsers(dest="bench_command", metavar="compare")
    c = sub.add_parser("compare", help="differences between two bench results")
    c.add_argument("a", metavar="A.json")
    c.add_argument("b", metavar="B.json")
    c.set_defaults(func=cmd_compare)

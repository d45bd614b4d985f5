"""``python -m orchestrator tune concurrency|context``: the lab's experiments, automated.

The logic is in ``orchestrator/evidence/tune/``; this module wires it to the endpoint, to the
normal switch (the controller over its socket when one runs, else in-process under the slot
lock, exactly as ``switch`` does) and to the profile files it writes.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from orchestrator import output
from orchestrator.cli.bench import add_base_url
from orchestrator.cli.parsing import Commands
from orchestrator.config import Paths
from orchestrator.control import writer
from orchestrator.control.state import StateStore
from orchestrator.errors import ModelSlotError
from orchestrator.evidence.bench.report import summaries_of
from orchestrator.evidence.bench.run import BenchConfig, run_bench
from orchestrator.evidence.bench.workload import Shape
from orchestrator.evidence.gate import active_profile
from orchestrator.evidence.record import record
from orchestrator.evidence.tune import concurrency, context, derived
from orchestrator.evidence.tune.knee import DEFAULT_MIN_GAIN, Slo, ladder
from orchestrator.profiles.store import ProfileStore
from orchestrator.progress import ProgressPrinter
from orchestrator.slot.connect import docker_slot


def _store(args: argparse.Namespace) -> ProfileStore:
    directory = getattr(args, "profiles_dir", None)
    return ProfileStore(Path(directory) if directory else Paths.from_env().profiles_dir)


# ---- tune concurrency ---------------------------------------------------------------------
def _slo(text: str) -> Slo:
    try:
        return Slo.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cmd_concurrency(args: argparse.Namespace) -> int:
    store = _store(args)
    profile = store.load(args.profile)
    active, why = asyncio.run(active_profile(args.base_url, profile))
    if not active:
        raise ModelSlotError(
            f"{profile.name} is not being served at {args.base_url}: {why}. The knee is "
            f"measured on the profile that serves: `python -m orchestrator switch {profile.name}`"
        )
    top = args.top or int(profile.get("VLLM_MAX_NUM_SEQS") or 0)
    if top < 1:
        raise ModelSlotError(
            f"{profile.name} sets no VLLM_MAX_NUM_SEQS, so the ladder has no top; pass --top N"
        )
    config = BenchConfig(
        base_url=args.base_url,
        shape=Shape(
            prompt_tokens=args.prompt_tokens,
            output_tokens=args.output_tokens,
            chat=args.chat,
            seed=args.seed,
        ),
        concurrency=ladder(top),
        requests_per_level=args.requests_per_level,
        timeout_s=args.timeout_s,
    )
    result = asyncio.run(
        run_bench(config, ProgressPrinter(label="tune", quiet=args.quiet, decimals=1))
    )
    document = result.to_json()
    document["tune"] = concurrency.analyse(document, min_gain=args.min_gain, slo=args.slo)
    document["tune"]["profile"] = {"name": profile.name, "hash": profile.hash}
    tune = document["tune"]
    written = None
    if args.write and tune["suggested"]:
        name = args.name or f"{profile.name}-c{tune['knee']}"
        comment = [
            f"tune concurrency {profile.name}: knee c{tune['knee']} ({tune['reason']}).",
            f"Ladder {config.shape.prompt_tokens} prompt / {config.shape.output_tokens} output "
            f"tokens at {document['base_url']}, {document['finished_at']}:",
            *concurrency.table(summaries_of(document), tune).splitlines(),
        ]
        keys = {
            "MODEL_SLOT_TITLE": f"{profile.title}, c{tune['knee']} (concurrency knee)",
            "MODEL_SLOT_STATUS": f"research-c{tune['knee']}",
            **tune["suggested"],
        }
        written = derived.write(store.path(name), profile.name, keys, comment)
        store.load(name)  # it must validate, or it is no use to anyone
        tune["written"] = str(written)
    path = record(document, base_url=args.base_url, profile=profile)
    if args.json_out:
        output.write_json(Path(args.json_out), document)
    if args.html:
        from orchestrator.evidence import html_report  # noqa: PLC0415

        html_report.write(Path(args.html), document)
    if args.json:
        output.print_json(document)
    else:
        print(
            f"{profile.name} at {args.base_url}: {config.shape.prompt_tokens} prompt / "
            f"{config.shape.output_tokens} output tokens, ladder {list(config.concurrency)}"
        )
        print(concurrency.render(summaries_of(document), tune))
        if args.write and not tune["suggested"]:
            print("not written: there is no knee to write")
        if written:
            print(f"wrote {written} (MODEL_SLOT_EXTENDS={profile.name})")
        print(f"saved {path}" + (f" and {args.html}" if args.html else ""))
    return 0 if tune["knee"] is not None else 1


# ---- tune context -------------------------------------------------------------------------
class SwitchDriver:
    """``context.Driver`` over the normal switch (``control.writer``: the controller when one
    runs, else in-process under the slot lock), the state file and the slot's container."""

    def __init__(self, store: ProfileStore, verbose: bool) -> None:
        self.store = store
        self.paths = Paths.from_env()
        # every switch phase with --verbose; a failed start's reason is in its row anyway
        self.printer = ProgressPrinter(label="switch", quiet=not verbose)

    def current(self) -> str | None:
        state = StateStore(self.paths.state_dir).load()
        return None if state.stopped else state.current

    def switch(self, name: str) -> context.Started:
        result = writer.switch(name, self.printer)
        report = result.report
        facts = dict((report or {}).get("startup_facts") or {})
        ok = result.ok and (report or {}).get("profile") == name
        return context.Started(ok, facts if ok else {}, result.error or "", report)

    def stop(self) -> None:
        result = writer.stop(self.printer)
        if not result.ok:
            raise ModelSlotError(f"could not stop the slot: {result.error}")

    def verify(self, name: str | None) -> str | None:
        state = StateStore(self.paths.state_dir).load()
        running = docker_slot().current()
        if name is None:
            return None if running is None else f"container {running.short_id} still exists"
        if state.current != name:
            return f"the state file says {state.current!r}"
        if running is None or running.status != "running":
            return "no running model container"
        if running.profile != name or running.profile_hash != self.store.load(name).hash:
            return f"the container runs {running.profile} ({running.profile_hash[:12]})"
        return None


def cmd_context(args: argparse.Namespace) -> int:
    store = _store(args)
    source = store.load(args.profile)
    n = args.sequences
    search = context.Search(
        sequences=n,
        first=source.max_model_len,
        step=args.step,
        max_starts=args.max_starts,
        max_len=args.max_len,
    )
    written: list[str] = []
    status = f"research-c{n}"
    purpose = f"max_model_len searched by `tune context {source.name} --sequences {n}`"

    def keys(length: int) -> dict[str, str]:
        values = {
            "MODEL_SLOT_TITLE": f"{source.title}, {length}-token context for {n} sequences",
            "MODEL_SLOT_STATUS": status,
            "MODEL_SLOT_PURPOSE": purpose,
            "VLLM_MAX_MODEL_LEN": str(length),
        }
        if not args.keep_sequences:
            # the KV budget moves with the scheduler (the lab's c64 lesson): search with N
            values["VLLM_MAX_NUM_SEQS"] = str(n)
            values["FRONTDOOR_MAX_ACTIVE_GENERATIONS"] = str(n)
        return values

    def candidate(length: int) -> str:
        name = f"{source.name}-ctx{length}"
        derived.write(
            store.path(name),
            source.name,
            keys(length),
            [f"Candidate of `tune context {source.name} --sequences {n}`; removed unless chosen."],
        )
        store.load(name)
        written.append(name)
        return name

    say = _say(args.quiet)
    say(
        f"tune context {source.name}: largest max_model_len with >= {n}x concurrency, step "
        f"{args.step}, at most {args.max_starts} starts"
    )
    driver = SwitchDriver(store, args.verbose)
    outcome = context.run_search(search, driver, candidate, say)
    winner = outcome.winner
    document: dict[str, Any] = {
        "kind": context.KIND,
        "version": 1,
        "source": {"name": source.name, "hash": source.hash},
        "sequences": n,
        "step": args.step,
        "max_starts": args.max_starts,
        "rows": [row.to_json() for row in outcome.rows],
        "winner": None,
        "why_stopped": outcome.why_stopped,
        "previous": outcome.previous,
        "restored": outcome.restored,
        "interrupted": outcome.interrupted,
        "restore_failed": outcome.restore_failed,
        "errored": outcome.errored,
        "started_at": outcome.started_at,
        "finished_at": outcome.finished_at,
    }
    table = output.table(context.HEADERS, context.table_rows(outcome.rows))
    if winner is not None:
        comment = [
            f"Found by `python -m orchestrator tune context {source.name} --sequences {n}`",
            f"({outcome.finished_at}): the largest max_model_len at which vLLM's startup facts",
            f"reported >= {n}x concurrency, each row a real start ({outcome.why_stopped}):",
            *table.splitlines(),
        ]
        path = derived.write(
            store.path(winner.profile), source.name, keys(winner.max_model_len), comment
        )
        store.load(winner.profile)
        document["winner"] = {
            "profile": winner.profile,
            "max_model_len": winner.max_model_len,
            "path": str(path),
        }
    for name in written:
        if winner is None or name != winner.profile:
            store.path(name).unlink(missing_ok=True)
    document["profile"] = {"name": source.name, "hash": source.hash}
    out = record(document, base_url=None, profile=source)
    if args.json_out:
        output.write_json(Path(args.json_out), document)
    if args.html:
        from orchestrator.evidence import html_report  # noqa: PLC0415

        html_report.write(Path(args.html), document)
    if args.json:
        output.print_json(document)
    else:
        print(table)
        print(outcome.why_stopped)
        if winner is not None:
            print(
                f"selected: {winner.max_model_len} ({winner.max_concurrency:.2f}x), written as "
                f"{document['winner']['path']} (status {status})"
            )
        else:
            print("no length fits; nothing written")
        print(outcome.restored)
        print(f"saved {out}" + (f" and {args.html}" if args.html else ""))
    if outcome.restore_failed:
        output.error(outcome.restored)
        return 1
    if outcome.errored:
        output.error(outcome.why_stopped)
        return 1
    if outcome.interrupted:
        return 130
    return 0 if winner is not None else 1


def _say(quiet: bool) -> context.Say:
    def say(text: str) -> None:
        if not quiet:
            print(f"[tune] {text}", file=sys.stderr, flush=True)

    return say


# ---- registration -------------------------------------------------------------------------
def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser("tune", help="the lab's experiments: concurrency knee, context search")
    sub = p.add_subparsers(
        dest="tune_command", required=True, metavar="concurrency|context", action=Commands
    )

    c = sub.add_parser(
        "concurrency",
        help="ladder c1, c2, c4 ... to the profile's sequences; find the knee",
        description="Run the concurrency ladder on the served PROFILE and find its knee: the "
        "lowest concurrency past which a doubling adds less than --min-gain wall output tok/s, "
        "or past which the next level misses the --slo targets.",
    )
    c.add_argument("profile", metavar="PROFILE")
    add_base_url(c)
    c.add_argument("--top", type=int, help="top of the ladder (default: VLLM_MAX_NUM_SEQS)")
    c.add_argument("--prompt-tokens", type=int, default=128)
    c.add_argument("--output-tokens", type=int, default=64)
    c.add_argument("--requests-per-level", type=int, help="default: 2 x concurrency")
    c.add_argument("--chat", action="store_true")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--timeout-s", type=float, default=600.0, help="per request")
    c.add_argument(
        "--min-gain",
        type=float,
        default=DEFAULT_MIN_GAIN,
        help=f"a doubling must add this fraction of tok/s (default {DEFAULT_MIN_GAIN})",
    )
    c.add_argument(
        "--slo", type=_slo, default=Slo(), help="targets, e.g. ttft_p95_ms=2000,tpot_ms=50"
    )
    c.add_argument("--write", action="store_true", help="write the knee as a derived profile")
    c.add_argument("--name", help="the derived profile's name (default PROFILE-cKNEE)")
    c.add_argument("--profiles-dir", help="default $MODEL_SLOT_PROFILES_DIR or ./profiles")
    c.add_argument("--json-out", help="default $MODEL_SLOT_STATE_DIR/evidence/...")
    c.add_argument("--html", help="also write a self-contained HTML report here")
    c.add_argument("--json", action="store_true")
    c.add_argument("--quiet", action="store_true")
    c.set_defaults(func=cmd_concurrency)

    x = sub.add_parser(
        "context",
        help="largest max_model_len with >= N x concurrency, by real starts",
        description="Search max_model_len for the largest value at which vLLM's startup facts "
        "report at least --sequences x concurrency. Every candidate is a derived profile "
        "started through the normal switch; the previous profile is restored at the end, "
        "also on Ctrl-C.",
    )
    x.add_argument("profile", metavar="PROFILE")
    x.add_argument("--sequences", type=int, required=True, metavar="N")
    x.add_argument("--step", type=int, default=context.DEFAULT_STEP, help="length grid")
    x.add_argument("--max-starts", type=int, default=context.DEFAULT_MAX_STARTS)
    x.add_argument("--max-len", type=int, help="never try above this")
    x.add_argument(
        "--keep-sequences",
        action="store_true",
        help="do not set VLLM_MAX_NUM_SEQS / FRONTDOOR_MAX_ACTIVE_GENERATIONS to N",
    )
    x.add_argument("--json-out", help="default $MODEL_SLOT_STATE_DIR/evidence/...")
    x.add_argument("--html", help="also write a self-contained HTML report here")
    x.add_argument("--verbose", action="store_true", help="every switch phase on stderr")
    x.add_argument("--json", action="store_true")
    x.add_argument("--quiet", action="store_true")
    x.set_defaults(func=cmd_context)

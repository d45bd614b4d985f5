"""``python -m orchestrator gate PROFILE``: the lab's validation gate, against the live endpoint.

The profile must already be the one being served (``/status`` names it, or, straight at vLLM,
``/v1/models`` lists its served name); ``--switch`` switches to it first. Then seven steps, each
``pass``, ``fail`` or ``skipped`` with a reason, and each with its numbers:

    1 models       /v1/models reports the served name and max_model_len of the profile
    2 completion   a text completion returns tokens (usage counted)
    3 image        image profiles: /v1/chat/completions accepts a real PNG
    4 decode       short-prompt decode throughput at c1, after a warmup request
    5 ttft         TTFT at 16K and 32K prompts, or at the profile's max context if smaller
    6 concurrency  c2 and c4 throughput and latency
    7 canary       the canaries pass

The report is kept in the evidence store (``evidence/<profile>/<hash12>/<time>-gate.json``)
with the fingerprint of what produced it; ``--promote`` refuses when that fingerprint or the
profile hash is not what the profile is now, and ``--promote --evidence ID`` promotes on a
stored run instead of a new one.
``--promote`` then sets ``MODEL_SLOT_STATUS=production`` in the profile's own file, only when
every step passed (skipped steps count as passed: they do not apply to the profile), and
prints the line it changed. Nothing else in the file is touched.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from orchestrator import output
from orchestrator.config import Paths
from orchestrator.errors import ModelSlotError
from orchestrator.evidence import canary, fingerprint, promotion
from orchestrator.evidence.bench.cli import BenchConfig, add_base_url, run_bench
from orchestrator.evidence.bench.progress import Progress
from orchestrator.evidence.bench.runner import server_info
from orchestrator.evidence.bench.workload import Shape
from orchestrator.evidence.store import EvidenceStore
from orchestrator.profiles.store import Profile, ProfileStore

KIND = "model-slot-gate"


@dataclass
class Step:
    number: int
    name: str
    what: str
    result: str = "skipped"  # pass | fail | skipped
    reason: str = ""
    numbers: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class GateConfig:
    base_url: str
    decode_prompt_tokens: int = 128
    decode_tokens: int = 256
    ttft_contexts: tuple[int, ...] = (16384, 32768)
    ttft_output_tokens: int = 16
    levels: tuple[int, ...] = (2, 4)
    requests_per_level: int | None = None
    min_decode_tok_s: float | None = None
    max_ttft_s: float | None = None
    canary_expect: str = "answers"
    canary_baseline: dict[str, Any] | None = None
    timeout_s: float = 900.0


# ---- is the profile the one being served? -------------------------------------------------


async def active_profile(base_url: str, profile: Profile) -> tuple[bool, str]:
    """(active?, what the endpoint says). ``/status`` decides when there is one."""
    async with httpx.AsyncClient(timeout=30) as client:
        info = await server_info(client, base_url)
    status = info["status"]
    slot = status.get("model_slot") if isinstance(status, dict) else None
    if isinstance(slot, dict) and slot.get("name"):
        name = slot.get("name")
        route = status.get("route") if isinstance(status, dict) else None
        routed = route.get("profile") if isinstance(route, dict) else None
        digest = slot.get("hash") or (routed.get("hash") if isinstance(routed, dict) else None)
        if name != profile.name:
            return False, f"/status says the active profile is {name!r}"
        if digest and digest != profile.hash:
            return False, (
                f"/status says {name!r} runs with hash {str(digest)[:12]}, but the file now "
                f"resolves to {profile.hash[:12]} (edited since the switch? switch again)"
            )
        return True, f"/status: active profile {name!r}"
    models = info["models"]
    if models is None:
        return False, f"{base_url} answers neither /status nor /v1/models"
    served = [item.get("id") for item in models.get("data", [])]
    if profile.served_model_name in served:
        return True, f"/v1/models lists {profile.served_model_name!r} (no /status: plain vLLM?)"
    return False, f"/v1/models lists {served}, not {profile.served_model_name!r}"


def switch_to(name: str) -> None:
    """Switch with the orchestrator's own command (lock, preflight, rollback and all)."""
    try:
        # lazily: switch.py is owned elsewhere, and cli imports this module
        from orchestrator.cli.main import build_parser, main  # noqa: PLC0415
        from orchestrator.control import switch  # noqa: F401, PLC0415
    except ImportError as exc:
        raise ModelSlotError(
            f"--switch: orchestrator.control.switch is not available ({exc})"
        ) from None
    commands = next(
        (
            action
            for action in build_parser()._actions
            if isinstance(action, argparse._SubParsersAction)
        ),
        None,
    )
    if commands is None or "switch" not in commands.choices:
        raise ModelSlotError(
            "--switch: this build has no `switch` command yet; switch to the profile some "
            "other way, then run the gate without --switch"
        )
    code = main(["switch", name])
    if code != 0:
        raise ModelSlotError(f"--switch: `switch {name}` failed (exit {code}); gate not run")


# ---- the steps ----------------------------------------------------------------------------


def _level_numbers(document: dict[str, Any]) -> dict[str, Any]:
    numbers: dict[str, Any] = {}
    for level in document["levels"]:
        s = level["summary"]
        numbers[f"c{level['concurrency']}"] = {
            "ok": f"{s['completed']}/{s['requests']}",
            "output_tok_s": _r(s["output_tok_s"]),
            "decode_tok_s": _r(s["decode_tok_s"]),
            "ttft_mean_ms": _ms(s["ttft"]["mean"]),
            "ttft_p95_ms": _ms(s["ttft"]["p95"]),
            "tpot_mean_ms": _ms(s["tpot"]["mean"]),
            "e2e_mean_s": _r(s["e2e"]["mean"], 2),
        }
    return numbers


def _r(value: Any, digits: int = 1) -> Any:
    return None if value is None else round(float(value), digits)


def _ms(value: Any) -> Any:
    return None if value is None else round(float(value) * 1000, 1)


def _failures(document: dict[str, Any]) -> list[str]:
    out = []
    for level in document["levels"]:
        for kind, count in level["summary"]["errors"].items():
            out.append(f"c{level['concurrency']}: {count} x {kind}")
    return out


class Gate:
    def __init__(self, profile: Profile, config: GateConfig, progress: Progress) -> None:
        self.profile = profile
        self.config = config
        self.progress = progress
        self.served = profile.served_model_name

    def _bench(self, shape: Shape, levels: tuple[int, ...], requests: int | None) -> BenchConfig:
        return BenchConfig(
            base_url=self.config.base_url,
            shape=shape,
            concurrency=levels,
            requests_per_level=requests,
            model=self.served,
            timeout_s=self.config.timeout_s,
        )

    async def models(self, step: Step) -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            info = await server_info(client, self.config.base_url)
        entries = (info["models"] or {}).get("data", [])
        entry = next((item for item in entries if item.get("id") == self.served), None)
        step.numbers = {
            "listed": [item.get("id") for item in entries],
            "max_model_len": entry.get("max_model_len") if entry else None,
            "expected_max_model_len": self.profile.max_model_len,
        }
        if entry is None:
            step.result, step.reason = "fail", f"{self.served!r} not listed"
        elif entry.get("max_model_len") != self.profile.max_model_len:
            step.result = "fail"
            step.reason = (
                f"max_model_len {entry.get('max_model_len')} != profile's "
                f"{self.profile.max_model_len}"
            )
        else:
            step.result, step.reason = "pass", f"{self.served} with {self.profile.max_model_len}"

    async def completion(self, step: Step) -> None:
        body = {
            "model": self.served,
            "prompt": "The three primary colours are",
            "max_tokens": 16,
            "temperature": 0.0,
            "seed": canary.SEED,
        }
        async with httpx.AsyncClient(timeout=self.config.timeout_s) as client:
            response = await client.post(f"{self.config.base_url}/v1/completions", json=body)
        if response.status_code != 200:
            step.result, step.reason = "fail", f"HTTP {response.status_code}: {response.text[:200]}"
            return
        data = response.json()
        text = data["choices"][0].get("text") or ""
        tokens = (data.get("usage") or {}).get("completion_tokens")
        step.numbers = {"completion_tokens": tokens, "text": text}
        if not isinstance(tokens, int) or tokens < 1 or not text.strip():
            step.result, step.reason = "fail", "no tokens or empty text"
        else:
            step.result, step.reason = "pass", f"{tokens} tokens"

    async def image(self, step: Step) -> None:
        if not self.profile.supports_images:
            step.reason = f"text-only profile (modalities: {self.profile.modalities})"
            return
        case = next(case for case in canary.CASES if case.image)
        async with httpx.AsyncClient(timeout=self.config.timeout_s) as client:
            result = await canary.run_case(
                client,
                self.config.base_url,
                self.served,
                case,
                run=1,
                settings=canary.default_settings(),
            )
        step.numbers = {"content": result.content, "error": result.error}
        if result.success and result.content.strip():
            step.result, step.reason = "pass", "image accepted"
        else:
            step.result, step.reason = "fail", result.error or "empty answer"

    async def decode(self, step: Step) -> None:
        shape = Shape(self.config.decode_prompt_tokens, self.config.decode_tokens)
        document = await run_bench(self._bench(shape, (1,), 1), self.progress)
        step.numbers = _level_numbers(document)["c1"]
        problems = _failures(document)
        rate = document["levels"][0]["summary"]["decode_tok_s"]
        if problems:
            step.result, step.reason = "fail", "; ".join(problems)
        elif self.config.min_decode_tok_s and (rate or 0) < self.config.min_decode_tok_s:
            step.result = "fail"
            step.reason = f"decode {rate:.1f} tok/s < {self.config.min_decode_tok_s}"
        else:
            step.result, step.reason = "pass", f"decode {rate:.1f} tok/s at c1"

    async def ttft(self, step: Step) -> None:
        limit = self.profile.max_model_len
        out = self.config.ttft_output_tokens
        contexts: list[int] = []
        notes = []
        for context in self.config.ttft_contexts:
            use = min(context, limit)
            if use != context:
                notes.append(str(context))
            if use not in contexts:
                contexts.append(use)
        if notes:
            notes = [f"{', '.join(notes)} above max_model_len {limit}: measured at {limit}"]
        problems = []
        for context in contexts:
            shape = Shape(context - out, out)
            self.progress(f"gate ttft at a {context}-token context")
            document = await run_bench(self._bench(shape, (1,), 1), self.progress)
            summary = document["levels"][0]["summary"]
            ttft = summary["ttft"]["mean"]
            step.numbers[f"ttft_ms_at_{context}"] = _ms(ttft)
            problems += _failures(document)
            if self.config.max_ttft_s and (ttft is None or ttft > self.config.max_ttft_s):
                problems.append(f"TTFT at {context}: {ttft} s > {self.config.max_ttft_s} s")
        step.result = "fail" if problems else "pass"
        step.reason = "; ".join(problems + notes) or "all contexts served"

    async def concurrency(self, step: Step) -> None:
        shape = Shape(self.config.decode_prompt_tokens, self.config.decode_tokens)
        bench = self._bench(shape, self.config.levels, self.config.requests_per_level)
        document = await run_bench(bench, self.progress)
        step.numbers = _level_numbers(document)
        problems = _failures(document)
        step.result = "fail" if problems else "pass"
        step.reason = "; ".join(problems) or "every request served in full"

    async def canaries(self, step: Step) -> None:
        config = canary.CanaryConfig(
            base_url=self.config.base_url,
            model=self.served,
            image=self.profile.supports_images,
            expect=self.config.canary_expect,
            baseline=self.config.canary_baseline,
        )
        document = await canary.run_canary(config, self.progress)
        step.numbers = {
            r["case"]: {
                "content": r["content"],
                "sha256": r["sha256"][:12],
                "baseline": r["baseline"],
            }
            for r in document["results"]
        }
        step.result = "pass" if document["passed"] else "fail"
        step.reason = "; ".join(document["failures"]) or f"expect {document['expect']}: all pass"

    def plan(self) -> list[tuple[Step, Callable[[Step], Awaitable[None]]]]:
        c = self.config
        ttft_what = " and ".join(str(n) for n in c.ttft_contexts)
        levels = " and ".join(f"c{n}" for n in c.levels)
        return [
            (Step(1, "models", "/v1/models: served name and max_model_len"), self.models),
            (Step(2, "completion", "a text completion returns tokens"), self.completion),
            (Step(3, "image", "chat accepts a real image (image profiles)"), self.image),
            (
                Step(
                    4, "decode", f"c1 decode, {c.decode_prompt_tokens} in / {c.decode_tokens} out"
                ),
                self.decode,
            ),
            (Step(5, "ttft", f"TTFT at {ttft_what} tokens (or max context)"), self.ttft),
            (Step(6, "concurrency", f"{levels} throughput and latency"), self.concurrency),
            (Step(7, "canary", f"canaries (expect {c.canary_expect})"), self.canaries),
        ]

    async def run(self) -> list[Step]:
        steps: list[Step] = []
        plan = self.plan()
        for index, (step, action) in enumerate(plan, start=1):
            self.progress(f"gate step {step.number} {step.name}: {step.what}", index, len(plan))
            blocked = next((s for s in steps if s.number <= 2 and s.result == "fail"), None)
            if blocked is not None:
                step.reason = f"step {blocked.number} ({blocked.name}) failed"
            else:
                try:
                    await action(step)
                except (ModelSlotError, httpx.HTTPError, ValueError, KeyError) as exc:
                    step.result, step.reason = "fail", f"{type(exc).__name__}: {exc}"[:400]
            self.progress(f"gate step {step.number} {step.name}: {step.result} {step.reason[:80]}")
            steps.append(step)
        return steps


# ---- promotion ----------------------------------------------------------------------------

_STATUS_LINE = re.compile(r"^(\s*)MODEL_SLOT_STATUS=(.*)$")


def set_status(text: str, status: str) -> tuple[str, str]:
    """(new text, what changed). Only the ``MODEL_SLOT_STATUS=`` line changes; without one, a
    line is added after the title (or the ``EXTENDS`` line, or at the top)."""
    lines = text.splitlines(keepends=True)
    for number, line in enumerate(lines, start=1):
        match = _STATUS_LINE.match(line.rstrip("\r\n"))
        if match:
            old = match.group(2)
            if old == status:
                return text, f"line {number}: already MODEL_SLOT_STATUS={status}"
            ending = line[len(line.rstrip("\r\n")) :] or "\n"
            lines[number - 1] = f"{match.group(1)}MODEL_SLOT_STATUS={status}{ending}"
            return "".join(lines), (
                f"line {number}: MODEL_SLOT_STATUS={old} -> MODEL_SLOT_STATUS={status}"
            )
    after = 0
    for key in ("MODEL_SLOT_TITLE=", "MODEL_SLOT_EXTENDS="):
        found = [i for i, line in enumerate(lines, start=1) if line.lstrip().startswith(key)]
        if found:
            after = found[0]
            break
    if after and not lines[after - 1].endswith("\n"):
        lines[after - 1] += "\n"
    lines.insert(after, f"MODEL_SLOT_STATUS={status}\n")
    return "".join(lines), f"line {after + 1}: added MODEL_SLOT_STATUS={status} (was inherited)"


def promote(store: ProfileStore, profile: Profile) -> str:
    """Rewrite the status line of the profile's own file; undo it if the result is invalid."""
    path = profile.path
    before = path.read_text(encoding="utf-8")
    after, change = set_status(before, "production")
    if after != before:
        path.write_text(after, encoding="utf-8")
        try:
            store.load(profile.name)
        except ModelSlotError:
            path.write_text(before, encoding="utf-8")
            raise
    return f"{path}: {change}"


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


# ---- the command --------------------------------------------------------------------------


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


def render(report: dict[str, Any]) -> str:
    rows = [
        (step["number"], step["name"], step["result"].upper(), step["reason"])
        for step in report["steps"]
    ]
    profile = report["profile"]
    lines = [
        f"gate {profile['name']} (hash {profile['hash'][:12]}, status {profile['status']}) "
        f"at {report['base_url']}",
        output.table(("#", "STEP", "RESULT", "WHY"), rows),
        "",
    ]
    for step in report["steps"]:
        if step["numbers"]:
            lines.append(f"{step['number']} {step['name']}: " + " ".join(_flat(step["numbers"])))
    lines.append("PASSED: every step passed or does not apply" if report["passed"] else "FAILED")
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
    progress = Progress("gate", quiet=args.quiet)
    active, why = asyncio.run(active_profile(args.base_url, profile))
    if not active:
        if not args.switch:
            raise ModelSlotError(
                f"{profile.name} is not being served at {args.base_url}: {why}. Switch first "
                f"(`python -m orchestrator switch {profile.name}`) or pass --switch"
            )
        progress(f"switching to {profile.name} ({why})")
        switch_to(profile.name)
        active, why = asyncio.run(active_profile(args.base_url, profile))
        if not active:
            raise ModelSlotError(f"after the switch, {profile.name} is still not served: {why}")
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
    started = dt.datetime.now(dt.UTC)
    steps = asyncio.run(Gate(profile, config, progress).run())
    passed = all(step.result != "fail" for step in steps)
    report = {
        "kind": KIND,
        "version": 1,
        "profile": {
            "name": profile.name,
            "hash": profile.hash,
            "status": profile.status,
            "path": str(profile.path),
        },
        "base_url": args.base_url,
        "active": why,
        "started_at": started.isoformat(timespec="seconds"),
        "finished_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "config": {k: v for k, v in asdict(config).items() if k != "canary_baseline"},
        "steps": [step.to_json() for step in steps],
        "passed": passed,
        "promoted": None,
    }
    state_dir = Path(args.state_dir) if args.state_dir else paths.state_dir
    report["fingerprint"] = fingerprint.from_slot(profile, args.base_url)
    refused = promotion.refusals(profile, report, fingerprint.image_id(profile.image))
    if args.promote and passed and not refused:
        report["promoted"] = promote(store, profile)
    report["refused"] = refused if args.promote and passed else []
    path = EvidenceStore(state_dir).save(
        report, profile=profile.name, profile_hash=profile.hash, fingerprint=report["fingerprint"]
    )
    if args.html:
        from orchestrator.evidence import html_report  # noqa: PLC0415

        html_report.write(Path(args.html), report)
    if args.json:
        output.print_json(report)
    else:
        print(render(report))
        print(f"report: {path}" + (f" and {args.html}" if args.html else ""))
    if args.promote and report["refused"]:
        if not args.json:
            print(f"not promoted: {'; '.join(report['refused'])}")
        return 1
    if args.promote and not args.json:  # with --json, the report's "promoted" says it
        if passed:
            print(f"promoted: {report['promoted']}")
        else:
            print(f"not promoted: a step failed; {profile.name} stays {profile.status}")
    return 0 if passed else 1


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

"""The lab's validation gate against the live endpoint (the ``gate`` command: ``cli/gate.py``).

The profile must already be the one being served (``/status`` names it, or, straight at vLLM,
``/v1/models`` lists its served name); ``switch=True`` (``--switch``) switches to it first,
through ``control.writer`` like the ``switch`` command. Then seven steps, each
``pass``, ``fail`` or ``skipped`` with a reason, and each with its numbers:

    1 models       /v1/models reports the served name and max_model_len of the profile
    2 completion   a text completion returns tokens (usage counted)
    3 image        image profiles: /v1/chat/completions accepts a real PNG
    4 decode       short-prompt decode throughput at c1, after a warmup request
    5 ttft         TTFT at 16K and 32K prompts, or at the profile's max context if smaller
    6 concurrency  c2 and c4 throughput and latency
    7 canary       the canaries pass

``run_gate`` returns a ``GateReport``; the command saves it as
``$MODEL_SLOT_STATE_DIR/evidence/gate-<profile>-<hash12>-<time>.json``. ``promote`` then sets
``MODEL_SLOT_STATUS=production`` in the profile's own file, only when every step passed
(skipped steps count as passed: they do not apply to the profile), and returns the line it
changed. Nothing else in the file is touched.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import re
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from orchestrator.control import writer
from orchestrator.errors import ModelSlotError
from orchestrator.evidence import canary
from orchestrator.evidence.bench.run import BenchConfig, BenchResult, run_bench
from orchestrator.evidence.bench.runner import server_info
from orchestrator.evidence.bench.workload import Shape
from orchestrator.profiles.store import Profile, ProfileStore
from orchestrator.progress import Progress, note

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


def switch_to(name: str, progress: Progress) -> None:
    """Switch the way ``python -m orchestrator switch`` does (lock, preflight, rollback and all,
    through the controller when one runs); a switch that does not end on ``name`` stops the
    gate."""

    result = writer.switch(name, progress)
    if not result.ok:
        raise ModelSlotError(f"--switch: `switch {name}` failed: {result.error}; gate not run")


# ---- the steps ----------------------------------------------------------------------------


def _level_numbers(result: BenchResult) -> dict[str, Any]:
    numbers: dict[str, Any] = {}
    for level in result.levels:
        s = level.summary
        numbers[f"c{level.concurrency}"] = {
            "ok": f"{s.completed}/{s.requests}",
            "output_tok_s": _r(s.output_tok_s),
            "decode_tok_s": _r(s.decode_tok_s),
            "ttft_mean_ms": _ms(s.ttft.mean),
            "ttft_p95_ms": _ms(s.ttft.p95),
            "tpot_mean_ms": _ms(s.tpot.mean),
            "e2e_mean_s": _r(s.e2e.mean, 2),
        }
    return numbers


def _r(value: float, digits: int = 1) -> float | None:
    """Rounded for the report; NaN (nothing measured) is ``None`` so the JSON stays JSON."""
    return None if math.isnan(value) else round(value, digits)


def _ms(value: float) -> float | None:
    return None if math.isnan(value) else round(value * 1000, 1)


def _failures(result: BenchResult) -> list[str]:
    return [
        f"c{level.concurrency}: {count} x {kind}"
        for level in result.levels
        for kind, count in level.summary.errors.items()
    ]


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
        result = await run_bench(self._bench(shape, (1,), 1), self.progress)
        step.numbers = _level_numbers(result)["c1"]
        problems = _failures(result)
        rate = result.levels[0].summary.decode_tok_s
        rate = 0.0 if math.isnan(rate) else rate  # no decode measured counts as none
        if problems:
            step.result, step.reason = "fail", "; ".join(problems)
        elif self.config.min_decode_tok_s and rate < self.config.min_decode_tok_s:
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
            self.progress(note(f"gate ttft at a {context}-token context"))
            result = await run_bench(self._bench(shape, (1,), 1), self.progress)
            ttft = result.levels[0].summary.ttft.mean
            step.numbers[f"ttft_ms_at_{context}"] = _ms(ttft)
            problems += _failures(result)
            if self.config.max_ttft_s and (math.isnan(ttft) or ttft > self.config.max_ttft_s):
                shown = "none measured" if math.isnan(ttft) else f"{ttft} s"
                problems.append(f"TTFT at {context}: {shown} > {self.config.max_ttft_s} s")
        step.result = "fail" if problems else "pass"
        step.reason = "; ".join(problems + notes) or "all contexts served"

    async def concurrency(self, step: Step) -> None:
        shape = Shape(self.config.decode_prompt_tokens, self.config.decode_tokens)
        bench = self._bench(shape, self.config.levels, self.config.requests_per_level)
        result = await run_bench(bench, self.progress)
        step.numbers = _level_numbers(result)
        problems = _failures(result)
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
        run = await canary.run_canary(config, self.progress)
        step.numbers = {
            r.case: {"content": r.content, "sha256": r.sha256[:12], "baseline": r.baseline}
            for r in run.results
        }
        step.result = "pass" if run.passed else "fail"
        step.reason = "; ".join(run.failures) or f"expect {run.expect}: all pass"

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
            self.progress(
                note(f"gate step {step.number} {step.name}: {step.what}", index, len(plan))
            )
            blocked = next((s for s in steps if s.number <= 2 and s.result == "fail"), None)
            if blocked is not None:
                step.reason = f"step {blocked.number} ({blocked.name}) failed"
            else:
                try:
                    await action(step)
                except (ModelSlotError, httpx.HTTPError, ValueError, KeyError) as exc:
                    step.result, step.reason = "fail", f"{type(exc).__name__}: {exc}"[:400]
            self.progress(
                note(f"gate step {step.number} {step.name}: {step.result} {step.reason[:80]}")
            )
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


# ---- one whole gate -----------------------------------------------------------------------


@dataclass
class GateReport:
    """One gate run; ``to_json`` is the evidence file."""

    profile: Profile
    config: GateConfig
    active: str  # what the endpoint said about the profile being served
    started_at: dt.datetime
    finished_at: dt.datetime
    steps: list[Step]
    promoted: str | None = None  # the line ``promote`` changed

    @property
    def passed(self) -> bool:
        """Skipped steps count as passed: they do not apply to the profile."""
        return all(step.result != "fail" for step in self.steps)

    @property
    def file_name(self) -> str:
        stamp = self.started_at.strftime("%Y%m%dT%H%M%SZ")
        return f"gate-{self.profile.name}-{self.profile.hash[:12]}-{stamp}.json"

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": KIND,
            "version": 1,
            "profile": {
                "name": self.profile.name,
                "hash": self.profile.hash,
                "status": self.profile.status,
                "path": str(self.profile.path),
            },
            "base_url": self.config.base_url,
            "active": self.active,
            "started_at": self.started_at.isoformat(timespec="seconds"),
            "finished_at": self.finished_at.isoformat(timespec="seconds"),
            "config": {k: v for k, v in asdict(self.config).items() if k != "canary_baseline"},
            "steps": [step.to_json() for step in self.steps],
            "passed": self.passed,
            "promoted": self.promoted,
        }


def run_gate(
    profile: Profile, config: GateConfig, progress: Progress, *, switch: bool
) -> GateReport:
    """Check that ``profile`` is served (switching to it first when ``switch``), then run the
    seven steps."""
    active, why = asyncio.run(active_profile(config.base_url, profile))
    if not active:
        if not switch:
            raise ModelSlotError(
                f"{profile.name} is not being served at {config.base_url}: {why}. Switch first "
                f"(`python -m orchestrator switch {profile.name}`) or pass --switch"
            )
        progress(note(f"switching to {profile.name} ({why})"))
        switch_to(profile.name, progress)
        active, why = asyncio.run(active_profile(config.base_url, profile))
        if not active:
            raise ModelSlotError(f"after the switch, {profile.name} is still not served: {why}")
    started = dt.datetime.now(dt.UTC)
    steps = asyncio.run(Gate(profile, config, progress).run())
    return GateReport(profile, config, why, started, dt.datetime.now(dt.UTC), steps)

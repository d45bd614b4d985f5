"""``run_bench``: the concurrency ladder and its probes, as a typed ``BenchResult``.

The ``bench`` command (``orchestrator/cli/bench.py``) renders it; ``gate`` and ``soak`` read it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from orchestrator.errors import ModelSlotError
from orchestrator.evidence.bench.client import make_client
from orchestrator.evidence.bench.probes import ProbeResult, run_probes
from orchestrator.evidence.bench.report import KIND
from orchestrator.evidence.bench.runner import LevelResult, no_model, run_level, server_info, warm
from orchestrator.evidence.bench.workload import PromptBuilder, ServerTokenizer, Shape, Workload
from orchestrator.progress import Progress, note

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


@dataclass(frozen=True)
class BenchResult:
    """One run of the ladder; ``to_json`` is the saved document (``docs/evidence.md``)."""

    started_at: str
    finished_at: str
    base_url: str
    model: str
    max_model_len: int | None
    models: dict[str, Any] | None
    status: dict[str, Any] | None
    profile: dict[str, Any] | None
    shape: Shape
    concurrency: tuple[int, ...]
    requests_per_level: int | None
    duration_s: float | None
    levels: list[LevelResult]
    probes: list[ProbeResult]

    @property
    def failed(self) -> int:
        """Failed requests over every level, and failed probes."""
        return sum(level.summary.failed for level in self.levels) + sum(
            not probe.passed for probe in self.probes
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": KIND,
            "version": 1,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "base_url": self.base_url,
            "model": self.model,
            "max_model_len": self.max_model_len,
            "models": self.models,
            "status": self.status,
            "profile": self.profile,
            "shape": self.shape.to_json(),
            "concurrency": list(self.concurrency),
            "requests_per_level": self.requests_per_level,
            "duration_s": self.duration_s,
            "levels": [level.to_json() for level in self.levels],
            "probes": [probe.to_json() for probe in self.probes],
        }


async def run_bench(config: BenchConfig, progress: Progress) -> BenchResult:
    """Run the ladder: every level in order, then the probes when asked for."""
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
            progress(
                note(f"level {number}/{len(config.concurrency)} c={conc}: building {count} prompts")
            )
            prompts = await workload.prompts(count)
            if config.warmup or workload.prefix is not None:
                await warm(client, config.base_url, model, workload)
            progress(note(f"level {number}/{len(config.concurrency)} c={conc}: running"))
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
                note(
                    f"c={conc} done: {s.completed}/{s.requests} ok, "
                    f"{s.output_tok_s:.1f} out tok/s, TTFT mean {s.ttft.mean * 1000:.0f} ms"
                )
            )
        probes: list[ProbeResult] = []
        if config.probes:
            if not info["max_model_len"]:
                raise ModelSlotError("probes need max_model_len from /v1/models; none reported")
            progress(note("probes: near-limit and over-limit"))
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
    return BenchResult(
        started_at=started,
        finished_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        base_url=config.base_url,
        model=model,
        max_model_len=info["max_model_len"],
        models=info["models"],
        status=status if isinstance(status, dict) else None,
        profile=_profile(status),
        shape=config.shape,
        concurrency=config.concurrency,
        requests_per_level=config.requests_per_level,
        duration_s=config.duration_s,
        levels=levels,
        probes=probes,
    )


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

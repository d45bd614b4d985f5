"""Run a level (N requests, at most C in flight) and a ladder of levels; collect server facts.

Concurrency works as in ``vllm bench serve --max-concurrency C --request-rate inf``: C workers
each send their next request as soon as their previous one ends. Prompts are built before the
level's clock starts, so tokenizing never counts as serving time.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import httpx

from orchestrator.errors import ModelSlotError
from orchestrator.evidence.bench.client import RequestRecord, completion_payload, stream_request
from orchestrator.evidence.bench.metrics import LevelSummary, summarize
from orchestrator.evidence.bench.workload import Prompt, Shape, Workload
from orchestrator.progress import Progress, note


@dataclass
class LevelResult:
    concurrency: int
    records: list[RequestRecord]
    summary: LevelSummary

    def to_json(self) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency,
            "summary": self.summary.to_json(),
            "records": [record.to_json() for record in self.records],
        }


def endpoint(base_url: str, chat: bool) -> str:
    path = "/v1/chat/completions" if chat else "/v1/completions"
    return base_url.rstrip("/") + path


async def run_level(
    client: httpx.AsyncClient,
    base_url: str,
    model: str,
    shape: Shape,
    *,
    prompts: list[Prompt],
    concurrency: int,
    duration_s: float | None = None,
    progress: Progress | None = None,
) -> LevelResult:
    """Send ``prompts`` with at most ``concurrency`` in flight. With ``duration_s``, workers
    stop taking new prompts once it has passed (the prompt list is then the upper bound)."""
    url = endpoint(base_url, shape.chat)
    records: list[RequestRecord] = []
    queue: asyncio.Queue[tuple[int, Prompt]] = asyncio.Queue()
    for item in enumerate(prompts):
        queue.put_nowait(item)
    total = len(prompts)
    level_start = time.perf_counter()
    deadline = None if duration_s is None else level_start + duration_s

    async def worker() -> None:
        while not queue.empty():
            if deadline is not None and time.perf_counter() >= deadline:
                return
            index, prompt = queue.get_nowait()
            record = RequestRecord(
                index=index,
                concurrency=concurrency,
                prompt_tokens_requested=prompt.tokens,
                output_tokens_requested=shape.output_tokens,
            )
            payload = completion_payload(
                model, prompt.text, shape.output_tokens, chat=shape.chat, seed=shape.seed
            )
            records.append(
                await stream_request(client, url, payload, record, level_start=level_start)
            )
            if progress is not None:
                progress(note(f"c={concurrency} requests", len(records), total))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    records.sort(key=lambda record: record.index)
    return LevelResult(concurrency, records, summarize(records, concurrency))


async def warm(client: httpx.AsyncClient, base_url: str, model: str, workload: Workload) -> None:
    """One request that is not measured: loads whatever is lazy, and caches a shared prefix."""
    shape = workload.shape
    text = workload.prefix.text if workload.prefix is not None else "Hello"
    payload = completion_payload(model, text, min(4, shape.output_tokens), chat=shape.chat, seed=0)
    record = RequestRecord(0, 1, 0, min(4, shape.output_tokens))
    await stream_request(
        client, endpoint(base_url, shape.chat), payload, record, level_start=time.perf_counter()
    )


async def server_info(client: httpx.AsyncClient, base_url: str) -> dict[str, Any]:
    """``/v1/models`` and, when a frontdoor answers, ``/status``. Missing parts are None;
    ``models_problem`` then says why there is no model (for an error that teaches)."""
    base = base_url.rstrip("/")
    info: dict[str, Any] = {"models": None, "status": None, "model": None, "max_model_len": None}
    info["models_problem"] = None
    try:
        response = await client.get(f"{base}/v1/models")
        if response.status_code == 200:
            info["models"] = response.json()
            data = info["models"].get("data") or []
            if data:
                info["model"] = data[0].get("id")
                info["max_model_len"] = data[0].get("max_model_len")
            else:
                info["models_problem"] = "it lists no model"
        else:
            info["models_problem"] = f"HTTP {response.status_code}: {response.text[:300]}"
    except httpx.HTTPError as exc:
        info["models_problem"] = f"cannot reach it ({type(exc).__name__}: {exc})"
    except (ValueError, AttributeError) as exc:
        info["models_problem"] = f"the answer is not an OpenAI model list ({exc})"
    try:
        response = await client.get(f"{base}/status")
        if response.status_code == 200:
            info["status"] = response.json()
    except (httpx.HTTPError, ValueError):
        pass
    return info


def no_model(base_url: str, info: dict[str, Any]) -> ModelSlotError:
    """The error when ``server_info`` found no model to use."""
    return ModelSlotError(
        f"no model at {base_url.rstrip('/')}/v1/models: {info['models_problem']}. "
        "Is the endpoint up (`python -m orchestrator status`)? Or pass --model."
    )

"""One streaming request -> one ``RequestRecord``. ``stream_request`` never raises.

Timing follows ``vllm bench serve`` (``benchmarks/lib/endpoint_request_func.py``):

- the clock starts just before the request is handed to the HTTP client;
- TTFT is the first SSE chunk that carries generated text;
- ITL is the gap between consecutive text-carrying chunks (one entry per chunk, not per token);
- E2E latency ends at the last text-carrying chunk.

Two things are added. ``queue_s`` is the time from the start until the request's headers went
on the wire (httpx's trace hook), so a pool or event loop that holds requests back shows up
instead of hiding inside TTFT. And output tokens come only from the server's
``usage`` (``stream_options.include_usage``): missing or inconsistent usage makes the record a
failure with the reason; the count is never guessed from the text.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx


@dataclass
class RequestRecord:
    """Everything one request did. Offsets are seconds from the start of its level."""

    index: int
    concurrency: int
    prompt_tokens_requested: int
    output_tokens_requested: int
    success: bool = False
    error: str | None = None
    status: int | None = None
    prompt_tokens: int | None = None  # from usage
    output_tokens: int | None = None  # from usage
    start_s: float = 0.0
    queue_s: float | None = None
    ttft_s: float | None = None
    itl_s: list[float] = field(default_factory=list)
    e2e_s: float | None = None  # start -> last text chunk (vLLM's "latency")
    end_s: float | None = None  # offset when the stream closed (for wall time)
    chunks: int = 0
    text: str = ""

    @property
    def first_text_s(self) -> float | None:
        return None if self.ttft_s is None else self.start_s + self.ttft_s

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RequestRecord:
        return cls(**data)


def completion_payload(
    model: str, prompt: str, max_tokens: int, *, chat: bool, seed: int, ignore_eos: bool = True
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "seed": seed,
        "stream": True,
        "stream_options": {"include_usage": True},
        "ignore_eos": ignore_eos,
    }
    if chat:
        body["messages"] = [{"role": "user", "content": prompt}]
    else:
        body["prompt"] = prompt
    return body


def _chunk_text(choice: dict[str, Any]) -> str:
    if "text" in choice:  # /v1/completions
        return str(choice.get("text") or "")
    delta = choice.get("delta") or {}
    return str(delta.get("content") or "") + str(
        delta.get("reasoning_content") or delta.get("reasoning") or ""
    )


def _error_message(body: str) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return body[:300]
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict):
            return str(err.get("message") or err)[:300]
        return str(err)[:300]
    return body[:300]


def check_usage(record: RequestRecord, usage: Any, *, ignore_eos: bool) -> str | None:
    """Why this usage cannot be trusted for this record, or None when it is consistent."""
    if not isinstance(usage, dict):
        return "no usage in the stream (stream_options.include_usage ignored?)"
    completion = usage.get("completion_tokens")
    prompt = usage.get("prompt_tokens")
    if not isinstance(completion, int) or isinstance(completion, bool):
        return f"usage without integer completion_tokens: {usage}"
    if not isinstance(prompt, int) or isinstance(prompt, bool):
        return f"usage without integer prompt_tokens: {usage}"
    record.output_tokens = completion
    record.prompt_tokens = prompt
    if completion < record.chunks:
        return f"usage says {completion} completion tokens but {record.chunks} text chunks came"
    if completion > record.output_tokens_requested:
        return f"usage says {completion} completion tokens, above max_tokens"
    if ignore_eos and completion != record.output_tokens_requested:
        return (
            f"usage says {completion} completion tokens; with ignore_eos exactly "
            f"{record.output_tokens_requested} were due (an output cap in the way?)"
        )
    if record.prompt_tokens_requested and prompt != record.prompt_tokens_requested:
        return (
            f"usage says {prompt} prompt tokens; the prompt was built to "
            f"{record.prompt_tokens_requested}"
        )
    return None


async def stream_request(
    client: httpx.AsyncClient,
    url: str,
    payload: dict[str, Any],
    record: RequestRecord,
    *,
    level_start: float,
) -> RequestRecord:
    """Send one streaming request and fill ``record``. Never raises (except cancellation)."""
    start = time.perf_counter()
    record.start_s = start - level_start
    sent: list[float] = []

    async def trace(event: str, info: dict[str, Any]) -> None:
        if event.endswith("send_request_headers.started") and not sent:
            sent.append(time.perf_counter())

    usage: Any = None
    last_text = start
    try:
        request = client.build_request("POST", url, json=payload, extensions={"trace": trace})
        response = await client.send(request, stream=True)
        try:
            record.status = response.status_code
            if response.status_code != 200:
                body = (await response.aread()).decode("utf-8", "replace")
                record.error = f"HTTP {response.status_code}: {_error_message(body)}"
                return record
            async for raw in response.aiter_lines():
                line = raw.strip()
                if not line.startswith("data:"):
                    continue
                data_text = line[5:].strip()
                if data_text == "[DONE]":
                    break
                now = time.perf_counter()
                data = json.loads(data_text)
                if not isinstance(data, dict):
                    continue
                if "error" in data:
                    record.error = f"error event in stream: {_error_message(data_text)}"
                    return record
                if data.get("usage"):
                    usage = data["usage"]
                choices = data.get("choices") or []
                if not choices:
                    continue
                text = _chunk_text(choices[0])
                if not text:
                    continue  # role-only or empty chunks carry no generated text
                if record.ttft_s is None:
                    record.ttft_s = now - start
                else:
                    record.itl_s.append(now - last_text)
                last_text = now
                record.chunks += 1
                record.text += text
        finally:
            await response.aclose()
    except (httpx.HTTPError, ValueError, OSError) as exc:
        record.error = f"{type(exc).__name__}: {exc}"[:300]
        return record
    finally:
        record.end_s = time.perf_counter() - level_start
        if sent:
            record.queue_s = sent[0] - start
    if record.ttft_s is None:
        record.error = "the stream ended without any generated text"
        return record
    record.e2e_s = last_text - start
    problem = check_usage(record, usage, ignore_eos=bool(payload.get("ignore_eos")))
    if problem:
        record.error = problem
        return record
    record.success = True
    return record


def make_client(concurrency: int, timeout_s: float) -> httpx.AsyncClient:
    """An AsyncClient whose pool never makes a request wait for a connection."""
    size = max(1, concurrency) + 2
    return httpx.AsyncClient(
        limits=httpx.Limits(max_connections=size, max_keepalive_connections=size),
        timeout=httpx.Timeout(timeout_s, connect=30.0, pool=None),
    )

"""One request -> one record, against the fake server: mechanics, and never raising."""

from __future__ import annotations

import asyncio
import socket
import time

import httpx

from orchestrator.evidence.bench.client import (
    RequestRecord,
    completion_payload,
    make_client,
    stream_request,
)
from orchestrator.evidence.bench.workload import PromptBuilder, ServerTokenizer

from .fake_server import FakeServer


def one(
    base_url: str, prompt: str, *, tokens: int = 8, chat: bool = False, prompt_tokens: int = 0
) -> RequestRecord:
    async def go() -> RequestRecord:
        async with make_client(1, 30) as client:
            record = RequestRecord(0, 1, prompt_tokens, tokens)
            path = "/v1/chat/completions" if chat else "/v1/completions"
            payload = completion_payload("fake-model", prompt, tokens, chat=chat, seed=0)
            return await stream_request(
                client, base_url + path, payload, record, level_start=time.perf_counter()
            )

    return asyncio.run(go())


def test_success_record_has_every_field(fake: FakeServer) -> None:
    r = one(fake.base_url, "a b c", tokens=8, prompt_tokens=4)
    assert r.success, r.error
    assert r.status == 200
    assert (r.prompt_tokens, r.output_tokens, r.chunks) == (4, 8, 8)
    assert r.ttft_s is not None and r.ttft_s > 0
    assert len(r.itl_s) == 7
    assert r.e2e_s is not None and r.e2e_s >= r.ttft_s
    assert r.end_s is not None and r.end_s >= r.start_s + r.e2e_s
    assert r.queue_s is not None and 0 <= r.queue_s <= r.ttft_s
    body = fake.config.requests[-1]
    assert body["stream_options"] == {"include_usage": True}
    assert body["ignore_eos"] is True and body["temperature"] == 0.0


def test_chat_role_chunk_is_not_the_first_token(fake: FakeServer) -> None:
    r = one(fake.base_url, "hello", tokens=5, chat=True)
    assert r.success, r.error
    assert r.chunks == 5
    assert len(r.itl_s) == 4
    assert r.text.startswith("t0")


def test_missing_usage_is_an_error_not_a_guess(fake: FakeServer) -> None:
    fake.config.usage = "missing"
    r = one(fake.base_url, "a b", tokens=6)
    assert not r.success
    assert r.output_tokens is None
    assert "no usage" in (r.error or "")


def test_inconsistent_usage_is_an_error(fake: FakeServer) -> None:
    fake.config.usage = "short"  # reports one token fewer than it streamed
    r = one(fake.base_url, "a b", tokens=6)
    assert not r.success
    assert "completion tokens" in (r.error or "")


def test_prompt_count_mismatch_is_an_error(fake: FakeServer) -> None:
    r = one(fake.base_url, "a b c", tokens=4, prompt_tokens=9)
    assert not r.success
    assert "prompt tokens" in (r.error or "")


def test_http_error_becomes_a_record(fake: FakeServer) -> None:
    r = one(fake.base_url, "x " * 600, tokens=4)
    assert not r.success
    assert r.status == 400
    assert (r.error or "").startswith("HTTP 400: This model's maximum context length")


def test_connection_refused_becomes_a_record() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    r = one(f"http://127.0.0.1:{port}", "a", tokens=2)
    assert not r.success
    assert r.status is None
    assert "ConnectError" in (r.error or "")
    assert r.end_s is not None


def test_tokenizer_falls_back_to_usage_without_tokenize(fake: FakeServer) -> None:
    fake.config.tokenize = False

    async def go() -> int:
        async with httpx.AsyncClient() as client:
            builder = PromptBuilder(
                ServerTokenizer(client, fake.base_url, "fake-model"), chat=False
            )
            return (await builder.build(50)).tokens

    assert asyncio.run(go()) == 50
    assert all(body["max_tokens"] == 1 for body in fake.config.requests)

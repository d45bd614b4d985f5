"""The frontdoor in front of a real vLLM CPU server, driven by the official ``openai`` client.

A fake upstream checks the frontdoor's mechanics elsewhere; these tests are where its behaviour
with vLLM itself is accepted: streaming and non-streaming chat, completions, an image request
against a text-only model (a clear 4xx relayed in OpenAI shape, never a 500/502), the lab's
rewrites, and a client hang-up that must make vLLM abort the generation.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import httpx
import openai
import pytest
import uvloop
from frontdoor.core import Frontdoor
from frontdoor.route import Limits, Profile, Route
from frontdoor.server import Servers, bind
from frontdoor.settings import Settings

from tests.support import wait_until

pytestmark = [pytest.mark.docker, pytest.mark.vllm]

# A 1x1 PNG.
PNG = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201a5f4d6b80000000049454e44ae426082"
    )
).decode()


class InProcessFrontdoor:
    def __init__(self, route: Route) -> None:
        public, admin = bind("127.0.0.1", 0), bind("127.0.0.1", 0)
        settings = Settings(port=public.getsockname()[1], admin_port=admin.getsockname()[1])
        self.fd = Frontdoor(settings, route)
        self.servers = Servers(self.fd, public, admin)
        self.url = f"http://127.0.0.1:{settings.port}"
        self.loop = uvloop.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_until_complete, args=(self.servers.serve(),), daemon=True
        )
        self.thread.start()

    def set_route(self, route: Route) -> None:
        async def apply() -> None:
            self.fd.set_route(route)

        asyncio.run_coroutine_threadsafe(apply(), self.loop).result(10)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.servers.stop)
        self.thread.join(20)
        self.loop.close()


def _route(server: Any, **limits: Any) -> Route:
    return Route(
        upstream=server.base_url,
        state="serving",
        profile=Profile(name="cpu-smollm2-135m", modalities="text"),
        limits=Limits(served_model_name=server.served_model_name, **limits),
    )


@pytest.fixture(scope="module")
def vllm(request: pytest.FixtureRequest) -> Any:
    """The lead's session vLLM CPU server, or one already running at FRONTDOOR_TEST_VLLM_URL."""
    url = os.environ.get("FRONTDOOR_TEST_VLLM_URL")
    if url:
        return SimpleNamespace(
            base_url=url.rstrip("/"), served_model_name="smollm2-135m-instruct", max_model_len=2048
        )
    return request.getfixturevalue("vllm_cpu_server")


@pytest.fixture(scope="module")
def front(vllm: Any) -> Iterator[InProcessFrontdoor]:
    running = InProcessFrontdoor(_route(vllm, max_active_generations=4))
    yield running
    running.stop()


@pytest.fixture
def client(front: InProcessFrontdoor) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=front.url + "/v1", api_key="unused", max_retries=0) as c:
        yield c


def test_models_pass_through(client: openai.OpenAI, vllm: Any) -> None:
    models = client.models.list()
    assert [m.id for m in models.data] == [vllm.served_model_name]


def test_chat_non_streamed(client: openai.OpenAI, vllm: Any) -> None:
    reply = client.chat.completions.create(
        model=vllm.served_model_name,
        messages=[{"role": "user", "content": "Say hello."}],
        max_tokens=8,
        temperature=0,
    )
    assert reply.choices[0].message.content
    assert reply.usage is not None and 0 < reply.usage.completion_tokens <= 8


def test_chat_streamed_arrives_as_several_events(client: openai.OpenAI, vllm: Any) -> None:
    stream = client.chat.completions.create(
        model=vllm.served_model_name,
        messages=[{"role": "user", "content": "Count from one to ten."}],
        max_tokens=16,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    deltas = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert len(deltas) >= 2  # token by token, not one buffered blob
    usage = [c.usage for c in chunks if c.usage]
    assert usage and usage[0].completion_tokens > 0


def test_completions(client: openai.OpenAI, vllm: Any) -> None:
    reply = client.completions.create(
        model=vllm.served_model_name, prompt="The capital of France is", max_tokens=6
    )
    assert reply.choices[0].text
    assert reply.usage is not None and reply.usage.completion_tokens > 0


def test_image_chat_on_a_text_only_model_relays_a_clear_openai_error(
    client: openai.OpenAI, vllm: Any
) -> None:
    try:
        reply = client.chat.completions.create(
            model=vllm.served_model_name,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "What is in this image?"},
                        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                    ],
                }
            ],
            max_tokens=8,
        )
    except openai.APIStatusError as exc:
        error: openai.APIStatusError | None = exc
    else:  # a multimodal model answers instead
        assert reply.choices[0].message.content is not None
        return
    assert error is not None
    assert 400 <= error.status_code < 500, error  # the model server's own verdict, not 500/502
    body = error.response.json()
    assert body.get("error", {}).get("message"), body  # OpenAI-shaped, with a reason


def test_rewrites_against_real_vllm(front: InProcessFrontdoor, vllm: Any) -> None:
    front.set_route(_route(vllm, rewrite_request_model=True, max_output_tokens=3))
    try:
        with openai.OpenAI(base_url=front.url + "/v1", api_key="unused", max_retries=0) as c:
            reply = c.chat.completions.create(
                model="whatever-the-client-thinks",
                messages=[{"role": "user", "content": "Write a long story."}],
                max_tokens=500,
            )
        assert reply.usage is not None and reply.usage.completion_tokens <= 3
        assert reply.model == vllm.served_model_name
    finally:
        front.set_route(_route(vllm, max_active_generations=4))


def _running_requests(base_url: str) -> float:
    text = httpx.get(base_url + "/metrics", timeout=5).text
    values = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("vllm:num_requests_running")
    ]
    return sum(values)


def test_client_hang_up_makes_vllm_abort_the_generation(
    front: InProcessFrontdoor, vllm: Any
) -> None:
    host, port = front.url.removeprefix("http://").split(":")
    body = json.dumps(
        {
            "model": vllm.served_model_name,
            "stream": True,
            "max_tokens": 1500,
            "ignore_eos": True,
            "messages": [{"role": "user", "content": "Tell me everything."}],
        }
    ).encode()
    sock = socket.create_connection((host, int(port)))
    sock.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n%s" % (len(body), body)
    )
    received = b""
    while received.count(b"data: ") < 3:  # generation is under way
        chunk = sock.recv(65536)
        assert chunk, "stream ended early"
        received += chunk
    assert _running_requests(vllm.base_url) >= 1
    sock.close()
    wait_until(
        lambda: _running_requests(vllm.base_url) == 0,
        30,
        "vLLM to abort the generation after the client hung up",
    )
    wait_until(lambda: front.fd.admission.active == 0, 10, "the frontdoor to free the slot")


def _hold_one_generation(front: InProcessFrontdoor, vllm: Any) -> socket.socket:
    """Start a long streamed generation through the frontdoor and return its socket once vLLM
    is generating: it holds the frontdoor's one place until the socket is closed."""
    host, port = front.url.removeprefix("http://").split(":")
    body = json.dumps(
        {
            "model": vllm.served_model_name,
            "stream": True,
            "max_tokens": 1500,
            "ignore_eos": True,
            "messages": [{"role": "user", "content": "Tell me everything."}],
        }
    ).encode()
    sock = socket.create_connection((host, int(port)))
    sock.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n%s" % (len(body), body)
    )
    received = b""
    while received.count(b"data: ") < 2:
        chunk = sock.recv(65536)
        assert chunk, "stream ended early"
        received += chunk
    return sock


# (path, body) for routes vLLM 0.32 runs the model on, beyond the OpenAI ones.
def _generation_routes(model: str) -> list[tuple[str, dict[str, Any]]]:
    chat = [{"role": "user", "content": "Say hi."}]
    return [
        ("/invocations", {"model": model, "messages": chat, "max_tokens": 2}),  # SageMaker chat
        ("/invocations", {"model": model, "prompt": "Hi", "max_tokens": 2}),  # and completion
        ("/v1/chat/completions/batch", {"model": model, "messages": [chat, chat], "max_tokens": 2}),
    ]


def test_every_route_vllm_generates_on_counts_against_the_cap_and_tokenize_does_not(
    front: InProcessFrontdoor, vllm: Any
) -> None:
    """Regression: with every place taken, POST /invocations got 200 (vLLM ran it) while
    /v1/chat/completions got 503: the cap listed generation paths and vLLM has more. Classified
    deny-by-default, each counts; the cheap tokenizer routes still pass."""
    model = vllm.served_model_name
    paths = set(httpx.get(vllm.base_url + "/openapi.json", timeout=10).json()["paths"])
    routes = _generation_routes(model)
    assert {p for p, _ in routes} | {"/tokenize", "/detokenize"} <= paths  # vLLM serves them
    # With a place free, each really is a generation on vLLM (it answers with model output).
    for path, body in routes:
        r = httpx.post(front.url + path, json=body, timeout=60)
        assert r.status_code == 200, (path, r.text)
        assert r.json()["choices"], (path, r.text)
    front.set_route(_route(vllm, max_active_generations=1, queue_timeout_s=0))
    sock = _hold_one_generation(front, vllm)
    try:
        for path, body in routes:
            r = httpx.post(front.url + path, json=body, timeout=30)
            assert r.status_code == 503, (path, r.text)
            assert r.json()["error"]["type"] == "queue_timeout"
            assert int(r.headers["retry-after"]) >= 1
        assert _running_requests(vllm.base_url) == 1  # the model ran none of them
        tokens = httpx.post(front.url + "/tokenize", json={"model": model, "prompt": "Hi"})
        assert tokens.status_code == 200 and tokens.json()["tokens"], tokens.text
        text = httpx.post(
            front.url + "/detokenize", json={"model": model, "tokens": tokens.json()["tokens"]}
        )
        assert text.status_code == 200 and text.json()["prompt"], text.text
        assert httpx.get(front.url + "/v1/models").status_code == 200
    finally:
        sock.close()
        front.set_route(_route(vllm, max_active_generations=4))
    wait_until(lambda: front.fd.admission.active == 0, 30, "the held generation to end")


def test_invocations_gets_the_output_token_cap_of_the_route_it_stands_for(
    front: InProcessFrontdoor, vllm: Any
) -> None:
    """/invocations is vLLM's alias for chat or completions: the profile's output-token cap
    applies to it too, or it would be a way around the cap."""
    front.set_route(_route(vllm, max_output_tokens=3))
    model = vllm.served_model_name
    try:
        for body in (
            {"model": model, "messages": [{"role": "user", "content": "A long story."}]},
            {"model": model, "prompt": "Once upon a time", "max_tokens": 500},
        ):
            r = httpx.post(
                front.url + "/invocations", json={**body, "ignore_eos": True}, timeout=60
            )
            assert r.status_code == 200, r.text
            assert r.json()["usage"]["completion_tokens"] <= 3
    finally:
        front.set_route(_route(vllm, max_active_generations=4))

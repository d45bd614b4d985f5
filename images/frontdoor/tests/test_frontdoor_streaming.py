"""Streaming relay: events reach the client as the upstream sends them, not later.

Proved by order, not by clocks: the upstream sends event i only once the client has received
event i - 1. How many milliseconds an event spends in the relay is measured, beside nginx and
the upstream direct, by ``benchmarks/frontdoor/bench.py`` (its "paced" workload).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from conftest import StartFrontdoor
from fd_fakes import FakeUpstream


def _events(url: str, headers: dict[str, str]) -> Iterator[int]:
    """Stream a chat through ``url``; yield each event's number as it arrives."""
    with (
        httpx.Client(timeout=httpx.Timeout(10, read=20)) as client,
        client.stream(
            "POST",
            url + "/v1/chat/completions",
            json={"model": "m", "stream": True, "messages": []},
            headers=headers,
        ) as response,
    ):
        assert response.status_code == 200
        assert response.headers["x-accel-buffering"] == "no"
        assert response.headers["content-type"].startswith("text/event-stream")
        buffer = b""
        for chunk in response.iter_raw():
            buffer += chunk
            while b"\n\n" in buffer:
                event, buffer = buffer.split(b"\n\n", 1)
                if b'"i"' in event:
                    index: int = json.loads(event.removeprefix(b"data: "))["i"]
                    yield index


def test_each_event_reaches_the_client_before_the_upstream_sends_the_next(
    upstream: FakeUpstream, start_frontdoor: StartFrontdoor
) -> None:
    """Lockstep: the upstream sends event i only after the client has received event i - 1.

    Buffering anywhere (app, server, headers, a proxy's default) would hold event i - 1 until
    later events or the end, which never come: the client's read times out and the test fails.
    No clock is compared, so a loaded machine cannot make it fail or pass by chance. How fast
    events go through is measured by ``benchmarks/frontdoor/bench.py``.
    """
    front = start_frontdoor(backend_url=upstream.url)
    received: list[int] = []
    try:
        for index in _events(front.url, {"x-fake-sse": "8", "x-fake-step": "lockstep"}):
            received.append(index)
            # Event ``index`` is here while the upstream has written no later one: it was not
            # held back for company (the upstream writes the next only after this release).
            assert upstream.seen[0].events_sent == index + 1, upstream.seen[0].events_sent
            upstream.release(f"lockstep-{index + 1}")
    except httpx.ReadTimeout:
        pytest.fail(
            f"received events {received}, then nothing: the upstream had sent "
            f"{upstream.seen[0].events_sent}, so the relay holds an event back (buffering)"
        )
    assert received == list(range(8))
    assert upstream.seen[0].events_sent == 8


def test_non_streaming_generation_and_models_pass_through(
    upstream: FakeUpstream, start_frontdoor: StartFrontdoor
) -> None:
    front = start_frontdoor(backend_url=upstream.url)
    with httpx.Client(base_url=front.url, timeout=10) as client:
        models = client.get("/v1/models")
        assert models.status_code == 200
        assert models.json()["data"][0]["id"] == "fake-model"
        chat = client.post("/v1/chat/completions", json={"model": "m", "messages": []})
        assert chat.status_code == 200
        assert chat.json()["usage"]["completion_tokens"] == 1
    assert front.fd.admission.total == 1  # /v1/models is not a generation
    assert front.fd.admission.active == 0  # freed before the client saw the end

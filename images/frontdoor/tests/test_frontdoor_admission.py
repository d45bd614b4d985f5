"""Admission through real sockets: the cap, the queue, refusals, and clients that hang up."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
from conftest import StartFrontdoor, raw_request
from fd_fakes import FakeUpstream
from frontdoor.route import Limits, Route

CHAT = "/v1/chat/completions"
BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def _route(url: str, cap: int, queue_timeout_s: float, **kw: object) -> Route:
    limits = Limits(max_active_generations=cap, queue_timeout_s=queue_timeout_s)
    return Route.model_validate({"upstream": url, "state": "serving", "limits": limits, **kw})


def _post(url: str, hold: str | None = None) -> httpx.Response:
    headers = {"x-fake-hold": hold} if hold else {}
    return httpx.post(url + CHAT, json=BODY, headers=headers, timeout=30)


def test_cap_2_queue_0_third_concurrent_generation_gets_one_503_queue_timeout(
    upstream: FakeUpstream, start_frontdoor: StartFrontdoor
) -> None:
    front = start_frontdoor(_route(upstream.url, cap=2, queue_timeout_s=0))
    with ThreadPoolExecutor(3) as pool:
        held = [pool.submit(_post, front.url, "a") for _ in range(2)]
        assert upstream.wait_requests(2)
        third = _post(front.url)
        assert third.status_code == 503
        assert int(third.headers["retry-after"]) >= 1
        error = third.json()["error"]
        assert error["type"] == "queue_timeout"
        assert set(error) >= {"message", "type", "param", "code"}
        upstream.release("a")
        assert [f.result().status_code for f in held] == [200, 200]
    assert len(upstream.seen) == 2  # the refused one never reached the upstream
    assert front.wait(lambda: front.fd.admission.active == 0)
    assert front.fd.metrics.refusals["queue_timeout"] == 1


def test_with_a_queue_timeout_the_third_is_served_once_a_slot_frees(
    upstream: FakeUpstream, start_frontdoor: StartFrontdoor
) -> None:
    front = start_frontdoor(_route(upstream.url, cap=2, queue_timeout_s=20))
    adm = front.fd.admission
    with ThreadPoolExecutor(3) as pool:
        first = pool.submit(_post, front.url, "first")
        assert upstream.wait_requests(1)
        second = pool.submit(_post, front.url, "second")
        assert upstream.wait_requests(2)
        third = pool.submit(_post, front.url, "third")
        assert front.wait(lambda: adm.queued == 1)
        assert len(upstream.seen) == 2  # still queued, not sent
        upstream.release("first")
        assert first.result().status_code == 200
        assert upstream.wait_requests(3)  # admitted as soon as the first finished
        upstream.release("second")
        upstream.release("third")
        assert second.result().status_code == 200
        assert third.result().status_code == 200
    assert front.wait(lambda: adm.active == 0 and adm.queued == 0)
    assert front.fd.metrics.queue_wait.count == 1


def test_disconnect_while_active_closes_upstream_and_frees_the_slot(
    upstream: FakeUpstream, start_frontdoor: StartFrontdoor
) -> None:
    front = start_frontdoor(_route(upstream.url, cap=1, queue_timeout_s=0))
    adm = front.fd.admission
    sock = raw_request(front.url, CHAT, json.dumps(BODY).encode(), {"x-fake-hold": "never"})
    assert upstream.wait_requests(1)
    assert adm.active == 1
    sock.close()
    assert upstream.wait_closes(1), "the upstream never saw the frontdoor close its request"
    assert upstream.seen[0].closed_early
    assert front.wait(lambda: adm.active == 0 and adm.queued == 0)
    # The freed slot is usable at once.
    assert _post(front.url).status_code == 200


def test_disconnect_while_streaming_closes_upstream(
    upstream: FakeUpstream, start_frontdoor: StartFrontdoor
) -> None:
    front = start_frontdoor(_route(upstream.url, cap=1, queue_timeout_s=0))
    headers = {"x-fake-sse": "1000", "x-fake-interval": "0.02"}
    sock = raw_request(front.url, CHAT, json.dumps({**BODY, "stream": True}).encode(), headers)
    assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    sock.close()
    assert upstream.wait_closes(1)
    assert upstream.seen[0].events_sent < 1000
    assert front.wait(lambda: front.fd.admission.active == 0)


def test_disconnect_while_queued_leaves_the_queue(
    upstream: FakeUpstream, start_frontdoor: StartFrontdoor
) -> None:
    front = start_frontdoor(_route(upstream.url, cap=1, queue_timeout_s=30))
    adm = front.fd.admission
    with ThreadPoolExecutor(1) as pool:
        active = pool.submit(_post, front.url, "active")
        assert upstream.wait_requests(1)
        queued = raw_request(front.url, CHAT, json.dumps(BODY).encode())
        assert front.wait(lambda: adm.queued == 1)
        queued.close()
        assert front.wait(lambda: adm.queued == 0)
        assert adm.active == 1
        upstream.release("active")
        assert active.result().status_code == 200
    assert front.wait(lambda: adm.active == 0)
    assert len(upstream.seen) == 1  # the one that left never reached the upstream
    assert _post(front.url).status_code == 200


def test_lowering_the_cap_lets_active_finish_and_admits_none_until_under_it(
    upstream: FakeUpstream, start_frontdoor: StartFrontdoor
) -> None:
    front = start_frontdoor(_route(upstream.url, cap=3, queue_timeout_s=30))
    adm = front.fd.admission
    with ThreadPoolExecutor(4) as pool:
        running = [pool.submit(_post, front.url, f"r{i}") for i in range(3)]
        assert upstream.wait_requests(3)
        front.put_route(**_route(upstream.url, cap=1, queue_timeout_s=30).model_dump(mode="json"))
        waiting = pool.submit(_post, front.url, "w")
        assert front.wait(lambda: adm.queued == 1)
        assert adm.active == 3  # nobody was cut off
        upstream.release("r0")
        upstream.release("r1")
        assert front.wait(lambda: adm.active == 1)
        assert adm.queued == 1  # 1 active is not under a cap of 1
        upstream.release("r2")
        assert upstream.wait_requests(4)
        upstream.release("w")
        assert [f.result().status_code for f in [*running, waiting]] == [200] * 4

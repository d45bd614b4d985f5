"""Invariant 4 for every request, not just generations: while the route is ``switching``,
``down`` or ``faulted`` nothing gets 502; it is held (bounded) and served by the route in force,
or refused with 503 and a Retry-After. And a grant is always judged against the route in force.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from conftest import RunningFrontdoor, StartFrontdoor
from fd_fakes import FakeUpstream
from frontdoor.route import Limits, Route, RouteState

CHAT = "/v1/chat/completions"
BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def _route(
    url: str | None,
    state: RouteState = "serving",
    cap: int = 4,
    switch_hold_s: float = 30,
    reason: str | None = None,
) -> Route:
    limits = Limits(max_active_generations=cap, queue_timeout_s=20)
    return Route(
        upstream=url, state=state, limits=limits, switch_hold_s=switch_hold_s, reason=reason
    )


def _poll(predicate: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def _apply(front: RunningFrontdoor, *routes: Route) -> None:
    """Apply routes on the frontdoor's loop in one turn (no await between), as a test of what
    a request whose task has not yet run sees."""

    async def apply() -> None:
        for route in routes:
            front.fd.set_route(route)

    front.call(apply())


@pytest.mark.parametrize("path", ["/v1/models", "/tokenize"])
def test_non_generations_while_switching_with_no_upstream_are_held_then_served_not_502(
    start_frontdoor: StartFrontdoor, path: str
) -> None:
    """The old container has stopped (the switching route has no upstream): a /v1/models or a
    /tokenize is held until the new model serves, then relayed to it."""
    new = FakeUpstream()
    try:
        front = start_frontdoor()
        front.put_route(
            **_route(None, "switching", reason="to new", switch_hold_s=20).model_dump(mode="json")
        )
        with ThreadPoolExecutor(1) as pool:
            held = pool.submit(
                httpx.request,
                "GET" if path == "/v1/models" else "POST",
                front.url + path,
                json={"prompt": "hi"},
                timeout=30,
            )
            _poll(lambda: front.fd.relays.active == 1, "the request to be held")
            assert not held.done()
            front.put_route(**_route(new.url).model_dump(mode="json"))
            answer = held.result()
        assert answer.status_code == 200, answer.text
        assert [s.path for s in new.seen] == [path]
    finally:
        new.stop()


def test_non_generations_still_switching_when_the_hold_runs_out_get_503_with_retry_after(
    upstream: FakeUpstream, start_frontdoor: StartFrontdoor
) -> None:
    front = start_frontdoor()
    route = _route(upstream.url, "switching", reason="loading gemma", switch_hold_s=0.3)
    front.put_route(**route.model_dump(mode="json"))
    r = httpx.get(front.url + "/v1/models", timeout=10)
    assert r.status_code == 503
    assert r.json()["error"]["type"] == "switching"
    assert "loading gemma" in r.json()["error"]["message"]
    assert int(r.headers["retry-after"]) >= 1
    assert upstream.seen == []  # never sent to the old, stopping upstream


@pytest.mark.parametrize("state", ["down", "faulted"])
def test_a_held_non_generation_gets_503_at_once_when_the_route_goes_down_or_faulted(
    start_frontdoor: StartFrontdoor, state: RouteState
) -> None:
    front = start_frontdoor()
    front.put_route(**_route(None, "switching", switch_hold_s=30).model_dump(mode="json"))
    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(httpx.get, front.url + "/v1/models", timeout=30)
        _poll(lambda: front.fd.relays.active == 1, "the request to be held")
        front.put_route(**_route(None, state, reason="new profile failed").model_dump(mode="json"))
        r = held.result()
    assert r.status_code == 503
    assert r.json()["error"]["type"] == state
    assert int(r.headers["retry-after"]) >= 1


def test_a_generation_granted_in_the_same_turn_as_a_route_change_to_down_gets_503_not_502(
    upstream: FakeUpstream, start_frontdoor: StartFrontdoor
) -> None:
    """Regression: a queued generation was granted (cap raised), then in the same loop turn the
    route went ``down`` with no upstream; the request, running later, relayed to the route in
    force and got 502 "unsupported upstream URL". It must be answered by that route: 503."""
    front = start_frontdoor(_route(upstream.url, cap=1))
    adm = front.fd.admission
    with ThreadPoolExecutor(2) as pool:
        active = pool.submit(
            httpx.post, front.url + CHAT, json=BODY, headers={"x-fake-hold": "go"}, timeout=30
        )
        assert upstream.wait_requests(1)
        queued = pool.submit(httpx.post, front.url + CHAT, json=BODY, timeout=30)
        assert front.wait(lambda: adm.queued == 1)
        _apply(front, _route(upstream.url, cap=2), _route(None, "down", reason="container exited"))
        r = queued.result()
        upstream.release("go")
        active.result()
    assert r.status_code == 503, r.text
    assert r.json()["error"]["type"] == "down"
    assert int(r.headers["retry-after"]) >= 1
    assert len(upstream.seen) == 1
    assert front.wait(lambda: adm.active == 0)


def test_a_generation_granted_in_the_same_turn_as_a_switch_begins_is_held_for_the_new_model(
    start_frontdoor: StartFrontdoor,
) -> None:
    old, new = FakeUpstream(), FakeUpstream()
    try:
        front = start_frontdoor(_route(old.url, cap=1, switch_hold_s=20))
        adm = front.fd.admission
        with ThreadPoolExecutor(2) as pool:
            active = pool.submit(
                httpx.post, front.url + CHAT, json=BODY, headers={"x-fake-hold": "go"}, timeout=30
            )
            assert old.wait_requests(1)
            queued = pool.submit(httpx.post, front.url + CHAT, json=BODY, timeout=30)
            assert front.wait(lambda: adm.queued == 1)
            _apply(
                front,
                _route(old.url, cap=2, switch_hold_s=20),
                _route(None, "switching", reason="to new", switch_hold_s=20),
            )
            assert front.wait(lambda: adm.queued == 1)  # given back and held again
            assert len(old.seen) == 1  # not sent to the old model, nor to nowhere
            old.release("go")
            active.result()
            front.put_route(**_route(new.url, cap=2).model_dump(mode="json"))
            r = queued.result()
        assert r.status_code == 200, r.text
        assert len(new.seen) == 1
    finally:
        old.stop()
        new.stop()

"""Behind a router: ``/health/ready`` in every route state, and ``X-Model-Slot-Hold: 0``.

A router (LiteLLM in ``deploy/fleet/``) wants a fast 503 it can route around, not a hold that
serves a single host well, and not a 404 from a host that serves another model now. Each "at
once" below is checked against a hold of ten minutes and a client timeout of 20 s: a request
that waited would fail the test by timing out, not by a measured duration.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from conftest import RunningFrontdoor, StartFrontdoor
from fd_fakes import FakeUpstream
from frontdoor.route import Limits, Route, RouteState

CHAT = "/v1/chat/completions"
BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
LONG = 600.0  # a hold nobody may wait out in these tests
NO_HOLD = {"x-model-slot-hold": "0"}


def _route(
    url: str | None, state: RouteState = "serving", cap: int = 4, **kw: object
) -> dict[str, Any]:
    limits = Limits(max_active_generations=cap, queue_timeout_s=LONG)
    fields = {"upstream": url, "state": state, "limits": limits, "switch_hold_s": LONG, **kw}
    return Route.model_validate(fields).model_dump(mode="json")


def _ready(front: RunningFrontdoor) -> httpx.Response:
    return httpx.get(front.url + "/health/ready", timeout=20)


def _refused_at_once(response: httpx.Response, kind: str) -> None:
    assert response.status_code == 503, response.text
    assert int(response.headers["retry-after"]) >= 1
    error = response.json()["error"]
    assert error["type"] == kind
    assert set(error) >= {"message", "type", "param", "code"}


def test_health_ready_is_200_only_while_serving_and_not_paused(
    upstream: FakeUpstream, start_frontdoor: StartFrontdoor
) -> None:
    front = start_frontdoor()
    front.put_route(**_route(upstream.url, profile={"name": "tiny"}))
    ready = _ready(front)
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "profile": "tiny"}

    front.admin("POST", "/admin/pause")
    _refused_at_once(_ready(front), "paused")
    front.admin("POST", "/admin/resume")
    assert _ready(front).status_code == 200

    front.put_route(**_route(upstream.url, "switching", reason="switching to gemma"))
    switching = _ready(front)
    _refused_at_once(switching, "switching")
    assert "switching to gemma" in switching.json()["error"]["message"]

    for state in ("down", "faulted"):
        front.put_route(**_route(None, state, reason=f"the model is {state} for the test"))
        refused = _ready(front)
        _refused_at_once(refused, state)
        assert f"{state} for the test" in refused.json()["error"]["message"]
        # Liveness stays liveness: the process answers whatever the route says.
        assert httpx.get(front.url + "/health", timeout=20).status_code == 200
    assert upstream.seen == []  # readiness never asks the model


def test_health_ready_head_has_the_status_and_no_body(start_frontdoor: StartFrontdoor) -> None:
    front = start_frontdoor()
    front.put_route(**_route(None, "down", reason="nothing yet"))
    response = httpx.head(front.url + "/health/ready", timeout=20)
    assert response.status_code == 503
    assert response.content == b""
    assert "retry-after" in response.headers


@pytest.mark.parametrize("situation", ["switching", "paused", "cap_full"])
def test_no_hold_header_refuses_a_generation_at_once_instead_of_holding_it(
    situation: str, upstream: FakeUpstream, start_frontdoor: StartFrontdoor
) -> None:
    front = start_frontdoor()
    front.put_route(**_route(upstream.url, cap=1))
    with ThreadPoolExecutor(1) as pool:
        busy = None
        if situation == "cap_full":
            busy = pool.submit(
                httpx.post, front.url + CHAT, json=BODY, headers={"x-fake-hold": "a"}, timeout=30
            )
            assert upstream.wait_requests(1)
        elif situation == "paused":
            front.admin("POST", "/admin/pause")
        else:
            front.put_route(**_route(upstream.url, "switching", cap=1, reason="to gemma"))
        refused = httpx.post(front.url + CHAT, json=BODY, headers=NO_HOLD, timeout=20)
        _refused_at_once(refused, {"cap_full": "busy"}.get(situation, situation))
        assert front.fd.admission.queued == 0
        if busy is not None:
            upstream.release("a")
            assert busy.result().status_code == 200
    assert len(upstream.seen) == (1 if situation == "cap_full" else 0)


def test_no_hold_header_refuses_a_non_generation_while_switching(
    upstream: FakeUpstream, start_frontdoor: StartFrontdoor
) -> None:
    front = start_frontdoor()
    front.put_route(**_route(upstream.url, "switching", reason="to gemma"))
    refused = httpx.get(front.url + "/v1/models", headers=NO_HOLD, timeout=20)
    _refused_at_once(refused, "switching")
    assert upstream.seen == []


def test_frontdoor_hold_setting_off_refuses_unless_the_request_asks_to_wait(
    upstream: FakeUpstream, start_frontdoor: StartFrontdoor
) -> None:
    front = start_frontdoor(hold=False)
    front.put_route(**_route(upstream.url, cap=1))
    front.admin("POST", "/admin/pause")
    _refused_at_once(httpx.post(front.url + CHAT, json=BODY, timeout=20), "paused")
    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(
            httpx.post, front.url + CHAT, json=BODY, headers={"x-model-slot-hold": "1"}, timeout=30
        )
        assert front.wait(lambda: front.fd.admission.queued == 1)
        front.admin("POST", "/admin/resume")
        assert held.result().status_code == 200


def test_a_malformed_hold_header_gets_400_naming_it(
    upstream: FakeUpstream, start_frontdoor: StartFrontdoor
) -> None:
    front = start_frontdoor()
    front.put_route(**_route(upstream.url))
    response = httpx.post(
        front.url + CHAT, json=BODY, headers={"x-model-slot-hold": "later"}, timeout=20
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "X-Model-Slot-Hold"
    assert upstream.seen == []


@pytest.mark.parametrize(("method", "path"), [("POST", CHAT), ("GET", "/v1/models")])
def test_the_hold_header_never_reaches_the_model(
    method: str, path: str, upstream: FakeUpstream, start_frontdoor: StartFrontdoor
) -> None:
    front = start_frontdoor()
    front.put_route(**_route(upstream.url))
    headers = {"x-model-slot-hold": "0", "x-fake-echo": "1"}
    body = BODY if method == "POST" else None
    response = httpx.request(method, front.url + path, json=body, headers=headers, timeout=20)
    assert response.status_code == 200, response.text
    assert upstream.wait_requests(1)
    seen = upstream.seen[0]
    assert "x-fake-echo" in seen.headers  # other headers do pass
    assert not any(name.lower() == "x-model-slot-hold" for name in seen.headers)


def test_no_hold_turns_the_model_s_404_into_a_fast_503_a_router_retries(
    upstream: FakeUpstream, start_frontdoor: StartFrontdoor
) -> None:
    """A host serving another profile is one a router must route around, like a switching one:
    LiteLLM retries a 503 on another deployment, and hands a 404 to the client."""
    front = start_frontdoor()
    limits = Limits(max_active_generations=4, served_model_name="tiny-llama")
    front.put_route(
        **Route(upstream=upstream.url, state="serving", limits=limits).model_dump(mode="json")
    )
    asked = {**BODY, "model": "gemma-4-12b-it"}
    wrong = {"x-fake-status": "404"}  # what vLLM answers for a model it does not serve
    refused = httpx.post(front.url + CHAT, json=asked, headers=wrong | NO_HOLD, timeout=20)
    _refused_at_once(refused, "model_not_served")
    message = refused.json()["error"]["message"]
    assert "serves tiny-llama now, not gemma-4-12b-it" in message
    assert "does not exist" not in message  # LiteLLM would map that wording back to a 404
    assert front.fd.admission.active == 0  # the place it took for the attempt is given back
    # A client that waits (a single host's client) still gets the model's own answer.
    assert httpx.post(front.url + CHAT, json=asked, headers=wrong, timeout=20).status_code == 404
    # Other errors of the model pass through as they are, router or not.
    bad = {"x-fake-status": "400"} | NO_HOLD
    assert httpx.post(front.url + CHAT, json=asked, headers=bad, timeout=20).status_code == 400
    # And a non-generation's 404 is the model's answer too (nothing to route around).
    models = httpx.get(front.url + "/v1/models/x", headers=wrong | NO_HOLD, timeout=20)
    assert models.status_code == 404
    assert len(upstream.seen) == 4

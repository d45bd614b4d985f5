"""The route the orchestrator flips: switching, down, drain, pause, persistence, the admin API."""

from __future__ import annotations

import json
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from conftest import StartFrontdoor
from fd_fakes import FakeUpstream
from frontdoor.route import Limits, Route, RouteState

CHAT = "/v1/chat/completions"
STREAM = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}


def _route(url: str | None, state: RouteState = "serving", **kw: object) -> dict[str, object]:
    limits = Limits(max_active_generations=8, queue_timeout_s=5)
    route = Route.model_validate({"upstream": url, "state": state, "limits": limits, **kw})
    return route.model_dump(mode="json")


def _stream(
    url: str, events: int = 10, interval: float = 0.01
) -> tuple[int, dict[str, str], bytes]:
    headers = {"x-fake-sse": str(events), "x-fake-interval": str(interval)}
    with httpx.stream("POST", url + CHAT, json=STREAM, headers=headers, timeout=30) as r:
        return r.status_code, dict(r.headers), r.read()


def test_route_flip_while_requests_are_in_flight_never_gives_502(
    start_frontdoor: StartFrontdoor,
) -> None:
    old, new = FakeUpstream(), FakeUpstream()
    try:
        front = start_frontdoor(admin_token="t")
        front.admin("PUT", "/admin/route", _route(old.url, switch_hold_s=20), token="t")
        with ThreadPoolExecutor(8) as pool:
            in_flight = [pool.submit(_stream, front.url, 30, 0.01) for _ in range(3)]
            assert old.wait_requests(3)
            switching = _route(old.url, "switching", reason="switching to new", switch_hold_s=20)
            assert front.admin("PUT", "/admin/route", switching, token="t").status_code == 200
            held = [pool.submit(_stream, front.url, 3, 0) for _ in range(3)]
            assert front.wait(lambda: front.fd.admission.queued == 3)
            drained = front.admin("POST", "/admin/drain", {"timeout_s": 20}, token="t").json()
            assert drained["drained"] is True and drained["active_generations"] == 0
            front.admin("PUT", "/admin/route", _route(new.url, switch_hold_s=20), token="t")
            results = [f.result() for f in in_flight + held]
        assert [status for status, _, _ in results] == [200] * 6
        assert all(body.endswith(b"data: [DONE]\n\n") for _, _, body in results)
        assert len(old.seen) == 3 and len(new.seen) == 3  # held ones went to the new upstream
    finally:
        old.stop()
        new.stop()


def test_switching_past_the_hold_refuses_with_503_switching_and_retry_after(
    upstream: FakeUpstream, start_frontdoor: StartFrontdoor
) -> None:
    front = start_frontdoor()
    front.put_route(**_route(upstream.url, "switching", reason="loading gemma", switch_hold_s=0.2))
    r = httpx.post(front.url + CHAT, json=STREAM, timeout=10)
    assert r.status_code == 503
    assert r.json()["error"]["type"] == "switching"
    assert "loading gemma" in r.json()["error"]["message"]
    assert int(r.headers["retry-after"]) >= 1
    assert upstream.seen == []


@pytest.mark.parametrize("state", ["down", "faulted"])
def test_down_or_faulted_refuses_everything_but_our_own_endpoints(
    upstream: FakeUpstream, start_frontdoor: StartFrontdoor, state: RouteState
) -> None:
    front = start_frontdoor()
    front.put_route(**_route(upstream.url, state, reason="UR_RESULT_ERROR_DEVICE_LOST"))
    for method, path in [("POST", CHAT), ("GET", "/v1/models")]:
        r = httpx.request(method, front.url + path, json=STREAM, timeout=10)
        assert r.status_code == 503
        assert r.json()["error"]["type"] == state
        assert "DEVICE_LOST" in r.json()["error"]["message"]
        assert int(r.headers["retry-after"]) >= 1
    assert httpx.get(front.url + "/health").status_code == 200
    status = httpx.get(front.url + "/status").json()
    assert status["ok"] is False
    assert status["route"]["state"] == state
    assert httpx.get(front.url + "/metrics").status_code == 200
    assert upstream.seen == []


def test_going_down_refuses_held_requests_at_once(
    upstream: FakeUpstream, start_frontdoor: StartFrontdoor
) -> None:
    front = start_frontdoor()
    front.put_route(**_route(upstream.url, "switching", switch_hold_s=30))
    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(httpx.post, front.url + CHAT, json=STREAM, timeout=30)
        assert front.wait(lambda: front.fd.admission.queued == 1)
        front.put_route(**_route(None, "down", reason="new profile failed to start"))
        r = held.result()
    assert r.status_code == 503
    assert r.json()["error"]["type"] == "down"


def test_pause_holds_then_resume_serves(
    upstream: FakeUpstream, start_frontdoor: StartFrontdoor
) -> None:
    front = start_frontdoor()
    front.put_route(**_route(upstream.url, switch_hold_s=20))
    assert front.admin("POST", "/admin/pause").json()["paused"] is True
    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(httpx.post, front.url + CHAT, json=STREAM, timeout=30)
        assert front.wait(lambda: front.fd.admission.queued == 1)
        assert upstream.seen == []
        assert front.admin("POST", "/admin/resume").json()["paused"] is False
        assert held.result().status_code == 200


def test_paused_past_the_hold_gives_503_paused(
    upstream: FakeUpstream, start_frontdoor: StartFrontdoor
) -> None:
    front = start_frontdoor()
    front.put_route(**_route(upstream.url, switch_hold_s=0.1))
    front.admin("POST", "/admin/pause")
    r = httpx.post(front.url + CHAT, json=STREAM, timeout=10)
    assert r.status_code == 503
    assert r.json()["error"]["type"] == "paused"
    assert "retry-after" in r.headers


def test_drain_reports_not_drained_when_the_bound_passes(
    upstream: FakeUpstream, start_frontdoor: StartFrontdoor
) -> None:
    front = start_frontdoor()
    front.put_route(**_route(upstream.url))
    with ThreadPoolExecutor(1) as pool:
        busy = pool.submit(
            httpx.post, front.url + CHAT, json=STREAM, headers={"x-fake-hold": "h"}, timeout=30
        )
        assert upstream.wait_requests(1)
        result = front.admin("POST", "/admin/drain", {"timeout_s": 0.1}).json()
        assert result["drained"] is False
        assert result["active_generations"] == 1
        assert result["waited_s"] >= 0.09  # the loop may fire a timer up to a clock tick early
        upstream.release("h")
        assert busy.result().status_code == 200


def test_admin_without_a_token_configured_refuses_every_call_and_says_how(
    start_frontdoor: StartFrontdoor,
) -> None:
    front = start_frontdoor(admin_token=None)
    r = front.admin("GET", "/admin/route", token="anything")
    assert r.status_code == 401
    assert "FRONTDOOR_ADMIN_TOKEN" in r.json()["error"]["message"]


@pytest.mark.parametrize("token", [None, "wrong"])
def test_admin_with_missing_or_wrong_token_gets_401(
    start_frontdoor: StartFrontdoor, token: str | None
) -> None:
    front = start_frontdoor(admin_token="right")
    for method, path in [
        ("GET", "/admin/route"),
        ("PUT", "/admin/route"),
        ("POST", "/admin/drain"),
        ("POST", "/admin/pause"),
        ("POST", "/admin/resume"),
    ]:
        r = front.admin(method, path, json=_route(None, "down"), token=token)
        assert r.status_code == 401, (method, path)
        assert r.json()["error"]["type"] == "authentication_error"
    assert front.admin("GET", "/admin/route", token="right").status_code == 200
    assert front.fd.paused is False


def test_admin_api_is_not_on_the_public_port(
    upstream: FakeUpstream, start_frontdoor: StartFrontdoor
) -> None:
    front = start_frontdoor(backend_url=upstream.url)
    r = httpx.get(front.url + "/admin/route", headers={"authorization": "Bearer test-admin-token"})
    assert upstream.seen[0].path == "/admin/route"  # just another path, relayed to the model
    assert r.status_code == 200 and "upstream" not in r.text


def test_put_route_rejects_serving_without_upstream(start_frontdoor: StartFrontdoor) -> None:
    front = start_frontdoor()
    r = front.admin("PUT", "/admin/route", json={"state": "serving", "upstream": None})
    assert r.status_code in (400, 422)
    if r.status_code == 422:  # with the token, the details, in an OpenAI body
        assert r.json()["error"]["type"] == "invalid_request_error"


def test_route_persists_across_a_restart(
    upstream: FakeUpstream, start_frontdoor: StartFrontdoor, state_dir: Path
) -> None:
    first = start_frontdoor(state_dir=state_dir)
    assert first.fd.route.state == "down"  # nothing configured yet, and it says how
    assert "FRONTDOOR_BACKEND_URL" in (first.fd.route.reason or "")
    route = _route(
        upstream.url,
        profile={"name": "gemma-c8", "status": "production"},
        startup_facts={"kv_cache_tokens": 1004909},
    )
    first.put_route(**route)
    saved = json.loads((state_dir / "route.json").read_text())
    assert saved["upstream"] == upstream.url
    assert not list(state_dir.glob(".route.*"))  # no temp file left behind
    first.stop()

    second = start_frontdoor(state_dir=state_dir)
    # Held as ``switching`` until the restored upstream accepts a connection: one local connect.
    assert second.wait(lambda: second.fd.route.state == "serving")
    assert second.fd.route.upstream == upstream.url
    status = httpx.get(second.url + "/status").json()
    assert status["model_slot"]["name"] == "gemma-c8"
    assert status["startup_facts"] == {"kv_cache_tokens": 1004909}
    assert status["route"]["origin"].startswith("restored from")
    assert httpx.post(second.url + CHAT, json=STREAM, timeout=10).status_code == 200


def test_an_unreadable_persisted_route_falls_back_to_the_environment(
    upstream: FakeUpstream, start_frontdoor: StartFrontdoor, state_dir: Path
) -> None:
    state_dir.mkdir()
    (state_dir / "route.json").write_text("{not json")
    front = start_frontdoor(state_dir=state_dir, backend_url=upstream.url)
    assert front.fd.route.state == "serving"
    assert "ignoring unreadable" in front.fd.route_origin


def _restored_route_to_a_closed_port(state_dir: Path) -> tuple[socket.socket, str]:
    """A persisted ``serving`` route whose upstream port is bound but not listening yet (the
    model container of a rebooted host that the orchestrator has not created yet)."""
    reserved = socket.socket()
    reserved.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{reserved.getsockname()[1]}"
    state_dir.mkdir()
    (state_dir / "route.json").write_text(json.dumps(_route(url, switch_hold_s=30)))
    return reserved, url


def test_a_restored_route_is_held_until_its_upstream_answers_not_502(
    start_frontdoor: StartFrontdoor, state_dir: Path
) -> None:
    reserved, url = _restored_route_to_a_closed_port(state_dir)
    saved = (state_dir / "route.json").read_text()
    front = start_frontdoor(state_dir=state_dir)
    status = httpx.get(front.url + "/status").json()
    assert status["route"]["state"] == "switching"
    assert f"waiting for {url} to answer" in status["route"]["reason"]
    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(_stream, front.url)
        assert front.wait(lambda: front.fd.admission.queued == 1)  # held, not a 502
        late = FakeUpstream(reserved)  # the model comes up on the restored address
        try:
            code, _, body = held.result(timeout=30)
        finally:
            late.stop()
    assert code == 200 and body.endswith(b"data: [DONE]\n\n")
    assert front.fd.route.state == "serving" and front.fd.route.upstream == url
    assert (state_dir / "route.json").read_text() == saved  # the wait was never persisted


def test_an_admin_route_ends_the_wait_for_a_restored_one(
    upstream: FakeUpstream, start_frontdoor: StartFrontdoor, state_dir: Path
) -> None:
    reserved, _ = _restored_route_to_a_closed_port(state_dir)
    front = start_frontdoor(state_dir=state_dir)
    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(_stream, front.url)
        assert front.wait(lambda: front.fd.admission.queued == 1)
        front.put_route(**_route(upstream.url))  # what the orchestrator does at boot
        code, _, _ = held.result(timeout=30)
    assert code == 200 and upstream.wait_requests(1)
    # The admin's route stays, even once the old address answers.
    late = FakeUpstream(reserved)
    try:
        assert not front.wait(lambda: front.fd.route.upstream != upstream.url, timeout=2.5)
    finally:
        late.stop()
    assert front.fd.route_origin == "admin API"


@pytest.mark.parametrize(
    "body",
    [b"{not json", b'{"state": "serving"}', b"\xff" * 100],
    ids=["not-json", "invalid-route", "not-utf8"],
)
def test_admin_put_without_a_token_and_a_malformed_body_gets_401_not_422_parse_details(
    start_frontdoor: StartFrontdoor, body: bytes
) -> None:
    """Regression: the body was parsed before the token was checked, so a caller without the
    token got 422 with the parser's details (the route's schema) instead of 401."""
    front = start_frontdoor(admin_token="right")
    for headers in ({}, {"authorization": "Bearer wrong"}):
        r = httpx.put(
            front.admin_url + "/admin/route",
            content=body,
            headers={"content-type": "application/json", **headers},
            timeout=10,
        )
        assert r.status_code == 401, r.text
        assert r.json()["error"]["type"] == "authentication_error"
        assert "state" not in r.text and "upstream" not in r.text
    # With the token the same body is judged on its merits.
    r = httpx.put(
        front.admin_url + "/admin/route",
        content=body,
        headers={"content-type": "application/json", "authorization": "Bearer right"},
        timeout=10,
    )
    assert r.status_code in (400, 422)
    if r.status_code == 422:  # with the token, the details, in an OpenAI body
        assert r.json()["error"]["type"] == "invalid_request_error"

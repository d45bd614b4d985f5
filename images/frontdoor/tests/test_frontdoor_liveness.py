"""Liveness for the watchdog, over real sockets: tokens relayed, the oldest active generation's
silence, and the watchdog's report in ``/status`` and ``/metrics``."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from typing import Any

import httpx
from conftest import RunningFrontdoor, raw_request
from fd_fakes import FakeUpstream
from frontdoor.route import Limits, Route

CHAT = "/v1/chat/completions"
BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
Start = Callable[..., RunningFrontdoor]


def _route(url: str) -> Route:
    return Route(upstream=url, state="serving", limits=Limits(max_active_generations=4))


def _liveness(front: RunningFrontdoor) -> dict[str, Any]:
    response = front.admin("GET", "/admin/liveness")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _poll(front: RunningFrontdoor, check: Callable[[dict[str, Any]], bool], what: str) -> None:
    """Poll the admin API until ``check`` holds (a deadline, not a guessed sleep)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if check(_liveness(front)):
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}: {_liveness(front)}")


def test_a_fresh_frontdoor_has_relayed_nothing(
    upstream: FakeUpstream, start_frontdoor: Start
) -> None:
    front = start_frontdoor(_route(upstream.url))
    assert _liveness(front) == {
        "active_generations": 0,
        "last_token_age_s": None,
        "oldest_active_age_s": None,
        "oldest_active_silent_s": None,
    }


def test_a_stream_that_stops_sending_is_silent_and_tokens_are_recent(
    upstream: FakeUpstream, start_frontdoor: Start
) -> None:
    front = start_frontdoor(_route(upstream.url))
    headers = {"x-fake-sse": "3", "x-fake-step": "s"}
    sock = raw_request(front.url, CHAT, json.dumps({**BODY, "stream": True}).encode(), headers)
    try:
        assert b'"i": 0' in _read_until(sock, b'"i": 0')  # event 0 relayed; event 1 waits
        first = _liveness(front)
        assert first["active_generations"] == 1
        assert first["last_token_age_s"] is not None and first["last_token_age_s"] < 5
        # the upstream now sends nothing: the generation's silence grows, measured per request
        _poll(front, lambda v: v["oldest_active_silent_s"] >= 0.3, "silence to grow")
        during = _liveness(front)
        assert during["last_token_age_s"] >= 0.3
        upstream.release("s-1")
        upstream.release("s-2")
        _read_until(sock, b"[DONE]")
    finally:
        sock.close()
    _poll(front, lambda v: v["active_generations"] == 0, "the generation to end")
    after = _liveness(front)
    assert (
        after["last_token_age_s"] is not None
        and after["last_token_age_s"] < during["last_token_age_s"]
    )
    assert after["oldest_active_silent_s"] is None


def test_a_held_generation_is_silent_since_admission_and_no_token(
    upstream: FakeUpstream, start_frontdoor: Start
) -> None:
    front = start_frontdoor(_route(upstream.url))
    sock = raw_request(front.url, CHAT, json.dumps(BODY).encode(), {"x-fake-hold": "h"})
    try:
        assert upstream.wait_requests(1)
        _poll(front, lambda v: (v["oldest_active_silent_s"] or 0) >= 0.2, "the silence to grow")
        view = _liveness(front)
        assert view["active_generations"] == 1 and view["last_token_age_s"] is None
        assert view["oldest_active_age_s"] >= view["oldest_active_silent_s"] - 0.01
        upstream.release("h")
        assert b"200" in _read_until(sock, b"}}")
    finally:
        sock.close()
    # a whole non-streamed answer is a token too
    _poll(front, lambda v: v["last_token_age_s"] is not None, "the answer to count")


def test_error_answers_are_not_tokens(upstream: FakeUpstream, start_frontdoor: Start) -> None:
    """vLLM's API server answers errors while its engine is stopped: not proof of life."""
    front = start_frontdoor(_route(upstream.url))
    response = httpx.post(front.url + CHAT, json=BODY, headers={"x-fake-status": "400"}, timeout=10)
    assert response.status_code == 400
    assert front.wait(lambda: front.fd.admission.active == 0)
    assert _liveness(front)["last_token_age_s"] is None


def test_liveness_needs_the_admin_token(upstream: FakeUpstream, start_frontdoor: Start) -> None:
    front = start_frontdoor(_route(upstream.url))
    assert front.admin("GET", "/admin/liveness", token=None).status_code == 401
    assert front.admin("PUT", "/admin/watchdog", json={}, token="wrong").status_code == 401


REPORT = {
    "watchdog": {
        "verdict": "degraded",
        "reason": "decode 9.1, 9.3, 9.0 tok/s in the last 3 probes, below 20.0",
        "last_probe": {"kind": "decode", "ok": True, "latency_s": 1.5},
        "restarts_in_window": 1,
        "restart_budget": 3,
        "decode_tok_s": 9.0,
        "baseline_tok_s": 40.0,
        "verdict_changes": 4,
    },
    "devices": {
        "available": True,
        "source": "xpu-smi dump",
        "gpus": [
            {"gpu": "0", "utilization_percent": 97.5, "memory_used_mib": 20480, "power_w": 180},
            {"gpu": "1", "temperature_c": 61, "engine_resets": 2},
        ],
    },
}


def test_the_watchdog_report_shows_in_status_and_metrics(
    upstream: FakeUpstream, start_frontdoor: Start
) -> None:
    front = start_frontdoor(_route(upstream.url))
    metrics = httpx.get(front.url + "/metrics", timeout=10).text
    assert "modelslot_device_telemetry_available 0" in metrics
    assert 'modelslot_watchdog_verdict{verdict="ok"} 0' in metrics
    assert httpx.get(front.url + "/status", timeout=10).json()["watchdog"] is None

    put = front.admin("PUT", "/admin/watchdog", json=REPORT)
    assert put.status_code == 200, put.text
    status = httpx.get(front.url + "/status", timeout=10).json()
    assert status["watchdog"]["watchdog"]["verdict"] == "degraded"
    assert status["watchdog"]["updated_at"]
    assert status["liveness"]["active_generations"] == 0
    metrics = httpx.get(front.url + "/metrics", timeout=10).text
    for line in (
        'modelslot_watchdog_verdict{verdict="degraded"} 1',
        'modelslot_watchdog_verdict{verdict="ok"} 0',
        "modelslot_watchdog_restarts_in_window 1",
        "modelslot_watchdog_decode_tokens_per_second 9",
        "modelslot_watchdog_baseline_tokens_per_second 40",
        "modelslot_watchdog_verdict_changes_total 4",
        "modelslot_device_telemetry_available 1",
        'modelslot_gpu_utilization_ratio{gpu="0"} 0.975',
        f'modelslot_gpu_memory_used_bytes{{gpu="0"}} {20480 * 1024 * 1024}',
        'modelslot_gpu_power_watts{gpu="0"} 180',
        'modelslot_gpu_temperature_celsius{gpu="1"} 61',
        'modelslot_gpu_engine_resets_total{gpu="1"} 2',
        "# TYPE modelslot_gpu_engine_resets_total counter",
    ):
        assert line in metrics, line
    _follows_prometheus_naming(metrics)


def _follows_prometheus_naming(text: str) -> None:
    """Every family has HELP and TYPE; counters and only counters end in ``_total``; base
    units (no percent, no MiB, no milliseconds)."""
    helped = {line.split()[2] for line in text.splitlines() if line.startswith("# HELP ")}
    typed = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            name, kind = line.split()[2:4]
            typed[name] = kind
            assert (kind == "counter") == name.endswith("_total"), line
            assert not any(u in name for u in ("percent", "_mib", "_ms", "millis")), line
    assert helped == set(typed), helped ^ set(typed)
    for line in text.splitlines():
        if line and not line.startswith("#"):
            family = line.split("{")[0].split()[0]
            base = family.removesuffix("_bucket").removesuffix("_sum").removesuffix("_count")
            assert family in typed or base in typed, line


def test_a_bad_watchdog_report_is_refused(upstream: FakeUpstream, start_frontdoor: Start) -> None:
    front = start_frontdoor(_route(upstream.url))
    bad = {"watchdog": {"verdict": "melted"}}
    assert front.admin("PUT", "/admin/watchdog", json=bad).status_code == 422
    huge = {"devices": {"available": True, "gpus": [{"gpu": str(i)} for i in range(65)]}}
    assert front.admin("PUT", "/admin/watchdog", json=huge).status_code == 422
    assert front.fd.watchdog is None


def _read_until(sock: socket.socket, marker: bytes) -> bytes:
    sock.settimeout(10)
    data = b""
    while marker not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data

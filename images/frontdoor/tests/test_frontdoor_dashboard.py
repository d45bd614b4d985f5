"""The operator page's frontdoor side: static files, the state document, the board, /metrics.

Against a real frontdoor on real sockets with a fake upstream (proxy mechanics only: the real
page on a real stack is tests/e2e/test_dashboard.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import ADMIN_TOKEN, RunningFrontdoor
from fd_fakes import FakeUpstream
from frontdoor.route import Limits, Profile, Route

StartFrontdoor = Callable[..., RunningFrontdoor]

BOARD: dict[str, Any] = {
    "profiles": [
        {
            "name": "cpu-tiny",
            "title": "Tiny",
            "hf_id": "x/tiny",
            "status": "experiment-ci",
            "modalities": "text",
            "purpose": "tests",
            "extends": "",
        }
    ],
    "switches": [
        {
            "action": "switch",
            "outcome": "switched",
            "profile": "cpu-tiny",
            "previous": "cpu-smollm2-135m",
            "started_at": "2026-12-02T10:00:00.000+00:00",
            "finished_at": "2026-12-02T10:00:40.000+00:00",
            "total_s": 40.0,
            "phases": [
                {"name": "drain", "duration_s": 0.5, "failed": False},
                {"name": "ready", "duration_s": 35.0, "failed": False},
            ],
        }
    ],
    "evidence": {
        "cpu-tiny": {
            "gate": {"passed": True, "finished_at": "2026-12-01T09:00:00+00:00"},
            "bench": {
                "finished_at": "2026-12-01T09:30:00+00:00",
                "points": [{"concurrency": 1, "output_tok_s": 20.5, "ttft_p50_s": 0.2}],
            },
        }
    },
}


def _serving(upstream: FakeUpstream) -> Route:
    return Route(
        upstream=upstream.url,
        state="serving",
        profile=Profile(name="cpu-tiny", title="Tiny", status="experiment-ci", hf_id="x/tiny"),
        limits=Limits(max_active_generations=3),
        startup_facts={"kv_cache_tokens": 1000, "cold_start_s": 12.5, "log_line": "/srv/x/y"},
    )


def test_page_and_its_assets_are_served_with_a_strict_policy(
    start_frontdoor: StartFrontdoor, upstream: FakeUpstream
) -> None:
    front = start_frontdoor(_serving(upstream))
    page = httpx.get(front.url + "/ui/", timeout=5)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for asset in ("/ui/app.js", "/ui/app.css", "/ui/favicon.svg"):
        assert asset in page.text
        assert httpx.get(front.url + asset, timeout=5).status_code == 200
    redirect = httpx.get(front.url + "/ui", timeout=5)
    assert redirect.status_code == 308
    assert redirect.headers["location"] == "/ui/"
    missing = httpx.get(front.url + "/ui/nope", timeout=5)
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "not_found"
    assert upstream.seen == [], "the page never reaches the model"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
@pytest.mark.parametrize("path", ["/ui/", "/ui/api/state", "/ui/app.js", "/ui/anything"])
def test_writes_to_the_page_are_refused_with_405_and_never_reach_the_model(
    start_frontdoor: StartFrontdoor, upstream: FakeUpstream, method: str, path: str
) -> None:
    front = start_frontdoor(_serving(upstream))
    response = httpx.request(method, front.url + path, json=BOARD, timeout=5)
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"
    error = response.json()["error"]
    assert error["code"] == "method_not_allowed"
    assert set(error) == {"message", "type", "param", "code"}
    assert upstream.seen == []
    assert front.fd.admission.total == 0, "a write to the page counted as a generation"
    assert front.fd.board.board.switches == []
    assert front.fd.watchdog is None


def test_board_needs_the_admin_token_and_shows_on_the_state(
    start_frontdoor: StartFrontdoor, upstream: FakeUpstream
) -> None:
    front = start_frontdoor(_serving(upstream))
    assert front.admin("PUT", "/admin/board", BOARD, token=None).status_code == 401
    assert front.admin("PUT", "/admin/board", BOARD, token="wrong").status_code == 401
    assert front.admin("PUT", "/admin/board", BOARD).status_code == 200
    state = httpx.get(front.url + "/ui/api/state", timeout=5).json()
    assert state["route"]["state"] == "serving"
    assert state["profile"]["name"] == "cpu-tiny"
    assert state["generations"]["cap"] == 3
    assert state["startup_facts"] == {"kv_cache_tokens": 1000, "cold_start_s": 12.5}
    assert state["board"]["switches"][0]["phases"][1] == {
        "name": "ready",
        "duration_s": 35.0,
        "failed": False,
    }
    assert state["board"]["evidence"]["cpu-tiny"]["gate"]["passed"] is True
    text = json.dumps(state)
    assert ADMIN_TOKEN not in text
    assert "/srv/" not in text


@pytest.mark.parametrize(
    "bad",
    [
        {"profiles": [{**BOARD["profiles"][0], "env": {"MODEL_DIR": "/srv/models"}}]},
        {"profiles": [{**BOARD["profiles"][0], "path": "/etc/model-slot/profiles/x.env"}]},
        {"switches": [{**BOARD["switches"][0], "error": "MODEL_DIR /srv/m missing"}]},
        {"token": "secret"},
        {"switches": [BOARD["switches"][0]] * 51},
    ],
)
def test_board_with_fields_beyond_the_page_is_refused(
    start_frontdoor: StartFrontdoor, upstream: FakeUpstream, bad: dict[str, Any]
) -> None:
    front = start_frontdoor(_serving(upstream))
    response = front.admin("PUT", "/admin/board", bad)
    assert response.status_code == 422, response.text
    assert front.fd.board.board.profiles == []


def test_route_reason_paths_are_redacted_on_the_page(
    start_frontdoor: StartFrontdoor, upstream: FakeUpstream
) -> None:
    front = start_frontdoor(_serving(upstream))
    front.put_route(
        state="down",
        reason="cpu-tiny failed: /srv/model-slot/models/tiny is missing; see http://x:8000/v1",
    )
    reason = httpx.get(front.url + "/ui/api/state", timeout=5).json()["route"]["reason"]
    assert reason == "cpu-tiny failed: <path> is missing; see http://x:8000/v1"


def test_board_survives_a_frontdoor_restart(
    start_frontdoor: StartFrontdoor, upstream: FakeUpstream, tmp_path: Path
) -> None:
    first = start_frontdoor(_serving(upstream), state_dir=tmp_path)
    assert first.admin("PUT", "/admin/board", BOARD).status_code == 200
    first.stop()
    second = start_frontdoor(_serving(upstream), state_dir=tmp_path)
    state = httpx.get(second.url + "/ui/api/state", timeout=5).json()
    assert [s["profile"] for s in state["board"]["switches"]] == ["cpu-tiny"]


def test_metrics_carry_the_switch_phases_and_the_profile(
    start_frontdoor: StartFrontdoor, upstream: FakeUpstream
) -> None:
    front = start_frontdoor(_serving(upstream))
    front.admin("PUT", "/admin/board", BOARD)
    front.admin("PUT", "/admin/board", BOARD)  # the same switch twice counts once
    text = httpx.get(front.url + "/metrics", timeout=5).text
    assert 'frontdoor_profile_info{profile="cpu-tiny",status="experiment-ci"} 1' in text
    assert 'frontdoor_switches_total{action="switch",outcome="switched"} 1' in text
    assert (
        'frontdoor_last_switch_phase_seconds{profile="cpu-tiny",action="switch",phase="ready"} 35'
        in text
    )
    assert 'frontdoor_startup_kv_cache_tokens{profile="cpu-tiny"} 1000' in text
    for line in text.splitlines():
        if line.startswith("# TYPE"):
            name, kind = line.split()[2:4]
            assert kind != "counter" or name.endswith("_total"), line


def test_the_running_phase_shows_only_while_switching_and_a_board_ends_it(
    start_frontdoor: StartFrontdoor, upstream: FakeUpstream
) -> None:
    front = start_frontdoor(_serving(upstream))
    phase = {
        "action": "switch",
        "profile": "cpu-tiny",
        "phase": "ready",
        "started_at": "2026-12-02T10:00:00+00:00",
    }
    assert front.admin("PUT", "/admin/board/phase", phase, token=None).status_code == 401
    assert front.admin("PUT", "/admin/board/phase", {**phase, "x": 1}).status_code == 422
    assert front.admin("PUT", "/admin/board/phase", phase).status_code == 200

    def shown() -> Any:
        return httpx.get(front.url + "/ui/api/state", timeout=5).json()["route"]["phase"]

    assert shown() is None, "serving: no phase"
    front.put_route(upstream=upstream.url, state="switching", reason="switching to cpu-tiny")
    live = shown()
    assert live["name"] == "ready"
    assert live["profile"] == "cpu-tiny"
    assert live["for_s"] > 0
    assert front.admin("PUT", "/admin/board", BOARD).status_code == 200
    assert shown() is None, "the finished operation's board clears the phase"


# ---- the watchdog's report on the page -----------------------------------------------------
WATCHDOG: dict[str, Any] = {
    "updated_at": "2026-12-02T10:00:00+00:00",
    "watchdog": {
        "verdict": "degraded",
        "reason": "decode 9.1 tok/s below 20.0 (50% of the baseline 40.0 from gate gate-x.json)",
        "profile_hash": "0123456789abcdef",
        "last_proof": "probe",
        "last_proof_age_s": 3.0,
        "last_probe_age_s": 3.0,
        "last_probe": {
            "kind": "decode",
            "ok": True,
            "latency_s": 1.2345,
            "error": "ConnectError: [Errno 2] No such file: /srv/model-slot/sock",
            "note": "a field the page does not show",
        },
        "probing": None,
        "active_generations": 0,
        "silent_for_s": 12.0,
        "restarts_in_window": 1,
        "restart_budget": 3,
        "restart_window_s": 3600,
        "decode_tok_s": 9.1,
        "baseline_tok_s": 40.0,
        "baseline_source": "gate /var/lib/model-slot/state/evidence/gate-x.json",
        "degraded_below_tok_s": 20.0,
        "verdict_changes": 2,
    },
    "devices": {
        "available": True,
        "source": "xpu-smi dump",
        "gpus": [
            {"gpu": "0", "utilization_percent": 97.0, "memory_used_mib": 20480.0, "power_w": 180.6},
            {"gpu": "1", "temperature_c": 59.0, "engine_resets": 2},
        ],
    },
}


def _page_state(front: RunningFrontdoor) -> dict[str, Any]:
    state: dict[str, Any] = httpx.get(front.url + "/ui/api/state", timeout=5).json()
    return state


def test_the_watchdogs_report_shows_on_the_page_state_field_by_field(
    start_frontdoor: StartFrontdoor, upstream: FakeUpstream
) -> None:
    front = start_frontdoor(_serving(upstream))
    assert _page_state(front)["watchdog"] is None, "nothing reported yet"
    assert front.admin("PUT", "/admin/watchdog", WATCHDOG, token=None).status_code == 401
    assert front.admin("PUT", "/admin/watchdog", WATCHDOG).status_code == 200
    state = _page_state(front)
    wd = state["watchdog"]
    assert wd["verdict"] == "degraded"
    assert wd["reported_at"] == "2026-12-02T10:00:00+00:00"
    assert (wd["decode_tok_s"], wd["baseline_tok_s"], wd["degraded_below_tok_s"]) == (
        9.1,
        40.0,
        20.0,
    )
    assert (wd["restarts_in_window"], wd["restart_budget"], wd["restart_window_s"]) == (1, 3, 3600)
    probe = wd["last_probe"]
    assert (probe["kind"], probe["ok"], probe["latency_s"]) == ("decode", True, 1.234)
    # Ages run on from the report's (it said 3 s); the time is the page's to show.
    assert probe["age_s"] >= 3.0
    assert wd["last_proof_age_s"] >= 3.0
    assert probe["at"] and probe["at"] <= state["now"]
    assert "note" not in probe
    # Free text loses its host paths; the profile hash and the report's stale copy of the
    # frontdoor's own figures stay out (the page has them live under "liveness").
    assert probe["error"] == "ConnectError: [Errno 2] No such file: <path>"
    assert wd["baseline_source"] == "gate <path>"
    assert "profile_hash" not in wd
    assert "silent_for_s" not in wd
    assert state["liveness"]["active_generations"] == 0
    assert wd["devices"] == {
        "available": True,
        "source": "xpu-smi dump",
        "reason": None,
        "gpus": [
            {
                "gpu": "0",
                "utilization_percent": 97.0,
                "memory_used_mib": 20480.0,
                "power_w": 180.6,
                "temperature_c": None,
                "engine_resets": None,
            },
            {
                "gpu": "1",
                "utilization_percent": None,
                "memory_used_mib": None,
                "power_w": None,
                "temperature_c": 59.0,
                "engine_resets": 2,
            },
        ],
    }
    text = json.dumps(state)
    for secret in (ADMIN_TOKEN, "/srv/", "/var/lib/", "0123456789abcdef"):
        assert secret not in text, secret


def test_without_device_telemetry_the_page_says_so(
    start_frontdoor: StartFrontdoor, upstream: FakeUpstream
) -> None:
    front = start_frontdoor(_serving(upstream))
    report = {
        **WATCHDOG,
        "devices": {
            "available": False,
            "reason": "no device telemetry: [Errno 2] No such file or directory: "
            "'/opt/intel/bin/xpu-smi'",
            "gpus": [{"gpu": "0", "power_w": 1.0}],
        },
    }
    assert front.admin("PUT", "/admin/watchdog", report).status_code == 200
    devices = _page_state(front)["watchdog"]["devices"]
    assert devices["available"] is False
    assert devices["gpus"] == [], "unavailable telemetry shows no rows"
    assert devices["reason"] == "no device telemetry: [Errno 2] No such file or directory: '<path>'"
    assert front.admin("PUT", "/admin/watchdog", {"watchdog": None}).status_code == 200
    bare = _page_state(front)["watchdog"]
    assert bare["reported_at"], "the frontdoor stamps a report that has no time"
    assert {k: v for k, v in bare.items() if not k.startswith("reported_")} == {
        "verdict": None,
        "devices": None,
    }


def test_a_watchdog_view_on_the_public_port_changes_nothing(
    start_frontdoor: StartFrontdoor, upstream: FakeUpstream
) -> None:
    front = start_frontdoor(_serving(upstream))
    assert front.admin("PUT", "/admin/watchdog", WATCHDOG).status_code == 200
    forged = {"watchdog": {"verdict": "ok", "reason": "forged"}}
    for method in ("PUT", "POST"):
        refused = httpx.request(method, front.url + "/ui/api/state", json=forged, timeout=5)
        assert refused.status_code == 405
    # The admin API is not on the public port: this is proxied to the model like any path.
    httpx.put(front.url + "/admin/watchdog", json=forged, timeout=5)
    assert [(s.method, s.path) for s in upstream.seen] == [("PUT", "/admin/watchdog")]
    wd = _page_state(front)["watchdog"]
    assert (wd["verdict"], wd["reason"]) == ("degraded", WATCHDOG["watchdog"]["reason"])
    assert front.fd.watchdog is not None
    assert front.fd.watchdog.watchdog is not None
    assert front.fd.watchdog.watchdog.verdict == "degraded"

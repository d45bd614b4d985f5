"""The operator page and Prometheus against the real stack (compose, real images, vLLM CPU).

A real headless Chromium (Debian's ``chromium``, driven by Playwright at /usr/bin/chromium)
opens ``/ui/`` and watches a real switch happen without a reload; a real Prometheus (Debian's
``prometheus``) scrapes the frontdoor and answers PromQL, including every expression of the
shipped Grafana dashboard. The stack is the package's one (tests/e2e/conftest.py): after
test_stack.py when the whole package runs, alone otherwise, so these tests take whichever CPU
profile serves and switch to the other. The screenshots in docs/ are written by these tests.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.stack import REPO, Stack
from tests.support import wait_until
from tests.web import (
    DEVICE_ONLY,
    DOCS,
    WATCHDOG_KEYS,
    Browser,
    Prometheus,
    grafana_exprs,
    need_prometheus,
    open_browser,
)

pytestmark = [pytest.mark.docker, pytest.mark.vllm, pytest.mark.e2e]

# What `python -m orchestrator list --json` prints per profile, less its hash.
LIST_COLUMNS = {"name", "title", "hf_id", "status", "modalities", "purpose", "extends"}
CPU_PROFILES = ("cpu-smollm2-135m", "cpu-tiny")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with open_browser() as opened:
        yield opened


@pytest.fixture(scope="module")
def served(stack: Stack) -> Stack:
    stack.compose("up", "-d")

    def serving() -> bool:
        status = stack.status()
        return bool(status["ok"]) and status["model_slot"]["name"] in CPU_PROFILES

    try:
        # A vLLM CPU start is ~40 s on an idle 2-core machine and minutes on a busy one.
        wait_until(serving, 900, "the stack to serve a CPU profile")
    except AssertionError as exc:
        logs = stack.compose("logs", "--tail", "40", "orchestrator").stdout
        raise AssertionError(f"{exc}\norchestrator log:\n{logs}") from None
    return stack


def _serving(stack: Stack) -> str:
    name: str = stack.status()["model_slot"]["name"]
    return name


def _model(stack: Stack) -> str:
    with stack.openai() as client:
        return client.models.list().data[0].id


def test_page_loads_without_errors_and_shows_the_profile_serving(
    served: Stack, browser: Browser
) -> None:
    status = served.status()
    browser.page.goto(f"{served.base_url}/ui/")
    browser.wait_text("#route-state", "serving", 30)
    browser.wait_text("#profile-name", status["model_slot"]["name"], 30)
    # The board (the profiles, the boot or switch that got here) came from the orchestrator.
    for name in CPU_PROFILES:
        browser.page.wait_for_selector(f"#profiles tbody tr >> text={name}", timeout=30_000)
    browser.page.wait_for_selector("#switches tbody td.ok", timeout=30_000)
    assert browser.text("#profile-hf") == (status["model_slot"]["hf_id"] or "–")
    assert browser.text("#gen-cap") == str(status["frontdoor"]["max_active_generations"])
    # The watchdog's panel, from the orchestrator's own PUT /admin/watchdog: armed after the
    # ready check (unknown) or proven by a probe (ok); a CPU host has no device telemetry.
    page = browser.page
    page.wait_for_function(
        "() => ['ok', 'unknown'].includes(document.querySelector('#wd-verdict').dataset.verdict)",
        timeout=60_000,
    )
    assert browser.text("#wd-chip") == browser.text("#wd-verdict")
    assert browser.text("#wd-restarts").startswith("0 of "), browser.text("#wd-restarts")
    assert browser.text("#wd-devices").startswith("no device telemetry available")
    assert page.is_hidden("#wd-gpus")
    browser.shot("dashboard-serving.png")
    assert browser.errors == []


def test_page_follows_a_real_switch_without_a_reload(served: Stack, browser: Browser) -> None:
    page = browser.page
    target = next(name for name in CPU_PROFILES if name != _serving(served))
    # A real bench ladder (docs/ladder, from `bench --json-out`) where the orchestrator looks
    # for evidence; the board published after the switch carries it.
    ladder = json.loads((DOCS / "ladder" / "cpu-smollm2-135m.json").read_text())
    ladder["profile"] = {"name": "cpu-smollm2-135m"}
    evidence = served.state_dir / "evidence"
    evidence.mkdir(exist_ok=True)
    (evidence / "bench-cpu-smollm2-135m.json").write_text(json.dumps(ladder))
    page.evaluate("window.__sameDocument = true")
    result: list[subprocess.CompletedProcess[str]] = []
    switch = threading.Thread(
        target=lambda: result.append(served.cli("switch", target, timeout=1200))
    )
    switch.start()
    try:
        browser.wait_text("#route-state", "switching", 120)
        assert target in browser.text("#route-reason")
        # The orchestrator reports each phase as it starts; the new model's `ready` is long.
        page.wait_for_function(
            "() => document.querySelector('#route-phase').textContent.startsWith('phase ready')",
            timeout=300_000,
        )
        assert browser.text("#route-state") == "switching"
        browser.shot("dashboard-switching.png")
        # The new model's start: ~40 s on an idle machine, many minutes on a busy one.
        browser.wait_text("#route-state", "serving", 900)
        browser.wait_text("#profile-name", target, 30)
    finally:
        switch.join(timeout=1200)
    assert result and result[0].returncode == 0, result and result[0].stdout + result[0].stderr
    page.wait_for_selector("#switches tbody tr >> text=switched", timeout=30_000)
    page.wait_for_selector("#profiles tbody tr svg.mini rect", timeout=30_000)  # the ladder
    model = _model(served)
    with served.openai() as client:
        for _ in range(3):
            client.completions.create(model=model, prompt="a b c", max_tokens=4)
    page.wait_for_function(
        "() => document.querySelectorAll('#ttft rect').length >= 3", timeout=30_000
    )
    assert page.evaluate("window.__sameDocument") is True, "the page reloaded"
    browser.shot("dashboard-switched.png")
    assert browser.errors == []


def test_page_endpoints_refuse_writes_and_hide_secrets(served: Stack, browser: Browser) -> None:
    base = served.base_url
    before = httpx.get(f"{base}/ui/api/state", timeout=5).json()["board"]["published_at"]
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        for path in ("/ui/", "/ui/api/state", "/ui/app.js"):
            response = httpx.request(method, base + path, json={"profiles": []}, timeout=5)
            assert response.status_code == 405, (method, path, response.text)
            assert response.json()["error"]["code"] == "method_not_allowed"
    # The admin API is not on the public port: these go to the model and change nothing.
    httpx.put(f"{base}/admin/board", json={"profiles": []}, timeout=10)
    forged = {"watchdog": {"verdict": "faulted", "reason": "forged"}, "devices": None}
    httpx.put(f"{base}/admin/watchdog", json=forged, timeout=10)
    state = httpx.get(f"{base}/ui/api/state", timeout=5).json()
    assert state["board"]["published_at"] == before
    assert state["board"]["profiles"], "the board was replaced from the public port"
    assert state["watchdog"] is not None, "the orchestrator's watchdog reports to the page"
    assert state["watchdog"]["reason"] != "forged", "a watchdog view came in on the public port"
    assert set(state["watchdog"]) <= WATCHDOG_KEYS, set(state["watchdog"]) - WATCHDOG_KEYS

    # Everything the page fetched: only its own files and state.
    fetched = sorted({url.removeprefix(base) for url in browser.fetched})
    assert fetched == ["/ui/", "/ui/api/state", "/ui/app.css", "/ui/app.js", "/ui/favicon.svg"]
    bodies = {path: httpx.get(base + path, timeout=5).text for path in fetched}
    token = served.compose(
        "exec", "-T", "frontdoor", "cat", "/run/model-slot-secrets/admin_token"
    ).stdout.strip()
    assert len(token) >= 16
    host_paths = [str(served.state_dir), served.env["MODEL_SLOT_MODEL_ROOT"], str(REPO)]
    for path, body in bodies.items():
        assert token not in body, path
        for host_path in [*host_paths, "/var/lib/", "/run/model-slot", "/etc/model-slot"]:
            assert host_path not in body, (path, host_path)
    state = json.loads(bodies["/ui/api/state"])
    listed = json.loads(served.cli("list", "--json").stdout)
    assert [set(p) for p in state["board"]["profiles"]] == [LIST_COLUMNS] * len(listed)
    assert state["board"]["profiles"] == [
        {k: v for k, v in row.items() if k in LIST_COLUMNS} for row in listed
    ]
    assert set(state["profile"]) <= LIST_COLUMNS
    assert "VLLM_" not in bodies["/ui/api/state"]
    assert "profile_hash" not in bodies["/ui/api/state"]
    assert "MODEL_DIR" not in bodies["/ui/api/state"]


# ---- Prometheus ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def prometheus(served: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    need_prometheus()
    running = Prometheus(f"127.0.0.1:{served.port}", tmp_path_factory.mktemp("prometheus"))
    try:
        yield running
    finally:
        running.stop()


def _refuse_one(target: Stack) -> None:
    """A request whose Content-Length is over the cap: refused (413) before any body is read."""
    with socket.create_connection(("127.0.0.1", target.port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"content-length: 999999999999\r\n\r\n"
        )
        assert sock.recv(4096).startswith(b"HTTP/1.1 413")


def test_prometheus_scrapes_the_stack_and_counts_generations(
    served: Stack, prometheus: Prometheus
) -> None:
    wait_until(prometheus.up, 60, "Prometheus's target to be up")
    assert prometheus.value('up{job="model-slot"}') == 1.0
    # Two scrapes before the requests, so the increase over a minute starts below them.
    wait_until(
        lambda: (prometheus.value("count_over_time(frontdoor_generations_total[1m])") or 0) >= 2,
        30,
        "two scrapes of frontdoor_generations_total",
    )
    before = prometheus.value("frontdoor_generations_total")
    assert before is not None
    model = _model(served)
    with served.openai() as client:
        for _ in range(3):
            client.completions.create(model=model, prompt="a b c", max_tokens=4)
    wait_until(
        lambda: (prometheus.value("frontdoor_generations_total") or 0) >= before + 3,
        30,
        "Prometheus to see the three generations",
    )
    increase = prometheus.value("increase(frontdoor_generations_total[1m])")
    assert increase is not None and increase >= 3, increase


def test_every_grafana_expression_returns_a_series(served: Stack, prometheus: Prometheus) -> None:
    """Every expression but the per-GPU ones: this CPU stack has no xpu-smi, so it has no
    device series (tests/ui/test_page_watchdog.py checks those panels against a frontdoor
    given xpu-smi's documented output)."""
    every = grafana_exprs()
    exprs = [expr for expr in every if DEVICE_ONLY not in expr]
    assert len(exprs) >= 10
    assert len(exprs) < len(every), "the dashboard has per-GPU panels; were they dropped?"
    _refuse_one(served)  # so frontdoor_refusals_total has a series to show
    wait_until(prometheus.up, 60, "Prometheus's target to be up")
    prometheus.wait_every_expr_answers(exprs, "every dashboard expression to return a series")
    phases = {r["metric"]["phase"] for r in prometheus.query("frontdoor_last_switch_phase_seconds")}
    assert {"drain", "stop", "create", "ready", "flip"} <= phases
    switches = prometheus.query('frontdoor_switches_total{action="switch",outcome="switched"}')
    assert switches and float(switches[0]["value"][1]) >= 1
    # The orchestrator's watchdog reports to the frontdoor: a verdict, and no device telemetry.
    verdicts = prometheus.query("max by (verdict) (modelslot_watchdog_verdict) == 1")
    assert [v["metric"]["verdict"] for v in verdicts] in (["ok"], ["unknown"]), verdicts
    assert prometheus.value("modelslot_device_telemetry_available") == 0.0

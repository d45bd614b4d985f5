"""The watchdog's panel on the operator page, with no vLLM: fast, and every verdict on demand.

The chain is the real one from the watchdog's policy to the browser: the orchestrator's
``WatchdogRunner`` (its policy, stepped by hand on a fake clock) and ``SlotWatchdogPort`` (which
publishes with ``PUT /admin/watchdog`` through the orchestrator's ``FrontdoorClient``), a real
frontdoor on real sockets, and Debian's chromium (Playwright) polling the page. Only the model
is a fake (tests/watchdog/fake_model.py: a small HTTP server that streams at a set rate, hangs
or fails on demand) and xpu-smi is a stand-in that prints its documented ``dump`` output
(tests/watchdog/data/xpu-smi-dump.csv). Whether a verdict is *right* is tested against real
vLLM in tests/watchdog/; here the question is whether the page shows it, live.

The same frontdoor is scraped by Debian's prometheus for the Grafana panels that a CPU stack
cannot feed (per-GPU telemetry): tests/e2e/test_ui.py checks every other expression on the real
stack.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from orchestrator.control import watchdog_port
from orchestrator.control.watchdog import Baseline, WatchdogSettings
from orchestrator.control.watchdog_port import SlotWatchdogPort
from orchestrator.control.watchdog_runner import WatchdogRunner
from orchestrator.slot.xpu_smi import XpuSmi
from tests.slot.conftest import ADMIN_TOKEN, Frontdoor
from tests.support import wait_until
from tests.watchdog.fake_model import FakeModel
from tests.web import (
    DEVICE_ONLY,
    WATCHDOG_KEYS,
    Browser,
    Prometheus,
    grafana_exprs,
    need_prometheus,
    open_browser,
)

DUMP = (Path(__file__).resolve().parents[1] / "watchdog" / "data" / "xpu-smi-dump.csv").read_text()
#: Where the stand-in xpu-smi "is": a host path that must never reach the page.
XPU_SMI_PATH = "/opt/intel/oneapi/xpu-smi/bin/xpu-smi"
# Short bounds, so a wedge is called within seconds. Decode probes are 4 tokens: the fast
# model streams them 0.01 s apart, the slow one 0.5 s apart, so the slow rate is at most
# 3 / 1.5 = 2 tok/s whatever the machine's load, below the threshold 8 * (1 - 0.5) = 4.
SETTINGS = WatchdogSettings(
    probe_interval_s=10,
    wedge_s=5,
    decode_interval_s=100,
    decode_tokens=4,
    degraded_fraction=0.5,
    degraded_probes=1,
    restart_budget=3,
)
BASELINE = Baseline(8.0, "gate gate-cpu-tiny-20261202.json")


@dataclass
class Rig:
    front: Frontdoor
    model: FakeModel
    port: SlotWatchdogPort
    runner: WatchdogRunner
    clock: list[float]
    restarts: list[str]
    state_dir: Path

    def advance(self, seconds: float) -> None:
        self.clock[0] += seconds

    def with_xpu_smi(self) -> None:
        self.port.xpu_smi = XpuSmi(runner=lambda _argv: DUMP, which=lambda _name: XPU_SMI_PATH)

    def state(self) -> dict[str, object]:
        body: dict[str, object] = httpx.get(f"{self.front.url}/ui/api/state", timeout=5).json()
        return body


@pytest.fixture
def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    # Read xpu-smi on every publication (the real port reads it at most every 30 s).
    monkeypatch.setattr(watchdog_port, "TELEMETRY_S", 0.0)
    front = Frontdoor(tmp_path / "frontdoor-state")
    model = FakeModel()
    try:
        client = front.client()
        client.put_route(
            {
                "upstream": model.url,
                "state": "serving",
                "reason": "serving cpu-tiny",
                "profile": {
                    "name": "cpu-tiny",
                    "title": "Tiny 2-layer Llama on vLLM CPU (tests)",
                    "status": "research-tests",
                    "modalities": "text",
                },
                "limits": {"max_active_generations": 2},
            }
        )
        restarts: list[str] = []
        state_dir = tmp_path / "orchestrator-state"
        port = SlotWatchdogPort(
            state_dir,
            client,
            restart=restarts.append,
            fault=restarts.append,
            xpu_smi=XpuSmi(which=lambda _name: None),  # no xpu-smi: no device telemetry
        )
        port.aim(model.url, "cpu-tiny")
        clock = [1000.0]
        runner = WatchdogRunner(port, clock=lambda: clock[0])
        yield Rig(front, model, port, runner, clock, restarts, state_dir)
    finally:
        model.stop()
        front.stop()


@pytest.fixture
def browser() -> Iterator[Browser]:
    with open_browser() as opened:
        yield opened


def _verdict(browser: Browser, verdict: str) -> None:
    """Wait until the panel's badge and the header's chip both show ``verdict``."""
    browser.page.wait_for_function(
        "(want) => ['#wd-verdict', '#wd-chip'].every((sel) => "
        "document.querySelector(sel).dataset.verdict === want "
        "&& document.querySelector(sel).textContent.trim() === want)",
        arg=verdict,
        timeout=30_000,
    )


def test_the_panel_follows_every_verdict_without_a_reload(rig: Rig, browser: Browser) -> None:
    page = browser.page
    page.goto(f"{rig.front.url}/ui/")
    browser.wait_text("#route-state", "serving", 30)
    browser.wait_text("#wd-verdict", "no report", 30)
    assert "has not reported" in browser.text("#wd-reason")
    page.evaluate("window.__sameDocument = true")

    # Armed after a ready check, on a host without xpu-smi.
    rig.runner.arm(SETTINGS, "hash-cpu-tiny", BASELINE, fresh=True)
    _verdict(browser, "unknown")
    no_telemetry = "no device telemetry available (xpu-smi is not on the PATH)"
    browser.wait_text("#wd-devices", no_telemetry, 30)
    assert page.is_hidden("#wd-gpus")
    assert browser.text("#wd-restarts") == "0 of 3 in the last hour"
    assert browser.text("#wd-proof").startswith("ready check, ")

    # xpu-smi appears; an idle model gets a decode probe, at full speed: ok, with its figures.
    rig.with_xpu_smi()
    rig.runner.step()
    _verdict(browser, "ok")
    page.wait_for_selector("#wd-gpus tbody tr", timeout=30_000)
    rows = page.eval_on_selector_all(
        "#wd-gpus tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))"
    )
    assert rows[0] == ["0", "97 %", "20480 MiB", "180.61 W", "61 °C", "0"]
    assert rows[2] == ["2", "0 %", "24 MiB", "35.1 W", "–", "2"], "N/A shows as a dash"
    assert len(rows) == 4
    assert browser.text("#wd-devices") == "from xpu-smi dump"
    decode = browser.text("#wd-decode")
    assert "now vs 8.0 tok/s baseline (gate gate-cpu-tiny-20261202.json)" in decode, decode
    assert decode.endswith("degraded below 4.0 tok/s"), decode
    assert browser.text("#wd-probe").startswith("decode answered in ")
    assert page.get_attribute("#wd-decode-bar", "data-slow") is None

    # The model slows down: the next decode probe is below the threshold: degraded.
    rig.model.interval_s = 0.5
    rig.advance(SETTINGS.decode_interval_s)
    rig.runner.step()
    _verdict(browser, "degraded")
    assert "below 4.0" in browser.text("#wd-reason")
    assert page.get_attribute("#wd-decode-bar", "data-slow") == "1"
    page.wait_for_function(
        "() => getComputedStyle(document.querySelector('#wd-decode-mark')).display === 'block'"
    )
    browser.shot("dashboard-watchdog.png")

    # The model stops answering: the liveness probe times out (after wedge_s, really): wedged,
    # and the runner asked for a restart, the first of the budget.
    rig.model.mode = "hang"
    rig.advance(SETTINGS.probe_interval_s)
    rig.runner.step()
    assert len(rig.restarts) == 1, rig.restarts
    _verdict(browser, "wedged")
    browser.wait_text("#wd-restarts", "1 of 3 in the last hour", 30)
    probe = browser.text("#wd-probe")
    assert probe.startswith("liveness timed out in "), probe
    assert "no answer within 5s" in probe
    assert page.evaluate("window.__sameDocument") is True, "the page reloaded"
    assert browser.errors == []

    # Everything the page fetched, and nothing secret in it.
    fetched = sorted({url.removeprefix(rig.front.url) for url in browser.fetched})
    assert fetched == ["/ui/", "/ui/api/state", "/ui/app.css", "/ui/app.js", "/ui/favicon.svg"]
    state = rig.state()
    watchdog = state["watchdog"]
    assert isinstance(watchdog, dict) and set(watchdog) <= WATCHDOG_KEYS
    text = json.dumps(state)
    for secret in (ADMIN_TOKEN, XPU_SMI_PATH, str(rig.state_dir), "hash-cpu-tiny"):
        assert secret not in text, secret


def test_grafanas_watchdog_and_gpu_panels_have_series(rig: Rig, tmp_path: Path) -> None:
    """Every expression on the watchdog's metrics (``modelslot_*``), the per-GPU ones included,
    returns a series from a real Prometheus scraping a frontdoor that has the watchdog's report
    with xpu-smi's documented telemetry."""
    need_prometheus()
    exprs = [expr for expr in grafana_exprs() if "modelslot_" in expr]
    assert any(DEVICE_ONLY in expr for expr in exprs), "no per-GPU panel in the dashboard"
    assert any("modelslot_watchdog_decode_tokens_per_second" in expr for expr in exprs)
    rig.with_xpu_smi()
    rig.runner.arm(SETTINGS, "hash-cpu-tiny", BASELINE, fresh=True)
    rig.runner.step()  # a decode probe: a decode figure, a probe latency
    prometheus = Prometheus(rig.front.url.removeprefix("http://"), tmp_path)
    try:
        wait_until(prometheus.up, 60, "Prometheus's target (the frontdoor) to be up")
        prometheus.wait_every_expr_answers(
            exprs, "every watchdog and GPU expression to return a series"
        )
        verdict = prometheus.query("max by (verdict) (modelslot_watchdog_verdict) == 1")
        assert [v["metric"]["verdict"] for v in verdict] == ["ok"]
        assert prometheus.value('modelslot_gpu_utilization_ratio{gpu="0"}') == 0.97
        assert prometheus.value('modelslot_gpu_memory_used_bytes{gpu="0"}') == 20480 * 2**20
        assert prometheus.value("modelslot_watchdog_baseline_tokens_per_second") == 8.0
        assert prometheus.value("modelslot_watchdog_degraded_below_tokens_per_second") == 4.0
    finally:
        prometheus.stop()

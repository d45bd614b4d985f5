"""A real browser and a real Prometheus for the operator page's tests (tests/e2e/test_ui.py on
the real stack, tests/ui/ on a standalone frontdoor).

The browser is Debian's ``chromium`` driven headless by Playwright (``executable_path``: no
browser download); Prometheus is Debian's ``prometheus`` with the shipped deploy/prometheus.yml.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import ConsoleMessage, Page, Playwright, sync_playwright

from tests.support import wait_until

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
GRAFANA = REPO / "deploy" / "grafana" / "model-slot.json"
CHROMIUM = Path("/usr/bin/chromium")
PROMETHEUS = Path("/usr/bin/prometheus")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def need_chromium() -> None:
    if not CHROMIUM.exists():
        pytest.fail("these tests need Debian's chromium (`./run test` installs it)")


def need_prometheus() -> None:
    if not PROMETHEUS.exists() and shutil.which("prometheus") is None:
        pytest.fail("these tests need Debian's prometheus (`./run test` installs it)")


class Browser:
    """One page, with what it logged and fetched."""

    def __init__(self, playwright: Playwright) -> None:
        self.browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        self.page: Page = self.browser.new_page(viewport={"width": 1280, "height": 1000})
        self.errors: list[str] = []
        self.fetched: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        self.page.on("requestfailed", lambda req: self.errors.append(f"failed: {req.url}"))
        self.page.on("request", lambda req: self.fetched.append(req.url))
        self.scratch = Path(tempfile.gettempdir()) / "model-slot-screenshots"

    def _console(self, message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            self.errors.append(f"console {message.type}: {message.text}")

    def text(self, selector: str) -> str:
        return self.page.inner_text(selector).strip()

    def wait_text(self, selector: str, expected: str, timeout_s: float) -> None:
        self.page.wait_for_function(
            "([sel, want]) => document.querySelector(sel)?.textContent.trim() === want",
            arg=[selector, expected],
            timeout=timeout_s * 1000,
        )

    def wait_contains(self, selector: str, part: str, timeout_s: float) -> None:
        self.page.wait_for_function(
            "([sel, want]) => (document.querySelector(sel)?.textContent || '').includes(want)",
            arg=[selector, part],
            timeout=timeout_s * 1000,
        )

    def shot(self, name: str) -> None:
        """A screenshot of the page as it is now. Into docs/ (the committed ones) only with
        ``MODEL_SLOT_UPDATE_SCREENSHOTS=1``; otherwise into the test's tmp dir, so a test run
        leaves the checkout clean. Taken either way: a page that cannot render fails here."""
        folder = DOCS if os.environ.get("MODEL_SLOT_UPDATE_SCREENSHOTS") == "1" else self.scratch
        folder.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(folder / name), full_page=True)

    def close(self) -> None:
        self.browser.close()


@contextlib.contextmanager
def open_browser() -> Iterator[Browser]:
    """Debian's chromium under Playwright, one page, closed afterwards (the tests' fixtures)."""
    need_chromium()
    with sync_playwright() as playwright:
        opened = Browser(playwright)
        try:
            yield opened
        finally:
            opened.close()


class Prometheus:
    """Debian's prometheus with the shipped config, pointed at ``target`` (host:port) and
    scraping every second."""

    def __init__(self, target: str, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = workdir / "prometheus.yml"
        shipped = (REPO / "deploy" / "prometheus.yml").read_text()
        assert "model-slot-host:8000" in shipped
        config.write_text(
            shipped.replace("model-slot-host:8000", target).replace("15s", "1s"),
        )
        self.log = (workdir / "prometheus.log").open("wb")
        self.process = subprocess.Popen(
            [
                str(PROMETHEUS if PROMETHEUS.exists() else shutil.which("prometheus")),
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )

    def query(self, expr: str) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        body = response.json()
        assert body.get("status") == "success", (expr, body)
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def up(self) -> bool:
        try:
            targets = httpx.get(f"{self.url}/api/v1/targets", timeout=5).json()
        except httpx.HTTPError:
            return False
        active = targets["data"]["activeTargets"]
        return bool(active) and all(t["health"] == "up" for t in active)

    def wait_every_expr_answers(self, exprs: list[str], what: str, timeout_s: float = 60) -> None:
        """Poll until each PromQL expression returns a series; fail naming those that don't."""
        empty: list[str] = []

        def all_answer() -> bool:
            empty[:] = [expr for expr in exprs if not self.query(expr)]
            return not empty

        try:
            wait_until(all_answer, timeout_s, what)
        except AssertionError as exc:
            raise AssertionError(f"no series for: {empty}") from exc

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self.log.close()


def grafana_exprs() -> list[str]:
    """Every PromQL expression of the shipped Grafana dashboard."""
    dashboard = json.loads(GRAFANA.read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


#: Metric families that exist only on a host with device telemetry (xpu-smi): the CPU stack
#: cannot show them, so tests/ui/test_page_watchdog.py checks their panels against a frontdoor
#: given the telemetry of xpu-smi's documented output.
DEVICE_ONLY = "modelslot_gpu_"

#: What the page's state may carry of the watchdog's report (frontdoor/dashboard.py): no
#: profile hash, no host path (free text is redacted), nothing the orchestrator did not mean.
WATCHDOG_KEYS = {
    "reported_at",
    "reported_age_s",
    "verdict",
    "reason",
    "last_probe",
    "probing",
    "last_proof",
    "last_proof_age_s",
    "restarts_in_window",
    "restart_budget",
    "restart_window_s",
    "decode_tok_s",
    "baseline_tok_s",
    "baseline_source",
    "degraded_below_tok_s",
    "devices",
}

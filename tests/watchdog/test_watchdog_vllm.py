"""The watchdog against real vLLM CPU: a stopped engine is a wedge, a throttled one is degraded.

``SIGSTOP`` of ``VLLM::EngineCore`` (its host PID from ``docker top``) is the B70 Level Zero wedge
in miniature: vLLM's API server keeps answering ``/health`` at once while no completion ever
returns. ``docker update --cpus`` slows decode without stopping it.

These run the real probes and the real policy through the real port; the controller's side (the
restart itself) is in ``test_watchdog_controller_vllm.py``.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator.control.watchdog import ProbeKind, ProbeResult, WatchdogSettings
from orchestrator.control.watchdog_port import SlotWatchdogPort
from orchestrator.control.watchdog_runner import WatchdogRunner
from orchestrator.slot.xpu_smi import XpuSmi
from tests.conftest import VllmServer, shipped_profile, start_vllm
from tests.support import wait_until

pytestmark = [pytest.mark.docker, pytest.mark.vllm]


@pytest.fixture(scope="module")
def tiny(cpu_image: str) -> Iterator[VllmServer]:
    """Our own tiny vLLM (the tests throttle and stop it, so it is not the shared one)."""
    profile = shipped_profile("cpu-tiny")
    # a shared 2-core box: other suites' vLLM starts can make ours slow; wait longer than 300 s
    profile = dataclasses.replace(
        profile, env={**profile.env, "MODEL_SLOT_STARTUP_TIMEOUT_S": "900"}
    )
    container, server = start_vllm(profile, cpu_image)
    try:
        yield server
    finally:
        container.stop()


def engine_core_pid(container: Any) -> int:
    """The host PID of vLLM's engine process, from ``docker top``."""
    top = container.top()
    command = top["Titles"].index("CMD")
    pid = top["Titles"].index("PID")
    for row in top["Processes"]:
        if "VLLM::EngineCore" in row[command]:
            return int(row[pid])
    raise AssertionError(f"no VLLM::EngineCore in docker top: {top['Processes']}")


class RecordingPort(SlotWatchdogPort):
    """The real port, keeping every probe's result in the order the probes ran."""

    probes: list[ProbeResult]

    def probe(self, kind: ProbeKind, settings: WatchdogSettings) -> ProbeResult:
        result = super().probe(kind, settings)
        self.probes.append(result)
        return result


def make_runner(
    tmp_path: Path, server: VllmServer, settings: WatchdogSettings, restarts: list[str]
) -> tuple[WatchdogRunner, RecordingPort]:
    port = RecordingPort(
        tmp_path,
        None,
        restart=restarts.append,
        fault=restarts.append,
        xpu_smi=XpuSmi(which=lambda _: None),
    )
    port.probes = []
    port.aim(server.base_url, server.served_model_name)
    runner = WatchdogRunner(port)
    runner.arm(settings, server.profile.hash, None, fresh=True)
    return runner, port


def until_verdict(runner: WatchdogRunner, verdict: str, timeout_s: float) -> dict[str, object]:
    def stepped() -> dict[str, object] | None:
        runner.step()
        view = runner.view()
        return view if view["verdict"] == verdict else None

    return wait_until(stepped, timeout_s, f"verdict {verdict} (now {runner.view()})", 0.2)


def test_throttled_decode_is_degraded_with_figures_and_clears_when_lifted(
    tiny: VllmServer, tmp_path: Path
) -> None:
    settings = WatchdogSettings(
        probe_interval_s=1,
        wedge_s=60,
        decode_interval_s=1,
        decode_tokens=48,
        degraded_fraction=0.5,
        degraded_probes=2,
    )
    restarts: list[str] = []
    runner, _ = make_runner(tmp_path, tiny, settings, restarts)

    def baseline_made() -> object:
        runner.step()
        return runner.view()["baseline_tok_s"]

    wait_until(baseline_made, 120, "a baseline from 3 probes")
    baseline = runner.view()["baseline_tok_s"]
    container = tiny.container
    subprocess.run(
        ["docker", "update", "--cpus", "0.05", container.id], check=True, capture_output=True
    )
    try:
        # At 0.05 CPUs a 48-token probe can outlast wedge_s (60 s): it is cut at the bound with
        # the rate it measured, and that is proof of life (the CI failure of 2026-12-03).
        view = until_verdict(runner, "degraded", 480)
    finally:
        # `--cpus 0` leaves the limit in place; the host's whole CPU count lifts it.
        lift = str(os.cpu_count() or 1)
        subprocess.run(["docker", "update", "--cpus", lift, container.id], check=True)
    assert isinstance(baseline, float)
    decode = view["decode_tok_s"]
    assert isinstance(decode, float) and decode < baseline * 0.5
    assert "below" in str(view["reason"]) and "first probes after start" in str(view["reason"])
    print(f"\nbaseline {baseline} tok/s, throttled {decode} tok/s: {view['reason']}")
    assert restarts == [], f"slow is degraded, not wedged; no restart by default: {restarts}"
    cleared = until_verdict(runner, "ok", 240)
    print(f"cleared: {cleared['reason']}")


def test_a_stopped_engine_is_wedged_within_its_bound_while_health_answers(
    tiny: VllmServer, tmp_path: Path
) -> None:
    """The bound is the first probe after the stop (sent at most a probe interval after the
    last proof: the policy's schedule, ``test_watchdog_policy.py`` on a fake clock) plus that
    probe's own wedge_s timeout. So: the first probe that runs after the stop is the one that
    finds the wedge, by waiting out its bound. Counted in probes, not seconds, it holds on a
    loaded box; the seconds are printed, and measured by ``benchmarks/watchdog/run.py``."""
    settings = WatchdogSettings(probe_interval_s=2, wedge_s=5, decode_tokens=0)
    restarts: list[str] = []
    runner, port = make_runner(tmp_path, tiny, settings, restarts)
    until_verdict(runner, "ok", 60)  # steps run the probes in line: none is in flight now
    pid = engine_core_pid(tiny.container)
    os.kill(pid, signal.SIGSTOP)
    stopped_at, before = time.monotonic(), len(port.probes)
    try:
        health = httpx.get(f"{tiny.base_url}/health", timeout=5)
        assert health.status_code == 200, "vLLM's /health must still answer: that is the trap"
        view = until_verdict(runner, "wedged", 60)
        detected_s = time.monotonic() - stopped_at
    finally:
        os.kill(pid, signal.SIGCONT)
    bound = settings.probe_interval_s + settings.wedge_s
    print(f"\nwedge detected in {detected_s:.1f}s (bound {bound:g}s + a tick): {view['reason']}")
    [probe] = port.probes[before:]  # the first probe after the stop found it
    assert probe.kind == "liveness" and probe.timed_out and not probe.ok, probe
    assert probe.latency_s >= settings.wedge_s * 0.99, probe  # it waited its whole bound
    assert len(restarts) == 1 and "timed out" in restarts[0]
    until_verdict(runner, "ok", 60)  # SIGCONT: the engine generates again

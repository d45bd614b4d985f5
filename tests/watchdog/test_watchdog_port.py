"""The real port's parts: probes over real sockets, the baseline lookup, the event log and the
view file, the frontdoor report (a real frontdoor), and the ``status`` lines."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from orchestrator.cli import watchdog_status
from orchestrator.control import watchdog_baseline, watchdog_probe
from orchestrator.control.watchdog import VerdictChanged, WatchdogSettings
from orchestrator.control.watchdog_port import SlotWatchdogPort, read_view
from orchestrator.slot.xpu_smi import XpuSmi
from tests.slot.conftest import Frontdoor
from tests.watchdog.fake_model import FakeModel


@pytest.fixture
def model() -> Iterator[FakeModel]:
    fake = FakeModel()
    yield fake
    fake.stop()


def test_liveness_probe_answers_with_one_token(model: FakeModel) -> None:
    result = watchdog_probe.liveness(model.url, "m", timeout_s=5)
    assert result.ok and result.tokens == 1 and result.kind == "liveness"
    assert model.requests[0]["max_tokens"] == 1


def test_a_hung_model_times_out_within_the_bound(model: FakeModel) -> None:
    """The fake never answers (until ``stop``): the probe returns only by timing out, after
    waiting its whole bound. How soon after the bound it returns is a speed, measured with the
    wedge in ``benchmarks/watchdog/run.py``."""
    model.mode = "hang"
    result = watchdog_probe.liveness(model.url, "m", timeout_s=0.5)
    assert not result.ok and result.timed_out
    assert result.error == "no answer within 0.5s"
    assert result.latency_s > 0.4  # it waited the bound (0.5 s, less the timers' granularity)
    decode = watchdog_probe.decode(model.url, "m", 8, timeout_s=0.5)
    assert not decode.ok and decode.timed_out and decode.latency_s > 0.4


def test_a_probe_queued_behind_busy_sequences_counts_when_vllm_generated_meanwhile(
    model: FakeModel,
) -> None:
    """Every vLLM sequence busy with a long non-streamed generation: the probe waits, but vLLM's
    own token counter grows, so the engine is alive."""
    model.mode, model.generated, model.generating = "hang", 100.0, 0.0
    flat = watchdog_probe.liveness(model.url, "m", timeout_s=0.5)
    assert not flat.ok and flat.timed_out, "a flat counter (a stopped engine) is no proof"
    model.generating = 7.0
    busy = watchdog_probe.liveness(model.url, "m", timeout_s=0.5)
    assert busy.ok and "vLLM generated 7 tokens meanwhile" in str(busy.note)


def test_an_error_answer_is_a_failure_not_a_timeout(model: FakeModel) -> None:
    model.mode = "error"
    result = watchdog_probe.liveness(model.url, "m", timeout_s=5)
    assert not result.ok and not result.timed_out and "HTTP 500" in str(result.error)


def test_nothing_listening_is_a_failure() -> None:
    result = watchdog_probe.liveness("http://127.0.0.1:9", "m", timeout_s=2)
    assert not result.ok and "ConnectError" in str(result.error)


def test_decode_probe_measures_the_stream_rate(model: FakeModel) -> None:
    model.interval_s = 0.02  # 50 tok/s
    started = time.monotonic()
    result = watchdog_probe.decode(model.url, "m", 16, timeout_s=10)
    elapsed = time.monotonic() - started
    assert result.ok and result.tokens == 16
    # The rate is 15 gaps over the time from the first token to the last, which lies inside
    # this call: so it is at least 15 / the call's duration, however loaded the machine. (No
    # upper bound holds: a client thread that reads the first token late shortens the span.)
    assert result.decode_tok_s is not None and result.decode_tok_s >= 15 / elapsed
    assert model.requests[0]["ignore_eos"] is True and model.requests[0]["stream"] is True


def test_a_decode_probe_slower_than_the_wedge_bound_is_proof_not_a_wedge(
    model: FakeModel,
) -> None:
    """Regression (CI, 2026-12-03): a throttled model decoding at 1 tok/s made the 48-token
    decode probe outlast ``wedge_s``; the probe said "timed out" and the policy restarted a
    model that was generating all along. Tokens that keep coming are proof of life: the probe
    ends at its bound with the rate it measured, and only silence is a timeout."""
    model.interval_s = 0.2  # 5 tok/s: 16 tokens take 3 s, the bound is 0.5 s
    result = watchdog_probe.decode(model.url, "m", 16, timeout_s=0.5)
    assert result.ok and not result.timed_out, result
    assert result.tokens is not None and 1 < result.tokens < 16, result
    assert result.decode_tok_s is not None and result.decode_tok_s < 16 / 0.5, result
    assert "cut at the 0.5s bound" in str(result.note), result


def _gate(path: Path, profile_hash: str, rate: float, result: str = "pass") -> None:
    path.write_text(
        json.dumps(
            {
                "kind": "model-slot-gate",
                "profile": {"name": "p", "hash": profile_hash},
                "steps": [{"name": "decode", "result": result, "numbers": {"decode_tok_s": rate}}],
            }
        )
    )


def test_the_baseline_is_this_hashs_newest_gate_or_bench(tmp_path: Path) -> None:
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    assert watchdog_baseline.find(tmp_path, "h1") is None
    _gate(evidence / "gate-p-other.json", "h2", 99.0)
    (evidence / "bench-p.json").write_text(
        json.dumps(
            {
                "kind": "model-slot-bench",
                "profile": {"hash": "h1"},
                "levels": [{"concurrency": 1, "summary": {"decode_tok_s": 40.5}}],
            }
        )
    )
    baseline = watchdog_baseline.find(tmp_path, "h1")
    assert baseline is not None and baseline.decode_tok_s == 40.5
    assert baseline.source == "bench bench-p.json"
    _gate(evidence / "gate-p-failed.json", "h1", 10.0, result="fail")  # a failed step: no figure
    (evidence / "broken.json").write_text("{not json")
    baseline = watchdog_baseline.find(tmp_path, "h1")
    assert baseline is not None and baseline.decode_tok_s == 40.5


def test_events_and_view_reach_the_file_the_log_and_a_real_frontdoor(
    tmp_path: Path, frontdoor: Frontdoor
) -> None:
    restarts: list[str] = []
    port = SlotWatchdogPort(
        tmp_path,
        frontdoor.client(),
        restart=restarts.append,
        fault=restarts.append,
        xpu_smi=XpuSmi(which=lambda _: None),
    )
    assert port.liveness() is not None  # the real admin API answers
    view: dict[str, object] = {
        "verdict": "wedged",
        "reason": "no tokens for 60s",
        "restarts_in_window": 1,
    }
    port.changed(VerdictChanged("ok", "wedged", "no tokens for 60s"), view)
    port.publish(view)
    event = json.loads((tmp_path / "watchdog.jsonl").read_text().splitlines()[-1])
    assert (event["before"], event["after"], event["restarts_in_window"]) == ("ok", "wedged", 1)
    saved = read_view(tmp_path)
    assert saved is not None and saved["watchdog"]["verdict"] == "wedged"
    assert saved["devices"]["available"] is False
    public = httpx.get(frontdoor.url + "/status", timeout=5).json()
    assert public["watchdog"]["watchdog"]["verdict"] == "wedged"
    metrics = httpx.get(frontdoor.url + "/metrics", timeout=5).text
    assert 'modelslot_watchdog_verdict{verdict="wedged"} 1' in metrics
    assert "modelslot_device_telemetry_available 0" in metrics


def test_probes_go_to_the_aimed_model_only(tmp_path: Path, model: FakeModel) -> None:
    port = SlotWatchdogPort(tmp_path, None, print, print, XpuSmi(which=lambda _: None))
    settings = WatchdogSettings(wedge_s=5, decode_tokens=4)
    assert port.probe("liveness", settings).error == "no model to probe"
    port.aim(model.url, "served")
    assert port.probe("decode", settings).ok
    assert model.requests[-1]["model"] == "served"
    assert port.liveness() is None  # no frontdoor configured: the model counts as idle


def test_status_lines_show_the_watchdogs_view() -> None:
    now = datetime(2026, 12, 2, 15, 0, 0, tzinfo=UTC)
    document = {
        "updated_at": (now - timedelta(seconds=4)).isoformat(),
        "controller_running": True,
        "watchdog": {
            "verdict": "degraded",
            "reason": "decode 9.0, 9.1, 9.2 tok/s in the last 3 probes, below 20.0",
            "last_proof": "probe",
            "last_proof_age_s": 3.2,
            "last_probe_age_s": 3.2,
            "last_probe": {"kind": "decode", "ok": True, "latency_s": 3.4},
            "active_generations": 0,
            "silent_for_s": 120.0,
            "decode_tok_s": 9.2,
            "baseline_tok_s": 40.0,
            "baseline_source": "gate gate-p.json",
            "degraded_below_tok_s": 20.0,
            "restarts_in_window": 0,
            "restart_budget": 3,
            "restart_window_s": 3600,
        },
        "devices": {
            "available": True,
            "gpus": [{"gpu": "0", "utilization_percent": 97, "power_w": 180}],
        },
    }
    text = "\n".join(watchdog_status.render(document, now))
    assert "watchdog:    degraded: decode 9.0" in text and "[report 4.0s old]" in text
    assert "last probe 3.2s ago: decode ok in 3.4s" in text
    assert "0 active, last token relayed 120s ago" in text
    assert "decode 9.2 tok/s, baseline 40.0 (gate gate-p.json), degraded below 20.0" in text
    assert "restarts 0 of 3 in 3600s" in text
    assert "devices:     GPU 0: 97% busy, 180 W" in text
    none = watchdog_status.render(
        {
            "watchdog": {"verdict": "off"},
            "devices": {
                "available": False,
                "reason": "no device telemetry: xpu-smi is not on the PATH",
            },
            "controller_running": False,
        }
    )
    assert "(controller not running)" in none[0]
    assert none[-1] == "devices:     no device telemetry: xpu-smi is not on the PATH"
    assert watchdog_status.render(None) == [
        "watchdog:    no report yet (it runs in the controller, `up`)"
    ]

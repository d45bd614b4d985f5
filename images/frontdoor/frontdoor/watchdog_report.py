"""What the orchestrator's watchdog reports (``PUT /admin/watchdog``), shown in ``/status`` and
rendered into ``/metrics``.

The frontdoor only displays it: the verdicts are the orchestrator's (orchestrator/control/
watchdog.py). It is held in memory, never persisted: after a frontdoor restart the orchestrator
sends it again on its next round. Every field is bounded, since even the admin's input is input.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Verdict = Literal["off", "unknown", "ok", "wedged", "degraded", "faulted"]
VERDICTS: tuple[Verdict, ...] = ("off", "unknown", "ok", "wedged", "degraded", "faulted")

_Text = Field(default=None, max_length=2000)


class LastProbe(BaseModel):
    model_config = ConfigDict(extra="ignore")

    kind: Literal["liveness", "decode"]
    ok: bool
    latency_s: float = Field(ge=0)
    timed_out: bool = False
    error: str | None = _Text


class WatchdogView(BaseModel):
    """``Watchdog.view()`` of the orchestrator."""

    model_config = ConfigDict(extra="ignore")

    verdict: Verdict
    reason: str | None = _Text
    profile_hash: str | None = Field(default=None, max_length=128)
    last_proof: str | None = Field(default=None, max_length=40)
    last_proof_age_s: float | None = None
    last_probe_age_s: float | None = None
    last_probe: LastProbe | None = None
    probing: str | None = Field(default=None, max_length=40)
    active_generations: int | None = None
    silent_for_s: float | None = None
    oldest_active_silent_s: float | None = None
    restarts_in_window: int = Field(default=0, ge=0)
    restart_budget: int = Field(default=0, ge=0)
    restart_window_s: float = Field(default=3600, ge=0)
    decode_tok_s: float | None = None
    baseline_tok_s: float | None = None
    baseline_source: str | None = Field(default=None, max_length=500)
    degraded_below_tok_s: float | None = None
    verdict_changes: int = Field(default=0, ge=0)


class Gpu(BaseModel):
    model_config = ConfigDict(extra="ignore")

    gpu: str = Field(max_length=32)
    utilization_percent: float | None = None
    memory_used_mib: float | None = None
    power_w: float | None = None
    temperature_c: float | None = None
    engine_resets: int | None = None


class Devices(BaseModel):
    model_config = ConfigDict(extra="ignore")

    available: bool
    source: str | None = Field(default=None, max_length=200)
    reason: str | None = _Text
    gpus: list[Gpu] = Field(default_factory=list, max_length=64)


class WatchdogReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    watchdog: WatchdogView | None = None
    devices: Devices | None = None
    updated_at: str | None = Field(default=None, max_length=40)


def _value(value: float | None) -> str:
    """Prometheus text: NaN for unknown, integers without a point, floats in full (``:g``
    would round a byte count to six digits)."""
    if value is None:
        return "NaN"
    number = float(value)
    return str(int(number)) if number.is_integer() and abs(number) < 1e15 else repr(number)


def render(report: WatchdogReport | None) -> list[str]:
    """Prometheus lines: the watchdog's verdict and figures, and per-GPU device telemetry."""
    lines = [
        "# HELP modelslot_watchdog_verdict 1 for the watchdog's current verdict.",
        "# TYPE modelslot_watchdog_verdict gauge",
    ]
    view = report.watchdog if report else None
    current = view.verdict if view else None
    lines += [f'modelslot_watchdog_verdict{{verdict="{v}"}} {int(v == current)}' for v in VERDICTS]
    if view is not None:
        probe = view.last_probe
        lines += [
            "# HELP modelslot_watchdog_verdict_changes_total Verdict changes seen by the watchdog.",
            "# TYPE modelslot_watchdog_verdict_changes_total counter",
            f"modelslot_watchdog_verdict_changes_total {view.verdict_changes}",
            "# HELP modelslot_watchdog_restarts_in_window Watchdog restarts in the budget window.",
            "# TYPE modelslot_watchdog_restarts_in_window gauge",
            f"modelslot_watchdog_restarts_in_window {view.restarts_in_window}",
            "# HELP modelslot_watchdog_restart_budget Restarts allowed per window.",
            "# TYPE modelslot_watchdog_restart_budget gauge",
            f"modelslot_watchdog_restart_budget {view.restart_budget}",
            "# HELP modelslot_watchdog_last_probe_seconds Latency of the last probe.",
            "# TYPE modelslot_watchdog_last_probe_seconds gauge",
            f"modelslot_watchdog_last_probe_seconds {_value(probe.latency_s if probe else None)}",
            "# HELP modelslot_watchdog_last_proof_age_seconds Since the model last generated.",
            "# TYPE modelslot_watchdog_last_proof_age_seconds gauge",
            f"modelslot_watchdog_last_proof_age_seconds {_value(view.last_proof_age_s)}",
            "# HELP modelslot_watchdog_decode_tokens_per_second Last decode probe's rate.",
            "# TYPE modelslot_watchdog_decode_tokens_per_second gauge",
            f"modelslot_watchdog_decode_tokens_per_second {_value(view.decode_tok_s)}",
            "# HELP modelslot_watchdog_baseline_tokens_per_second The decode baseline.",
            "# TYPE modelslot_watchdog_baseline_tokens_per_second gauge",
            f"modelslot_watchdog_baseline_tokens_per_second {_value(view.baseline_tok_s)}",
            "# HELP modelslot_watchdog_degraded_below_tokens_per_second Decode below this, "
            "for the set number of probes in a row, is degraded.",
            "# TYPE modelslot_watchdog_degraded_below_tokens_per_second gauge",
            "modelslot_watchdog_degraded_below_tokens_per_second "
            f"{_value(view.degraded_below_tok_s)}",
        ]
    devices = report.devices if report else None
    lines += [
        "# HELP modelslot_device_telemetry_available 1 when xpu-smi reports the GPUs.",
        "# TYPE modelslot_device_telemetry_available gauge",
        f"modelslot_device_telemetry_available {int(bool(devices and devices.available))}",
    ]
    if devices is not None and devices.available and devices.gpus:
        # (name, type, help, field, divisor): a ratio (0-1) for a percentage, bytes for MiB.
        families: tuple[tuple[str, str, str, str, float], ...] = (
            ("gpu_utilization_ratio", "gauge", "GPU utilisation, 0-1.", "utilization_percent", 100),
            (
                "gpu_memory_used_bytes",
                "gauge",
                "GPU memory used.",
                "memory_used_mib",
                1 / (1 << 20),
            ),
            ("gpu_power_watts", "gauge", "GPU power.", "power_w", 1),
            ("gpu_temperature_celsius", "gauge", "GPU temperature.", "temperature_c", 1),
            (
                "gpu_engine_resets_total",
                "counter",
                "GPU engine resets, where xpu-smi reports them.",
                "engine_resets",
                1,
            ),
        )
        for name, kind, help_, field, divisor in families:
            lines += [f"# HELP modelslot_{name} {help_}", f"# TYPE modelslot_{name} {kind}"]
            for gpu in devices.gpus:
                value = getattr(gpu, field)
                if value is not None:
                    lines.append(
                        f'modelslot_{name}{{gpu="{_label(gpu.gpu)}"}} {_value(value / divisor)}'
                    )
    return lines


def _label(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


def render_bytes(report: WatchdogReport | None) -> bytes:
    return ("\n".join(render(report)) + "\n").encode()

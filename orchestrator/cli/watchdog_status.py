"""The watchdog's lines in ``python -m orchestrator status`` (from ``state/watchdog.json``)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrator.control.watchdog_port import read_view

PAD = " " * 13


def collect(state_dir: Path, controller_running: bool) -> dict[str, Any] | None:
    """The last published watchdog document, marked stale when no controller runs."""
    document = read_view(state_dir)
    if document is None:
        return None
    document = dict(document)
    document["controller_running"] = controller_running
    return document


def render(document: dict[str, Any] | None, now: datetime | None = None) -> list[str]:
    if document is None:
        return ["watchdog:    no report yet (it runs in the controller, `up`)"]
    now = now or datetime.now(UTC)
    view = document.get("watchdog") or {}
    age = _age(document.get("updated_at"), now)
    stale = "" if document.get("controller_running", True) else "  (controller not running)"
    lines = [
        f"watchdog:    {view.get('verdict', '?')}: {view.get('reason') or ''}"
        + (f"  [report {age} old]" if age else "")
        + stale
    ]
    proof = view.get("last_proof_age_s")
    probe = view.get("last_probe") or {}
    parts = []
    if proof is not None:
        parts.append(f"last proof {_s(proof)} ago ({view.get('last_proof')})")
    if probe:
        outcome = "ok" if probe.get("ok") else ("timed out" if probe.get("timed_out") else "failed")
        parts.append(
            f"last probe {_s(view.get('last_probe_age_s'))} ago: {probe.get('kind')} {outcome} "
            f"in {probe.get('latency_s')}s" + (f" ({probe['error']})" if probe.get("error") else "")
        )
    if parts:
        lines.append(PAD + "; ".join(parts))
    if view.get("active_generations") is not None:
        silent = view.get("silent_for_s")
        lines.append(
            PAD
            + f"{view['active_generations']} active, last token relayed "
            + (f"{_s(silent)} ago" if silent is not None else "never")
            + (
                f", the oldest active silent {_s(view['oldest_active_silent_s'])}"
                if view.get("oldest_active_silent_s") is not None
                else ""
            )
        )
    decode, baseline = view.get("decode_tok_s"), view.get("baseline_tok_s")
    if decode is not None or baseline is not None:
        lines.append(
            PAD
            + f"decode {decode if decode is not None else '-'} tok/s, baseline "
            + (
                f"{baseline} ({view.get('baseline_source')}), degraded below "
                f"{view.get('degraded_below_tok_s')}"
                if baseline is not None
                else "not yet measured"
            )
        )
    lines.append(
        PAD + f"restarts {view.get('restarts_in_window', 0)} of {view.get('restart_budget', '?')}"
        f" in {_s(view.get('restart_window_s'))}"
    )
    devices = document.get("devices") or {}
    if not devices.get("available"):
        lines.append(f"devices:     {devices.get('reason') or 'no device telemetry'}")
    else:
        for gpu in devices.get("gpus") or []:
            lines.append(f"devices:     GPU {gpu.get('gpu')}: " + _gpu(gpu))
    return lines


def _gpu(gpu: dict[str, Any]) -> str:
    fields = (
        ("utilization_percent", "{:g}% busy"),
        ("memory_used_mib", "{:g} MiB"),
        ("power_w", "{:g} W"),
        ("temperature_c", "{:g} C"),
        ("engine_resets", "{} resets"),
    )
    shown = [fmt.format(gpu[key]) for key, fmt in fields if gpu.get(key) is not None]
    return ", ".join(shown) or "no figures"


def _s(value: Any) -> str:
    if not isinstance(value, int | float):
        return "?"
    return f"{value:.0f}s" if value >= 10 else f"{value:.1f}s"


def _age(stamp: Any, now: datetime) -> str | None:
    if not isinstance(stamp, str):
        return None
    try:
        then = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    return _s(max(0.0, (now - then).total_seconds()))

"""The real ``WatchdogPort``: the frontdoor's admin API, probes straight to the model container,
the controller's queue, the event log, the state file ``status`` reads, and device telemetry.

- **Event log**: every verdict change is one JSON line in ``$MODEL_SLOT_STATE_DIR/watchdog.jsonl``
  (``{"time", "event": "verdict", "before", "after", "reason", ...figures}``) and a log line. The
  file is rotated to ``watchdog.jsonl.1`` past 1 MiB, so it is bounded.
- **View**: ``$MODEL_SLOT_STATE_DIR/watchdog.json`` (atomic write), which ``python -m
  orchestrator status`` prints, and ``PUT /admin/watchdog`` on the frontdoor, which shows it in
  ``/status`` and turns it into Prometheus gauges with the per-GPU telemetry.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrator.control import watchdog_probe
from orchestrator.control.frontdoor_client import FrontdoorClient
from orchestrator.control.watchdog import (
    FrontdoorLiveness,
    ProbeKind,
    ProbeResult,
    VerdictChanged,
    WatchdogSettings,
)
from orchestrator.errors import FrontdoorError
from orchestrator.slot.xpu_smi import Telemetry, XpuSmi

log = logging.getLogger("orchestrator.watchdog")

VIEW_FILE = "watchdog.json"
EVENTS_FILE = "watchdog.jsonl"
EVENTS_MAX_BYTES = 1 << 20
#: xpu-smi is read at most this often (it takes a moment and wakes the devices' telemetry).
TELEMETRY_S = 30.0


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class SlotWatchdogPort:
    def __init__(
        self,
        state_dir: Path,
        frontdoor: FrontdoorClient | None,
        restart: Callable[[str], None],
        fault: Callable[[str], None],
        xpu_smi: XpuSmi | None = None,
    ) -> None:
        self.state_dir = state_dir
        self.frontdoor = frontdoor
        self._restart = restart
        self._fault = fault
        self.xpu_smi = xpu_smi if xpu_smi is not None else XpuSmi()
        self._target: tuple[str, str] | None = None  # (base URL, served name)
        self._target_lock = threading.Lock()
        self._telemetry: Telemetry | None = None
        self._telemetry_at = 0.0
        self._frontdoor_ok = True

    def aim(self, base_url: str | None, served: str | None) -> None:
        """Where probes go (the model container's own address); None: nowhere."""
        with self._target_lock:
            self._target = (base_url.rstrip("/"), served) if base_url and served else None

    # ---- WatchdogPort ----------------------------------------------------------------------
    def liveness(self) -> FrontdoorLiveness | None:
        if self.frontdoor is None:
            return None
        try:
            raw = self.frontdoor.liveness()
        except FrontdoorError as exc:
            if self._frontdoor_ok:
                log.warning(
                    "watchdog: no liveness from the frontdoor (%s); probing as if idle", exc
                )
            self._frontdoor_ok = False
            return None
        self._frontdoor_ok = True
        return FrontdoorLiveness(
            active=int(raw.get("active_generations") or 0),
            last_token_age_s=_float(raw.get("last_token_age_s")),
            oldest_active_silent_s=_float(raw.get("oldest_active_silent_s")),
        )

    def probe(self, kind: ProbeKind, settings: WatchdogSettings) -> ProbeResult:
        with self._target_lock:
            target = self._target
        if target is None:
            return ProbeResult(kind, ok=False, latency_s=0.0, error="no model to probe")
        base, served = target
        if kind == "decode":
            return watchdog_probe.decode(base, served, settings.decode_tokens, settings.wedge_s)
        return watchdog_probe.liveness(base, served, settings.wedge_s)

    def restart(self, reason: str) -> None:
        self._restart(reason)

    def fault(self, reason: str) -> None:
        self._fault(reason)

    def changed(self, change: VerdictChanged, view: dict[str, object]) -> None:
        event = {
            "time": _now_iso(),
            "event": "verdict",
            "before": change.before,
            "after": change.after,
            "reason": change.reason,
            **{k: view.get(k) for k in ("profile_hash", "decode_tok_s", "baseline_tok_s")},
            "restarts_in_window": view.get("restarts_in_window"),
        }
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            path = self.state_dir / EVENTS_FILE
            if path.exists() and path.stat().st_size > EVENTS_MAX_BYTES:
                os.replace(path, path.with_suffix(".jsonl.1"))
            with path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(event, default=str) + "\n")
        except OSError as exc:
            log.error("watchdog: cannot write the event log: %s", exc)

    def publish(self, view: dict[str, object]) -> None:
        telemetry = self._device_telemetry()
        document = {
            "updated_at": _now_iso(),
            "watchdog": view,
            "devices": telemetry.to_json(),
        }
        try:
            _write_atomic(self.state_dir / VIEW_FILE, document)
        except OSError as exc:
            log.error("watchdog: cannot write %s: %s", VIEW_FILE, exc)
        if self.frontdoor is not None:
            try:
                self.frontdoor.put_watchdog(document)
            except FrontdoorError as exc:
                log.debug("watchdog: frontdoor did not take the report: %s", exc)

    def _device_telemetry(self) -> Telemetry:
        now = time.monotonic()
        if self._telemetry is None or now - self._telemetry_at >= TELEMETRY_S:
            self._telemetry = self.xpu_smi.telemetry()
            self._telemetry_at = now
        return self._telemetry


def read_view(state_dir: Path) -> dict[str, Any] | None:
    """What ``status`` prints: the last published document, or None."""
    try:
        raw = json.loads((state_dir / VIEW_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return raw if isinstance(raw, dict) else None


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _write_atomic(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".watchdog.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # `status` by another user reads it
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=2, default=str)
            handle.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

"""``/status`` (and its alias ``/frontdoor/status``): the lab's keys, plus the route."""

from __future__ import annotations

import time
from typing import Any

from . import __version__
from .core import Frontdoor


def status(fd: Frontdoor) -> dict[str, Any]:
    route, adm, s = fd.route, fd.admission, fd.settings
    profile = route.profile
    meta = s.model_slot
    return {
        "ok": route.state == "serving" and not fd.paused,
        "model_slot": {
            "name": profile.name or meta.name,
            "title": profile.title or meta.title,
            "hf_id": profile.hf_id or meta.hf_id,
            "modalities": profile.modalities or meta.modalities,
            "status": profile.status or meta.status,
        },
        "frontdoor": {
            "host": s.host,
            "port": s.port,
            "backend": route.upstream,
            "max_active_generations": adm.cap,
            "queue_timeout_s": adm.queue_timeout_s,
            "active_generations": adm.active,
            "queued_generations": adm.queued,
            "max_queued_generations": route.limits.max_queued_generations,
            "queued_body_bytes": adm.queued_bytes,
            "active_relays": fd.relays.active,
            "total_generation_requests": adm.total,
            "event_logging": route.limits.log_events,
            "auth": "on" if s.api_keys else "off",
            "version": __version__,
            "started_at": fd.started_at,
            "uptime_s": round(time.monotonic() - fd.started_monotonic, 1),
        },
        "route": {
            "state": route.state,
            "reason": route.reason,
            "paused": fd.paused,
            "switch_hold_s": route.switch_hold_s,
            "origin": fd.route_origin,
            "persisted_to": str(s.route_file) if s.route_file else None,
            "persist_error": fd.persist_error,
            "updated_at": route.updated_at,
            "profile": route.profile.model_dump(),
            "limits": route.limits.model_dump(),
        },
        "startup_facts": route.startup_facts,
        "liveness": fd.liveness.snapshot(),
        "watchdog": None if fd.watchdog is None else fd.watchdog.model_dump(mode="json"),
    }

"""The operator's page at ``/ui/``: static files, ``GET /ui/api/state``, and the admin board.

Read-only and cheap: only ``GET``/``HEAD`` are answered (anything else is 405 with an OpenAI
error body), nothing here is a generation or touches the upstream, and the state is a small
JSON document built from what the frontdoor already holds. What the page may show is decided
here, field by field (``state``), never by dumping a model: no token, no host path, and of a
profile only what ``python -m orchestrator list`` prints.

The orchestrator publishes what the frontdoor cannot know (profiles, switch history, evidence)
with ``PUT /admin/board`` on the admin port (``register_admin``); its phases also feed
``/metrics`` (``metric_lines``). Its watchdog's verdicts and the device telemetry arrive with
``PUT /admin/watchdog`` (admin.py, watchdog_report.py) and show under ``watchdog``.
"""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from starlette.types import Send

from . import __version__
from .board import Board, LivePhase
from .core import Frontdoor
from .errors import error_body

PREFIX = "/ui"
STATE_PATH = "/ui/api/state"

_STATIC = {
    "/ui/": ("index.html", b"text/html; charset=utf-8"),
    "/ui/app.js": ("app.js", b"text/javascript; charset=utf-8"),
    "/ui/app.css": ("app.css", b"text/css; charset=utf-8"),
    "/ui/favicon.svg": ("favicon.svg", b"image/svg+xml"),
}
# Read once: the files are package data and never change while the process runs.
_FILES = {
    path: (resources.files("frontdoor").joinpath("static", name).read_bytes(), ctype)
    for path, (name, ctype) in _STATIC.items()
}
# The page runs no inline script and loads nothing from elsewhere.
_SECURITY = [
    (b"content-security-policy", b"default-src 'self'; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]
# Startup facts the page shows (numbers only; the log lines they came from stay out).
_FACTS = (
    "kv_cache_tokens",
    "max_concurrency",
    "max_concurrency_context_tokens",
    "cold_start_s",
    "ready_s",
    "model_load_s",
    "torch_compile_s",
    "graph_capture_s",
    "engine_init_s",
)
_PROFILE_KEYS = ("name", "title", "hf_id", "status", "modalities", "purpose")
# An absolute path with at least two parts (not a URL: a "/" after a word character or ":" is
# part of something else). Reasons are free text from the orchestrator; paths stay out.
_PATH = re.compile(r"(?<![\w:/.])/(?:[\w.@+-]+/)+[\w.@+-]*")
_MAX_REASON = 300


def handles(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


async def serve(fd: Frontdoor, path: str, method: str, send: Send) -> None:
    """Answer one request under ``/ui``. Never reads a body, never reaches the upstream."""
    if method not in ("GET", "HEAD"):
        fd.metrics.request("other", 405)
        body = error_body(
            f"{method} {path}: the operator page is read-only (GET or HEAD only)",
            "invalid_request_error",
            code="method_not_allowed",
        )
        await _send(send, 405, body, b"application/json", extra=[(b"allow", b"GET, HEAD")])
        return
    if path == PREFIX:
        await _send(send, 308, b"", b"text/plain", extra=[(b"location", b"/ui/")])
        return
    if path == STATE_PATH:
        body, ctype = json.dumps(state(fd)).encode(), b"application/json"
    elif path in _FILES:
        body, ctype = _FILES[path]
    else:
        fd.metrics.request("other", 404)
        body = error_body(f"{path}: no such page (the operator page is /ui/)", "not_found")
        await _send(send, 404, body, b"application/json", head=method == "HEAD")
        return
    fd.metrics.request("other", 200)
    await _send(send, 200, body, ctype, head=method == "HEAD")


def state(fd: Frontdoor) -> dict[str, Any]:
    """Everything the page shows, and nothing more."""
    route, adm, metrics = fd.route, fd.admission, fd.metrics
    profile = route.profile
    facts = {k: route.startup_facts[k] for k in _FACTS if _number(route.startup_facts.get(k))}
    return {
        "now": datetime.now(UTC).isoformat(timespec="seconds"),
        "frontdoor": {
            "version": __version__,
            "started_at": fd.started_at,
            "uptime_s": round(time.monotonic() - fd.started_monotonic, 1),
        },
        "route": {
            "state": route.state,
            "reason": redact(route.reason),
            "paused": fd.paused,
            "updated_at": route.updated_at,
            "for_s": _age_s(route.updated_at),
            "phase": _phase(fd),
        },
        "profile": {k: _text(getattr(profile, k, None)) for k in _PROFILE_KEYS},
        "generations": {
            "active": adm.active,
            "queued": adm.queued,
            "cap": adm.cap,
            "admitted": adm.total,
            "finished": metrics.duration.count,
            "refusals": dict(sorted(metrics.refusals.items())),
            "ttft_recent_s": [round(v, 4) for v in metrics.ttft.recent],
        },
        "startup_facts": facts,
        # What the watchdog reads each second (GET /admin/liveness), live from here.
        "liveness": {
            k: round(v, 1) if isinstance(v, float) else v for k, v in fd.liveness.snapshot().items()
        },
        "watchdog": _watchdog(fd),
        "board": fd.board.board.model_dump(mode="json"),
    }


def redact(text: str | None) -> str | None:
    if text is None:
        return None
    return _PATH.sub("<path>", text)[:_MAX_REASON]


def register_admin(app: FastAPI, fd: Frontdoor) -> None:
    """``PUT``/``GET /admin/board`` on the admin app (the admin token is already required)."""

    @app.put("/admin/board")
    async def put_board(board: Board) -> Response:
        if board.published_at is None:
            board = board.model_copy(
                update={"published_at": datetime.now(UTC).isoformat(timespec="seconds")}
            )
        problem = fd.board.put(board)
        if problem:
            return Response(
                error_body(problem, "persist_error"), 500, media_type="application/json"
            )
        return JSONResponse({"switches": len(board.switches), "profiles": len(board.profiles)})

    @app.put("/admin/board/phase")
    async def put_phase(phase: LivePhase) -> LivePhase:
        fd.board.live = phase
        return phase

    @app.get("/admin/board")
    async def get_board() -> Board:
        return fd.board.board


def metric_lines(fd: Frontdoor) -> list[str]:
    """The profile, the switches and the startup facts, in Prometheus text format."""
    route = fd.route
    name = route.profile.name or ""
    lines = [
        "# HELP frontdoor_profile_info The profile the route names (value 1), by name and status.",
        "# TYPE frontdoor_profile_info gauge",
        f'frontdoor_profile_info{{profile="{_label(name)}",'
        f'status="{_label(route.profile.status or "")}"}} 1',
        "# HELP frontdoor_switches_total Slot operations the orchestrator reported "
        "(switch, stop, boot, restart, adopt), by action and outcome.",
        "# TYPE frontdoor_switches_total counter",
    ]
    for (action, outcome), n in sorted(fd.board.switch_outcomes.items()):
        lines.append(
            f'frontdoor_switches_total{{action="{_label(action)}",outcome="{_label(outcome)}"}} {n}'
        )
    switches = fd.board.board.switches
    if switches:
        last = switches[-1]
        labels = f'profile="{_label(last.profile or "")}",action="{_label(last.action)}"'
        lines += [
            "# HELP frontdoor_last_switch_duration_seconds How long the last slot operation took.",
            "# TYPE frontdoor_last_switch_duration_seconds gauge",
            f"frontdoor_last_switch_duration_seconds{{{labels}}} {last.total_s:g}",
            "# HELP frontdoor_last_switch_phase_seconds The last slot operation's phases.",
            "# TYPE frontdoor_last_switch_phase_seconds gauge",
        ]
        lines += [
            f'frontdoor_last_switch_phase_seconds{{{labels},phase="{_label(p.name)}"}} '
            f"{p.duration_s:g}"
            for p in last.phases
        ]
    facts = route.startup_facts
    for key, metric, help_ in (
        ("kv_cache_tokens", "frontdoor_startup_kv_cache_tokens", "KV-cache size in tokens."),
        (
            "max_concurrency",
            "frontdoor_startup_max_concurrency",
            "Maximum concurrency at max_model_len, from vLLM's log.",
        ),
        ("cold_start_s", "frontdoor_startup_cold_start_seconds", "vLLM's cold start."),
        ("ready_s", "frontdoor_startup_ready_seconds", "Container create to ready."),
    ):
        value = facts.get(key)
        if _number(value):
            lines += [
                f"# HELP {metric} {help_} Of the profile serving now.",
                f"# TYPE {metric} gauge",
                f'{metric}{{profile="{_label(name)}"}} {value:g}',
            ]
    return lines


# ---- the watchdog's report ---------------------------------------------------------------
_GPU_KEYS = (
    "utilization_percent",
    "memory_used_mib",
    "power_w",
    "temperature_c",
    "engine_resets",
)


def _watchdog(fd: Frontdoor) -> dict[str, Any] | None:
    """The orchestrator's last ``PUT /admin/watchdog``, field by field: the verdict and its
    figures, and the device telemetry. Free text (reasons, errors) has host paths replaced;
    the profile hash stays out (the page shows no hash anywhere). Ages are as of now: the
    report's own ages plus the time since it arrived. How long the model has been silent is
    the frontdoor's own, live figure (``liveness`` in the state), not the report's copy."""
    report, received = fd.watchdog, fd.watchdog_received
    if report is None or received is None:
        return None
    since = max(0.0, time.monotonic() - received)
    view, devices = report.watchdog, report.devices
    out: dict[str, Any] = {
        "reported_at": report.updated_at,
        "reported_age_s": round(since, 1),
        "verdict": None,
        "devices": None,
    }
    if view is not None:
        probe = view.last_probe
        probe_age = _plus(view.last_probe_age_s, since)
        out.update(
            verdict=view.verdict,
            reason=redact(view.reason),
            last_probe=None
            if probe is None
            else {
                "kind": probe.kind,
                "ok": probe.ok,
                "latency_s": round(probe.latency_s, 3),
                "timed_out": probe.timed_out,
                "error": redact(probe.error),
                "age_s": probe_age,
                "at": _ago(probe_age),
            },
            probing=_text(view.probing),
            last_proof=_text(view.last_proof),
            last_proof_age_s=_plus(view.last_proof_age_s, since),
            restarts_in_window=view.restarts_in_window,
            restart_budget=view.restart_budget,
            restart_window_s=view.restart_window_s,
            decode_tok_s=view.decode_tok_s,
            baseline_tok_s=view.baseline_tok_s,
            baseline_source=redact(view.baseline_source),
            degraded_below_tok_s=view.degraded_below_tok_s,
        )
    if devices is not None:
        out["devices"] = {
            "available": devices.available,
            "source": redact(devices.source),
            "reason": redact(devices.reason),
            "gpus": [
                {"gpu": gpu.gpu, **{k: getattr(gpu, k) for k in _GPU_KEYS}} for gpu in devices.gpus
            ]
            if devices.available
            else [],
        }
    return out


def _plus(age: float | None, since: float) -> float | None:
    return None if age is None else round(age + since, 1)


def _ago(age_s: float | None) -> str | None:
    if age_s is None:
        return None
    then = datetime.now(UTC) - timedelta(seconds=age_s)
    return then.isoformat(timespec="seconds")


# ---- helpers ----------------------------------------------------------------------------
def _phase(fd: Frontdoor) -> dict[str, Any] | None:
    """The running operation's phase, while the route says it is switching."""
    live = fd.board.live
    if live is None or fd.route.state != "switching":
        return None
    return {
        "name": live.phase,
        "action": live.action,
        "profile": live.profile,
        "for_s": _age_s(live.started_at),
    }


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _text(value: object) -> str | None:
    return value[:2000] if isinstance(value, str) else None


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _age_s(iso: str | None) -> float | None:
    if not iso:
        return None
    try:
        then = datetime.fromisoformat(iso)
    except ValueError:
        return None
    if then.tzinfo is None:
        then = then.replace(tzinfo=UTC)
    return round(max(0.0, (datetime.now(UTC) - then).total_seconds()), 1)


async def _send(
    send: Send,
    status: int,
    body: bytes,
    ctype: bytes,
    *,
    head: bool = False,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [
        (b"content-type", ctype),
        (b"content-length", str(len(body)).encode()),
        *_SECURITY,
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body, "more_body": False})

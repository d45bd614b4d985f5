"""Assembly: the public ASGI app (pure ASGI, so the proxy hot path skips any framework routing)."""

from __future__ import annotations

import json

from starlette.types import Receive, Scope, Send

from . import dashboard, watchdog_report
from .core import Frontdoor
from .proxy import relay, send_refusal
from .status import status

_OWN_PATHS = frozenset({"/health", "/health/ready", "/status", "/frontdoor/status", "/metrics"})


class PublicApp:
    """Answers /health (liveness), /health/ready (readiness), /status, /frontdoor/status and
    /metrics itself; relays the rest."""

    def __init__(self, fd: Frontdoor) -> None:
        self.fd = fd

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1003})
            return
        path = scope["path"]
        method = scope["method"]
        cors = self.fd.settings.cors_allow_origin
        if dashboard.handles(path):  # the operator's page: read-only, never a generation
            await dashboard.serve(self.fd, path, method, send)
            return
        if path in _OWN_PATHS and method in ("GET", "HEAD"):
            await self._own(path, method, send, cors)
            return
        if method == "OPTIONS" and cors:
            await _respond(send, 204, b"", b"text/plain", cors, preflight=True)
            return
        await relay(self.fd, scope, receive, send)

    async def _own(self, path: str, method: str, send: Send, cors: str | None) -> None:
        fd = self.fd
        if path == "/health":
            body, ctype = b'{"status":"ok"}', b"application/json"
        elif path == "/health/ready":
            # For routers and readiness probes: 200 only while a generation could start now.
            refusal = fd.admission.not_ready()
            if refusal is not None:
                fd.metrics.request(path, refusal.status)
                await send_refusal(send, refusal, cors, head=method == "HEAD")
                return
            body = json.dumps({"status": "ready", "profile": fd.route.profile.name}).encode()
            ctype = b"application/json"
        elif path == "/metrics":
            adm = fd.admission
            body = (
                fd.metrics.render(
                    active=adm.active,
                    queued=adm.queued,
                    cap=adm.cap,
                    state=fd.route.state,
                    queued_bytes=adm.queued_bytes,
                    relays=fd.relays.active,
                )
                + ("\n".join(dashboard.metric_lines(fd)) + "\n").encode()
                + watchdog_report.render_bytes(fd.watchdog)
            )
            ctype = b"text/plain; version=0.0.4; charset=utf-8"
        else:
            body, ctype = json.dumps(status(fd), indent=2).encode(), b"application/json"
        fd.metrics.request(path, 200)
        await _respond(send, 200, b"" if method == "HEAD" else body, ctype, cors, length=len(body))


async def _respond(
    send: Send,
    status_code: int,
    body: bytes,
    ctype: bytes,
    cors: str | None,
    *,
    length: int | None = None,
    preflight: bool = False,
) -> None:
    headers = [
        (b"content-type", ctype),
        (b"content-length", str(len(body) if length is None else length).encode()),
    ]
    if cors:
        headers.append((b"access-control-allow-origin", cors.encode()))
        if preflight:
            headers += [
                (b"access-control-allow-methods", b"GET, POST, PUT, DELETE, OPTIONS"),
                (b"access-control-allow-headers", b"*"),
                (b"access-control-max-age", b"600"),
            ]
    await send({"type": "http.response.start", "status": status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})

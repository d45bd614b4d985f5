"""The admin API the orchestrator drives (docs/CONTRACTS.md). Its own port, never the LAN one.

Every call needs ``Authorization: Bearer <token>`` (FRONTDOOR_ADMIN_TOKEN or the file named by
FRONTDOOR_ADMIN_TOKEN_FILE, read once at start). With no token configured every call is refused.
The token is checked by a plain ASGI guard in front of FastAPI, before any body is read or
parsed: a caller without the token learns nothing (a malformed body gets 401, not 422 with
parse details).
"""

from __future__ import annotations

import hmac
import time

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Receive, Scope, Send

from . import dashboard
from .core import Frontdoor
from .errors import Refusal, error_body, unauthorized
from .route import Route, now_iso
from .watchdog_report import WatchdogReport


class DrainRequest(BaseModel):
    timeout_s: float = Field(default=30.0, ge=0, le=3600)


class DrainResult(BaseModel):
    drained: bool
    waited_s: float
    active_generations: int


class PauseResult(BaseModel):
    paused: bool
    active_generations: int
    queued_generations: int


class _TokenGuard:
    """Refuse, with a 401 OpenAI body, any request without the admin token, before FastAPI
    routes it or reads its body."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token.encode() if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refusal = self._refusal(scope["headers"])
            if refusal is not None:
                body = refusal.body()
                headers = [*refusal.headers(), (b"content-length", str(len(body)).encode())]
                await send({"type": "http.response.start", "status": 401, "headers": headers})
                await send({"type": "http.response.body", "body": body, "more_body": False})
                return
        await self.app(scope, receive, send)

    def _refusal(self, headers: list[tuple[bytes, bytes]]) -> Refusal | None:
        if self.token is None:
            return unauthorized(
                "the admin API has no token configured: set FRONTDOOR_ADMIN_TOKEN "
                "or FRONTDOOR_ADMIN_TOKEN_FILE and restart the frontdoor"
            )
        authorization = b""
        for name, value in headers:
            if name == b"authorization":
                authorization = value
        scheme, _, offered = authorization.partition(b" ")
        if scheme.lower() != b"bearer" or not hmac.compare_digest(offered.strip(), self.token):
            return unauthorized("missing or wrong admin token (Authorization: Bearer <token>)")
        return None


def build_admin_app(fd: Frontdoor) -> ASGIApp:
    app = FastAPI(title="frontdoor admin", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(Refusal)
    async def _refusal(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, Refusal)
        return Response(exc.body(), exc.status, media_type="application/json")

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: Exception) -> Response:
        # Only a caller with the token gets here (the guard runs first): say what is wrong.
        assert isinstance(exc, RequestValidationError)
        problems = "; ".join(
            f"{'.'.join(str(part) for part in e.get('loc', ()))}: {e.get('msg', '')}"
            for e in exc.errors()
        )
        body = error_body(f"invalid request: {problems}", "invalid_request_error")
        return Response(body, 422, media_type="application/json")

    @app.get("/admin/route")
    async def get_route() -> Route:
        return fd.route

    @app.put("/admin/route")
    async def put_route(new: Route) -> Response:
        if new.updated_at is None:
            new = new.model_copy(update={"updated_at": now_iso()})
        try:
            fd.set_route(new)
        except OSError as exc:
            message = f"route applied but not persisted: {exc}"
            return Response(
                error_body(message, "persist_error"), 500, media_type="application/json"
            )
        return JSONResponse(fd.route.model_dump(mode="json"))

    @app.post("/admin/drain")
    async def drain(body: DrainRequest | None = None) -> DrainResult:
        timeout_s = (body or DrainRequest()).timeout_s
        start = time.monotonic()
        drained = await fd.admission.wait_idle(timeout_s)
        return DrainResult(
            drained=drained,
            waited_s=round(time.monotonic() - start, 3),
            active_generations=fd.admission.active,
        )

    @app.post("/admin/pause")
    async def pause() -> PauseResult:
        fd.set_paused(True)
        return _pause_result(fd)

    @app.post("/admin/resume")
    async def resume() -> PauseResult:
        fd.set_paused(False)
        return _pause_result(fd)

    @app.get("/admin/liveness")
    async def liveness() -> dict[str, float | int | None]:
        """For the watchdog: tokens relayed and the oldest active generation's silence."""
        return fd.liveness.snapshot()

    @app.put("/admin/watchdog")
    async def put_watchdog(report: WatchdogReport) -> WatchdogReport:
        """The watchdog's view and the device telemetry, for ``/status``, ``/metrics`` and the
        operator's page (``dashboard.state``)."""
        if report.updated_at is None:
            report = report.model_copy(update={"updated_at": now_iso()})
        fd.watchdog, fd.watchdog_received = report, time.monotonic()
        return report

    dashboard.register_admin(app, fd)
    return _TokenGuard(app, fd.settings.admin_token)


def _pause_result(fd: Frontdoor) -> PauseResult:
    return PauseResult(
        paused=fd.paused,
        active_generations=fd.admission.active,
        queued_generations=fd.admission.queued,
    )

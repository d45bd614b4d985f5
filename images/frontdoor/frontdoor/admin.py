"""The admin API the orchestrator drives (docs/CONTRACTS.md). Its own port, never the LAN one.

Every call needs ``Authorization: Bearer <token>`` (FRONTDOOR_ADMIN_TOKEN or the file named by
FRONTDOOR_ADMIN_TOKEN_FILE, read once at start). With no token configured every call is refused.
"""

from __future__ import annotations

import hmac
import time
from typing import Annotated

from fastapi import Depends, FastAPI, Header, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from . import dashboard
from .core import Frontdoor
from .errors import Refusal, error_body, unauthorized
from .route import Route, now_iso


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


def build_admin_app(fd: Frontdoor) -> FastAPI:
    token = fd.settings.admin_token

    def require_token(authorization: Annotated[str | None, Header()] = None) -> None:
        if not token:
            raise unauthorized(
                "the admin API has no token configured: set FRONTDOOR_ADMIN_TOKEN "
                "or FRONTDOOR_ADMIN_TOKEN_FILE and restart the frontdoor"
            )
        scheme, _, offered = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            offered.strip().encode(), token.encode()
        ):
            raise unauthorized("missing or wrong admin token (Authorization: Bearer <token>)")

    app = FastAPI(
        title="frontdoor admin",
        dependencies=[Depends(require_token)],
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    @app.exception_handler(Refusal)
    async def _refusal(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, Refusal)
        return Response(exc.body(), exc.status, media_type="application/json")

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

    dashboard.register_admin(app, fd)
    return app


def _pause_result(fd: Frontdoor) -> PauseResult:
    return PauseResult(
        paused=fd.paused,
        active_generations=fd.admission.active,
        queued_generations=fd.admission.queued,
    )

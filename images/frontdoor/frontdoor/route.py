"""The route: where generations go now, in which state, with which limits.

The orchestrator owns it and PUTs it over the admin API (docs/CONTRACTS.md). The frontdoor keeps
the last one in ``$FRONTDOOR_STATE_DIR/route.json`` so a restart of the frontdoor alone resumes
serving without a model reload. Without a persisted route it falls back to the environment
(standalone mode), and with no backend configured at all it starts ``down`` and says why.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .settings import ModelSlotMeta, Settings

log = logging.getLogger("frontdoor.route")

RouteState = Literal["serving", "switching", "down", "faulted"]


class Profile(ModelSlotMeta):
    """The active profile's metadata as the orchestrator sends it (extra keys kept)."""

    model_config = ConfigDict(extra="allow")

    hash: str | None = None


class Limits(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_active_generations: int = Field(default=4, ge=1)
    queue_timeout_s: float = Field(default=30.0, ge=0)
    # How many generations may wait for a place (queued or held); more get 503 queue_full.
    max_queued_generations: int = Field(default=64, ge=0)
    log_events: bool = False
    default_max_output_tokens: int | None = Field(default=None, ge=1)
    max_output_tokens: int | None = Field(default=None, ge=1)
    chat_template_kwargs: dict[str, Any] | None = None
    rewrite_request_model: bool = False
    served_model_name: str | None = None


class Route(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    upstream: str | None = None
    state: RouteState = "down"
    reason: str | None = None
    switch_hold_s: float = Field(default=30.0, ge=0)
    profile: Profile = Profile()
    limits: Limits = Limits()
    startup_facts: dict[str, Any] = Field(default_factory=dict)
    updated_at: str | None = None

    @model_validator(mode="after")
    def _serving_needs_upstream(self) -> Route:
        if self.state == "serving" and not self.upstream:
            raise ValueError("a route in state 'serving' needs an upstream URL")
        if self.upstream and not self.upstream.startswith("http://"):
            # The model container is on the host's internal network: plain HTTP/1.1 only.
            raise ValueError(f"upstream must be an http:// URL, got {self.upstream!r}")
        return self

    @property
    def upstream_base(self) -> str:
        """The upstream URL without a trailing slash, ready to prepend a request path."""
        return (self.upstream or "").rstrip("/")


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def standalone(settings: Settings) -> Route:
    """The route implied by the environment alone."""
    limits = Limits(
        max_active_generations=settings.max_active_generations,
        queue_timeout_s=settings.queue_timeout_s,
        max_queued_generations=settings.max_queued_generations,
        log_events=settings.log_events,
        default_max_output_tokens=settings.default_max_output_tokens,
        max_output_tokens=settings.max_output_tokens,
        chat_template_kwargs=settings.chat_template_kwargs,
        rewrite_request_model=settings.rewrite_request_model,
        served_model_name=settings.served_model_name,
    )
    profile = Profile(**settings.model_slot.model_dump())
    if settings.backend_url:
        return Route(
            upstream=settings.backend_url,
            state="serving",
            switch_hold_s=settings.switch_hold_s,
            profile=profile,
            limits=limits,
            updated_at=now_iso(),
        )
    return Route(
        state="down",
        reason=(
            "no backend configured: set FRONTDOOR_BACKEND_URL for standalone use, "
            "or let the orchestrator PUT /admin/route"
        ),
        switch_hold_s=settings.switch_hold_s,
        profile=profile,
        limits=limits,
        updated_at=now_iso(),
    )


def load(path: Path | None) -> tuple[Route | None, str | None]:
    """The persisted route, or ``(None, why)`` when there is none or it cannot be read."""
    if path is None:
        return None, None
    try:
        raw = path.read_text()
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, f"cannot read {path}: {exc}"
    try:
        return Route.model_validate(json.loads(raw)), None
    except (json.JSONDecodeError, ValidationError) as exc:
        return None, f"ignoring unreadable {path}: {exc}"


def save(path: Path, route: Route) -> None:
    """Write atomically: a reader (or a crash) sees the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".route.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(route.model_dump_json(indent=2))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def initial(settings: Settings) -> tuple[Route, str]:
    """The route to start with and where it came from (shown in /status)."""
    persisted, problem = load(settings.route_file)
    if persisted is not None:
        return persisted, f"restored from {settings.route_file}"
    if problem:
        log.warning("%s", problem)
    route = standalone(settings)
    origin = "environment (FRONTDOOR_BACKEND_URL)" if settings.backend_url else "nothing configured"
    if problem:
        origin += f"; {problem}"
    return route, origin

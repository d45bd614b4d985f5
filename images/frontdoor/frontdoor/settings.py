"""Configuration from the environment, with the lab's variable names.

Everything here is the *standalone* configuration: with ``FRONTDOOR_BACKEND_URL`` set and no
persisted route, the frontdoor serves that URL with these limits. Once the orchestrator PUTs a
route over the admin API, the route's limits and metadata win (see ``route.py``).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class SettingsError(ValueError):
    """A bad environment value; the message names the variable, the value and what is allowed."""

    def __init__(self, key: str, value: str, allowed: str) -> None:
        super().__init__(f"{key}={value!r} is not valid: expected {allowed}")


class ModelSlotMeta(BaseModel):
    """The ``MODEL_SLOT_*`` metadata shown by ``/status``."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    title: str | None = None
    hf_id: str | None = None
    modalities: str | None = None
    status: str | None = None
    purpose: str | None = None


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "0.0.0.0"  # noqa: S104 - the public port is meant for the LAN
    port: int = 8000
    admin_host: str = "127.0.0.1"
    admin_port: int = 8001
    admin_token: str | None = None
    backend_url: str | None = None
    backend_timeout_s: float = 600.0
    connect_timeout_s: float = 10.0
    max_active_generations: int = Field(default=4, ge=1)
    queue_timeout_s: float = Field(default=30.0, ge=0)
    switch_hold_s: float = Field(default=30.0, ge=0)
    # Whether a generation that cannot run at once waits (True) or gets 503 at once (False);
    # a request's ``X-Model-Slot-Hold: 0|1`` header overrides it (routers send 0).
    hold: bool = True
    log_events: bool = False
    cors_allow_origin: str | None = None
    default_max_output_tokens: int | None = Field(default=None, ge=1)
    max_output_tokens: int | None = Field(default=None, ge=1)
    chat_template_kwargs: dict[str, Any] | None = None
    rewrite_request_model: bool = False
    served_model_name: str | None = None
    api_keys: frozenset[str] = frozenset()
    max_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1)
    state_dir: Path | None = None
    keepalive_timeout_s: int = 5
    header_timeout_s: float = Field(default=30.0, gt=0)
    body_timeout_s: float = Field(default=60.0, gt=0)
    body_deadline_s: float = Field(default=300.0, gt=0)
    max_header_bytes: int = Field(default=64 * 1024, ge=1024)
    max_headers: int = Field(default=100, ge=8)
    max_queued_generations: int = Field(default=64, ge=0)
    max_queued_body_bytes: int = Field(default=256 * 1024 * 1024, ge=1)
    max_active_relays: int = Field(default=64, ge=1)
    model_slot: ModelSlotMeta = ModelSlotMeta()

    @property
    def route_file(self) -> Path | None:
        return None if self.state_dir is None else self.state_dir / "route.json"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        r = _Reader(env)
        token = r.text("FRONTDOOR_ADMIN_TOKEN")
        token_file = r.text("FRONTDOOR_ADMIN_TOKEN_FILE")
        if token is None and token_file is not None:
            try:
                token = Path(token_file).read_text().strip() or None
            except OSError as exc:
                raise SettingsError(
                    "FRONTDOOR_ADMIN_TOKEN_FILE", token_file, f"a readable file ({exc})"
                ) from exc
        backend = r.text("FRONTDOOR_BACKEND_URL")
        if backend is not None and not backend.startswith("http://"):
            raise SettingsError("FRONTDOOR_BACKEND_URL", backend, "an http://host:port URL")
        keys = r.text("FRONTDOOR_API_KEYS") or ""
        state_dir = r.text("FRONTDOOR_STATE_DIR")
        values: dict[str, Any] = {
            "host": r.text("FRONTDOOR_HOST"),
            "port": r.integer("FRONTDOOR_PORT"),
            "admin_host": r.text("FRONTDOOR_ADMIN_HOST"),
            "admin_port": r.integer("FRONTDOOR_ADMIN_PORT"),
            "admin_token": token,
            "backend_url": backend,
            "backend_timeout_s": r.number("FRONTDOOR_BACKEND_TIMEOUT_S"),
            "connect_timeout_s": r.number("FRONTDOOR_BACKEND_CONNECT_TIMEOUT_S"),
            "max_active_generations": r.integer("FRONTDOOR_MAX_ACTIVE_GENERATIONS", minimum=1),
            "queue_timeout_s": r.number("FRONTDOOR_QUEUE_TIMEOUT_S"),
            "switch_hold_s": r.number("FRONTDOOR_SWITCH_HOLD_S"),
            "hold": r.flag("FRONTDOOR_HOLD"),
            "log_events": r.flag("FRONTDOOR_LOG_EVENTS"),
            "cors_allow_origin": r.text("FRONTDOOR_CORS_ALLOW_ORIGIN"),
            "default_max_output_tokens": r.integer(
                "FRONTDOOR_DEFAULT_MAX_OUTPUT_TOKENS", minimum=1
            ),
            "max_output_tokens": r.integer("FRONTDOOR_MAX_OUTPUT_TOKENS", minimum=1),
            "chat_template_kwargs": r.json_object("FRONTDOOR_CHAT_TEMPLATE_KWARGS_JSON"),
            "rewrite_request_model": r.flag("FRONTDOOR_REWRITE_REQUEST_MODEL"),
            "served_model_name": r.text("FRONTDOOR_SERVED_MODEL_NAME"),
            "api_keys": frozenset(k.strip() for k in keys.split(",") if k.strip()),
            "max_body_bytes": r.integer("FRONTDOOR_MAX_BODY_BYTES", minimum=1),
            "state_dir": Path(state_dir) if state_dir else None,
            "keepalive_timeout_s": r.integer("FRONTDOOR_KEEPALIVE_TIMEOUT_S", minimum=1),
            "header_timeout_s": r.number("FRONTDOOR_HEADER_TIMEOUT_S"),
            "body_timeout_s": r.number("FRONTDOOR_BODY_TIMEOUT_S"),
            "body_deadline_s": r.number("FRONTDOOR_BODY_DEADLINE_S"),
            "max_header_bytes": r.integer("FRONTDOOR_MAX_HEADER_BYTES", minimum=1024),
            "max_headers": r.integer("FRONTDOOR_MAX_HEADERS", minimum=8),
            "max_queued_generations": r.integer("FRONTDOOR_MAX_QUEUED_GENERATIONS"),
            "max_queued_body_bytes": r.integer("FRONTDOOR_MAX_QUEUED_BODY_BYTES", minimum=1),
            "max_active_relays": r.integer("FRONTDOOR_MAX_ACTIVE_RELAYS", minimum=1),
            "model_slot": ModelSlotMeta(
                name=r.text("MODEL_SLOT_NAME"),
                title=r.text("MODEL_SLOT_TITLE"),
                hf_id=r.text("MODEL_SLOT_HF_ID"),
                modalities=r.text("MODEL_SLOT_MODALITIES"),
                status=r.text("MODEL_SLOT_STATUS"),
                purpose=r.text("MODEL_SLOT_PURPOSE"),
            ),
        }
        return cls(**{k: v for k, v in values.items() if v is not None})


class _Reader:
    """Typed reads of single variables; an empty value counts as unset."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def text(self, key: str) -> str | None:
        value = self._env.get(key, "").strip()
        return value or None

    def integer(self, key: str, minimum: int = 0) -> int | None:
        raw = self.text(key)
        if raw is None:
            return None
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(key, raw, f"an integer >= {minimum}") from None
        if value < minimum:
            raise SettingsError(key, raw, f"an integer >= {minimum}")
        return value

    def number(self, key: str) -> float | None:
        raw = self.text(key)
        if raw is None:
            return None
        try:
            value = float(raw)
        except ValueError:
            raise SettingsError(key, raw, "a number of seconds >= 0") from None
        if value < 0 or math.isnan(value):
            raise SettingsError(key, raw, "a number of seconds >= 0")
        return value

    def flag(self, key: str) -> bool | None:
        raw = self.text(key)
        if raw is None:
            return None
        if raw.lower() in {"1", "true", "yes", "on"}:
            return True
        if raw.lower() in {"0", "false", "no", "off"}:
            return False
        raise SettingsError(key, raw, "1/0, true/false, yes/no or on/off")

    def json_object(self, key: str) -> dict[str, Any] | None:
        raw = self.text(key)
        if raw is None:
            return None
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            raise SettingsError(key, raw, "a JSON object") from None
        if not isinstance(value, dict):
            raise SettingsError(key, raw, "a JSON object")
        return value

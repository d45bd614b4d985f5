"""Refusals the frontdoor answers itself, rendered as OpenAI-style error bodies.

Every refusal is ``{"error": {"message", "type", "param", "code"}}`` (DESIGN invariant 5)::

    Refusal                      the base: status, type, message, optional Retry-After
    ├── 400 invalid_request_error   a body a rewrite cannot handle faithfully (rewrite.py)
    ├── 401 authentication_error    FRONTDOOR_API_KEYS on and the key is missing or wrong
    ├── 408 request_timeout         body stalled or past FRONTDOOR_BODY_DEADLINE_S
    ├── 413 request_too_large       body over FRONTDOOR_MAX_BODY_BYTES
    ├── 502 backend_error           the upstream refused the connection or broke
    ├── 503 queue_timeout | queue_full | too_many_requests | switching | paused | down |
    │       faulted | busy | model_not_served   (always with Retry-After; the last two only
    │                               for a request that asked not to wait, X-Model-Slot-Hold: 0)
    └── 504 backend_timeout         the upstream did not answer in time

The request head's refusals (400 malformed, 408 too slow, 431 too large) happen before there is
an ASGI request at all; ``server.py`` writes them, with ``error_body`` from here.
"""

from __future__ import annotations

import json


class Refusal(Exception):
    """An answer the frontdoor gives instead of the upstream's; renders its own body."""

    def __init__(
        self,
        status: int,
        type_: str,
        message: str,
        *,
        retry_after: int | None = None,
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message
        self.retry_after = retry_after
        self.param = param
        self.code = code

    def body(self) -> bytes:
        return error_body(self.message, self.type, param=self.param, code=self.code)

    def headers(self) -> list[tuple[bytes, bytes]]:
        headers = [(b"content-type", b"application/json")]
        if self.retry_after is not None:
            headers.append((b"retry-after", str(self.retry_after).encode()))
        return headers


def error_body(
    message: str, type_: str, *, param: str | None = None, code: str | None = None
) -> bytes:
    error = {"message": message, "type": type_, "param": param, "code": code}
    return json.dumps({"error": error}).encode()


def bad_request(message: str, param: str | None = None) -> Refusal:
    return Refusal(400, "invalid_request_error", message, param=param)


def unauthorized(message: str) -> Refusal:
    return Refusal(401, "authentication_error", message, code="invalid_api_key")


def too_large(limit: int) -> Refusal:
    return Refusal(
        413,
        "request_too_large",
        f"request body is larger than this frontdoor accepts "
        f"({limit} bytes, FRONTDOOR_MAX_BODY_BYTES)",
    )


def request_timeout(message: str) -> Refusal:
    return Refusal(408, "request_timeout", message)


def backend_error(message: str) -> Refusal:
    return Refusal(502, "backend_error", message)


def backend_timeout(message: str) -> Refusal:
    return Refusal(504, "backend_timeout", message)


def unavailable(type_: str, message: str, retry_after: int) -> Refusal:
    return Refusal(503, type_, message, retry_after=max(1, retry_after))

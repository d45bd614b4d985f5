"""The relay: one client request to the current upstream and its answer back, streamed.

Hot path rules (see docs/frontdoor.md for the measurements behind them):

* pooled keep-alive upstream connections (``upstream.Pool``);
* response bytes are relayed exactly as they arrive: no line splitting, no decoding, no
  buffering; whatever has arrived when the relay asks becomes one ASGI body message at once;
* per request, not per event: metrics, events and header work.

Generation requests read their (JSON) body whole before admission: it is small next to the
generation, it lets the queue watch for a disconnect (ASGI ``receive`` is then free), a rewrite
needs it, and a request held through a switch is sent to the *new* upstream. Other requests
stream their body through.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.types import Receive, Scope, Send

from . import errors, events, rewrite
from .core import Frontdoor
from .errors import Refusal
from .settings import Settings
from .upstream import ConnectFailed, Response, UpstreamError, UpstreamTimeout

# Deny by default (DESIGN invariant 6): every POST that reaches the model counts against the cap
# unless it is on this short list of routes vLLM answers without running the model (tokenizer
# and chat-template work only). docs/frontdoor.md lists the vLLM 0.32 routes this covers.
CHEAP_POSTS = frozenset(
    {
        "/tokenize",
        "/detokenize",
        "/ping",
        "/v1/messages/count_tokens",
        "/v1/chat/completions/render",
        "/v1/completions/render",
        "/v1/responses/render",
        "/v1/messages/render",
        "/cohere/v2/chat/render",
        "/v1/chat/completions/derender",
        "/v1/completions/derender",
    }
)


def is_generation(method: str, path: str) -> bool:
    """Whether a request counts against the cap: any POST not known to be cheap."""
    return method == "POST" and path not in CHEAP_POSTS


# RFC 9110 7.6.1 connection-specific fields, never forwarded either way. ``host`` is replaced
# by the upstream's (and kept as X-Forwarded-Host); ``content-length`` is recomputed for the
# body we send; ``expect`` is dropped because we read the body ourselves.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
    }
)
_DROP_REQUEST = HOP_BY_HOP | {
    b"expect",
    b"host",
    b"content-length",
    b"x-forwarded-for",
    b"x-forwarded-proto",
    b"x-forwarded-host",
    b"x-model-slot-hold",  # ours: the model never sees it
}
_EVENT_STREAM = b"text/event-stream"


class ClientGone(Exception):
    """The client disconnected; nobody is left to answer."""


@dataclass(eq=False)  # identity: the liveness set holds it
class Exchange:
    """What one request did, for metrics, the event log and liveness."""

    path: str
    generation: bool
    start: float = field(default_factory=time.monotonic)
    status: int = 0
    queued: bool = False
    queue_wait: float = 0.0
    ttft: float | None = None
    error: str | None = None
    client_gone: bool = False
    done: bool = False
    admitted: bool = False
    admitted_at: float = 0.0  # liveness.py sets it when the generation is admitted
    last_relay: float = 0.0  # monotonic time body bytes were last relayed (liveness.py)
    tail: events.Tail = field(default_factory=events.Tail)
    hold: bool = True  # False: X-Model-Slot-Hold: 0 (or FRONTDOOR_HOLD=0), a router's request
    body: bytes = b""  # a generation's whole request body, for what a refusal must name

    def release(self, fd: Frontdoor) -> None:
        """Give the generation slot back, once."""
        if self.admitted:
            self.admitted = False
            fd.liveness.end(self)
            fd.admission.release(time.monotonic() - self.start)


async def relay(fd: Frontdoor, scope: Scope, receive: Receive, send: Send) -> None:
    path: str = scope["path"]
    ex = Exchange(path, is_generation(scope["method"], path))
    relayed = False
    task = asyncio.current_task()
    assert task is not None
    watcher: asyncio.Task[None] | None = None

    def watch() -> None:
        # Once the request body is consumed, ``receive`` only returns on disconnect. Cancel the
        # request's task then: whatever it awaits (queue, upstream read, client write) stops,
        # and the ``finally`` blocks close the upstream response (vLLM aborts) and free the slot.
        nonlocal watcher
        watcher = asyncio.get_running_loop().create_task(_watch_disconnect(receive, task, ex))

    try:
        if not fd.authorized(scope["headers"]):
            raise errors.unauthorized("missing or wrong API key (send Authorization: Bearer <key>)")
        fd.admission.refuse_if_closed()
        hold = ex.hold = _hold(scope["headers"], fd.settings.hold)
        deadline = time.monotonic() + fd.settings.body_deadline_s
        if ex.generation:
            whole = ex.body = await _read_body(scope, receive, fd.settings, deadline)
            body: bytes | AsyncIterator[bytes] = whole
            watch()
            ex.queue_wait = await fd.admission.acquire(len(whole), hold=hold)
            ex.admitted = True
            fd.liveness.begin(ex)
            if ex.client_gone:  # granted in the very turn the client left
                raise ClientGone
            ex.queued = ex.queue_wait > 0
            # Read with no await since acquire returned: the route in force that admitted us
            # (serving, so it has an upstream).
            route = fd.route
            if rewrite.needed(path, route.limits):
                body = rewrite.apply(path, whole, route.limits)
        else:
            fd.relays.enter()
            relayed = True
            body = await _body_stream(scope, receive, fd.settings, deadline, watch)
            # Held while switching (never sent to a stopping upstream); 503 when down/faulted.
            await fd.admission.hold_while_switching(hold=hold)
            route = fd.route  # serving: it has an upstream
        await _forward(fd, scope, send, ex, base=route.upstream_base, body=body)
    except Refusal as refusal:
        if ex.client_gone:
            return
        ex.status, ex.error = refusal.status, refusal.type
        fd.metrics.refusals[refusal.type] += 1
        await send_refusal(send, refusal, fd.settings.cors_allow_origin)
    except asyncio.CancelledError:
        if not ex.client_gone:
            raise  # a shutdown, not our watcher: let it propagate
        task.uncancel()
    except ClientGone:
        ex.client_gone = True
    finally:
        ex.done = True
        if watcher is not None:
            watcher.cancel()
        if ex.client_gone:
            ex.status, ex.error = ex.status or 499, ex.error or "client disconnected"
        ex.release(fd)
        if relayed:
            fd.relays.leave()
        _account(fd, ex, time.monotonic() - ex.start, scope)


async def _watch_disconnect(receive: Receive, task: asyncio.Task[Any], ex: Exchange) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            if not ex.done:
                ex.client_gone = True
                task.cancel()
            return


async def _next_body(receive: Receive, settings: Settings, deadline: float) -> tuple[bytes, bool]:
    """One body message, ``(chunk, more_body)``. A client that sends no body bytes for
    ``body_timeout_s``, or has not sent the whole body ``body_deadline_s`` after its headers,
    gets a 408: a trickle of bytes must not hold a connection and its buffer for ever."""
    idle_s = settings.body_timeout_s
    left = deadline - time.monotonic()
    try:
        # A timer handle, no extra task (cf. wait_for).
        async with asyncio.timeout(min(idle_s, max(0.0, left))):
            message = await receive()
    except TimeoutError:
        if left <= idle_s:
            raise errors.request_timeout(
                f"request body not complete within {settings.body_deadline_s:g}s "
                "(FRONTDOOR_BODY_DEADLINE_S)"
            ) from None
        raise errors.request_timeout(
            f"no request body bytes received for {idle_s:g}s (FRONTDOOR_BODY_TIMEOUT_S)"
        ) from None
    if message["type"] == "http.disconnect":
        raise ClientGone
    return message.get("body", b""), message.get("more_body", False)


async def _first_body(
    scope: Scope, receive: Receive, settings: Settings, deadline: float
) -> tuple[bytes, bool]:
    """The first body message, checked against the cap: ``(chunk, more_body)``."""
    limit = settings.max_body_bytes
    _check_length(scope, limit)
    chunk, more = await _next_body(receive, settings, deadline)
    if not more and len(chunk) > limit:
        raise errors.too_large(limit)
    return chunk, more


async def _read_body(scope: Scope, receive: Receive, settings: Settings, deadline: float) -> bytes:
    chunk, more = await _first_body(scope, receive, settings, deadline)
    parts, size = [chunk], len(chunk)
    while more:
        chunk, more = await _next_body(receive, settings, deadline)
        size += len(chunk)
        if size > settings.max_body_bytes:
            raise errors.too_large(settings.max_body_bytes)
        parts.append(chunk)
    return parts[0] if len(parts) == 1 else b"".join(parts)


async def _body_stream(
    scope: Scope,
    receive: Receive,
    settings: Settings,
    deadline: float,
    on_done: Callable[[], None],
) -> bytes | AsyncIterator[bytes]:
    """A small body whole; a large one as a stream that starts the disconnect watch at its end."""
    first, more = await _first_body(scope, receive, settings, deadline)
    if not more:
        on_done()
        return first

    async def stream() -> AsyncIterator[bytes]:
        size, more = len(first), True
        yield first
        while more:
            chunk, more = await _next_body(receive, settings, deadline)
            size += len(chunk)
            if size > settings.max_body_bytes:
                raise errors.too_large(settings.max_body_bytes)
            if chunk:
                yield chunk
        on_done()

    return stream()


def _check_length(scope: Scope, limit: int) -> None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                raise errors.bad_request("invalid Content-Length header") from None
            if declared > limit:
                raise errors.too_large(limit)


def _model_not_served(fd: Frontdoor, ex: Exchange) -> Refusal:
    """vLLM's 404 for a generation, as a router must see it: 503, "not here now, try another
    host". Behind a router (``X-Model-Slot-Hold: 0``) a host that serves another profile is one
    to route around like a switching one; LiteLLM retries a 503 on another deployment but
    returns a 404 to the client. vLLM decides what it serves (aliases, LoRA adapters): only its
    answer is changed. The message names both models and never vLLM's "does not exist" wording,
    which LiteLLM would read as a 404 again."""
    served = fd.route.limits.served_model_name or "another model"
    asked = rewrite.requested_model(ex.body)
    return errors.unavailable(
        "model_not_served",
        f"this host serves {served} now, not {asked or 'the model asked for'}, and the request "
        "asked not to wait (X-Model-Slot-Hold: 0); send it to a host that serves it",
        max(1, math.ceil(fd.route.switch_hold_s)),
    )


def _hold(headers: list[tuple[bytes, bytes]], default: bool) -> bool:
    """``X-Model-Slot-Hold``: 0 = refuse at once instead of waiting (what a router wants)."""
    for name, value in headers:
        if name == b"x-model-slot-hold":
            flag = value.strip().lower()
            if flag in (b"0", b"false", b"no"):
                return False
            if flag in (b"1", b"true", b"yes"):
                return True
            raise errors.bad_request(
                "X-Model-Slot-Hold must be 0 (refuse at once when the model cannot take the "
                "request now) or 1 (wait, the default)",
                param="X-Model-Slot-Hold",
            )
    return default


def _request_headers(scope: Scope) -> list[tuple[bytes, bytes]]:
    headers: list[tuple[bytes, bytes]] = scope["headers"]
    drop = _DROP_REQUEST
    for name, value in headers:
        if name == b"connection":  # fields the client named as connection-specific go too
            drop = drop | {t.strip().lower() for t in value.split(b",")}
    out = [(n, v) for n, v in headers if n not in drop]
    client = scope.get("client")
    peer = client[0].encode() if client else b"unknown"
    prior_xff = host = prior_host = None
    for name, value in headers:
        if name == b"x-forwarded-for":
            prior_xff = value if prior_xff is None else prior_xff + b", " + value
        elif name == b"host":
            host = value
        elif name == b"x-forwarded-host":
            prior_host = value
    out.append((b"x-forwarded-for", prior_xff + b", " + peer if prior_xff else peer))
    out.append((b"x-forwarded-proto", scope.get("scheme", "http").encode()))
    if prior_host or host:
        out.append((b"x-forwarded-host", prior_host or host or b""))
    return out


async def _forward(
    fd: Frontdoor,
    scope: Scope,
    send: Send,
    ex: Exchange,
    *,
    base: str,
    body: bytes | AsyncIterator[bytes],
) -> None:
    query: bytes = scope.get("query_string", b"")
    target: bytes = scope.get("raw_path") or scope["path"].encode()
    if query:
        target += b"?" + query
    try:
        response = await fd.pool.request(
            scope["method"], base, target, _request_headers(scope), body
        )
    except UpstreamTimeout as exc:
        fd.metrics.upstream_errors["timeout"] += 1
        raise errors.backend_timeout(f"the model server did not answer in time: {exc}") from None
    except ConnectFailed as exc:
        fd.metrics.upstream_errors["connect"] += 1
        raise errors.backend_error(f"could not reach the model server: {exc}") from None
    except UpstreamError as exc:  # closed before answering, or answered with garbage
        fd.metrics.upstream_errors["broken"] += 1
        raise errors.backend_error(f"the model server broke the exchange: {exc}") from None
    try:
        await _relay_response(fd, send, ex, response)
    finally:
        # Closing before the body is complete aborts the upstream socket: vLLM aborts the request.
        response.close()


async def _relay_response(fd: Frontdoor, send: Send, ex: Exchange, response: Response) -> None:
    if response.status == 404 and ex.generation and not ex.hold:
        raise _model_not_served(fd, ex)
    headers = [(n, v) for n, v in response.headers if n not in HOP_BY_HOP]
    streaming = False
    for name, value in headers:
        if name == b"content-type":
            streaming = value.startswith(_EVENT_STREAM)
    if streaming:
        headers.append((b"x-accel-buffering", b"no"))
    if fd.settings.cors_allow_origin:
        headers.append((b"access-control-allow-origin", fd.settings.cors_allow_origin.encode()))
    ex.status = response.status
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    keep_tail = ex.generation and fd.route.limits.log_events
    read = response.read
    try:
        chunk = await read()
        if chunk:
            ex.ttft = time.monotonic() - ex.start
        while chunk:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            ex.last_relay = time.monotonic()  # the watchdog's proof of life: one store
            if keep_tail:
                ex.tail.add(chunk)
            chunk = await read()
    except UpstreamError as exc:
        # The upstream broke mid-response; the status line is gone, so say it in-band.
        kind = "timeout" if isinstance(exc, UpstreamTimeout) else "broken"
        fd.metrics.upstream_errors[kind] += 1
        ex.error = f"upstream {kind} mid-response: {exc}"
        if not streaming:
            raise  # uvicorn closes the connection; the client sees a truncated body
        error = {
            "error": {"message": ex.error, "type": "backend_error", "param": None, "code": None}
        }
        await send(
            {
                "type": "http.response.body",
                "body": b"data: " + json.dumps(error).encode() + b"\n\n",
                "more_body": True,
            }
        )
    ex.done = True  # from here a disconnect is the normal end of the exchange
    # The upstream is finished: free the slot *before* the client sees the end, so a client that
    # sends its next request at once never finds its own previous one still counted.
    ex.release(fd)
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def send_refusal(
    send: Send, refusal: Refusal, cors: str | None, *, head: bool = False
) -> None:
    body = refusal.body()
    headers = [*refusal.headers(), (b"content-length", str(len(body)).encode())]
    if cors:
        headers.append((b"access-control-allow-origin", cors.encode()))
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body, "more_body": False})


def _account(fd: Frontdoor, ex: Exchange, elapsed: float, scope: Scope) -> None:
    fd.metrics.request(ex.path, ex.status)
    if not ex.generation:
        return
    fd.metrics.duration.observe(elapsed)
    if ex.queued:
        fd.metrics.queue_wait.observe(ex.queue_wait)
    if ex.ttft is not None:
        fd.metrics.ttft.observe(ex.ttft)
    if fd.route.limits.log_events:
        client = scope.get("client")
        events.emit(
            {
                "client": client[0] if client else None,
                "path": ex.path,
                "status": ex.status,
                "queued": ex.queued,
                "queue_wait": round(ex.queue_wait, 4),
                "ttft": None if ex.ttft is None else round(ex.ttft, 4),
                "elapsed": round(elapsed, 4),
                "tokens": events.tokens_from_tail(ex.tail.value()),
                "error": ex.error,
            }
        )

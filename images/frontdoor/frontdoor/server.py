"""Running the two apps: the public one and the admin one, in one process on one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .admin import build_admin_app
from .app import PublicApp
from .core import Frontdoor
from .errors import error_body

log = logging.getLogger("frontdoor")


class _Server(uvicorn.Server):
    # Signals are handled once for both servers by ``serve`` (uvicorn would install one handler
    # per server and the second would replace the first).
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class _BoundedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol plus the request-head bounds uvicorn and httptools lack.

    * A deadline: a client must finish a request's headers within ``header_timeout_s`` of
      connecting (for the first request) or of the first byte of the next one (kept-alive);
      the timer is not restarted by the first byte, so a client gets the timeout once, not
      twice. Otherwise 408. Idle time between requests is uvicorn's keep-alive timeout.
    * A size: at most ``max_header_bytes`` of request line and headers, counted as they arrive
      (httptools buffers an unfinished header line itself, with no limit), and at most
      ``max_headers`` header fields. Otherwise 431.

    Each refusal is an OpenAI error body, then the connection is closed.
    """

    header_timeout_s = 30.0
    max_header_bytes = 64 * 1024
    max_headers = 100
    _header_timer: asyncio.TimerHandle | None = None
    _in_head = True  # between a request's first byte (or the connection's start) and its headers
    _head_bytes = 0
    _head_tail = b""
    _head_fields = 0
    _refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._in_head:
            room = self.max_header_bytes - self._head_bytes
            # The head may end inside this piece, followed by body bytes: only what precedes
            # the blank line counts. ``_head_tail`` catches a CRLFCRLF split across pieces.
            if len(data) > room and (self._head_tail + data[: room + 1]).find(b"\r\n\r\n") < 0:
                self._refuse(
                    431,
                    "request headers are larger than "
                    f"{self.max_header_bytes} bytes (FRONTDOOR_MAX_HEADER_BYTES)",
                )
                return
            self._head_bytes += len(data)
            self._head_tail = data[-3:]
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_fields = 0
        if self._header_timer is None:  # armed at connect for the first request: no restart
            self._arm_header_timer()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_fields += 1
        if self._head_fields > self.max_headers:
            self._refuse(
                431, f"more than {self.max_headers} request header fields (FRONTDOOR_MAX_HEADERS)"
            )
            raise _HeadRefused
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        self._disarm_header_timer()
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        # The next bytes on this connection begin the next request's head.
        self._in_head, self._head_bytes, self._head_tail = True, 0, b""

    def send_400_response(self, msg: str) -> None:
        if self._refused:  # our callback stopped the parser; the answer is already written
            return
        self._refuse(400, f"invalid HTTP request: {msg}")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        self._disarm_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        self._refuse(
            408,
            f"request headers not received within {self.header_timeout_s:g}s "
            "(FRONTDOOR_HEADER_TIMEOUT_S)",
        )

    def _refuse(self, status: int, message: str) -> None:
        self._refused = True
        self._disarm_header_timer()
        if self.transport.is_closing():
            return
        reason = _REASONS[status]
        body = error_body(message, _TYPES[status])
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (status, reason, len(body), body)
        )
        self.transport.close()


class _HeadRefused(Exception):
    """Raised from a parser callback to stop parsing a refused request head."""


_REASONS = {400: b"Bad Request", 408: b"Request Timeout", 431: b"Request Header Fields Too Large"}
_TYPES = {400: "invalid_request_error", 408: "request_timeout", 431: "request_header_too_large"}


def _config(app: object, fd: Frontdoor, host: str, port: int) -> uvicorn.Config:
    protocol = type(
        "BoundedProtocol",
        (_BoundedProtocol,),
        {
            "header_timeout_s": fd.settings.header_timeout_s,
            "max_header_bytes": fd.settings.max_header_bytes,
            "max_headers": fd.settings.max_headers,
        },
    )
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=host,
        port=port,
        loop="none",  # the caller owns the loop (uvloop in __main__)
        http=protocol,
        ws="none",
        lifespan="off",
        access_log=False,
        server_header=False,
        proxy_headers=False,  # we are the edge; X-Forwarded-* from clients are not trusted
        timeout_keep_alive=fd.settings.keepalive_timeout_s,
        timeout_graceful_shutdown=5,
        log_config=None,
    )


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


class Servers:
    """Both uvicorn servers for one ``Frontdoor``; tests pass pre-bound port-0 sockets."""

    def __init__(self, fd: Frontdoor, public: socket.socket, admin: socket.socket) -> None:
        self.fd = fd
        self.sockets = (public, admin)
        s = fd.settings
        self.public = _Server(_config(PublicApp(fd), fd, s.host, s.port))
        self.admin = _Server(_config(build_admin_app(fd), fd, s.admin_host, s.admin_port))

    def stop(self) -> None:
        self.public.should_exit = True
        self.admin.should_exit = True

    async def serve(self) -> None:
        confirm = asyncio.ensure_future(self.fd.confirm_restored_route())
        try:
            await asyncio.gather(
                self.public.serve(sockets=[self.sockets[0]]),
                self.admin.serve(sockets=[self.sockets[1]]),
            )
        finally:
            confirm.cancel()
            await self.fd.aclose()

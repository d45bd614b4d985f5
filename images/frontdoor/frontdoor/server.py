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


class _HeaderTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol plus the header-read timeout uvicorn lacks.

    A client must finish a request's headers within ``header_timeout_s`` of connecting (or of
    starting the next request on a kept-alive connection); otherwise it gets 408 and the socket
    is closed, so slow or silent clients cannot pile up connections. Idle time between requests
    is uvicorn's own keep-alive timeout.
    """

    header_timeout_s = 30.0
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._disarm_header_timer()
        super().on_headers_complete()

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
        if self.transport.is_closing():
            return
        body = error_body(
            f"request headers not received within {self.header_timeout_s:g}s", "request_timeout"
        )
        self.transport.write(
            b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body)
        )
        self.transport.close()


def _config(app: object, fd: Frontdoor, host: str, port: int) -> uvicorn.Config:
    protocol = type(
        "HeaderTimeoutProtocol",
        (_HeaderTimeoutProtocol,),
        {"header_timeout_s": fd.settings.header_timeout_s},
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

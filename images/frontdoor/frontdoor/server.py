"""Running the two apps: the public one and the admin one, in one process on one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator

import uvicorn

from .admin import build_admin_app
from .app import PublicApp
from .core import Frontdoor

log = logging.getLogger("frontdoor")


class _Server(uvicorn.Server):
    # Signals are handled once for both servers by ``serve`` (uvicorn would install one handler
    # per server and the second would replace the first).
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _config(app: object, fd: Frontdoor, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=host,
        port=port,
        loop="none",  # the caller owns the loop (uvloop in __main__)
        http="httptools",
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
        try:
            await asyncio.gather(
                self.public.serve(sockets=[self.sockets[0]]),
                self.admin.serve(sockets=[self.sockets[1]]),
            )
        finally:
            await self.fd.aclose()

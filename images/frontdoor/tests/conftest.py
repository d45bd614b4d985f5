"""Fixtures: a fake upstream and a real frontdoor (both uvicorn apps on port-0 sockets)."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, Protocol, TypeVar

import httpx
import pytest
import uvloop
from fd_fakes import FakeUpstream
from frontdoor.core import Frontdoor
from frontdoor.route import Route
from frontdoor.server import Servers, bind
from frontdoor.settings import Settings

ADMIN_TOKEN = "test-admin-token"

T = TypeVar("T")


class SteppedClockLoop(asyncio.SelectorEventLoop):
    """An asyncio loop whose clock a test moves forward: the real monotonic time plus the
    jumps so far. Timers (``call_later``, ``asyncio.sleep``) follow it, so a test can pass a
    deadline of 60 s at once, at a point it chooses, however slow the machine is."""

    def __init__(self) -> None:
        super().__init__()
        self.jumped_s = 0.0

    def time(self) -> float:
        return super().time() + self.jumped_s

    async def jump(self, seconds: float) -> None:
        """Move the clock on, and return once every timer due by then has run."""
        self.jumped_s += seconds
        # Due timers run in deadline order; this one is due last (it is due now), so when it
        # has fired, every timer that the jump made due has fired before it.
        fired: asyncio.Future[None] = self.create_future()
        self.call_at(self.time(), fired.set_result, None)
        await fired


class RunningFrontdoor:
    """A frontdoor serving on its own event loop thread (uvloop, as in production, unless a
    test brings its own ``loop``); ``fd`` is its state, for assertions."""

    def __init__(
        self,
        settings: Settings,
        route: Route | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        public, admin = bind("127.0.0.1", 0), bind("127.0.0.1", 0)
        port, admin_port = public.getsockname()[1], admin.getsockname()[1]
        settings = settings.model_copy(update={"port": port, "admin_port": admin_port})
        self.settings = settings
        self.fd = Frontdoor(settings, route)
        self.servers = Servers(self.fd, public, admin)
        self.url = f"http://127.0.0.1:{port}"
        self.admin_url = f"http://127.0.0.1:{admin_port}"
        self.loop = uvloop.new_event_loop() if loop is None else loop
        self._thread = threading.Thread(
            target=self.loop.run_until_complete, args=(self.servers.serve(),), daemon=True
        )
        self._thread.start()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run ``coro`` on the frontdoor's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def wait(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        """Wait, on the frontdoor's loop and without polling, for an admission condition."""
        return bool(self.call(self.fd.admission.wait_until(predicate, timeout), timeout + 5))

    def admin(
        self, method: str, path: str, json: object = None, token: str | None = ADMIN_TOKEN
    ) -> httpx.Response:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return httpx.request(method, self.admin_url + path, json=json, headers=headers, timeout=30)

    def put_route(self, **route: object) -> httpx.Response:
        response = self.admin("PUT", "/admin/route", json=route)
        assert response.status_code == 200, response.text
        return response

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.servers.stop)
        self._thread.join(20)
        self.loop.close()


class StartFrontdoor(Protocol):
    """The ``start_frontdoor`` fixture: a frontdoor with these ``Settings`` fields (the admin
    token defaults to ``ADMIN_TOKEN``) and, optionally, a route to start with."""

    def __call__(self, route: Route | None = None, **settings: object) -> RunningFrontdoor: ...


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    fake = FakeUpstream()
    yield fake
    fake.stop()


@pytest.fixture
def start_frontdoor() -> Iterator[StartFrontdoor]:
    started: list[RunningFrontdoor] = []

    def start(route: Route | None = None, **settings: Any) -> RunningFrontdoor:
        settings.setdefault("admin_token", ADMIN_TOKEN)
        running = RunningFrontdoor(Settings(**settings), route)
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop()


def raw_request(
    url: str, path: str, body: bytes, headers: dict[str, str] | None = None
) -> socket.socket:
    """Send a POST on a plain socket and return it unread, so a test can hang up at will."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    lines = [
        f"POST {path} HTTP/1.1",
        f"host: {host}",
        f"content-length: {len(body)}",
        "content-type: application/json",
    ]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    return sock


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"

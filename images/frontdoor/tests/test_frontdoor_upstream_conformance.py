"""The upstream client against an upstream that breaks HTTP/1.1, through the real frontdoor.

``BadUpstream`` is a raw asyncio server (its own loop on a thread, port 0) that answers each
request the way its ``x-bad`` header names: a status outside 100-599, interim 1xx responses,
bytes after a response or on an idle keep-alive connection, a close mid-body, a hang, a TCP
reset after the body, and a fast stream to a client that stops reading. Each case is a bug the
hand-written client had (issue 11); the client under the frontdoor must pass all of them:

* the client always gets either the upstream's own complete answer or an OpenAI error body
  (502/504), never a dropped connection or another request's bytes;
* the pool never hands out a connection that carries bytes nobody asked for;
* a request whose body was written is never sent twice;
* time the relay spends waiting for a slow client is not upstream silence.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from conftest import RunningFrontdoor, StartFrontdoor

CHAT = "/v1/chat/completions"
READ_TIMEOUT_S = 0.5  # FRONTDOOR_BACKEND_TIMEOUT_S for every test here


def _json_response(payload: object, status: bytes = b"200 OK") -> bytes:
    body = json.dumps(payload).encode()
    return b"HTTP/1.1 %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
        status,
        len(body),
        body,
    )


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
)
PAD = "x" * 16_000  # big events fill every buffer on the way quickly


class BadUpstream:
    """An HTTP/1.1 upstream that misbehaves on request; what it saw is recorded for asserts."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.requests: list[tuple[int, str, str]] = []  # (connection number, x-bad, x-tag)
        self.connections = 0
        self.closed: set[int] = set()  # connections the frontdoor closed (EOF seen)
        self.blocked_since: float | None = None  # the slow stream's writes are stuck since
        self._cond = threading.Condition()
        self.loop = asyncio.new_event_loop()
        self._gates: dict[str, asyncio.Event] = {}
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(10)

    # -- test side ---------------------------------------------------------------------------

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        with self._cond:
            return self._cond.wait_for(predicate, timeout)

    def count(self, case: str) -> int:
        with self._cond:
            return sum(1 for _, bad, _ in self.requests if bad == case)

    def blocked_for(self) -> float:
        since = self.blocked_since
        return 0.0 if since is None else time.monotonic() - since

    def release(self, name: str) -> None:
        self.loop.call_soon_threadsafe(self._gate(name).set)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    # -- server side -------------------------------------------------------------------------

    def _gate(self, name: str) -> asyncio.Event:
        return self._gates.setdefault(name, asyncio.Event())

    def _notify(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._main())
        self.loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._serve, sock=self.sock)
        self._ready.set()
        await self._stop.wait()
        server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    break
                headers = {}
                for line in head.decode("latin-1").split("\r\n")[1:]:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                await reader.readexactly(int(headers.get("content-length", "0")))
                case, tag = headers.get("x-bad", "ok"), headers.get("x-tag", "")
                with self._cond:
                    self.requests.append((number, case, tag))
                    self._cond.notify_all()
                if not await self._answer(case, tag, reader, writer):
                    return
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            with self._cond:
                self.closed.add(number)
                self._cond.notify_all()
            writer.transport.abort()

    async def _answer(
        self, case: str, tag: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Answer one request; False ends the connection (after waiting for the peer's EOF
        where the case needs to see the frontdoor hang up)."""
        own = _json_response({"tag": tag})
        if case == "ok":
            writer.write(own)
        elif case == "status999":
            writer.write(_json_response({"tag": tag}, b"999 Nonsense"))
        elif case == "status101":
            writer.write(
                b"HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\nconnection: upgrade\r\n\r\n"
            )
        elif case == "interim":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await writer.drain()
            writer.write(b"HTTP/1.1 103 Early Hints\r\nlink: </hint.css>; rel=preload\r\n\r\n")
            await writer.drain()
            writer.write(own)
        elif case == "junk_after":  # a second, unrequested response in the same write
            writer.write(own + _json_response({"tag": "stale"}))
        elif case == "junk_idle":  # a response nobody asked for, once the connection is idle
            writer.write(own)
            await self._gate("junk").wait()
            writer.write(_json_response({"tag": "stale"}))
            await reader.read(1)  # until the frontdoor hangs up (it must)
            return False
        elif case == "close_mid_body":
            writer.write(own[:-5])  # Content-Length promises 5 more bytes
            await writer.drain()
            return False
        elif case == "close_mid_stream":
            writer.write(SSE_HEAD + _chunk(b'data: {"i": 0}\n\n'))
            await writer.drain()
            return False
        elif case == "close_before_head":
            return False
        elif case == "hang":
            await reader.read(1)  # never answer; the frontdoor gives up and hangs up
            return False
        elif case == "rst_after_body":
            writer.write(own)
            await writer.drain()
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return False  # abort() with SO_LINGER 0: the kernel sends RST
        elif case == "slow_reader":
            await self._stream_until_released(writer)
        else:
            raise AssertionError(f"unknown case {case}")
        await writer.drain()
        return True

    async def _stream_until_released(self, writer: asyncio.StreamWriter) -> None:
        """Events as fast as the frontdoor takes them, until ``release("finish")``."""
        writer.write(SSE_HEAD)
        finish, i = self._gate("finish"), 0
        high = writer.transport.get_write_buffer_limits()[1]
        while not finish.is_set():
            writer.write(_chunk(b'data: {"i": %d, "pad": "%s"}\n\n' % (i, PAD.encode())))
            i += 1
            if writer.transport.get_write_buffer_size() > high and self.blocked_since is None:
                self.blocked_since = time.monotonic()  # the frontdoor stopped reading us
            await writer.drain()
            self.blocked_since = None
            await asyncio.sleep(0)  # let the release in, between events
        writer.write(_chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")


def _poll(predicate: Callable[[], bool], timeout: float) -> bool:
    """For conditions that change with time rather than with an event."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.fixture
def bad() -> Iterator[BadUpstream]:
    upstream = BadUpstream()
    yield upstream
    upstream.stop()


@pytest.fixture
def front(bad: BadUpstream, start_frontdoor: StartFrontdoor) -> RunningFrontdoor:
    return start_frontdoor(backend_url=bad.url, backend_timeout_s=READ_TIMEOUT_S)


def _post(
    client: httpx.Client, front: RunningFrontdoor, case: str, tag: str = ""
) -> httpx.Response:
    return client.post(
        front.url + CHAT,
        json={"model": "m", "messages": []},
        headers={"x-bad": case, "x-tag": tag},
        timeout=10,
    )


def _assert_own(response: httpx.Response, tag: str) -> None:
    assert response.status_code == 200, response.text
    assert response.json() == {"tag": tag}


def _assert_openai_error(response: httpx.Response, status: int, type_: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == type_ and error["message"], error


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client() as c:
        yield c


@pytest.mark.parametrize("case", ["status999", "status101"])
def test_status_999_from_upstream_is_a_502_openai_error(
    bad: BadUpstream, front: RunningFrontdoor, client: httpx.Client, case: str
) -> None:
    """999 is no HTTP status; 101 switches protocols nobody asked to switch to."""
    _assert_openai_error(_post(client, front, case), 502, "backend_error")
    _assert_own(_post(client, front, "ok", "after"), "after")  # the pool is not poisoned


def test_interim_1xx_and_103_early_hints_are_skipped_not_taken_as_the_response(
    bad: BadUpstream, front: RunningFrontdoor, client: httpx.Client
) -> None:
    for i in range(3):  # the same pooled connection each time: nothing of a 1xx lingers
        _assert_own(_post(client, front, "interim", f"r{i}"), f"r{i}")
    _assert_own(_post(client, front, "ok", "after"), "after")


def test_bytes_after_a_response_never_reach_the_next_request(
    bad: BadUpstream, front: RunningFrontdoor, client: httpx.Client
) -> None:
    _assert_own(_post(client, front, "junk_after", "first"), "first")
    for i in range(3):
        _assert_own(_post(client, front, "ok", f"next{i}"), f"next{i}")


def test_unsolicited_bytes_on_an_idle_pooled_connection_close_it_no_desync(
    bad: BadUpstream, front: RunningFrontdoor, client: httpx.Client
) -> None:
    _assert_own(_post(client, front, "junk_idle", "first"), "first")
    (conn, _, _) = bad.requests[-1]
    bad.release("junk")  # the upstream now writes a response nobody asked for
    assert bad.wait_for(lambda: conn in bad.closed, 5), "the frontdoor kept the dirty connection"
    for i in range(3):
        _assert_own(_post(client, front, "ok", f"next{i}"), f"next{i}")


def test_close_mid_body_truncates_that_response_only(
    bad: BadUpstream, front: RunningFrontdoor, client: httpx.Client
) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        _post(client, front, "close_mid_body")  # the client sees the truncation
    _assert_own(_post(client, front, "ok", "after"), "after")


def test_close_mid_stream_ends_the_stream_with_an_error_event(
    bad: BadUpstream, front: RunningFrontdoor, client: httpx.Client
) -> None:
    response = _post(client, front, "close_mid_stream")
    assert response.status_code == 200
    events = [line for line in response.text.split("\n\n") if line]
    assert events[0] == 'data: {"i": 0}'
    assert json.loads(events[-1].removeprefix("data: "))["error"]["type"] == "backend_error"
    _assert_own(_post(client, front, "ok", "after"), "after")


def test_upstream_timeout_on_a_reused_connection_is_a_504_and_never_replayed(
    bad: BadUpstream, front: RunningFrontdoor, client: httpx.Client
) -> None:
    _assert_own(_post(client, front, "ok", "warm"), "warm")  # the next request reuses this
    _assert_openai_error(_post(client, front, "hang"), 504, "backend_timeout")
    assert bad.count("hang") == 1, "a timed-out request was sent to the upstream again"
    _assert_own(_post(client, front, "ok", "after"), "after")
    assert bad.count("hang") == 1


def test_reset_after_a_complete_body_keeps_the_answer_and_the_pool_healthy(
    bad: BadUpstream, front: RunningFrontdoor, client: httpx.Client
) -> None:
    """GETs: the reset may reach the frontdoor only after it reused the connection for the
    next request, and then only an idempotent request may be sent again (a POST gets 502)."""
    for i in range(3):
        r = client.get(
            front.url + "/v1/models", headers={"x-bad": "rst_after_body", "x-tag": f"r{i}"}
        )
        _assert_own(r, f"r{i}")
    _assert_own(client.get(front.url + "/v1/models", headers={"x-bad": "ok", "x-tag": "ok"}), "ok")


def test_a_client_that_stops_reading_is_not_upstream_silence(
    bad: BadUpstream, front: RunningFrontdoor
) -> None:
    """Backpressure: the relay waits for the client, the upstream waits for the relay; the
    read timeout (0.5 s) must not cut the stream however long the client pauses."""
    body = {"model": "m", "messages": [], "stream": True}
    with (
        httpx.Client(timeout=30) as client,
        client.stream("POST", front.url + CHAT, json=body, headers={"x-bad": "slow_reader"}) as r,
    ):
        assert r.status_code == 200
        chunks = r.iter_bytes()
        data = [next(chunks)]
        # Not reading now: wait until the upstream has been stuck writing for 3x the timeout.
        assert _poll(lambda: bad.blocked_for() > 3 * READ_TIMEOUT_S, 30), (
            "the upstream never felt the backpressure"
        )
        bad.release("finish")
        data += list(chunks)
    text = b"".join(data).decode()
    events = [e for e in text.split("\n\n") if e]
    assert events[-1] == "data: [DONE]", events[-1][:200]
    numbers = [json.loads(e.removeprefix("data: "))["i"] for e in events[:-1]]
    assert numbers == list(range(len(numbers)))  # nothing lost, no error event in between


def test_upstream_closing_after_reading_a_post_on_a_reused_connection_is_not_replayed(
    bad: BadUpstream, front: RunningFrontdoor, client: httpx.Client
) -> None:
    """The request went out whole, then the connection died with no answer: the upstream may
    have started the work, so the answer is a 502, and the upstream saw the request once."""
    _assert_own(_post(client, front, "ok", "warm"), "warm")
    _assert_openai_error(_post(client, front, "close_before_head"), 502, "backend_error")
    assert bad.count("close_before_head") == 1
    _assert_own(_post(client, front, "ok", "after"), "after")

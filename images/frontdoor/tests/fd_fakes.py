"""A small, real HTTP/1.1 upstream for the frontdoor's mechanics (never for vLLM features).

It runs its own asyncio loop on a thread and binds port 0. Requests steer it with headers, which
the frontdoor passes through untouched:

* ``x-fake-sse: N`` stream N server-sent events, ``x-fake-interval: S`` seconds apart;
* ``x-fake-hold: NAME`` wait for ``release(NAME)`` before answering, watching for the client
  (the frontdoor) closing the connection meanwhile, which is recorded in ``closes``;
* ``x-fake-echo: 1`` answer with what was received (method, path, query, headers, body);
* ``x-fake-status: CODE`` answer with that status and an OpenAI-style error;
* ``x-fake-break: K`` close the connection abruptly after K events;
* ``x-fake-step: NAME`` lockstep: before event i > 0, wait for ``release(f"NAME-{i}")``
  (which the test gives once it has received event i - 1) or for the client to close; with
  no release the upstream stays silent for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
from dataclasses import dataclass
from typing import Any, TypedDict


class Echo(TypedDict):
    """What ``x-fake-echo: 1`` answers: the request as the upstream received it."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: str


@dataclass
class Seen:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    events_sent: int = 0  # SSE events written so far (counted before each write)
    closed_early: bool = False


class FakeUpstream:
    def __init__(self, sock: socket.socket | None = None) -> None:
        """``sock``: a socket already bound (not yet listening), to serve a port chosen earlier."""
        if sock is None:
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
        self.sock = sock
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.seen: list[Seen] = []
        self.closes = 0
        self.connections = 0
        self._cond = threading.Condition()
        self._gates: dict[str, asyncio.Event] = {}
        self._writers: set[asyncio.StreamWriter] = set()
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._ready.wait(10)

    # -- test side (any thread) ------------------------------------------------------------

    def wait_requests(self, n: int, timeout: float = 10.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.seen) >= n, timeout)

    def wait_closes(self, n: int, timeout: float = 10.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.closes >= n, timeout)

    def release(self, name: str) -> None:
        self.loop.call_soon_threadsafe(lambda: self._gate(name).set())

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self._stop_event.set)
        self._thread.join(10)

    # -- server side (its own loop) --------------------------------------------------------

    def _gate(self, name: str) -> asyncio.Event:
        return self._gates.setdefault(name, asyncio.Event())

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._main())
        self.loop.close()

    async def _main(self) -> None:
        self._stop_event = asyncio.Event()
        server = await asyncio.start_server(self._connection, sock=self.sock)
        self._ready.set()
        await self._stop_event.wait()
        server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for writer in list(self._writers):
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
        await server.wait_closed()

    def _record(self, seen: Seen | None = None, close: bool = False) -> None:
        with self._cond:
            if seen is not None:
                self.seen.append(seen)
            if close:
                self.closes += 1
            self._cond.notify_all()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                seen = await self._read_request(head, reader)
                self._record(seen)
                if not await self._answer(seen, reader, writer):
                    return
        except (ConnectionError, asyncio.CancelledError):
            return
        finally:
            writer.close()
            self._writers.discard(writer)

    async def _read_request(self, head: bytes, reader: asyncio.StreamReader) -> Seen:
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            body = await reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int((await reader.readuntil(b"\r\n")).strip(), 16)
                parts.append(await reader.readexactly(size + 2))
                if size == 0:
                    break
            body = b"".join(p[:-2] for p in parts)
        else:
            body = b""
        path, _, query = target.partition("?")
        return Seen(method, path, query, headers, body)

    async def _answer(
        self, seen: Seen, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        h = seen.headers
        # Watch for the peer closing while we hold or stream (the frontdoor aborting us).
        eof = asyncio.ensure_future(reader.read(1))
        try:
            if "x-fake-hold" in h:
                gate = asyncio.ensure_future(self._gate(h["x-fake-hold"]).wait())
                await asyncio.wait({gate, eof}, return_when=asyncio.FIRST_COMPLETED)
                gate.cancel()
                if eof.done():
                    seen.closed_early = True
                    self._record(close=True)
                    return False
            if "x-fake-status" in h:
                error = {
                    "error": {
                        "message": "fake failure",
                        "type": "BadRequestError",
                        "param": None,
                        "code": int(h["x-fake-status"]),
                    }
                }
                self._send_json(writer, int(h["x-fake-status"]), error)
            elif "x-fake-echo" in h:
                echo = Echo(
                    method=seen.method,
                    path=seen.path,
                    query=seen.query,
                    headers=seen.headers,
                    body=seen.body.decode("utf-8", "replace"),
                )
                self._send_json(writer, 200, dict(echo))
            elif seen.path == "/v1/models":
                self._send_json(
                    writer,
                    200,
                    {
                        "object": "list",
                        "data": [{"id": "fake-model", "object": "model", "max_model_len": 2048}],
                    },
                )
            elif "x-fake-sse" in h:
                return await self._stream(seen, writer, eof)
            else:
                self._send_json(
                    writer,
                    200,
                    {
                        "id": "cmpl-fake",
                        "object": "chat.completion",
                        "model": "fake-model",
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": "hi"},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
                    },
                )
            await _stop_watching(eof)
            await writer.drain()
            return True
        finally:
            eof.cancel()

    async def _stream(
        self, seen: Seen, writer: asyncio.StreamWriter, eof: asyncio.Future[bytes]
    ) -> bool:
        h = seen.headers
        count, interval = int(h["x-fake-sse"]), float(h.get("x-fake-interval", "0"))
        break_after = int(h.get("x-fake-break", "-1"))
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n"
        )
        for i in range(count):
            if i == break_after:
                writer.transport.abort()
                return False
            if interval and i:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(eof), interval)
            if "x-fake-step" in h and i:
                step = asyncio.ensure_future(self._gate(f"{h['x-fake-step']}-{i}").wait())
                either: set[asyncio.Future[Any]] = {step, eof}  # a release or the client leaving
                await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
                step.cancel()
            if eof.done():
                seen.closed_early = True
                self._record(close=True)
                return False
            event = (
                b"data: "
                + json.dumps({"i": i, "choices": [{"delta": {"content": "x"}}]}).encode()
                + b"\n\n"
            )
            seen.events_sent += 1
            writer.write(b"%x\r\n%s\r\n" % (len(event), event))
            await writer.drain()
        tail = (
            b'data: {"usage": {"prompt_tokens": 3, "completion_tokens": %d}}\n\ndata: [DONE]\n\n'
            % count
        )
        writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(tail), tail))
        await _stop_watching(eof)
        await writer.drain()
        return True

    @staticmethod
    def _send_json(writer: asyncio.StreamWriter, status: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        writer.write(
            b"HTTP/1.1 %d X\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
            % (status, len(body), body)
        )


async def _stop_watching(eof: asyncio.Future[bytes]) -> None:
    """End the EOF watch before the next request is read. Cancel first, so the next request's
    bytes stay in the reader; then let the cancellation finish, or the reader still counts the
    watch as waiting and the next ``readuntil`` raises (the connection would die unanswered)."""
    eof.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await eof

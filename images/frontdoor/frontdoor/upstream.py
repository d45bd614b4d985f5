"""A lean HTTP/1.1 client for the one upstream: pooled keep-alive connections, raw body pieces.

Why not httpx here: measured on the 2-core box, an httpx relay added ~1.1 ms to the first event
and topped out near 25k events/s, CPU-bound in per-chunk work (anyio streams, h11, byte
chunkers). This module keeps per-chunk work to one C parser call (httptools) and hands the relay
whatever bytes have arrived, joined, the moment it asks; see docs/frontdoor.md for the numbers.

The contract is small on purpose: ``Pool.request()`` returns a ``Response`` once the status and
headers are in; ``Response.read()`` returns body bytes as they arrive; ``Response.close()``
either returns a finished connection to the pool or *aborts* an unfinished one, which is how the
upstream (vLLM) learns that the client has gone and aborts the generation.

What keeps one exchange's bytes out of another's (each case is a test in
``tests/test_frontdoor_upstream_conformance.py``):

* a connection belongs to one exchange at a time (``busy``); a byte that arrives while it is idle
  in the pool, or after its response is complete, was asked for by nobody: the connection is
  aborted on the spot (the response already complete is still delivered whole);
* interim ``1xx`` responses (``100 Continue``, ``103 Early Hints``) are skipped; ``101`` (we
  never ask to upgrade) and statuses outside 100-599 are errors (a 502 for the client);
* a request is sent again (once, on a fresh connection) only when a reused connection turned out
  dead before the request could have reached the upstream: the write itself failed, or the
  request is idempotent (GET, HEAD, OPTIONS) and no response byte came back. A timeout, or a
  written POST, is never replayed: the model may be running it;
* the read timeout counts the upstream's silence only while we are reading: while the client is
  slow and reading is paused (backpressure), the clock stands still.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httptools


class UpstreamError(Exception):
    """The upstream could not be reached, or broke the exchange."""


class ConnectFailed(UpstreamError):
    pass


class UpstreamTimeout(UpstreamError):
    pass


_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS"})


class _Unsolicited(Exception):
    """Raised inside a parser callback to stop parsing bytes that no request asked for."""


class _Callbacks:
    """What httptools calls back; ``on_body`` is bound straight to the connection's deque."""

    def __init__(self, conn: _Conn) -> None:
        self.on_message_begin = conn.on_message_begin
        self.on_header = conn.on_header
        self.on_headers_complete = conn.on_headers_complete
        self.on_message_complete = conn.on_message_complete
        self.on_body = conn.pieces.append


class _Conn(asyncio.Protocol):
    """One upstream connection; parses responses with httptools and buffers body pieces."""

    def __init__(self, pool: Pool, key: tuple[str, int]) -> None:
        self.pool, self.key = pool, key
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()  # created inside create_connection, on our loop
        # One deque for the connection's life. The parser's ``on_body`` is its C ``append``: the
        # per-event path (one call per SSE chunk) then runs no Python frame at all.
        self.pieces: deque[bytes] = deque()
        self.parser = httptools.HttpResponseParser(_Callbacks(self))
        self.closed = False
        self.written = False  # the current request was handed to the kernel whole
        self.idle_since = 0.0
        # True from the request's first byte until the connection is back in the pool; bytes
        # that arrive while it is False were asked for by nobody.
        self.busy = False
        self._reset()

    def _reset(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.status = 0
        self.interim = False  # parsing a 1xx interim response, which is skipped
        self.head_done = False
        self.complete = False
        self.keep_alive = False
        self.error: UpstreamError | None = None
        self.pieces.clear()
        self.buffered = 0
        self.paused = False
        self.waiter: asyncio.Future[None] | None = None
        self.watchdog: asyncio.TimerHandle | None = None
        self.last_read = time.monotonic()

    # -- asyncio.Protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(6, 1, 1)  # IPPROTO_TCP, TCP_NODELAY: no Nagle delay on requests

    def data_received(self, data: bytes) -> None:
        if not self.busy:  # idle in the pool: nobody asked for these bytes
            self.abort()
            return
        self.last_read = time.monotonic()
        self.buffered += len(data)
        if self.buffered > 1 << 20 and not self.paused and self.transport is not None:
            self.paused = True  # the client reads slower than the upstream writes: backpressure
            self.transport.pause_reading()
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            cause = exc.__context__
            if isinstance(cause, UpstreamError):
                self._fail(cause)
            elif not isinstance(cause, _Unsolicited):
                self._fail(UpstreamError(f"malformed response from upstream: {exc}"))
            # A complete response stays deliverable; the connection is never reused.
            self.abort()
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        if not self.complete:
            self._fail(
                UpstreamError("upstream closed the connection" + (f": {exc}" if exc else ""))
            )
            self._wake()

    # -- httptools callbacks ---------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.complete:  # a second response to one request: stop, drop the connection
            raise _Unsolicited

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            self.interim = True  # 100 Continue, 103 Early Hints: not the response; skip it
            self.headers = []
            return
        if not 200 <= status <= 599:
            raise UpstreamError(f"upstream answered with an invalid status {status}")
        self.status = status
        self.head_done = True

    def on_message_complete(self) -> None:
        if self.interim:
            self.interim = False
            return
        self.complete = True
        self.keep_alive = self.parser.should_keep_alive()

    # -- used by Response ---------------------------------------------------------------------

    def _fail(self, error: UpstreamError) -> None:
        if self.error is None:
            self.error = error

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self) -> None:
        """Until something new happened: bytes, completion, an error, or the watchdog firing."""
        self.waiter = self.loop.create_future()
        try:
            await self.waiter
        finally:
            self.waiter = None

    def watch(self, timeout: float) -> None:
        """Arm the read timeout: an error once the upstream is silent for ``timeout`` seconds.

        One timer per exchange that re-arms itself for the remaining budget, rather than one
        timer per read: the per-event path stays free of timer-heap work. While reading is
        paused (the client is slow) the upstream cannot be heard, so that time never counts:
        ``take()`` restarts the clock when it resumes reading.
        """
        loop = asyncio.get_running_loop()

        def check() -> None:
            if self.complete or self.closed:
                return
            if self.paused:
                self.watchdog = loop.call_later(timeout, check)
                return
            silent = time.monotonic() - self.last_read
            if silent >= timeout:
                self._fail(UpstreamTimeout(f"upstream sent nothing for {timeout:g}s"))
                self._wake()
            else:
                self.watchdog = loop.call_later(timeout - silent, check)

        self.watchdog = loop.call_later(timeout, check)

    def unwatch(self) -> None:
        if self.watchdog is not None:
            self.watchdog.cancel()
            self.watchdog = None

    def take(self) -> bytes:
        data = self.pieces[0] if len(self.pieces) == 1 else b"".join(self.pieces)
        self.pieces.clear()
        self.buffered = 0
        if self.paused and self.transport is not None:
            self.paused = False
            self.last_read = time.monotonic()  # the silence clock stood still while paused
            self.transport.resume_reading()
        return data

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


class Response:
    def __init__(self, conn: _Conn, head_only: bool) -> None:
        self._conn = conn
        self._head_only = head_only
        self.status = conn.status
        self.headers = conn.headers
        self._released = False

    async def read(self) -> bytes:
        """The body bytes that have arrived, joined, waiting only if none have; ``b""`` at the end.

        A plain coroutine rather than an async generator, and the wait inlined: this runs once
        per upstream read, so every frame it saves counts.
        """
        conn = self._conn
        while not conn.pieces:
            if conn.complete or self._head_only:
                return b""
            if conn.error is not None:
                raise conn.error
            conn.waiter = waiter = conn.loop.create_future()
            await waiter  # woken by data_received / connection_lost / the watchdog
        return conn.take()

    def close(self) -> None:
        """Back to the pool when finished and reusable; otherwise abort (the upstream sees it)."""
        if self._released:
            return
        self._released = True
        conn = self._conn
        conn.unwatch()
        if (
            conn.complete
            and conn.keep_alive
            and not conn.closed
            and not conn.pieces
            and not self._head_only
        ):
            conn.pool.put_back(conn)
        else:
            conn.abort()


class Pool:
    def __init__(
        self, *, connect_timeout: float, read_timeout: float, max_idle: int, idle_expiry: float
    ) -> None:
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_idle = max_idle
        self.idle_expiry = idle_expiry
        self._idle: dict[tuple[str, int], list[_Conn]] = {}
        self._bases: dict[str, tuple[tuple[str, int], bytes, bytes]] = {}

    def forget(self, conn: _Conn) -> None:
        idle = self._idle.get(conn.key)
        if idle and conn in idle:
            idle.remove(conn)

    def put_back(self, conn: _Conn) -> None:
        idle = self._idle.setdefault(conn.key, [])
        if len(idle) >= self.max_idle:
            conn.abort()
            return
        conn._reset()
        conn.busy = False
        conn.idle_since = time.monotonic()
        idle.append(conn)

    def close(self) -> None:
        for idle in self._idle.values():
            for conn in list(idle):
                conn.abort()
        self._idle.clear()

    async def _connect(self, key: tuple[str, int]) -> tuple[_Conn, bool]:
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            conn = idle.pop()  # most recently used first: the likeliest to be still open
            transport = conn.transport
            if (
                not conn.closed
                and transport is not None
                and not transport.is_closing()  # EOF seen, connection_lost not yet run
                and now - conn.idle_since < self.idle_expiry
            ):
                return conn, True
            conn.abort()
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(lambda: _Conn(self, key), key[0], key[1]),
                self.connect_timeout,
            )
        except TimeoutError:
            raise UpstreamTimeout(f"connecting to {key[0]}:{key[1]} timed out") from None
        except OSError as exc:
            raise ConnectFailed(
                f"cannot connect to {key[0]}:{key[1]}: {exc.strerror or exc}"
            ) from None
        return conn, False

    async def request(
        self,
        method: str,
        base: str,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes | AsyncIterator[bytes],
    ) -> Response:
        """Send one request; returns once the response head is in. Raises ``UpstreamError``."""
        key, host, prefix = self._parse_base(base)
        for attempt in (0, 1):
            conn, reused = await self._connect(key)
            try:
                return await self._exchange(
                    conn,
                    method=method,
                    host=host,
                    target=prefix + target,
                    headers=headers,
                    body=body,
                )
            except UpstreamTimeout:
                conn.unwatch()
                conn.abort()  # the upstream may be working on it: never replayed
                raise
            except UpstreamError:
                conn.unwatch()
                conn.abort()
                # A reused connection the upstream closed while it was idle fails before any
                # response byte. Send again on a fresh one only if the request cannot have
                # reached the upstream (the write found the socket dead already), or if it is
                # idempotent; a written POST may be running, so it is never sent twice.
                if (
                    attempt == 0
                    and reused
                    and not conn.head_done
                    and isinstance(body, bytes)
                    and (not conn.written or method in _IDEMPOTENT)
                ):
                    continue
                raise
            except BaseException:
                conn.unwatch()
                conn.abort()  # cancelled (client gone) or anything else: never reuse
                raise
        raise AssertionError("unreachable")

    def _parse_base(self, base: str) -> tuple[tuple[str, int], bytes, bytes]:
        parsed = self._bases.get(base)
        if parsed is None:
            parts = urlsplit(base)
            if parts.scheme != "http" or not parts.hostname:
                raise ConnectFailed(
                    f"unsupported upstream URL {base!r} (plain http://host:port only)"
                )
            parsed = (
                (parts.hostname, parts.port or 80),
                parts.netloc.encode(),
                parts.path.rstrip("/").encode(),
            )
            if len(self._bases) > 64:
                self._bases.clear()
            self._bases[base] = parsed
        return parsed

    async def _exchange(
        self,
        conn: _Conn,
        *,
        method: str,
        host: bytes,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes | AsyncIterator[bytes],
    ) -> Response:
        assert conn.transport is not None
        conn.busy = True
        conn.written = False
        conn.last_read = time.monotonic()
        lines = [b"%s %s HTTP/1.1\r\nhost: %s\r\n" % (method.encode(), target, host)]
        lines += [b"%s: %s\r\n" % (name, value) for name, value in headers]
        if isinstance(body, bytes):
            if body or method not in ("GET", "HEAD", "DELETE", "OPTIONS"):
                lines.append(b"content-length: %d\r\n" % len(body))
            lines.append(b"\r\n")
            lines.append(body)
            conn.transport.write(b"".join(lines))
            # A dead socket fails the write at once (the transport is closing before we await
            # anything); otherwise the request is with the kernel and may reach the upstream.
            conn.written = not (conn.closed or conn.transport.is_closing())
        else:
            conn.written = True
            lines.append(b"transfer-encoding: chunked\r\n\r\n")
            conn.transport.write(b"".join(lines))
            async for piece in body:
                if conn.closed:
                    raise conn.error or UpstreamError("upstream closed the connection")
                conn.transport.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            conn.transport.write(b"0\r\n\r\n")
        conn.watch(self.read_timeout)
        while not conn.head_done:
            if conn.error is not None:
                raise conn.error
            await conn.wait()
        return Response(conn, head_only=method == "HEAD")

"""A fast synthetic SSE upstream for the relay benchmark (raw asyncio protocol on uvloop).

``POST /v1/chat/completions?n=N`` streams N chat-completion-shaped events back to back (one
write per event, yielding to the loop between events, like a token server), then ``[DONE]``.
``&gap_ms=G`` paces them instead, G ms apart, each stamped with ``"sent"``: this process's
``time.monotonic()`` just before the write (CLOCK_MONOTONIC, the same clock in every process of
the host), so a client can tell how long each event took to reach it.
Prints its port on stdout, then serves until killed.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import time

import uvloop

EVENT = (
    b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,'
    b'"model":"bench","choices":[{"index":0,"delta":{"content":" token"},"logprobs":null,'
    b'"finish_reason":null}]}\n\n'
)
CHUNK = b"%x\r\n%s\r\n" % (len(EVENT), EVENT)
DONE = b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n"
HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n\r\n"
)


class Upstream(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = b""
        self.need = -1
        self.n = 0
        self.gap_ms = 0.0
        self.task: asyncio.Task[None] | None = None
        self.writable = asyncio.Event()
        self.writable.set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            if self.need < 0:
                end = self.buffer.find(b"\r\n\r\n")
                if end < 0:
                    return
                head, self.buffer = self.buffer[:end].decode("latin-1"), self.buffer[end + 4 :]
                query = dict(
                    part.partition("=")[::2]
                    for part in head.split(" ", 2)[1].partition("?")[2].split("&")
                )
                self.n = int(query.get("n") or "16")
                self.gap_ms = float(query.get("gap_ms") or "0")
                self.need = 0
                for line in head.split("\r\n")[1:]:
                    if line.lower().startswith("content-length:"):
                        self.need = int(line.split(":", 1)[1])
            if len(self.buffer) < self.need:
                return
            self.buffer = self.buffer[self.need :]
            self.need = -1
            job = self.paced(self.n, self.gap_ms / 1000) if self.gap_ms else self.stream(self.n)
            self.task = asyncio.get_running_loop().create_task(job)  # held: tasks are weak refs

    async def paced(self, n: int, gap_s: float) -> None:
        write = self.transport.write
        write(HEAD)
        for i in range(n):
            if i:
                await asyncio.sleep(gap_s)
            event = b'data: {"i":%d,"sent":%.9f,%s\n\n' % (i, time.monotonic(), EVENT[7:-2])
            write(b"%x\r\n%s\r\n" % (len(event), event))
        write(DONE)

    async def stream(self, n: int) -> None:
        write = self.transport.write
        write(HEAD)
        for _ in range(n):
            if not self.writable.is_set():
                await self.writable.wait()
            write(CHUNK)
            await asyncio.sleep(0)
        write(DONE)


async def main() -> None:
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.bind(("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 0))
    sock.listen(1024)
    server = await loop.create_server(Upstream, sock=sock)
    print(sock.getsockname()[1], flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(main())

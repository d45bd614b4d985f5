"""Library upstream clients with the contract of ``frontdoor.upstream.Pool``, for the benchmark.

``python benchmarks/frontdoor/library_clients.py aiohttp`` runs ``python -m frontdoor`` with
``frontdoor.core.Pool`` replaced by ``AiohttpPool``: same relay, same settings, only the upstream
client differs. This is how the benchmark compares the hand-written client with aiohttp's
(issue 11); ``library_clients.py aiohttp --conformance`` runs the upstream conformance test
against the same stand-in. Not used by the product.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import yarl
from frontdoor.upstream import ConnectFailed, UpstreamError, UpstreamTimeout


class AiohttpResponse:
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status = response.status
        self.headers = [(name.lower(), value) for name, value in response.raw_headers]

    async def read(self) -> bytes:
        try:
            return await self._response.content.readany()
        except aiohttp.ServerTimeoutError as exc:
            raise UpstreamTimeout(f"upstream sent nothing in time: {exc}") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise UpstreamError(f"upstream broke the response: {exc!r}") from None

    def close(self) -> None:
        if self._response.content.is_eof():
            self._response.release()  # back to the pool
        else:
            self._response.close()  # abort: the upstream sees the hang-up


class AiohttpPool:
    def __init__(
        self, *, connect_timeout: float, read_timeout: float, max_idle: int, idle_expiry: float
    ) -> None:
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=connect_timeout, sock_read=read_timeout
        )
        self._idle_expiry = idle_expiry
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=0, keepalive_timeout=self._idle_expiry, ttl_dns_cache=None
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
        )
        return self._session

    async def request(
        self,
        method: str,
        base: str,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        body: bytes | AsyncIterator[bytes],
    ) -> AiohttpResponse:
        session = self._session or self._open()
        url = yarl.URL(base.rstrip("/") + target.decode("latin-1"), encoded=True)
        try:
            response = await session.request(
                method,
                url,
                headers=[(n.decode("latin-1"), v.decode("latin-1")) for n, v in headers],
                data=body,
                allow_redirects=False,
            )
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise UpstreamTimeout(f"the upstream did not answer in time: {exc!r}") from None
        except aiohttp.ClientConnectorError as exc:
            raise ConnectFailed(f"cannot connect to {base}: {exc.strerror or exc}") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise UpstreamError(f"upstream broke the exchange: {exc!r}") from None
        if not 100 <= response.status <= 599:
            response.close()
            raise UpstreamError(f"upstream answered with status {response.status}")
        return AiohttpResponse(response)

    def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            asyncio.get_running_loop().create_task(session.close())


def main() -> None:
    """``library_clients.py CLIENT [frontdoor args]`` runs the frontdoor with CLIENT;
    ``library_clients.py CLIENT --conformance`` runs the upstream conformance test with it."""
    import frontdoor.core

    clients = {"aiohttp": AiohttpPool}
    setattr(frontdoor.core, "Pool", clients[sys.argv[1]])  # noqa: B010 (a stand-in, on purpose)
    del sys.argv[1]
    if sys.argv[1:] == ["--conformance"]:
        import pytest

        tests = Path(__file__).resolve().parents[2] / "images/frontdoor/tests"
        sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", str(tests / CONFORMANCE)]))
    from frontdoor.__main__ import main as frontdoor_main

    frontdoor_main()


CONFORMANCE = "test_frontdoor_upstream_conformance.py"

if __name__ == "__main__":
    main()

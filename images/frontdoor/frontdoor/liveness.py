"""Liveness by real tokens: when the frontdoor last relayed one, and how long the oldest active
generation has been silent. The orchestrator's watchdog reads it (``GET /admin/liveness``): while
generations flow, that flow proves the model alive and no probe is needed.

Cost. Per streamed event the relay does one thing: ``exchange.last_relay = monotonic()`` (one
store, no container touched). Per generation it adds and removes the exchange from a set. The
figures are computed only when asked, by walking the active set (at most the cap, plus held
ones). Everything runs on the event loop: no locks.

A "token" is any body bytes of a 2xx generation response: an SSE event, or a whole non-streamed
answer. Error answers do not count (vLLM's API server answers 400s while its engine is stopped).
"""

from __future__ import annotations

import time
from typing import Protocol


class Tracked(Protocol):
    """What the relay's ``Exchange`` offers (its fields, not a copy)."""

    admitted_at: float  # set by ``begin``
    status: int
    last_relay: float  # 0.0 until the first body bytes are relayed


class Liveness:
    def __init__(self) -> None:
        self._active: set[Tracked] = set()
        self._last_done = 0.0  # the last token of a generation that has finished

    def begin(self, exchange: Tracked) -> None:
        """A generation was admitted (it now counts against the cap)."""
        exchange.admitted_at = time.monotonic()
        self._active.add(exchange)

    def end(self, exchange: Tracked) -> None:
        """It finished, failed or was cancelled; its last token is kept if it had one."""
        self._active.discard(exchange)
        if _counts(exchange) and exchange.last_relay > self._last_done:
            self._last_done = exchange.last_relay

    def snapshot(self, now: float | None = None) -> dict[str, float | int | None]:
        now = time.monotonic() if now is None else now
        last = self._last_done
        oldest: Tracked | None = None
        for exchange in self._active:
            if _counts(exchange) and exchange.last_relay > last:
                last = exchange.last_relay
            if oldest is None or exchange.admitted_at < oldest.admitted_at:
                oldest = exchange
        oldest_silent = None
        if oldest is not None:
            heard = oldest.last_relay if _counts(oldest) else 0.0
            oldest_silent = now - max(heard, oldest.admitted_at)
        return {
            "active_generations": len(self._active),
            "last_token_age_s": None if last == 0.0 else round(now - last, 3),
            "oldest_active_age_s": None if oldest is None else round(now - oldest.admitted_at, 3),
            "oldest_active_silent_s": None if oldest_silent is None else round(oldest_silent, 3),
        }


def _counts(exchange: Tracked) -> bool:
    return 200 <= exchange.status < 300 and exchange.last_relay > 0.0

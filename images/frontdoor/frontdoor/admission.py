"""Who may generate now: the cap, the FIFO queue, and the hold during a switch or pause.

Concurrency model. Everything here runs on the one event loop, and every method that changes
state is synchronous, so "check, then act" inside one method cannot interleave with another
request. That is the whole locking story; keep it that way (no ``await`` inside a mutation).

The gate is *open* when the route is ``serving`` and the admin has not paused us. A generation is
granted a place only when the gate is open and ``active < cap``; otherwise it waits in FIFO
order. Dangers this design handles, each noted where it is handled:

* the route flips to ``switching`` while requests are queued: they must not be admitted to the
  old upstream during its drain (the gate closes, so ``_pump`` admits nobody) and their deadline
  becomes the switch hold rather than the queue timeout;
* the route goes ``down``/``faulted``: queued and held requests are refused at once with 503;
* the cap is lowered while more than the new cap are active: nobody is cut off, and nobody is
  admitted until ``active`` falls below the new cap;
* a queued client disconnects: its waiter leaves the queue (``acquire`` is cancelled);
* a waiter is granted a place in the same loop turn as it is cancelled: the place is given back.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from .errors import Refusal, unavailable

_CLOSED_STATES = ("down", "faulted")


@dataclass(eq=False)
class _Waiter:
    future: asyncio.Future[None]
    deadline: float
    enqueued: float = field(default_factory=time.monotonic)
    timer: asyncio.TimerHandle | None = None


class Admission:
    def __init__(self, cap: int, queue_timeout_s: float, hold_s: float) -> None:
        self.cap = cap
        self.queue_timeout_s = queue_timeout_s
        self.hold_s = hold_s
        self.active = 0
        self.total = 0
        self.state = "down"
        self.reason: str | None = None
        self.paused = False
        self._waiters: deque[_Waiter] = deque()
        self._watchers: list[asyncio.Future[None]] = []
        # Mean generation duration (EWMA), for the Retry-After estimate.
        self._mean_duration_s = 5.0

    @property
    def queued(self) -> int:
        return sum(1 for w in self._waiters if not w.future.done())

    @property
    def open(self) -> bool:
        return self.state == "serving" and not self.paused

    # -- configuration (admin API / route changes) ---------------------------------------

    def configure(
        self,
        *,
        state: str,
        reason: str | None,
        cap: int,
        queue_timeout_s: float,
        hold_s: float,
        paused: bool,
    ) -> None:
        was_open = self.open
        self.state, self.reason, self.paused = state, reason, paused
        self.cap, self.queue_timeout_s, self.hold_s = cap, queue_timeout_s, hold_s
        now = time.monotonic()
        if state in _CLOSED_STATES:
            # Down or faulted: nothing will be served soon; refuse everyone waiting now rather
            # than letting them sit out their hold.
            while self._waiters:
                w = self._waiters.popleft()
                if not w.future.done():
                    w.future.set_exception(self._closed_refusal())
            self._notify()
            return
        if was_open and not self.open:
            # A switch or pause began: queued requests are now held, bounded by the hold.
            for w in self._waiters:
                w.deadline = max(w.deadline, now + hold_s)
        elif self.open and not was_open:
            # Reopened: held requests that cannot get a place at once wait like queued ones.
            for w in self._waiters:
                w.deadline = max(w.deadline, now + queue_timeout_s)
        self._pump()
        self._notify()

    # -- the request side -----------------------------------------------------------------

    def refuse_if_closed(self) -> None:
        if self.state in _CLOSED_STATES:
            raise self._closed_refusal()

    async def acquire(self) -> float:
        """Wait for a place; returns the seconds waited. Raises ``Refusal`` (503)."""
        self.total += 1
        self.refuse_if_closed()
        if self.open and self.active < self.cap and not self._waiters:
            self._grant()
            return 0.0
        if self.open and self.queue_timeout_s <= 0:
            raise self._timeout_refusal()
        now = time.monotonic()
        loop = asyncio.get_running_loop()
        waiter = _Waiter(
            loop.create_future(),
            now + (self.queue_timeout_s if self.open else self.hold_s),
            now,
        )

        def expire() -> None:
            # The deadline may have moved (a switch began or ended) since this timer was armed.
            if waiter.future.done():
                return
            remaining = waiter.deadline - time.monotonic()
            if remaining > 0:
                waiter.timer = loop.call_later(remaining, expire)
                return
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)
            waiter.future.set_exception(self._timeout_refusal())
            self._notify()

        waiter.timer = loop.call_later(waiter.deadline - now, expire)
        self._waiters.append(waiter)
        self._notify()
        try:
            # Await the bare future (no wait_for/shield): a cancellation then always reaches us,
            # even when it races a grant, and the except below gives the place back.
            await waiter.future
            return time.monotonic() - waiter.enqueued
        except BaseException:
            future = waiter.future
            if future.done() and not future.cancelled() and future.exception() is None:
                self.release(0.0)  # granted in the same turn as we gave up: give it back
            else:
                future.cancel()
                with contextlib.suppress(ValueError):  # already popped by a refusal
                    self._waiters.remove(waiter)
                self._notify()
            raise
        finally:
            if waiter.timer is not None:
                waiter.timer.cancel()

    def release(self, duration_s: float) -> None:
        self.active -= 1
        if duration_s > 0:
            self._mean_duration_s += 0.2 * (duration_s - self._mean_duration_s)
        self._pump()
        self._notify()

    async def wait_idle(self, timeout_s: float) -> bool:
        """For the orchestrator's drain: True once no generation is active."""
        return await self.wait_until(lambda: self.active == 0, timeout_s)

    async def wait_until(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        """Wait, without polling, until ``predicate()`` holds or ``timeout_s`` runs out."""
        deadline = time.monotonic() + timeout_s
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            changed = asyncio.get_running_loop().create_future()
            self._watchers.append(changed)
            try:
                await asyncio.wait_for(changed, remaining)
            except TimeoutError:
                return predicate()
        return True

    def retry_after(self) -> int:
        """Seconds until a place is likely free, from the current load."""
        if self.state in _CLOSED_STATES:
            return 30 if self.state == "down" else 60
        if not self.open:
            return max(1, min(60, math.ceil(self.hold_s) or 5))
        backlog = self.queued + max(0, self.active - self.cap + 1)
        estimate = self._mean_duration_s * backlog / max(1, self.cap)
        return max(1, min(120, math.ceil(estimate)))

    # -- internals ------------------------------------------------------------------------

    def _grant(self) -> None:
        self.active += 1
        self._notify()

    def _notify(self) -> None:
        if self._watchers:
            watchers, self._watchers = self._watchers, []
            for changed in watchers:
                if not changed.done():
                    changed.set_result(None)

    def _pump(self) -> None:
        # Admit waiters in FIFO order while the gate is open and a place is free. A lowered cap
        # simply means this loop admits nobody until enough active generations have finished.
        while self.open and self.active < self.cap and self._waiters:
            w = self._waiters.popleft()
            if w.future.done():
                continue
            w.future.set_result(None)
            self._grant()

    def _timeout_refusal(self) -> Refusal:
        if self.open:
            return unavailable(
                "queue_timeout",
                f"all {self.cap} generation slots are busy and the queue wait "
                f"({self.queue_timeout_s:g}s) ran out; retry later",
                self.retry_after(),
            )
        if self.paused:
            return unavailable(
                "paused", "generations are paused by the operator; retry later", self.retry_after()
            )
        return unavailable(
            "switching",
            "the model is being switched"
            + (f" ({self.reason})" if self.reason else "")
            + "; retry later",
            self.retry_after(),
        )

    def _closed_refusal(self) -> Refusal:
        return unavailable(
            self.state,
            f"the model is {self.state}: {self.reason or 'no reason given'}",
            self.retry_after(),
        )

"""Who may generate now: the cap, the bounded FIFO queue, and the hold during a switch or pause.

One owner per piece of state. The route (state, reason, cap, timeouts, queue depth) and the pause
flag belong to ``core.Frontdoor``; admission *reads* them through the ``Gate`` protocol every time
it decides, and keeps no copy. What admission owns is its own bookkeeping: the active count, the
waiters and the bytes their bodies hold. After the owner swaps the route it calls
``changed(was_open)`` so waiters' deadlines follow and the queue is pumped.

Concurrency model. Everything here runs on the one event loop, and every method that changes
state is synchronous, so "check, then act" inside one method cannot interleave with another
request. That is the whole locking story; keep it that way (no ``await`` inside a mutation).

The gate is *open* when the route is ``serving`` and the admin has not paused us. A generation is
granted a place only when the gate is open and ``active < cap``; otherwise it waits in FIFO
order. Dangers this design handles, each noted where it is handled:

* the route flips to ``switching`` while requests are queued: they must not be admitted to the
  old upstream during its drain (the gate closes, so ``_pump`` admits nobody) and their deadline
  becomes the switch hold rather than the queue timeout;
* a waiter is granted and, before its task runs, the route changes to one with no upstream
  (same loop turn): the grant is checked against the route in force when the task resumes, and
  given back (the waiter is held again) if the gate has closed meanwhile;
* the route goes ``down``/``faulted``: queued and held requests are refused at once with 503;
* the cap is lowered while more than the new cap are active: nobody is cut off, and nobody is
  admitted until ``active`` falls below the new cap;
* the queue is full (depth or bytes held by queued bodies): 503 ``queue_full`` at once;
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
from typing import Protocol

from .errors import Refusal, unavailable
from .route import Route

_CLOSED_STATES = ("down", "faulted")


class Gate(Protocol):
    """The state admission reads and never stores: the route in force and the pause flag."""

    @property
    def route(self) -> Route: ...

    @property
    def paused(self) -> bool: ...


@dataclass(eq=False)
class _Waiter:
    future: asyncio.Future[None]
    deadline: float
    body_bytes: int
    enqueued: float = field(default_factory=time.monotonic)
    timer: asyncio.TimerHandle | None = None


class Admission:
    def __init__(self, gate: Gate, max_queued_body_bytes: int) -> None:
        self._gate = gate
        self.max_queued_body_bytes = max_queued_body_bytes
        self.active = 0
        self.total = 0
        self.queued_bytes = 0
        self._waiters: deque[_Waiter] = deque()
        self._watchers: list[asyncio.Future[None]] = []
        # Mean generation duration (EWMA), for the Retry-After estimate.
        self._mean_duration_s = 5.0

    # -- reads of the route in force (never cached) ----------------------------------------

    @property
    def state(self) -> str:
        return self._gate.route.state

    @property
    def cap(self) -> int:
        return self._gate.route.limits.max_active_generations

    @property
    def queue_timeout_s(self) -> float:
        return self._gate.route.limits.queue_timeout_s

    @property
    def hold_s(self) -> float:
        return self._gate.route.switch_hold_s

    @property
    def queued(self) -> int:
        return sum(1 for w in self._waiters if not w.future.done())

    @property
    def open(self) -> bool:
        return self._gate.route.state == "serving" and not self._gate.paused

    # -- the owner tells us the route or pause flag changed --------------------------------

    def changed(self, was_open: bool) -> None:
        """Follow a route or pause change the owner has just applied (synchronously)."""
        now = time.monotonic()
        if self.state in _CLOSED_STATES:
            # Down or faulted: nothing will be served soon; refuse everyone waiting now rather
            # than letting them sit out their hold.
            while self._waiters:
                w = self._waiters.popleft()
                self.queued_bytes -= w.body_bytes
                if not w.future.done():
                    w.future.set_exception(self._closed_refusal())
            self._notify()
            return
        if was_open and not self.open:
            # A switch or pause began: queued requests are now held, bounded by the hold.
            for w in self._waiters:
                w.deadline = max(w.deadline, now + self.hold_s)
        elif self.open and not was_open:
            # Reopened: held requests that cannot get a place at once wait like queued ones.
            for w in self._waiters:
                w.deadline = max(w.deadline, now + self.queue_timeout_s)
        self._pump()
        self._notify()

    # -- the request side -----------------------------------------------------------------

    def refuse_if_closed(self) -> None:
        if self.state in _CLOSED_STATES:
            raise self._closed_refusal()

    async def acquire(self, body_bytes: int = 0, *, hold: bool = True) -> float:
        """Wait for a place; returns the seconds waited. Raises ``Refusal`` (503).

        With ``hold=False`` (``X-Model-Slot-Hold: 0``, what a router in front sends) nothing
        waits: a generation that cannot have a place at once is refused at once, so the router
        can send it to another host instead of waiting out a switch here.

        On return the gate is open (the route in force is ``serving``) and the caller holds a
        place: read ``route`` *before the next await* and it is the route that admitted you.
        """
        self.total += 1
        self.refuse_if_closed()
        if self.open and self.active < self.cap and not self._waiters:
            self._grant()
            return 0.0
        if not hold:
            raise self._no_wait_refusal()
        if self.open and self.queue_timeout_s <= 0:
            raise self._timeout_refusal()
        self._refuse_if_queue_full(body_bytes)
        start = time.monotonic()
        deadline = start + (self.queue_timeout_s if self.open else self.hold_s)
        while True:
            await self._wait(deadline, body_bytes)
            if self.open:
                return time.monotonic() - start
            # Granted, but the route changed before this task ran (same loop turn): the place
            # was given for a route no longer in force. Give it back and be held again.
            self.release(0.0)
            self.refuse_if_closed()
            deadline = max(deadline, time.monotonic() + self.hold_s)

    async def _wait(self, deadline: float, body_bytes: int) -> None:
        loop = asyncio.get_running_loop()
        waiter = _Waiter(loop.create_future(), deadline, body_bytes)

        def expire() -> None:
            # The deadline may have moved (a switch began or ended) since this timer was armed.
            if waiter.future.done():
                return
            remaining = waiter.deadline - time.monotonic()
            if remaining > 0:
                waiter.timer = loop.call_later(remaining, expire)
                return
            self._drop(waiter)
            waiter.future.set_exception(self._timeout_refusal())
            self._notify()

        waiter.timer = loop.call_later(max(0.0, waiter.deadline - time.monotonic()), expire)
        self._waiters.append(waiter)
        self.queued_bytes += body_bytes
        self._notify()
        try:
            # Await the bare future (no wait_for/shield): a cancellation then always reaches us,
            # even when it races a grant, and the except below gives the place back.
            await waiter.future
        except BaseException:
            future = waiter.future
            if future.done() and not future.cancelled() and future.exception() is None:
                self.release(0.0)  # granted in the same turn as we gave up: give it back
            else:
                future.cancel()
                self._drop(waiter)
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

    async def hold_while_switching(self, *, hold: bool = True) -> None:
        """For requests that are not generations: wait (up to the hold) while the route is
        ``switching``; raise a 503 ``Refusal`` when it is, or becomes, ``down``/``faulted``, or
        is still switching when the hold runs out (at once with ``hold=False``). Returns only
        when the route is ``serving``."""
        self.refuse_if_closed()
        if self.state == "switching":
            if not hold:
                raise self._switching_refusal()
            await self.wait_until(lambda: self.state != "switching", self.hold_s)
            self.refuse_if_closed()
            if self.state != "serving":
                raise self._switching_refusal()

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

    def not_ready(self) -> Refusal | None:
        """Why a generation could not start now, or None when the gate is open (readiness)."""
        if self.open:
            return None
        return self._timeout_refusal()

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

    def _drop(self, waiter: _Waiter) -> None:
        with contextlib.suppress(ValueError):  # already popped by a grant or a refusal
            self._waiters.remove(waiter)
            self.queued_bytes -= waiter.body_bytes

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
            self.queued_bytes -= w.body_bytes
            if w.future.done():
                continue
            w.future.set_result(None)
            self._grant()

    def _refuse_if_queue_full(self, body_bytes: int) -> None:
        depth = self._gate.route.limits.max_queued_generations
        if self.queued >= depth:
            raise unavailable(
                "queue_full",
                f"the generation queue is full ({depth} waiting, max_queued_generations / "
                "FRONTDOOR_MAX_QUEUED_GENERATIONS); retry later",
                self.retry_after(),
            )
        if self.queued_bytes + body_bytes > self.max_queued_body_bytes:
            raise unavailable(
                "queue_full",
                f"queued request bodies already hold {self.queued_bytes} bytes "
                f"(FRONTDOOR_MAX_QUEUED_BODY_BYTES={self.max_queued_body_bytes}); retry later",
                self.retry_after(),
            )

    def _no_wait_refusal(self) -> Refusal:
        if not self.open:
            return self._timeout_refusal()
        return unavailable(
            "busy",
            f"all {self.cap} generation slots are busy and the request asked not to wait "
            "(X-Model-Slot-Hold: 0); retry later or elsewhere",
            self.retry_after(),
        )

    def _timeout_refusal(self) -> Refusal:
        if self.open:
            return unavailable(
                "queue_timeout",
                f"all {self.cap} generation slots are busy and the queue wait "
                f"({self.queue_timeout_s:g}s) ran out; retry later",
                self.retry_after(),
            )
        if self._gate.paused and self.state == "serving":
            return unavailable(
                "paused", "generations are paused by the operator; retry later", self.retry_after()
            )
        if self.state in _CLOSED_STATES:
            return self._closed_refusal()
        return self._switching_refusal()

    def _switching_refusal(self) -> Refusal:
        reason = self._gate.route.reason
        return unavailable(
            "switching",
            "the model is being switched" + (f" ({reason})" if reason else "") + "; retry later",
            self.retry_after(),
        )

    def _closed_refusal(self) -> Refusal:
        return unavailable(
            self.state,
            f"the model is {self.state}: {self._gate.route.reason or 'no reason given'}",
            self.retry_after(),
        )


class RelayLimit:
    """Concurrent relays that are not generations (``/v1/models``, ``/tokenize``, ...): each
    holds a task and two sockets, so they are bounded too (FRONTDOOR_MAX_ACTIVE_RELAYS)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0

    def enter(self) -> None:
        if self.active >= self.limit:
            raise unavailable(
                "too_many_requests",
                f"{self.limit} non-generation requests are already being relayed "
                "(FRONTDOOR_MAX_ACTIVE_RELAYS); retry shortly",
                1,
            )
        self.active += 1

    def leave(self) -> None:
        self.active -= 1

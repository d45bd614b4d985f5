"""The frontdoor's state, in one place: settings, the route, admission, metrics, the upstream pool.

One ``Frontdoor`` lives per process and is the one owner of the route and the pause flag. The
admin API is their only writer; it calls ``set_route``/``set_paused``, which swap them and tell
``Admission`` synchronously (no await between). Admission keeps no copy: it reads the route in
force through this object each time it decides, so no request ever sees a half-applied route.
The route is persisted after it is applied: a full disk must not keep a new model from serving.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from urllib.parse import urlsplit

from . import route as route_mod
from .admission import Admission, RelayLimit
from .board import BoardKeeper
from .liveness import Liveness
from .metrics import Metrics
from .route import Route
from .settings import Settings
from .upstream import Pool
from .watchdog_report import WatchdogReport

log = logging.getLogger("frontdoor")


class Frontdoor:
    def __init__(
        self, settings: Settings, route: Route | None = None, origin: str | None = None
    ) -> None:
        self.settings = settings
        if route is None:
            route, origin = route_mod.initial(settings)
        self.route: Route = route
        self.route_origin = origin or "given"
        self.paused = False
        self.persist_error: str | None = None
        self.started_at = route_mod.now_iso()
        self.started_monotonic = time.monotonic()
        self.metrics = Metrics()
        self.liveness = Liveness()  # liveness.py: tokens relayed, for the watchdog
        self.watchdog: WatchdogReport | None = None  # what the orchestrator last reported
        self.watchdog_received: float | None = None  # when it arrived (monotonic)
        # What the orchestrator publishes for the operator's page (dashboard.py).
        self.board = BoardKeeper(settings.state_dir / "board.json" if settings.state_dir else None)
        # The route and the pause flag are ours alone; admission reads them through ``self``.
        self.admission = Admission(self, settings.max_queued_body_bytes)
        self.relays = RelayLimit(settings.max_active_relays)
        self._pool: Pool | None = None

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def pool(self) -> Pool:
        """Upstream connections, reused across requests (created on first use, on our loop)."""
        if self._pool is None:
            s = self.settings
            self._pool = Pool(
                connect_timeout=s.connect_timeout_s,
                # The read timeout bounds the silence between two upstream reads, not the whole
                # generation: long generations stream for minutes and that is fine.
                read_timeout=s.backend_timeout_s,
                # Enough idle connections to serve the cap at once without reconnecting.
                max_idle=max(32, 2 * self.route.limits.max_active_generations),
                # Below vLLM's (uvicorn's) 5 s idle close, so we rarely pick a socket it closes.
                idle_expiry=4.0,
            )
        return self._pool

    async def aclose(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    # -- the admin side -------------------------------------------------------------------

    def set_route(self, new: Route) -> None:
        """Apply a route at once, then persist it. Raises ``OSError`` if it could not be saved
        (the route is applied regardless: serving matters more than the file)."""
        self._swap(new)
        self.route_origin = "admin API"
        path = self.settings.route_file
        if path is None:
            return
        try:
            route_mod.save(path, new)
            self.persist_error = None
        except OSError as exc:
            self.persist_error = f"could not persist the route to {path}: {exc}"
            log.error("%s", self.persist_error)
            raise

    async def confirm_restored_route(self, interval_s: float = 1.0) -> None:
        """Serve a route restored from disk only once its upstream answers.

        After a reboot the restored route still says ``serving``, but the model container it
        names may not exist yet: the orchestrator is about to create it. Answering 502 from that
        stale route would be wrong, so until the upstream accepts a TCP connection the route is
        ``switching`` in memory (never persisted): generations are held as during a switch, and
        ``/status`` says why. When the model is up (a frontdoor restart) that lasts one local
        connect. An admin ``PUT`` ends the wait at once (the orchestrator knows better);
        otherwise the restored route comes back as soon as its upstream answers.
        """
        restored = self.route
        if not self.route_origin.startswith("restored") or restored.state != "serving":
            return
        waiting = restored.model_copy(
            update={
                "state": "switching",
                "upstream": None,
                "reason": f"restored route: waiting for {restored.upstream} to answer, "
                "or for the orchestrator to set the route",
            }
        )
        self._swap(waiting)
        announced = False
        # Route changes happen on this loop only, so identity tells whether the admin API
        # replaced the route meanwhile.
        while self.route is waiting:
            if await _accepts(restored.upstream_base, interval_s):
                if self.route is waiting:
                    self._swap(restored)
                    if announced:
                        log.warning("restored route: %s answers; serving it", restored.upstream)
                return
            if not announced:
                log.warning("%s", waiting.reason)
                announced = True
            await asyncio.sleep(interval_s)  # the re-probe cadence

    def set_paused(self, paused: bool) -> None:
        was_open = self.admission.open
        self.paused = paused
        self.admission.changed(was_open)

    def _swap(self, route: Route) -> None:
        # Synchronous, no await: no request sees the new route before admission has followed.
        was_open = self.admission.open
        self.route = route
        self.admission.changed(was_open)

    # -- the request side -----------------------------------------------------------------

    def authorized(self, headers: list[tuple[bytes, bytes]]) -> bool:
        keys = self.settings.api_keys
        if not keys:
            return True
        offered: bytes | None = None
        for name, value in headers:
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                offered = value[7:].strip()
            elif name == b"x-api-key" and offered is None:
                offered = value.strip()
        if offered is None:
            return False
        ok = False
        for key in keys:  # compare against every key so timing does not reveal which matched
            ok |= hmac.compare_digest(offered, key.encode())
        return ok


async def _accepts(base: str, timeout_s: float) -> bool:
    """Whether ``base`` (``http://host:port``) accepts a TCP connection within ``timeout_s``."""
    url = urlsplit(base)
    try:
        async with asyncio.timeout(timeout_s):
            _, writer = await asyncio.open_connection(url.hostname, url.port or 80)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True

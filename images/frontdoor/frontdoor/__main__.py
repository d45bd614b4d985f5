"""``python -m frontdoor``: the public app on FRONTDOOR_HOST:FRONTDOOR_PORT and the admin app on
FRONTDOOR_ADMIN_HOST:FRONTDOOR_ADMIN_PORT, one process, one uvloop event loop."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

import uvloop

from .core import Frontdoor
from .server import Servers, bind
from .settings import Settings, SettingsError

log = logging.getLogger("frontdoor")


async def _run(settings: Settings) -> None:
    public, admin = (
        bind(settings.host, settings.port),
        bind(settings.admin_host, settings.admin_port),
    )
    # With port 0 the kernel picks; report the real ports (tests and scripts read this line).
    settings = settings.model_copy(
        update={"port": public.getsockname()[1], "admin_port": admin.getsockname()[1]}
    )
    fd = Frontdoor(settings)
    servers = Servers(fd, public, admin)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        # Stop accepting, let in-flight responses finish (bounded by uvicorn's graceful timeout).
        loop.add_signal_handler(sig, servers.stop)
    log.info(
        "frontdoor listening on %s:%d (admin %s:%d); route %s from %s",
        settings.host,
        settings.port,
        settings.admin_host,
        settings.admin_port,
        fd.route.state,
        fd.route_origin,
    )
    await servers.serve()


def main() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = Settings.from_env()
    except (SettingsError, ValueError) as exc:
        print(f"frontdoor: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if not settings.admin_token:
        log.warning("no FRONTDOOR_ADMIN_TOKEN(_FILE): the admin API will refuse every call")
    try:
        uvloop.run(_run(settings))
    except OSError as exc:
        print(f"frontdoor: cannot start: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()

"""The frontdoor's admin API as the orchestrator uses it (docs/CONTRACTS.md).

Configured by ``MODEL_SLOT_FRONTDOOR_ADMIN_URL`` (e.g. ``http://frontdoor:8001``) and a token from
``MODEL_SLOT_ADMIN_TOKEN`` or the file named by ``MODEL_SLOT_ADMIN_TOKEN_FILE``. With no URL there
is no frontdoor: ``from_env`` returns None and a switch says the frontdoor was skipped.

Every failure is a FrontdoorError that says which call, where, and what came back.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any, Literal

import httpx

from orchestrator.errors import FrontdoorError
from orchestrator.profiles.store import Profile

RouteState = Literal["serving", "switching", "down", "faulted"]


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def build_route(
    state: RouteState,
    *,
    upstream: str | None,
    profile: Profile | None,
    reason: str | None = None,
    facts: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A ``Route`` body for ``PUT /admin/route``: the profile's limits and metadata when known."""
    route: dict[str, Any] = {
        "upstream": upstream,
        "state": state,
        "reason": reason,
        "startup_facts": facts or {},
        "updated_at": now_iso(),
    }
    if profile is not None:
        route["switch_hold_s"] = float(profile.get("FRONTDOOR_SWITCH_HOLD_S") or 30)
        route["profile"] = profile.metadata()
        route["limits"] = profile.frontdoor_limits()
    return route


class FrontdoorClient:
    def __init__(self, base_url: str, token: str, timeout_s: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._timeout = timeout_s

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> FrontdoorClient | None:
        env = dict(os.environ) if environ is None else environ
        url = env.get("MODEL_SLOT_FRONTDOOR_ADMIN_URL", "").strip()
        if not url:
            return None
        token = env.get("MODEL_SLOT_ADMIN_TOKEN", "").strip()
        token_file = env.get("MODEL_SLOT_ADMIN_TOKEN_FILE", "").strip()
        if not token and token_file:
            try:
                with open(token_file, encoding="utf-8") as fh:
                    token = fh.read().strip()
            except OSError as exc:
                raise FrontdoorError(
                    f"MODEL_SLOT_ADMIN_TOKEN_FILE={token_file}: cannot read the admin token: {exc}"
                ) from None
        if not token:
            raise FrontdoorError(
                f"MODEL_SLOT_FRONTDOOR_ADMIN_URL={url} is set but no admin token is: set "
                "MODEL_SLOT_ADMIN_TOKEN or MODEL_SLOT_ADMIN_TOKEN_FILE (the frontdoor's "
                "FRONTDOOR_ADMIN_TOKEN)"
            )
        return cls(url, token)

    def _call(
        self, method: str, path: str, body: dict[str, Any] | None = None, timeout: float = 0
    ) -> dict[str, Any]:
        url = self.base_url + path
        try:
            response = httpx.request(
                method,
                url,
                json=body,
                headers={"Authorization": f"Bearer {self._token}"},
                timeout=timeout or self._timeout,
            )
        except httpx.HTTPError as exc:
            raise FrontdoorError(f"frontdoor admin {method} {url}: {exc!r}") from None
        if response.status_code >= 400:
            raise FrontdoorError(
                f"frontdoor admin {method} {url}: HTTP {response.status_code}: "
                f"{response.text[:500]}"
            )
        try:
            result = response.json()
        except ValueError:
            raise FrontdoorError(
                f"frontdoor admin {method} {url}: not JSON: {response.text[:200]}"
            ) from None
        return result if isinstance(result, dict) else {"result": result}

    def get_route(self) -> dict[str, Any]:
        return self._call("GET", "/admin/route")

    def put_route(self, route: dict[str, Any]) -> dict[str, Any]:
        return self._call("PUT", "/admin/route", route)

    def put_board(self, board: dict[str, Any]) -> dict[str, Any]:
        """The operator page's board (control/publish.py)."""
        return self._call("PUT", "/admin/board", board)

    def put_phase(self, phase: dict[str, Any], timeout_s: float = 2.0) -> dict[str, Any]:
        """The running operation's phase, for the operator page (short timeout: a switch must
        not wait on a page)."""
        return self._call("PUT", "/admin/board/phase", phase, timeout=timeout_s)

    def drain(self, timeout_s: float) -> dict[str, Any]:
        """Wait (on the frontdoor) until active generations reach 0 or ``timeout_s`` passes."""
        return self._call("POST", "/admin/drain", {"timeout_s": timeout_s}, timeout=timeout_s + 10)

    def pause(self) -> dict[str, Any]:
        return self._call("POST", "/admin/pause")

    def resume(self) -> dict[str, Any]:
        return self._call("POST", "/admin/resume")

    def liveness(self) -> dict[str, Any]:
        """``GET /admin/liveness``: tokens relayed and the oldest active generation's silence."""
        return self._call("GET", "/admin/liveness", timeout=5)

    def put_watchdog(self, report: dict[str, Any]) -> dict[str, Any]:
        """``PUT /admin/watchdog``: the watchdog's view and device telemetry, for display."""
        return self._call("PUT", "/admin/watchdog", report, timeout=5)

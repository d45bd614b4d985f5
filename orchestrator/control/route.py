"""The route the frontdoor gets, derived from the slot's state, and what sending it did.

``route_for`` is the only place a route body is chosen: every phase maps to one route state
(docs/slot.md has the table). ``RouteResult`` is what a send returns; control flow reads its
``acked``, never its text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orchestrator.control.frontdoor_client import RouteState, build_route
from orchestrator.control.state import Phase, SlotState
from orchestrator.profiles.store import Profile

#: The route state the frontdoor serves in each phase of the slot.
ROUTE_STATE: dict[Phase, RouteState] = {
    Phase.EMPTY: "down",
    Phase.STARTING: "switching",
    Phase.SERVING: "serving",
    Phase.SWITCHING: "switching",
    Phase.STOPPING: "switching",
    Phase.STOPPED: "down",
    Phase.DOWN: "down",
    Phase.FAULTED: "faulted",
    Phase.FAILED: "down",
}


@dataclass(frozen=True)
class RouteResult:
    """One route sent (or not) to the frontdoor."""

    state: RouteState
    acked: bool  # the frontdoor answered 2xx, or there is no frontdoor to tell
    where: str | None  # the admin URL; None when no frontdoor is configured
    error: str | None = None

    @property
    def text(self) -> str:
        if self.where is None:
            return "skipped (MODEL_SLOT_FRONTDOOR_ADMIN_URL not set)"
        if self.acked:
            return f"route {self.state} at {self.where}"
        return f"route {self.state} not acknowledged by {self.where}: {self.error}"


def route_for(
    state: SlotState, current: Profile | None, target: Profile | None = None
) -> dict[str, Any]:
    """The route body for ``state``. ``current``/``target`` are its profiles, loaded."""
    route_state = ROUTE_STATE[state.phase]
    profile = current
    upstream: str | None = None
    if state.phase in (Phase.SERVING, Phase.SWITCHING, Phase.STOPPING):
        upstream = state.upstream  # the running model, while it runs
    if state.phase is Phase.SWITCHING and profile is None:
        profile = target
    if state.phase in (Phase.STOPPED, Phase.FAILED, Phase.EMPTY):
        profile = None
    reason = state.reason
    if reason is None and route_state != "serving":
        reason = "no model"
    return build_route(
        route_state, upstream=upstream, profile=profile, reason=reason, facts=state.facts
    )

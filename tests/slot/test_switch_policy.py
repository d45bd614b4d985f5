"""The switch policy against a fake mechanism and the real frontdoor (no Docker, no vLLM)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.config import Paths
from orchestrator.control.frontdoor_client import FrontdoorClient
from orchestrator.control.state import StateStore
from orchestrator.control.switch import Switcher
from orchestrator.errors import FrontdoorError, PreflightError, SwitchFailedError
from orchestrator.profiles.store import ProfileStore
from orchestrator.progress import ProgressEvent
from orchestrator.slot.protocol import OnStep
from tests.slot.conftest import Frontdoor
from tests.slot.fakes import FakeSlot

SWITCH_PHASES = [
    "lock", "resolve", "preflight", "switching", "drain", "stop",
    "create", "ready", "facts", "flip", "persist",
]  # fmt: skip


def make_switcher(
    tmp_path: Path, profiles_dir: Path, fake: FakeSlot, frontdoor: FrontdoorClient | None
) -> Switcher:
    paths = Paths(profiles_dir, tmp_path / "state", tmp_path / "models")
    return Switcher(
        ProfileStore(profiles_dir),
        fake,
        state=StateStore(paths.state_dir),
        frontdoor=frontdoor,
        paths=paths,
        drain_timeout_s=1,
    )


def test_switch_runs_the_phases_in_order_and_flips_the_route(
    tmp_path: Path, profiles_dir: Path, frontdoor: Frontdoor
) -> None:
    seen_during_stop: list[str] = []

    class Watching(FakeSlot):
        def stop(self, grace_s: float, on_step: OnStep | None = None) -> list[str]:
            seen_during_stop.append(frontdoor.route()["state"])
            return super().stop(grace_s, on_step)

    fake = Watching()
    switcher = make_switcher(tmp_path, profiles_dir, fake, frontdoor.client())
    events: list[ProgressEvent] = []
    switcher.switch("cpu-smollm2-135m", progress=events.append)
    report = switcher.switch("cpu-tiny", progress=events.append)

    assert report.outcome == "switched"
    assert report.previous == "cpu-smollm2-135m"
    assert [phase["name"] for phase in report.phases] == SWITCH_PHASES
    assert seen_during_stop == ["switching", "switching"]  # clients were held, not misrouted
    route = frontdoor.route()
    assert route["state"] == "serving"
    assert route["profile"]["name"] == "cpu-tiny"
    assert route["limits"]["served_model_name"] == "tiny-llama"
    assert route["limits"]["max_active_generations"] == 2
    assert route["startup_facts"]["kv_cache_tokens"] == 43_680
    assert route["startup_facts"]["cold_start_s"] == 9.0
    state = switcher.state.load()
    assert (state.current, state.previous) == ("cpu-tiny", "cpu-smollm2-135m")
    assert state.last_switch is not None
    assert state.last_switch["outcome"] == "switched"
    started = [e["phase"] for e in events if e.get("status") == "start"]
    assert started[-len(SWITCH_PHASES) + 1 :] == SWITCH_PHASES[1:]  # announced as they happen


def test_a_profile_that_does_not_get_ready_is_rolled_back(
    tmp_path: Path, profiles_dir: Path, frontdoor: Frontdoor
) -> None:
    fake = FakeSlot(fail_ready={"test-exits"})
    switcher = make_switcher(tmp_path, profiles_dir, fake, frontdoor.client())
    switcher.switch("cpu-tiny")
    fake.calls.clear()

    with pytest.raises(SwitchFailedError) as failed:
        switcher.switch("test-exits")

    report = failed.value.report
    assert report["outcome"] == "rolled-back"
    assert "exited during startup" in str(report["error"])
    assert report["log_tail"] == "boom\n"
    assert "cpu-tiny restored" in str(failed.value)
    assert fake.calls == [
        "stop", "create test-exits", "ready test-exits",
        "stop", "create cpu-tiny", "ready cpu-tiny",
    ]  # fmt: skip
    assert frontdoor.route()["state"] == "serving"
    assert frontdoor.route()["profile"]["name"] == "cpu-tiny"
    state = switcher.state.load()
    assert state.current == "cpu-tiny"
    assert state.last_switch is not None
    assert state.last_switch["outcome"] == "rolled-back"


def test_failure_with_nothing_to_go_back_to_leaves_the_route_down(
    tmp_path: Path, profiles_dir: Path, frontdoor: Frontdoor
) -> None:
    switcher = make_switcher(tmp_path, profiles_dir, FakeSlot(fail_ready={"test-exits"}), None)
    switcher.frontdoor = frontdoor.client()
    with pytest.raises(SwitchFailedError) as failed:
        switcher.switch("test-exits")
    assert failed.value.report["outcome"] == "failed"
    route = frontdoor.route()
    assert route["state"] == "down"
    assert "no previous profile" in route["reason"]


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("test-missing-model", "does not exist"),
        ("test-rejected", "need --force"),
        ("test-fault", "image modelslot/slot-test-fault:local does not exist"),
    ],
)
def test_preflight_refuses_before_anything_changes(
    tmp_path: Path, profiles_dir: Path, frontdoor: Frontdoor, name: str, why: str
) -> None:
    fake = FakeSlot()
    switcher = make_switcher(tmp_path, profiles_dir, fake, frontdoor.client())
    switcher.switch("cpu-tiny")
    before = fake.running
    fake.calls.clear()
    route_before = frontdoor.route()

    with pytest.raises(PreflightError, match=why):
        switcher.switch(name)

    assert fake.calls == []
    assert fake.running == before
    assert frontdoor.route() == route_before
    assert switcher.state.load().current == "cpu-tiny"


def test_cpus_the_slot_cannot_give_are_a_preflight_refusal(
    tmp_path: Path, profiles_dir: Path
) -> None:
    why = "binds vLLM's OpenMP threads to CPUs 0, outside this slot's MODEL_SLOT_CPUSET=1"
    fake = FakeSlot(cpu_refusals=[why])
    switcher = make_switcher(tmp_path, profiles_dir, fake, None)
    with pytest.raises(PreflightError, match="refused before anything changed") as refused:
        switcher.switch("cpu-tiny")
    assert why in str(refused.value)
    assert fake.calls == []


def test_force_lets_a_rejected_profile_through(tmp_path: Path, profiles_dir: Path) -> None:
    switcher = make_switcher(tmp_path, profiles_dir, FakeSlot(), None)
    report = switcher.switch("test-rejected", force=True)
    assert report.outcome == "switched"
    assert any("allowed by --force" in str(p.get("detail")) for p in report.phases)


def test_without_a_frontdoor_the_switch_works_and_says_so(
    tmp_path: Path, profiles_dir: Path
) -> None:
    switcher = make_switcher(tmp_path, profiles_dir, FakeSlot(), None)
    report = switcher.switch("cpu-tiny")
    assert report.outcome == "switched"
    assert report.frontdoor == "skipped (MODEL_SLOT_FRONTDOOR_ADMIN_URL not set)"


def test_switching_to_the_running_profile_only_reconfirms(
    tmp_path: Path, profiles_dir: Path
) -> None:
    fake = FakeSlot()
    switcher = make_switcher(tmp_path, profiles_dir, fake, None)
    switcher.switch("cpu-tiny")
    fake.calls.clear()
    assert switcher.switch("cpu-tiny").outcome == "unchanged"
    assert fake.calls == ["ready cpu-tiny"]


def test_unreachable_frontdoor_is_a_preflight_refusal(tmp_path: Path, profiles_dir: Path) -> None:
    fake = FakeSlot()
    dead = FrontdoorClient("http://127.0.0.1:9", "token", timeout_s=1)
    switcher = make_switcher(tmp_path, profiles_dir, fake, dead)
    with pytest.raises(PreflightError, match="frontdoor unreachable"):
        switcher.switch("cpu-tiny")
    assert fake.calls == []


def test_wrong_admin_token_is_reported(frontdoor: Frontdoor) -> None:
    with pytest.raises(FrontdoorError, match="401"):
        FrontdoorClient(frontdoor.admin_url, "wrong").get_route()


def test_stop_leaves_no_model_and_the_route_down(
    tmp_path: Path, profiles_dir: Path, frontdoor: Frontdoor
) -> None:
    fake = FakeSlot()
    switcher = make_switcher(tmp_path, profiles_dir, fake, frontdoor.client())
    switcher.switch("cpu-tiny")
    report = switcher.stop()
    assert report.outcome == "stopped"
    assert fake.running is None
    assert frontdoor.route()["state"] == "down"
    state = switcher.state.load()
    assert (state.current, state.previous, state.stopped) == (None, "cpu-tiny", True)


def test_preflight_refuses_devices_that_something_else_holds(
    tmp_path: Path, profiles_dir: Path, frontdoor: Frontdoor
) -> None:
    """A host process outside Docker on a GPU (found by xpu-smi ps) or another container that
    maps the devices: refused before anything changes, and named."""
    (profiles_dir / "test-devices.env").write_text(
        "MODEL_SLOT_EXTENDS=cpu-tiny\nMODEL_SLOT_DEVICES=/dev/null\n"  # exists on every host
    )
    fake = FakeSlot()
    switcher = make_switcher(tmp_path, profiles_dir, fake, frontdoor.client())
    switcher.switch("cpu-tiny")
    fake.calls.clear()
    route_before = frontdoor.route()
    fake.holders = ["GPU 1: pid 5225 (llama-server), 1 MiB"]

    with pytest.raises(PreflightError, match=r"held by others .*pid 5225 \(llama-server\)"):
        switcher.switch("test-devices")
    assert fake.calls == []
    assert frontdoor.route() == route_before

    fake.holders = []
    report = switcher.switch("test-devices")
    assert report.outcome == "switched"
    preflight = next(p for p in report.phases if p["name"] == "preflight")
    assert "/dev/null, not held (the fake's list)" in str(preflight.get("detail"))

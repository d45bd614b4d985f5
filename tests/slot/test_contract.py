"""The slot's contract (docs/slot.md, "The slot's state"): every operation from every phase.

Each case seeds a phase as a crash or an earlier operation would leave it (the state file and
the fake slot's container agree), runs one operation through the entry point the CLI or the
controller uses, and checks the phase after, the route the real frontdoor holds, and whether a
container was created. The expectations are the table in docs/slot.md, row by row.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestrator.control.controller import Backoff, Controller
from orchestrator.control.state import Phase, SlotState, StateStore
from orchestrator.control.switch import Switcher
from orchestrator.errors import SwitchFailedError
from orchestrator.profiles.store import ProfileStore
from tests.slot.conftest import Frontdoor
from tests.slot.fakes import FakeSlot
from tests.slot.test_switch_policy import make_switcher

A = "cpu-smollm2-135m"  # the committed profile of every seeded phase that has one
B = "cpu-tiny"  # what a switch asks for; also the controller's default profile
DEVICE_FAULT = "device fault: UR_RESULT_ERROR_DEVICE_LOST"


def seed(phase: Phase, profiles_dir: Path, state: StateStore, fake: FakeSlot) -> SlotState:
    """Leave the host in ``phase``: the state file, and the container that goes with it."""
    store = ProfileStore(profiles_dir)
    a, b = store.load(A), store.load(B)
    seeded = SlotState(phase=phase)
    if phase in (Phase.STARTING, Phase.SERVING, Phase.STOPPING, Phase.DOWN, Phase.FAULTED):
        info = fake.run_stray(a)
        seeded = SlotState(
            phase=phase,
            current=A,
            current_hash=a.hash,
            container_id=info.id,
            upstream="http://127.0.0.1:18080",
        )
        if phase in (Phase.DOWN, Phase.FAULTED):
            fake.die()  # its container exited
            fake.events.queue.get()
            seeded.reason = DEVICE_FAULT if phase is Phase.FAULTED else "exited (code 137)"
    elif phase is Phase.SWITCHING:  # crashed while B got ready: A is still the committed one
        fake.run_stray(b)
        seeded = SlotState(phase=phase, current=A, current_hash=a.hash, target=B)
    elif phase is Phase.STOPPED:
        seeded = SlotState(phase=phase, previous=A, reason="stopped by the operator")
    elif phase is Phase.FAILED:
        seeded = SlotState(phase=phase, previous=A, reason=f"switch to {B} failed")
    if phase is not Phase.EMPTY:
        state.save(seeded)
    return seeded


@dataclass(frozen=True)
class After:
    phase: Phase
    route: str  # the frontdoor's route state
    serves: str | None  # the profile the container runs, None if no container runs
    created: bool  # a container was created by the operation


ALL = list(Phase)

#: switch B: from every phase the slot ends serving B, in a new container.
SWITCH = {phase: After(Phase.SERVING, "serving", B, True) for phase in ALL}

#: stop: from every phase, no model and the route down.
STOP = {phase: After(Phase.STOPPED, "down", None, False) for phase in ALL}

#: the restart timer: only `down` restarts (the committed profile); elsewhere nothing happens.
RESTART = {
    Phase.EMPTY: None,
    Phase.STARTING: None,
    Phase.SERVING: None,
    Phase.SWITCHING: None,
    Phase.STOPPING: None,
    Phase.STOPPED: None,
    Phase.DOWN: After(Phase.SERVING, "serving", A, True),
    Phase.FAULTED: None,
    Phase.FAILED: None,
}

#: boot (reconcile, adopting what can be adopted): only the committed profile ever starts.
BOOT = {
    Phase.EMPTY: After(Phase.SERVING, "serving", B, True),  # fresh host: the default profile
    Phase.STARTING: After(Phase.SERVING, "serving", A, False),  # adopted
    Phase.SERVING: After(Phase.SERVING, "serving", A, False),  # adopted
    Phase.SWITCHING: After(Phase.SERVING, "serving", A, True),  # B swept, A back
    Phase.STOPPING: After(Phase.STOPPED, "down", None, False),  # the stop is finished
    Phase.STOPPED: After(Phase.STOPPED, "down", None, False),
    Phase.DOWN: After(Phase.SERVING, "serving", A, True),
    Phase.FAULTED: After(Phase.FAULTED, "faulted", None, False),
    Phase.FAILED: After(Phase.FAILED, "down", None, False),
}

#: a die event of the container the state names: only a serving slot goes down (and restarts
#: later); in other phases the exit is the operation's own doing or already known.
EXIT: dict[Phase, After | None] = dict.fromkeys(ALL) | {
    Phase.SERVING: After(Phase.DOWN, "down", None, False)
}


def controller(switcher: Switcher) -> Controller:
    return Controller(switcher, default_profile=B, backoff=Backoff(base_s=60))


def check(
    *,
    switcher: Switcher,
    fake: FakeSlot,
    frontdoor: Frontdoor,
    seeded: SlotState,
    route_before: str,
    creates_before: int,
    expected: After | None,
) -> None:
    after = switcher.state.load()
    created = sum(call.startswith("create") for call in fake.calls) > creates_before
    serves = fake.running.profile if fake.running and fake.running.status == "running" else None
    if expected is None:  # nothing changes: not the state, not the route, no container
        assert after.phase is seeded.phase
        assert after.current == seeded.current
        assert frontdoor.route()["state"] == route_before
        assert not created
        return
    assert after.phase is expected.phase
    assert frontdoor.route()["state"] == expected.route
    assert serves == expected.serves
    assert created is expected.created
    if expected.phase is Phase.SERVING:
        assert after.current == expected.serves
        assert frontdoor.route()["profile"]["name"] == expected.serves
    assert len(fake.containers()) <= 1


@pytest.mark.parametrize("phase", ALL, ids=str)
@pytest.mark.parametrize("operation", ["switch", "stop", "restart", "boot", "exit"])
def test_every_operation_from_every_phase(
    tmp_path: Path, profiles_dir: Path, frontdoor: Frontdoor, phase: Phase, operation: str
) -> None:
    fake = FakeSlot()
    switcher = make_switcher(tmp_path, profiles_dir, fake, frontdoor.client())
    seeded = seed(phase, profiles_dir, switcher.state, fake)
    switcher.load()  # what the writer (a controller) knows since its reconcile
    if phase is not Phase.EMPTY:
        switcher.publish()  # the frontdoor holds the route of the seeded phase
    route_before = frontdoor.route()["state"]
    creates_before = sum(call.startswith("create") for call in fake.calls)
    expected: After | None
    if operation == "switch":
        switcher.switch(B)
        expected = SWITCH[phase]
    elif operation == "stop":
        switcher.stop()
        expected = STOP[phase]
    elif operation == "restart":
        ctl = controller(switcher)
        ctl.restart_due()
        expected = RESTART[phase]
    elif operation == "boot":
        ctl = controller(switcher)
        ctl.reconcile()
        expected = BOOT[phase]
    else:
        ctl = controller(switcher)
        if fake.running is not None and fake.running.status == "running":
            fake.die()
        ctl.container_exited({"id": seeded.container_id, "exit_code": "137"})
        expected = EXIT[phase]
    check(
        switcher=switcher,
        fake=fake,
        frontdoor=frontdoor,
        seeded=seeded,
        route_before=route_before,
        creates_before=creates_before,
        expected=expected,
    )


def test_an_exit_with_a_device_fault_in_the_log_faults_the_slot_and_restarts_nothing(
    tmp_path: Path, profiles_dir: Path, frontdoor: Frontdoor
) -> None:
    fake = FakeSlot()
    switcher = make_switcher(tmp_path, profiles_dir, fake, frontdoor.client())
    seeded = seed(Phase.SERVING, profiles_dir, switcher.state, fake)
    fake.log += "ERROR UR_RESULT_ERROR_DEVICE_LOST\n"
    switcher.load()
    ctl = controller(switcher)
    fake.die()
    ctl.container_exited({"id": seeded.container_id, "exit_code": "1"})
    state = switcher.state.load()
    assert state.phase is Phase.FAULTED
    assert "UR_RESULT_ERROR_DEVICE_LOST" in str(state.fault)
    assert frontdoor.route()["state"] == "faulted"
    ctl.restart_due()
    assert not any(call.startswith("create") for call in fake.calls)


def test_a_container_that_survives_stop_fails_the_switch_with_the_route_down(
    tmp_path: Path, profiles_dir: Path, frontdoor: Frontdoor
) -> None:
    """``stop`` raising (SIGKILL did not take) must not leave the route ``switching``."""
    fake = FakeSlot()
    switcher = make_switcher(tmp_path, profiles_dir, fake, frontdoor.client())
    seed(Phase.SERVING, profiles_dir, switcher.state, fake)
    fake.fail_stop = True
    with pytest.raises(SwitchFailedError, match="survived SIGKILL"):
        switcher.switch(B)
    assert switcher.state.load().phase is Phase.FAILED
    assert frontdoor.route()["state"] == "down"


def test_boot_without_state_adopts_the_container_its_labels_name(
    tmp_path: Path, profiles_dir: Path, frontdoor: Frontdoor
) -> None:
    """A state file moved aside (corrupt) must not cost the running model: its labels say
    which profile it runs, and that profile still resolves to the same hash."""
    fake = FakeSlot()
    switcher = make_switcher(tmp_path, profiles_dir, fake, frontdoor.client())
    running = fake.run_stray(ProfileStore(profiles_dir).load(A))
    controller(switcher).reconcile()
    assert fake.calls == ["ready " + A]  # adopted: no stop, no create
    assert fake.running is not None
    assert fake.running.id == running.id
    assert switcher.state.load().phase is Phase.SERVING
    assert frontdoor.route()["profile"]["name"] == A

"""State persistence and the one-writer lock (no Docker)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.control.lock import SlotLock
from orchestrator.control.state import Phase, SlotState, StateStore
from orchestrator.errors import BusyError

HOLD = """
import sys, time
from pathlib import Path
from orchestrator.control.lock import SlotLock
lock = SlotLock(Path(sys.argv[1]), "switch cpu-tiny (test holder)")
lock.acquire()
print("held", flush=True)
sys.stdin.readline()  # hold until the test closes our stdin
"""


def test_state_round_trip_and_atomic_file(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    assert store.load() == SlotState()
    state = SlotState(current="cpu-tiny", previous="cpu-smollm2-135m", facts={"kv_cache_tokens": 5})
    store.save(state)
    assert store.load() == state
    assert json.loads(store.path.read_text())["current"] == "cpu-tiny"
    assert [p.name for p in tmp_path.iterdir()] == ["slot.json"]  # no temp file left behind


def test_unreadable_state_is_moved_aside_by_the_lock_holder_only(tmp_path: Path) -> None:
    (tmp_path / "slot.json").write_text("{half a file")
    store = StateStore(tmp_path)
    lock = SlotLock(tmp_path, "test")
    with pytest.raises(BusyError, match="only the holder"):
        store.recover(lock)
    assert (tmp_path / "slot.json").exists()
    with lock:
        assert store.recover(lock) == SlotState()
    assert (tmp_path / "slot.json.bad").read_text() == "{half a file"
    assert not (tmp_path / "slot.json").exists()


def test_a_state_file_from_before_phases_reads_as_its_phase(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    cases = [
        ({"current": "cpu-tiny"}, Phase.SERVING),
        ({"current": None, "stopped": True}, Phase.STOPPED),
        ({"current": "cpu-tiny", "fault": "device fault: X"}, Phase.FAULTED),
        ({"current": None, "previous": "cpu-tiny"}, Phase.FAILED),
    ]
    for raw, phase in cases:
        store.path.write_text(json.dumps(raw))
        assert store.load().phase is phase
    assert store.load().reason is None
    store.path.write_text(json.dumps({"current": "x", "fault": "device fault: X"}))
    assert store.load().fault == "device fault: X"


def test_second_writer_in_another_process_is_refused_and_told_who_holds_it(
    tmp_path: Path,
) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        assert holder.stdout is not None
        assert holder.stdin is not None
        try:
            assert holder.stdout.readline().strip() == "held"
            with pytest.raises(BusyError) as refused:
                SlotLock(tmp_path, "switch other").acquire()
            assert f"pid {holder.pid}" in str(refused.value)
            assert "switch cpu-tiny (test holder)" in str(refused.value)
        finally:
            holder.stdin.close()
            holder.wait(10)
    # The kernel dropped the dead holder's lock: no stale lock file to clean up.
    with SlotLock(tmp_path, "after"):
        pass


def test_lock_waits_a_bounded_time_then_refuses(tmp_path: Path) -> None:
    with SlotLock(tmp_path, "first"), pytest.raises(BusyError):
        SlotLock(tmp_path, "second").acquire(wait_s=0.3)

"""Gate promotion (the one-line rewrite) and the soak's schedule, with no server."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from orchestrator.evidence.gate import promote, set_status
from orchestrator.evidence.soak import Soak, summarize
from orchestrator.profiles.store import ProfileStore
from orchestrator.progress import quiet

REPO = Path(__file__).resolve().parents[2]


def test_set_status_rewrites_only_that_line() -> None:
    text = "# c\nMODEL_SLOT_TITLE=T\nMODEL_SLOT_STATUS=research\nVLLM_DTYPE=bfloat16\n"
    new, change = set_status(text, "production")
    assert new == text.replace("STATUS=research", "STATUS=production")
    assert change == "line 3: MODEL_SLOT_STATUS=research -> MODEL_SLOT_STATUS=production"
    assert set_status(new, "production")[0] == new


def test_set_status_adds_a_line_when_inherited() -> None:
    text = "# derived\nMODEL_SLOT_EXTENDS=base\nMODEL_SLOT_TITLE=T\nVLLM_X=1"
    new, change = set_status(text, "production")
    assert new.splitlines() == [
        "# derived",
        "MODEL_SLOT_EXTENDS=base",
        "MODEL_SLOT_TITLE=T",
        "MODEL_SLOT_STATUS=production",
        "VLLM_X=1",
    ]
    assert "added" in change


def test_promote_keeps_the_profile_valid(tmp_path: Path) -> None:
    for name in ("cpu-smollm2-135m", "cpu-tiny"):
        shutil.copy(REPO / "profiles" / f"{name}.env", tmp_path)
    store = ProfileStore(tmp_path)
    before = (tmp_path / "cpu-tiny.env").read_text()
    message = promote(store, store.load("cpu-tiny"))
    assert "research-tests -> MODEL_SLOT_STATUS=production" in message
    after = (tmp_path / "cpu-tiny.env").read_text()
    assert store.load("cpu-tiny").status == "production"
    changed = [
        (a, b) for a, b in zip(before.splitlines(), after.splitlines(), strict=True) if a != b
    ]
    assert changed == [("MODEL_SLOT_STATUS=research-tests", "MODEL_SLOT_STATUS=production")]


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.sleeps.append(seconds)
        self.t += seconds


def run(
    tmp_path: Path, duration: float, interval: float, cycle_s: dict[int, float], crash: int = 0
) -> tuple[Soak, FakeClock, dict[str, Any]]:
    clock = FakeClock()
    starts: list[float] = []

    def cycle(number: int) -> dict[str, Any]:
        starts.append(clock.t - 1000.0)
        clock.t += cycle_s.get(number, 1.0)
        if number == crash:
            raise RuntimeError("boom")
        return {
            "quality": "pass",
            "baseline": "match",
            "ttft_ms": 100.0 + number,
            "wall_tok_s": 20.0 + number,
            "status": "clean",
            "detail": "",
        }

    soak = Soak(duration, interval, cycle, out_dir=tmp_path, clock=clock, progress=quiet)
    summary = soak.run()
    summary["starts"] = starts
    return soak, clock, summary


def test_cycles_are_anchored_and_it_sleeps_to_the_deadline(tmp_path: Path) -> None:
    _, clock, summary = run(tmp_path, 10.0, 3.0, {})
    assert summary["starts"] == [0.0, 3.0, 6.0, 9.0]
    assert clock.t - 1000.0 == pytest.approx(10.0)  # ends at the deadline, not before
    assert summary["cycles"] == summary["clean_cycles"] == 4
    assert summary["wall_tok_s"] == {"mean": 22.5, "min": 21.0, "max": 24.0}
    tsv = (tmp_path / "soak.tsv").read_text().splitlines()
    assert tsv[0].split("\t") == [
        "cycle",
        "time",
        "quality",
        "baseline",
        "ttft_ms",
        "wall_tok_s",
        "status",
        "detail",
    ]
    assert len(tsv) == 5
    assert len((tmp_path / "soak.jsonl").read_text().splitlines()) == 4
    assert (tmp_path / "summary.json").exists()


def test_a_slow_cycle_skips_slots_instead_of_bunching(tmp_path: Path) -> None:
    soak, _, summary = run(tmp_path, 12.0, 3.0, {1: 7.0})
    assert summary["starts"] == [0.0, 9.0]  # slots 3 and 6 passed during cycle 1
    assert soak.missed_slots == 2
    assert summary["missed_slots"] == 2


def test_a_crashed_cycle_is_an_anomaly_and_the_soak_goes_on(tmp_path: Path) -> None:
    _, _, summary = run(tmp_path, 9.0, 3.0, {}, crash=2)
    assert summary["cycles"] == 3
    assert summary["clean_cycles"] == 2
    assert summary["anomalies"][0]["cycle"] == 2
    assert "RuntimeError: boom" in summary["anomalies"][0]["detail"]
    assert summary["passed"] is False


def test_summarize_is_pure() -> None:
    rows = [
        {"cycle": 1, "status": "clean", "wall_tok_s": 10.0, "ttft_ms": 50.0},
        {"cycle": 2, "status": "anomaly", "detail": "canary", "wall_tok_s": None},
    ]
    s = summarize(rows)
    assert s["clean_cycles"] == 1
    assert s["anomalies"] == [{"cycle": 2, "time": None, "detail": "canary"}]
    assert s["wall_tok_s"] == {"mean": 10.0, "min": 10.0, "max": 10.0}


def test_a_switch_during_the_soak_is_an_anomaly_and_the_soak_keeps_its_profile(
    tmp_path: Path,
) -> None:
    """A soak is evidence for one profile; the frontdoor names the served one every cycle."""
    served = {1: "cpu-tiny", 2: "cpu-tiny", 3: "cpu-smollm2-135m"}

    def cycle(number: int) -> dict[str, Any]:
        return {"status": "clean", "detail": "", "profile": served[number], "wall_tok_s": 1.0}

    soak = Soak(9.0, 3.0, cycle, out_dir=tmp_path, clock=FakeClock(), progress=quiet)
    summary = soak.run()
    assert summary["profile"] == "cpu-tiny"
    assert summary["clean_cycles"] == 2
    assert summary["anomalies"] == [
        {
            "cycle": 3,
            "time": summary["anomalies"][0]["time"],
            "detail": "the slot serves cpu-smollm2-135m, not cpu-tiny (switched during the soak)",
        }
    ]
    assert summary["passed"] is False

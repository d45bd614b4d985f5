"""gate and soak commands end to end against the fake server (mechanics only)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from orchestrator.cli import soak as soak_cli
from orchestrator.cli.main import main
from orchestrator.control import writer
from orchestrator.control.writer import WriteResult
from orchestrator.progress import Progress

from .conftest import run_soak
from .fake_server import FakeServer
from .test_canary_fake import GOOD
from .test_gate_soak_unit import FakeClock

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def profiles(tmp_path: Path) -> Path:
    directory = tmp_path / "profiles"
    directory.mkdir()
    for name in ("cpu-smollm2-135m", "cpu-tiny"):
        shutil.copy(REPO / "profiles" / f"{name}.env", directory)
    return directory


def gate(fake: FakeServer, profiles: Path, state: Path, *extra: str) -> int:
    return main(
        [
            "gate",
            "cpu-tiny",
            "--base-url",
            fake.base_url,
            "--profiles-dir",
            str(profiles),
            "--state-dir",
            str(state),
            "--decode-tokens",
            "8",
            "--decode-prompt-tokens",
            "16",
            "--quiet",
            *extra,
        ]
    )


def test_gate_passes_saves_evidence_and_promotes(
    fake: FakeServer, profiles: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.config.model, fake.config.replies = "tiny-llama", dict(GOOD)
    assert gate(fake, profiles, tmp_path / "state", "--promote") == 0
    out = capsys.readouterr().out
    assert "PASSED" in out
    assert "promoted: " in out and "research-tests -> MODEL_SLOT_STATUS=production" in out
    [report_path] = (tmp_path / "state" / "evidence").glob("cpu-tiny/*/*-gate.json")
    report = json.loads(report_path.read_text())
    assert [s["result"] for s in report["steps"]] == [
        "pass",
        "pass",
        "skipped",
        "pass",
        "pass",
        "pass",
        "pass",
    ]
    assert report["steps"][4]["numbers"].keys() == {"ttft_ms_at_512"}  # 16K/32K > max context
    assert set(report["steps"][5]["numbers"]) == {"c2", "c4"}
    assert "MODEL_SLOT_STATUS=production" in (profiles / "cpu-tiny.env").read_text()


def test_gate_fails_on_wrong_context_and_does_not_promote(
    fake: FakeServer, profiles: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.config.model, fake.config.replies = "tiny-llama", dict(GOOD)
    fake.config.max_model_len = 1024
    assert gate(fake, profiles, tmp_path / "state", "--promote") == 1
    out = capsys.readouterr().out
    assert "max_model_len 1024 != profile's 512" in out
    assert "not promoted" in out
    assert "research-tests" in (profiles / "cpu-tiny.env").read_text()


def test_gate_refuses_a_profile_that_is_not_served(
    fake: FakeServer, profiles: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert gate(fake, profiles, tmp_path / "state") == 1
    assert "is not being served" in capsys.readouterr().err


def test_soak_cli_rows_and_summary(
    fake: FakeServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The command end to end on a clock that moves only when the soak sleeps: a cycle takes
    no time on it, however long the machine takes, so two 0.5 s slots in 1 s are two cycles,
    exactly (the real clock's overruns and skipped slots: ``test_gate_soak_unit.py``)."""
    fake.config.replies = dict(GOOD)
    clock = FakeClock()
    monkeypatch.setattr(soak_cli, "RealClock", lambda: clock)
    code, summary = run_soak(
        capsys,
        fake.base_url,
        tmp_path,
        duration_s="1.0",
        interval_s="0.5",
        prompt_tokens="8",
        output_tokens="4",
    )
    assert code == 0, summary
    assert summary["cycles"] == summary["clean_cycles"] == 2
    assert summary["missed_slots"] == 0
    assert clock.sleeps == [0.5, 0.5]  # to cycle 2's slot, then to the deadline
    assert summary["elapsed_s"] == 1.0
    rows = [json.loads(line) for line in (tmp_path / "soak.jsonl").read_text().splitlines()]
    assert [row["cycle"] for row in rows] == [1, 2]
    assert [row["quality"] for row in rows] == ["pass", "pass"]


def test_gate_refuses_a_served_profile_with_another_hash(
    fake: FakeServer, profiles: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.config.model = "tiny-llama"
    fake.config.status = {
        "ok": True,
        "model_slot": {"name": "cpu-tiny", "modalities": "text"},
        "route": {"state": "serving", "profile": {"name": "cpu-tiny", "hash": "0" * 64}},
    }
    assert gate(fake, profiles, tmp_path / "state") == 1
    assert "resolves to" in capsys.readouterr().err


def test_soak_flags_a_frontdoor_that_is_not_serving(
    fake: FakeServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.config.replies = dict(GOOD)
    fake.config.status = {"ok": False, "route": {"state": "switching"}}
    code, summary = run_soak(
        capsys,
        fake.base_url,
        tmp_path,
        duration_s="0.2",
        interval_s="1",
        prompt_tokens="8",
        output_tokens="4",
    )
    assert code == 1
    assert summary["cycles"] == 1 and summary["clean_cycles"] == 0
    assert "state=switching" in summary["anomalies"][0]["detail"]


def test_gate_switch_runs_the_switch_command_first(
    fake: FakeServer,
    profiles: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake.config.replies = dict(GOOD)  # serving fake-model, not cpu-tiny's tiny-llama
    calls: list[tuple[str, bool]] = []

    def switch(name: str, progress: Progress, *, force: bool = False) -> WriteResult:
        calls.append((name, force))
        fake.config.model = "tiny-llama"  # what a successful switch leaves behind
        return WriteResult(ok=True, report={"outcome": "switched", "profile": name})

    monkeypatch.setattr(writer, "switch", switch)
    assert gate(fake, profiles, tmp_path / "state", "--switch") == 0, capsys.readouterr()
    assert calls == [("cpu-tiny", False)]


def test_switch_command_and_gate_switch_run_the_same_function(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`switch` goes through ``control.writer.switch`` too (no argparse round trip in gate)."""
    calls: list[tuple[str, bool]] = []

    def switch(name: str, progress: Progress, *, force: bool = False) -> WriteResult:
        calls.append((name, force))
        return WriteResult(ok=True, report={"action": "switch", "outcome": "switched"})

    monkeypatch.setattr(writer, "switch", switch)
    assert main(["switch", "cpu-tiny", "--force", "--json"]) == 0
    assert calls == [("cpu-tiny", True)]
    assert json.loads(capsys.readouterr().out)["outcome"] == "switched"


def test_gate_switch_failure_stops_the_gate(
    fake: FakeServer,
    profiles: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def switch(name: str, progress: Progress, *, force: bool = False) -> WriteResult:
        return WriteResult(ok=False, error="preflight: no such model dir", outcome="refused")

    monkeypatch.setattr(writer, "switch", switch)
    assert gate(fake, profiles, tmp_path / "state", "--switch") == 1
    err = capsys.readouterr().err
    assert "`switch cpu-tiny` failed: preflight: no such model dir; gate not run" in err
    assert not (tmp_path / "state" / "evidence").exists()

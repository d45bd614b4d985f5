"""The board the orchestrator publishes for the operator page (orchestrator/control/publish.py).

The frontdoor's own model (frontdoor.board.Board, extra keys forbidden) is the contract: what
the orchestrator builds from the shipped profiles, real reports and evidence files must pass it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from frontdoor.board import Board

from orchestrator.control.publish import HISTORY_LEN, History, Publisher, switch_record
from orchestrator.control.switch import Report
from orchestrator.profiles.store import ProfileStore

REPO = Path(__file__).resolve().parents[2]
LADDER = REPO / "docs" / "ladder" / "cpu-smollm2-135m.json"


def _report(profile: str, outcome: str, started_at: str) -> dict[str, Any]:
    report = Report("switch", profile, "cpu-smollm2-135m", started_at=started_at)
    report.phases = [
        {"name": "drain", "duration_s": 0.2, "detail": "drained=True"},
        {"name": "ready", "duration_s": 20.5, "detail": "/srv/x", "failed": "boom"},
    ]
    report.error = "MODEL_DIR /srv/model-slot/models/x does not exist"
    report.finish(outcome)
    report.finished_at = started_at  # as if it had finished then (finish stamps the clock)
    return report.to_json()


def test_switch_record_keeps_timings_and_drops_error_text_and_detail() -> None:
    record = switch_record(_report("cpu-tiny", "switched", "2026-12-02T10:00:00.000+00:00"))
    assert record["phases"] == [
        {"name": "drain", "duration_s": 0.2, "failed": False},
        {"name": "ready", "duration_s": 20.5, "failed": True},
    ]
    assert "/srv" not in json.dumps(record)
    Board.model_validate({"switches": [record]})


def test_history_is_bounded_and_a_report_finished_twice_is_one_entry(tmp_path: Path) -> None:
    history = History(tmp_path)
    for i in range(HISTORY_LEN + 5):
        history.add(switch_record(_report("cpu-tiny", "switched", f"2026-12-02T10:{i:02d}:00")))
    again = switch_record(_report("cpu-tiny", "failed", f"2026-12-02T10:{HISTORY_LEN + 4:02d}:00"))
    records = history.add(again)
    assert len(records) == HISTORY_LEN
    assert records[-1]["outcome"] == "failed"
    assert History(tmp_path).load() == records


def test_board_from_shipped_profiles_and_evidence_passes_the_frontdoors_model(
    tmp_path: Path,
) -> None:
    evidence = tmp_path / "evidence"
    evidence.mkdir()
    bench = json.loads(LADDER.read_text())
    bench["profile"] = {"name": "cpu-smollm2-135m", "hash": "abc"}
    (evidence / "bench-cpu-smollm2-135m.json").write_text(json.dumps(bench))
    gate = {
        "kind": "model-slot-gate",
        "profile": {"name": "cpu-tiny", "hash": "0123456789abcdef", "path": "/srv/p.env"},
        "passed": False,
        "finished_at": "2026-12-02T09:00:00+00:00",
    }
    (evidence / "gate-cpu-tiny-0123.json").write_text(json.dumps(gate))
    soak_dir = evidence / "soak-20261202T101000Z"
    soak_dir.mkdir()
    soak = {"kind": "model-slot-soak", "started_at": "2026-12-02T10:10:00+00:00", "anomalies": [{}]}
    (soak_dir / "summary.json").write_text(json.dumps(soak))
    rows = [
        {"cycle": 1, "time": "2026-12-02T10:10:00+00:00", "status": "clean", "wall_tok_s": 20},
        {"cycle": 2, "time": "2026-12-02T10:25:00+00:00", "status": "anomaly", "detail": "x"},
    ]
    (soak_dir / "soak.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    publisher = Publisher(None, ProfileStore(REPO / "profiles"), tmp_path)
    publisher(_report("cpu-tiny", "switched", "2026-12-02T10:00:00.000+00:00"))

    board = Board.model_validate(publisher.board(History(tmp_path).load()))

    assert {p.name for p in board.profiles} >= {"cpu-tiny", "cpu-smollm2-135m"}
    smol = board.evidence["cpu-smollm2-135m"].bench
    assert smol is not None
    assert [p.concurrency for p in smol.points] == [1, 2, 4, 8]
    assert smol.points[0].output_tok_s is not None and smol.points[0].output_tok_s > 0
    tiny = board.evidence["cpu-tiny"]
    assert tiny.gate is not None and tiny.gate.passed is False
    assert tiny.soak is not None, "the soak is credited to the profile serving when it started"
    assert [c.status for c in tiny.soak.cycles] == ["clean", "anomaly"]
    assert tiny.soak.anomalies == 1
    assert "/srv" not in board.model_dump_json()

    # A soak that names its profile (every soak since /status was recorded per cycle) is that
    # profile's, whatever the switch history says.
    soak["profile"] = "cpu-smollm2-135m"
    (soak_dir / "summary.json").write_text(json.dumps(soak))
    named = Board.model_validate(publisher.board(History(tmp_path).load()))
    assert named.evidence["cpu-smollm2-135m"].soak is not None
    assert named.evidence["cpu-tiny"].soak is None

"""The evidence store, its listing and diff, and promotion only on evidence of what is there."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from orchestrator.cli.main import main
from orchestrator.evidence import fingerprint
from orchestrator.evidence.promotion import refusals
from orchestrator.evidence.store import EvidenceStore
from orchestrator.profiles.store import ProfileStore

from .fake_server import FakeServer
from .test_canary_fake import GOOD
from .test_gate_soak_fake import gate, profiles  # noqa: F401 (the fixture)


def print_(document: dict[str, Any], name: str, digest: str, image: str, tok_s: float) -> None:
    document.update(
        {
            "kind": "model-slot-bench",
            "profile": {"name": name, "hash": digest},
            "levels": [{"concurrency": 1, "summary": {"concurrency": 1, "output_tok_s": tok_s}}],
        }
    )


def fp(image: str, vllm: str) -> dict[str, Any]:
    return {"image": {"id": image}, "vllm": {"version": vllm}, "xpu": {"note": "CPU profile"}}


def test_results_are_kept_by_profile_and_hash_and_listed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = EvidenceStore(tmp_path / "state")
    for name, digest, tok in (("a", "1" * 64, 10.0), ("a", "2" * 64, 12.0), ("b", "3" * 64, 5.0)):
        doc: dict[str, Any] = {}
        print_(doc, name, digest, "sha256:aa", tok)
        path = store.save(doc, profile=name, profile_hash=digest, fingerprint=fp("sha256:aa", "1"))
        assert path.parent == tmp_path / "state" / "evidence" / name / digest[:12]
    assert [e.profile for e in store.entries()] == ["a", "a", "b"]
    assert [e.hash[:1] for e in store.entries("a")] == ["1", "2"]
    assert main(["evidence", "a", "--state-dir", str(tmp_path / "state")]) == 0
    out = capsys.readouterr().out
    assert "best c1 10.0 tok/s" in out and "best c1 12.0 tok/s" in out
    assert "b/" not in out


def test_diff_names_the_changed_fingerprint_and_numbers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = EvidenceStore(tmp_path / "state")
    ids = []
    for image, vllm, tok in (("sha256:aa", "0.32.0", 10.0), ("sha256:bb", "0.33.0", 15.0)):
        doc: dict[str, Any] = {}
        print_(doc, "a", "1" * 64, image, tok)
        saved = store.save(doc, profile="a", profile_hash="1" * 64, fingerprint=fp(image, vllm))
        ids.append(json.loads(saved.read_text())["evidence"]["id"])
    state = str(tmp_path / "state")
    assert main(["evidence", "diff", ids[0], ids[1], "--state-dir", state]) == 0
    out = capsys.readouterr().out
    assert "image.id      sha256:aa  sha256:bb" in out
    assert "vllm.version  0.32.0     0.33.0" in out
    assert "c1.output_tok_s  10  15  +50.0%" in out
    assert main(["evidence", "diff", "nothing-like-it", ids[1], "--state-dir", state]) == 1
    assert "`python -m orchestrator evidence` lists the ids" in capsys.readouterr().err


def test_promotion_refuses_evidence_of_another_hash_or_image() -> None:
    profile = ProfileStore(Path(__file__).resolve().parents[2] / "profiles").load("cpu-tiny")
    document: dict[str, Any] = {
        "evidence": {"profile": "cpu-tiny", "hash": "f" * 64},
        "fingerprint": {"image": {"id": "sha256:" + "a" * 64}},
    }
    why = refusals(profile, document, image_id="sha256:" + "b" * 64)
    assert len(why) == 2
    assert f"hash ffffffffffff, but cpu-tiny now resolves to {profile.hash[:12]}" in why[0]
    assert "run the gate again" in why[0]
    assert "measured on image sha256:aaaaaaaaaaaa, but modelslot/vllm-cpu:local is now" in why[1]
    document["evidence"]["hash"] = profile.hash
    assert refusals(profile, document, image_id="sha256:" + "a" * 64) == []


def test_gate_promote_on_evidence_of_another_profile_hash_is_refused_saying_why(
    fake: FakeServer,
    profiles: Path,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake.config.model, fake.config.replies = "tiny-llama", dict(GOOD)
    state = tmp_path / "state"
    page = tmp_path / "gate.html"
    assert gate(fake, profiles, state, "--html", str(page)) == 0  # kept with its fingerprint
    assert "<h2>PASSED</h2>" in page.read_text() and "<h2>fingerprint</h2>" in page.read_text()
    [entry] = EvidenceStore(state).entries("cpu-tiny")
    assert entry.document["fingerprint"]["xpu"]["note"] == (
        "CPU profile: no XPU devices, nothing to read"
    )
    capsys.readouterr()
    # the profile is edited after the run: the evidence is about something else now
    path = profiles / "cpu-tiny.env"
    measured = path.read_text()
    path.write_text(measured.replace("VLLM_MAX_NUM_SEQS=2", "VLLM_MAX_NUM_SEQS=3"))
    argv = ["--profiles-dir", str(profiles), "--state-dir", str(state)]
    assert main(["gate", "cpu-tiny", "--promote", "--evidence", entry.id, *argv]) == 1
    err = capsys.readouterr().err
    assert f"not promoted on {entry.id}" in err
    assert f"with hash {entry.hash[:12]}, but cpu-tiny now resolves to" in err
    assert "MODEL_SLOT_STATUS=production" not in path.read_text()
    # put back as it was measured: the same evidence now promotes
    path.write_text(measured)
    assert main(["gate", "cpu-tiny", "--promote", "--evidence", entry.id, *argv]) == 0
    assert "MODEL_SLOT_STATUS=production" in path.read_text()


def test_a_cpu_fingerprint_says_there_is_no_xpu_to_read() -> None:
    assert fingerprint.xpu_part(()) == {
        "source": None,
        "devices": [],
        "note": "CPU profile: no XPU devices, nothing to read",
    }
    empty = fingerprint.xpu_part(("/dev/dri",), sysfs=Path("/nonexistent"))
    assert empty["devices"] == [] and "no DRM cards" in empty["note"]


def test_a_canary_baseline_says_which_profile_and_image_it_came_from(
    fake: FakeServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    profile = ProfileStore(Path(__file__).resolve().parents[2] / "profiles").load("cpu-tiny")
    fake.config.replies = dict(GOOD)
    fake.config.status = {"model_slot": {"name": "cpu-tiny", "hash": profile.hash}}
    baseline = tmp_path / "baseline.json"
    argv = ["canary", "--base-url", fake.base_url, "--quiet"]
    assert main([*argv, "--save-baseline", str(baseline)]) == 0
    saved = json.loads(baseline.read_text())
    assert saved["evidence"]["profile"] == "cpu-tiny"
    assert saved["fingerprint"]["image"]["ref"] == "modelslot/vllm-cpu:local"
    capsys.readouterr()
    assert main([*argv, "--expect", "baseline", "--baseline", str(baseline)]) == 0
    out = capsys.readouterr().out
    assert f"baseline of profile cpu-tiny (hash {profile.hash[:12]}, image " in out
    kept = EvidenceStore(tmp_path / "state").entries("cpu-tiny")
    assert [e.kind for e in kept] == ["canary", "canary"]

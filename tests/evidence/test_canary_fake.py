"""Canary mechanics: normalisation, the cases, baselines and repeats against the fake server."""

from __future__ import annotations

import base64
import json
import struct
import zlib
from pathlib import Path

import pytest

from orchestrator.cli.main import main
from orchestrator.evidence.canary import CASES, RED_PNG_DATA_URL, normalize

from .fake_server import FakeServer

GOOD = {
    "Reply with exactly": "OK.",
    "satin cobalt orbit": "satin cobalt orbit",
    "cubes": "You have 7 cubes.",
    "colour": "Red",
}


def check(name: str, text: str) -> bool:
    case = next(case for case in CASES if case.name == name)
    return case.check(normalize(text))


def test_normalize() -> None:
    assert normalize('  "OK."  ') == "ok"
    assert normalize("Satin   Cobalt\nOrbit!") == "satin cobalt orbit"


@pytest.mark.parametrize(
    ("name", "text", "passes"),
    [
        ("exact_ok", "OK", True),
        ("exact_ok", "**OK**", True),
        ("exact_ok", "OK, sure", False),
        ("copy_phrase", "Satin cobalt orbit.", True),
        ("copy_phrase", "satin orbit", False),
        ("small_arithmetic", "3 + 4 = 7", True),
        ("small_arithmetic", "Seven cubes", True),
        ("small_arithmetic", "17", False),
        ("red_image", "Red.", True),
        ("red_image", "reddish", False),
    ],
)
def test_expected_answers(name: str, text: str, passes: bool) -> None:
    assert check(name, text) is passes


def test_red_png_is_one_red_pixel() -> None:
    raw = base64.b64decode(RED_PNG_DATA_URL.split(",", 1)[1])
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", raw[16:24])
    assert (width, height) == (1, 1)
    idat = raw.index(b"IDAT")
    length = struct.unpack(">I", raw[idat - 4 : idat])[0]
    assert zlib.decompress(raw[idat + 4 : idat + 4 + length]) == b"\x00\xff\x00\x00"


def canary(fake: FakeServer, *extra: str) -> int:
    return main(["canary", "--base-url", fake.base_url, "--quiet", *extra])


def test_answers_pass_then_baseline_passes_and_tamper_fails(
    fake: FakeServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.config.replies = dict(GOOD)
    base = tmp_path / "baseline.json"
    assert canary(fake, "--save-baseline", str(base)) == 0
    doc = json.loads(base.read_text())
    assert sorted(doc["hashes"]) == ["copy_phrase", "exact_ok", "small_arithmetic"]
    assert "red_image" in doc["skipped"]
    body = fake.config.requests[-1]
    assert (body["temperature"], body["top_p"], body["seed"]) == (0.0, 1.0, 1234)

    assert canary(fake, "--baseline", str(base), "--repeat", "2") == 0
    out = capsys.readouterr().out
    assert out.count("match") >= 6 and "PASS" in out

    doc["hashes"]["copy_phrase"] = "0" * 64
    base.write_text(json.dumps(doc))
    assert canary(fake, "--baseline", str(base)) == 1
    assert "copy_phrase (run 1): baseline mismatch" in capsys.readouterr().out


def test_wrong_answer_fails_in_answers_mode_only(fake: FakeServer, tmp_path: Path) -> None:
    fake.config.replies = {**GOOD, "cubes": "There are 8 cubes"}
    assert canary(fake) == 1
    base = tmp_path / "b.json"
    assert canary(fake, "--expect", "baseline") == 1  # nothing to compare with
    assert canary(fake, "--save-baseline", str(base)) == 1
    assert base.exists()  # requests worked, so the baseline was saved
    assert canary(fake, "--expect", "baseline", "--baseline", str(base)) == 0
    base.unlink()
    assert canary(fake, "--expect", "baseline", "--save-baseline", str(base), "--repeat", "2") == 0
    assert canary(fake, "--expect", "baseline", "--baseline", str(base)) == 0


def test_image_case_runs_for_image_profiles(fake: FakeServer) -> None:
    fake.config.replies = dict(GOOD)
    fake.config.status = {"ok": True, "model_slot": {"name": "x", "modalities": "text,image"}}
    assert canary(fake) == 0
    image_body = fake.config.requests[-1]
    content = image_body["messages"][0]["content"]
    assert content[1]["image_url"]["url"] == RED_PNG_DATA_URL

"""Gate step 3 ("for VL profiles, /v1/chat/completions accepts a real image request") on the
shipped image profiles, against the fake OpenAI server.

No image-capable model runs on the vLLM CPU image, so what this checks is the gate's side: that
the step runs for a ``text,image`` profile (the production Gemma 4 c8 among them), that it sends
a real PNG (decoded here with Pillow), that a refusal fails the gate and blocks promotion, and
that a text profile sends no image at all. Whether a model answers the image is for the B70 host.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from orchestrator.cli.main import main
from orchestrator.profiles.store import ProfileStore

from .fake_server import FakeServer
from .test_canary_fake import GOOD

REPO = Path(__file__).resolve().parents[2]
C8 = "gemma4-12b-it-int4-autoround-c8"


@pytest.fixture
def profiles(tmp_path: Path) -> Path:
    """The shipped files, unchanged: the c8 production profile, its base and a text profile."""
    directory = tmp_path / "profiles"
    directory.mkdir()
    for name in (C8, "gemma4-12b-it-int4-autoround", "cpu-smollm2-135m", "cpu-tiny"):
        shutil.copy(REPO / "profiles" / f"{name}.env", directory)
    return directory


def serve_profile(fake: FakeServer, profiles: Path, name: str) -> None:
    """Make the fake answer as the profile's vLLM would: its served name and context."""
    profile = ProfileStore(profiles).load(name)
    fake.config.model = profile.served_model_name
    fake.config.max_model_len = profile.max_model_len
    fake.config.replies = dict(GOOD)


def gate(fake: FakeServer, profiles: Path, state: Path, name: str, *extra: str) -> int:
    return main(
        [
            "gate",
            name,
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
            "--ttft-contexts",
            "64",  # the fake counts words; a 32K prompt would only cost time here
            "--quiet",
            "--json",
            *extra,
        ]
    )


def image_parts(requests: list[dict[str, Any]]) -> list[str]:
    """The image URLs of every chat request the fake received."""
    return [
        part["image_url"]["url"]
        for body in requests
        for message in body.get("messages", [])
        if isinstance(message.get("content"), list)
        for part in message["content"]
        if part.get("type") == "image_url"
    ]


def test_gate_runs_the_image_step_for_the_production_profile(
    fake: FakeServer, profiles: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    serve_profile(fake, profiles, C8)
    code = gate(fake, profiles, tmp_path / "state", C8)
    report = json.loads(capsys.readouterr().out)
    assert code == 0, report["steps"]
    step = report["steps"][2]
    assert (step["number"], step["name"], step["result"]) == (3, "image", "pass")
    assert step["numbers"]["content"] == "Red"
    urls = image_parts(fake.config.requests)
    assert urls, "no image reached the server"
    prefix = "data:image/png;base64,"
    assert urls[0].startswith(prefix)
    image = Image.open(io.BytesIO(base64.b64decode(urls[0][len(prefix) :])))
    assert (image.format, image.size, image.convert("RGB").getpixel((0, 0))) == (
        "PNG",
        (1, 1),
        (255, 0, 0),
    )


def test_gate_fails_step_3_and_does_not_promote_when_images_are_refused(
    fake: FakeServer, profiles: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    serve_profile(fake, profiles, "gemma4-12b-it-int4-autoround")
    fake.config.images = False  # what a server without the vision tower does
    before = (profiles / "gemma4-12b-it-int4-autoround.env").read_text()
    code = gate(fake, profiles, tmp_path / "state", "gemma4-12b-it-int4-autoround", "--promote")
    report = json.loads(capsys.readouterr().out)
    assert code == 1
    step = report["steps"][2]
    assert (step["name"], step["result"]) == ("image", "fail")
    assert "HTTP 400" in step["reason"] and "not a multimodal model" in step["reason"]
    assert report["passed"] is False and report["promoted"] is None
    assert (profiles / "gemma4-12b-it-int4-autoround.env").read_text() == before


def test_gate_sends_no_image_to_a_text_profile(
    fake: FakeServer, profiles: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    serve_profile(fake, profiles, "cpu-tiny")
    fake.config.images = False  # an image request would fail the gate
    code = gate(fake, profiles, tmp_path / "state", "cpu-tiny")
    report = json.loads(capsys.readouterr().out)
    assert code == 0, report["steps"]
    step = report["steps"][2]
    assert (step["name"], step["result"]) == ("image", "skipped")
    assert step["reason"] == "text-only profile (modalities: text)"
    assert image_parts(fake.config.requests) == []


def test_gate_json_with_promote_prints_only_the_json_report(
    fake: FakeServer, profiles: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Regression: `gate --json --promote` printed "not promoted: ..." after the JSON."""
    serve_profile(fake, profiles, "cpu-tiny")
    fake.config.max_model_len = 1024  # step 1 fails: not promoted
    assert gate(fake, profiles, tmp_path / "state", "cpu-tiny", "--promote") == 1
    report = json.loads(capsys.readouterr().out)  # the whole of stdout is one JSON document
    assert report["passed"] is False and report["promoted"] is None

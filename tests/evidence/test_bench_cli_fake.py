"""The bench command end to end against the fake server: document, table, plot, compare."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from orchestrator.cli.main import main

from .fake_server import FakeServer


def run_bench(fake: FakeServer, out: Path, *extra: str) -> int:
    return main(
        [
            "bench",
            "--base-url",
            fake.base_url,
            "--concurrency",
            "1,2",
            "--prompt-tokens",
            "32",
            "--output-tokens",
            "8",
            "--json-out",
            str(out),
            "--quiet",
            *extra,
        ]
    )


def test_ladder_document_is_complete(
    fake: FakeServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "a.json"
    assert run_bench(fake, out, "--probes", "--plot", str(tmp_path / "a.png")) == 0
    doc = json.loads(out.read_text())
    assert doc["kind"] == "model-slot-bench"
    assert doc["model"] == "fake-model"
    assert doc["max_model_len"] == 512
    assert doc["shape"]["mode"] == "cold"
    assert [level["concurrency"] for level in doc["levels"]] == [1, 2]
    for level in doc["levels"]:
        s = level["summary"]
        assert s["requests"] == len(level["records"]) == 2 * max(1, level["concurrency"])
        assert all(r["output_tokens"] == 8 and r["prompt_tokens"] == 32 for r in level["records"])
        assert s["output_tok_s"] == pytest.approx(s["output_tokens"] / s["wall_s"])
    assert [p["passed"] for p in doc["probes"]] == [True, True]
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"
    table = capsys.readouterr().out
    assert "OUT tok/s" in table
    assert "probe over-limit: pass" in table


def test_compare_prints_each_level(
    fake: FakeServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_bench(fake, tmp_path / "a.json") == 0
    fake.config.token_delay_s = 0.01
    assert run_bench(fake, tmp_path / "b.json", "--shared-prefix-tokens", "16") == 0
    capsys.readouterr()
    assert main(["bench", "compare", str(tmp_path / "a.json"), str(tmp_path / "b.json")]) == 0
    text = capsys.readouterr().out
    assert "shape differs" in text
    assert text.count("wall output tok/s") == 2
    assert "%" in text


def test_failed_requests_make_a_nonzero_exit(fake: FakeServer, tmp_path: Path) -> None:
    fake.config.usage = "missing"
    assert run_bench(fake, tmp_path / "x.json") == 1
    doc = json.loads((tmp_path / "x.json").read_text())
    assert doc["levels"][0]["summary"]["failed"] == 2


def test_no_model_says_why_and_what_to_do(
    fake: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Nothing listening, or an HTTP error (here 404): the error names the cause, not a guess."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"  # bound, never listening
        assert main(["bench", "--base-url", closed, "--concurrency", "1", "--quiet"]) != 0
    err = capsys.readouterr().err
    assert f"no model at {closed}/v1/models: cannot reach it (ConnectError" in err
    assert "python -m orchestrator status" in err

    missing = fake.base_url + "/nowhere"
    assert main(["canary", "--base-url", missing, "--quiet"]) != 0
    assert f"no model at {missing}/v1/models: HTTP 404" in capsys.readouterr().err

"""Fixtures of the evidence tools' tests: a fake OpenAI-ish server, and the live vLLM server."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from orchestrator.profiles.store import Profile, ProfileStore

from .fake_server import FakeConfig, FakeServer, serve

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _evidence_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Results the tools keep go to this test's state directory, not the checkout's."""
    monkeypatch.setenv("MODEL_SLOT_STATE_DIR", str(tmp_path / "state"))


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    yield from serve(FakeConfig())


@dataclass
class Live:
    """What the evidence tests need of a live vLLM server."""

    base_url: str
    served_model_name: str
    max_model_len: int
    profile: Profile
    container: Any


@pytest.fixture(scope="session")
def live(request: pytest.FixtureRequest) -> Live:
    """The shared real vLLM CPU server (``vllm_cpu_server`` from tests/conftest.py).

    For development only, ``MODEL_SLOT_EVIDENCE_CONTAINER=<name>`` reuses a running container
    started from the shipped ``cpu-smollm2-135m`` profile instead of starting one.
    """
    name = os.environ.get("MODEL_SLOT_EVIDENCE_CONTAINER")
    if not name:
        server = request.getfixturevalue("vllm_cpu_server")
        return Live(
            server.base_url,
            server.served_model_name,
            server.max_model_len,
            server.profile,
            server.container,
        )
    import docker

    container = docker.from_env().containers.get(name)
    port = container.attrs["NetworkSettings"]["Ports"]["8000/tcp"][0]["HostPort"]
    profile = ProfileStore(REPO / "profiles").load("cpu-smollm2-135m")
    return Live(
        f"http://127.0.0.1:{port}",
        profile.served_model_name,
        profile.max_model_len,
        profile,
        container,
    )


@pytest.fixture(scope="session")
def live_baseline(live: Live, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A canary baseline saved from the live server (hashes only: what a tiny model says)."""
    path = tmp_path_factory.mktemp("canary") / "baseline.json"
    from orchestrator.cli.main import main

    code = main(
        [
            "canary",
            "--base-url",
            live.base_url,
            "--expect",
            "baseline",
            "--save-baseline",
            str(path),
            "--quiet",
        ]
    )
    assert code == 0, "saving the canary baseline failed"
    return path


def run_soak(
    capsys: pytest.CaptureFixture[str],
    base_url: str,
    out_dir: Path,
    *,
    duration_s: str,
    interval_s: str,
    prompt_tokens: str,
    output_tokens: str,
    extra: tuple[str, ...] = (),
) -> tuple[int, dict[str, Any]]:
    """``soak --json`` as the CLI runs it: its exit code and the summary it printed."""
    from orchestrator.cli.main import main

    argv = ["soak", "--base-url", base_url, "--duration-s", duration_s, "--interval-s", interval_s]
    argv += ["--prompt-tokens", prompt_tokens, "--output-tokens", output_tokens, *extra]
    code = main([*argv, "--out-dir", str(out_dir), "--quiet", "--json"])
    summary: dict[str, Any] = json.loads(capsys.readouterr().out)
    return code, summary

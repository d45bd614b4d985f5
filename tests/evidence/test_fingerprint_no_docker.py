"""Regression: bench run inside the model container (no Docker SDK there) crashed recording its
evidence, because the fingerprint imported ``docker`` before its "never raises" guard."""

from __future__ import annotations

import sys

import pytest

from orchestrator.evidence import fingerprint


def test_fingerprint_without_the_docker_sdk_says_so_instead_of_crashing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "docker", None)  # `import docker` raises ImportError
    monkeypatch.setitem(sys.modules, "docker.errors", None)
    found = fingerprint.from_slot(None, None)
    assert "no Docker SDK" in found["image"]["note"]

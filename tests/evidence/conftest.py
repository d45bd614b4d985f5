"""Fixtures of the evidence tools' tests: a fake OpenAI-ish server, and the live vLLM server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .fake_server import FakeConfig, FakeServer, serve


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    yield from serve(FakeConfig())

"""The evidence commands: ``bench`` (and ``bench compare``), ``canary``, ``gate``, ``soak``.

Each tool runs against any OpenAI-compatible base URL, the frontdoor by default, and turns what
it measured into a record a profile's promotion can rest on.
"""

from __future__ import annotations

import argparse

from orchestrator.evidence import canary, gate, soak
from orchestrator.evidence.bench import cli as bench_cli


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bench_cli.register(subparsers)
    canary.register(subparsers)
    gate.register(subparsers)
    soak.register(subparsers)

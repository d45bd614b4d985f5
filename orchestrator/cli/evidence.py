"""The evidence commands: ``bench`` (and ``bench compare``), ``canary``, ``gate``, ``soak``.

Each tool runs against any OpenAI-compatible base URL, the frontdoor by default, and turns what
it measured into a record a profile's promotion can rest on. The logic is in
``orchestrator/evidence/``; these modules parse arguments, render and save.
"""

from __future__ import annotations

import argparse

from orchestrator.cli import bench, canary, gate, soak


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bench.register(subparsers)
    canary.register(subparsers)
    gate.register(subparsers)
    soak.register(subparsers)

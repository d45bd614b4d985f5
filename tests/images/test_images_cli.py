"""The ``images`` command: its parser, and what ``list`` prints."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from orchestrator.images import base, cli
from orchestrator.images import build as build_mod


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    return parser.parse_args(list(argv))


def test_subcommands_parse_and_carry_their_handler() -> None:
    assert _parse("images", "base").func is cli.cmd_base
    assert _parse("images", "wheels", "--only", "cpu").only == "cpu"
    assert _parse("images", "lock").func is cli.cmd_lock
    args = _parse("images", "build", "--only", "xpu-substitute", "--no-cache")
    assert (args.func, args.only, args.no_cache, args.public_bases) == (
        cli.cmd_build,
        "xpu-substitute",
        True,
        False,
    )
    assert _parse("images", "list").func is cli.cmd_list


def test_only_accepts_the_known_images() -> None:
    with pytest.raises(SystemExit):
        _parse("images", "build", "--only", "gpu")


def test_list_shows_built_stale_and_missing_images(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [
        build_mod.ImageStatus(
            "cpu", "modelslot/vllm-cpu:local", True, "2026-01-01T00:00:00", "abc", []
        ),
        build_mod.ImageStatus(
            "xpu",
            "modelslot/vllm-xpu:local",
            True,
            "2026-01-01T00:00:00",
            "abc",
            ["a", "b", "c", "d"],
        ),
        build_mod.ImageStatus("frontdoor", "modelslot/frontdoor:local", False, "-", "-", []),
    ]
    monkeypatch.setattr(cli, "_client", lambda: None)
    monkeypatch.setattr(build_mod, "status", lambda client, offline: rows)
    assert cli.cmd_list(_parse("images", "list")) == 0
    out = capsys.readouterr().out.splitlines()
    assert "up to date" in out[1]
    assert "STALE: a; b; c; 1 more" in out[2]
    assert "not built" in out[3]


def test_debootstrap_makes_a_minbase_bookworm_with_python_and_libnuma() -> None:
    command = base.debootstrap_command(Path("/tmp/rootfs"))
    assert command[:2] == ["debootstrap", "--variant=minbase"]
    assert "--include=python3,python3-venv,ca-certificates,libnuma1" in command
    assert command[-3:] == ["bookworm", "/tmp/rootfs", "http://deb.debian.org/debian"]

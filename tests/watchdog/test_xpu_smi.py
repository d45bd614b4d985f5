"""The xpu-smi parser on its documented output formats, and the command run for real through a
stand-in ``xpu-smi`` script on the PATH (no B70 here: see the module's docstring)."""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

import pytest

from orchestrator.slot.xpu_smi import GpuSample, XpuSmi, XpuSmiError, parse_dump, parse_ps

DATA = Path(__file__).parent / "data"


def test_dump_gives_per_gpu_gauges_and_na_is_none() -> None:
    samples = parse_dump((DATA / "xpu-smi-dump.csv").read_text())
    assert [s.gpu for s in samples] == ["0", "1", "2", "3"]
    assert samples[0] == GpuSample("0", 97.0, 20480.0, 180.61, 61.0, 0)
    assert samples[2].temperature_c is None and samples[2].engine_resets == 2
    assert samples[3] == GpuSample("3")  # every value N/A or empty


def test_dump_from_the_user_guide_keeps_the_last_row_and_ignores_other_columns() -> None:
    samples = parse_dump((DATA / "xpu-smi-dump-guide.csv").read_text())
    assert samples == [GpuSample("0", utilization_percent=0.0, power_w=14.61)]


def test_dump_without_a_header_is_an_error_that_shows_the_output() -> None:
    with pytest.raises(XpuSmiError, match=r"no 'DeviceId' header.*Level Zero"):
        parse_dump("Error: Level Zero initialization failed\n")


def test_ps_lists_holders_without_xpu_smi_itself() -> None:
    found = parse_ps((DATA / "xpu-smi-ps.json").read_text())
    assert [(p.pid, p.name, p.device_id) for p in found] == [
        (768707, "python", 0),
        (5225, "llama-server", 1),
    ]


def test_ps_garbage_is_an_error() -> None:
    with pytest.raises(XpuSmiError, match="did not print JSON"):
        parse_ps("<html>")
    with pytest.raises(XpuSmiError, match="no device_util_by_proc_list"):
        parse_ps('{"error": "Device not found"}')


def test_without_xpu_smi_the_telemetry_says_none_is_available() -> None:
    smi = XpuSmi(which=lambda _: None)
    telemetry = smi.telemetry()
    assert not telemetry.available and "xpu-smi is not on the PATH" in str(telemetry.reason)
    assert smi.processes() is None and smi.holders(set()) == []


@pytest.fixture
def fake_xpu_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in ``xpu-smi`` executable that prints the documented formats."""
    script = tmp_path / "xpu-smi"
    script.write_text(
        "#!/bin/sh\n"
        f'case "$1" in\n'
        f"  dump) cat {DATA / 'xpu-smi-dump.csv'} ;;\n"
        f"  ps) cat {DATA / 'xpu-smi-ps.json'} ;;\n"
        "  *) echo unknown >&2; exit 2 ;;\n"
        "esac\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    return script


def test_the_real_command_path_through_a_stand_in(fake_xpu_smi: Path) -> None:
    smi = XpuSmi()
    assert smi.path == str(fake_xpu_smi)
    telemetry = smi.telemetry()
    assert telemetry.available and telemetry.source == "xpu-smi dump"
    assert [g.gpu for g in telemetry.gpus] == ["0", "1", "2", "3"]
    holders = smi.holders(own_pids={768707})  # the slot's own vLLM is not "else"
    assert holders == ["GPU 1: pid 5225 (llama-server), 1 MiB"]


def test_a_failing_xpu_smi_is_reported_not_raised() -> None:
    def broken(argv: Sequence[str]) -> str:
        raise XpuSmiError(f"{' '.join(argv)} exited 1: permission denied")

    telemetry = XpuSmi(runner=broken, which=lambda _: "/usr/bin/xpu-smi").telemetry()
    assert not telemetry.available and "permission denied" in str(telemetry.reason)

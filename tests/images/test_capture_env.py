"""Build-time capture of a sourced environment script (the XPU base's oneAPI setvars.sh)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CAPTURE = REPO / "images/vllm-xpu/capture_env.py"


def _capture(script: Path, output: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CAPTURE), str(script), str(output)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )


def test_records_only_what_the_script_changed(tmp_path: Path) -> None:
    script = tmp_path / "setvars.sh"
    script.write_text(
        "export ONEAPI_ROOT=/opt/intel/oneapi\n"
        'export LD_LIBRARY_PATH="/opt/intel/lib:${LD_LIBRARY_PATH}"\n'
        'echo "noise on stdout"\n'
        # setvars.sh refuses unknown arguments; it must be sourced with none.
        '[ "$#" -eq 0 ] || exit 3\n'
    )
    output = tmp_path / "base-env.json"
    env = {"PATH": os.environ["PATH"], "LD_LIBRARY_PATH": "/usr/lib", "KEEP": "same"}
    result = _capture(script, output, env)
    assert result.returncode == 0, result.stderr
    recorded = json.loads(output.read_text())
    assert recorded["after"] == {
        "ONEAPI_ROOT": "/opt/intel/oneapi",
        "LD_LIBRARY_PATH": "/opt/intel/lib:/usr/lib",
    }
    assert recorded["before"] == {"LD_LIBRARY_PATH": "/usr/lib"}


def test_a_base_without_the_script_records_nothing(tmp_path: Path) -> None:
    output = tmp_path / "base-env.json"
    result = _capture(tmp_path / "missing.sh", output, {"PATH": os.environ["PATH"]})
    assert result.returncode == 0
    assert not output.exists()

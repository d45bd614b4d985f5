"""The model-container entrypoint, run as the image runs it: a copy of ``entrypoint.py`` beside
``vllm_argv.py``, as its own process. ``exec`` is observed through a stand-in ``python3``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator import vllm_argv

REPO = Path(__file__).resolve().parents[2]

PROFILE = {
    "VLLM_MODEL": "/opt/models/smollm2-135m-instruct",
    "VLLM_SERVED_MODEL_NAME": "smollm2-135m-instruct",
    "VLLM_DTYPE": "bfloat16",
    "VLLM_MAX_MODEL_LEN": "2048",
    "VLLM_MAX_NUM_SEQS": "4",
    "VLLM_ENFORCE_EAGER": "1",
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_COMPILATION_CONFIG": '{"cudagraph_mode": "NONE"}',
}

# Stands in for python3: reports how it was started, as JSON on stdout.
FAKE_PYTHON = """#!{python}
import json, os, sys
print(json.dumps({{"argv": sys.argv[1:], "pid": os.getpid(), "env": dict(os.environ)}}))
"""


@pytest.fixture
def image_dir(tmp_path: Path) -> Path:
    """/opt/model-slot as the Dockerfiles lay it out."""
    shutil.copy(REPO / "images/common/entrypoint.py", tmp_path / "entrypoint.py")
    shutil.copy(REPO / "orchestrator/vllm_argv.py", tmp_path / "vllm_argv.py")
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    fake = fake_bin / "python3"
    fake.write_text(FAKE_PYTHON.format(python=sys.executable))
    fake.chmod(0o755)
    return tmp_path


def _run(image_dir: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {"PATH": f"{image_dir / 'bin'}:/usr/bin:/bin", **env}
    return subprocess.run(
        [sys.executable, str(image_dir / "entrypoint.py")],
        env=full,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_dry_run_prints_the_argv_the_profile_asks_for(image_dir: Path) -> None:
    result = _run(image_dir, {**PROFILE, "MODEL_SLOT_ENTRYPOINT_DRY_RUN": "1"})
    assert result.returncode == 0, result.stderr
    line = json.loads(result.stdout)
    assert line["argv"] == vllm_argv.build_command(PROFILE)
    assert line["argv"][:5] == [
        "python3",
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        "/opt/models/smollm2-135m-instruct",
    ]
    # A JSON value stays one argument.
    assert '{"cudagraph_mode": "NONE"}' in line["argv"]


def test_execs_vllm_in_place_without_profile_only_keys(image_dir: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, str(image_dir / "entrypoint.py")],
        env={"PATH": f"{image_dir / 'bin'}:/usr/bin:/bin", **PROFILE},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    started = json.loads(out)
    # exec, not fork: the stand-in vLLM runs as the entrypoint's own process.
    assert started["pid"] == process.pid
    assert started["argv"] == vllm_argv.build_command(PROFILE)[1:]
    assert started["env"]["VLLM_CPU_KVCACHE_SPACE"] == "1"  # passed through
    assert not set(started["env"]) & vllm_argv.PROFILE_ONLY_KEYS
    # The argv is logged as one JSON line on stderr before the exec.
    logged = json.loads(err.strip().splitlines()[-1])
    assert logged == {"event": "exec", "argv": vllm_argv.build_command(PROFILE)}


def test_a_bad_profile_value_exits_2_naming_the_key(image_dir: Path) -> None:
    result = _run(image_dir, {**PROFILE, "VLLM_EXTRA_ARGS": "--seed 0"})
    assert result.returncode == 2
    assert "VLLM_EXTRA_ARGS" in result.stderr
    assert result.stderr.startswith("model-slot entrypoint:")


def test_a_missing_argv_module_exits_2(image_dir: Path) -> None:
    (image_dir / "vllm_argv.py").unlink()
    result = _run(image_dir, PROFILE)
    assert result.returncode == 2
    assert "cannot import vllm_argv" in result.stderr


def test_build_time_base_env_applies_unless_the_container_overrides_it(
    image_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorded = {
        "before": {"LD_LIBRARY_PATH": "/usr/lib"},
        "after": {"LD_LIBRARY_PATH": "/opt/intel/lib:/usr/lib", "ONEAPI_ROOT": "/opt/intel"},
    }
    base_env = image_dir / "base-env.json"
    base_env.write_text(json.dumps(recorded))
    source = (image_dir / "entrypoint.py").read_text()
    (image_dir / "entrypoint.py").write_text(
        source.replace('"/opt/model-slot/base-env.json"', repr(str(base_env)))
    )
    result = _run(image_dir, {**PROFILE, "LD_LIBRARY_PATH": "/usr/lib"})
    env = json.loads(result.stdout)["env"]
    assert env["LD_LIBRARY_PATH"] == "/opt/intel/lib:/usr/lib"
    assert env["ONEAPI_ROOT"] == "/opt/intel"
    result = _run(image_dir, {**PROFILE, "ONEAPI_ROOT": "/custom", "LD_LIBRARY_PATH": "/usr/lib"})
    assert json.loads(result.stdout)["env"]["ONEAPI_ROOT"] == "/custom"


def test_no_shell_is_involved() -> None:
    source = (REPO / "images/common/entrypoint.py").read_text()
    assert "shell=True" not in source
    assert "os.system" not in source
    assert os.path.basename(vllm_argv.LAUNCHER[0]) == "python3"

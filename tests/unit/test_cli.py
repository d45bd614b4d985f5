"""The CLI as an operator uses it: real subprocesses, real exit codes, stderr for errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run(*args: str, profiles: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if profiles is not None:
        env["MODEL_SLOT_PROFILES_DIR"] = str(profiles)
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_list_shows_every_profile_with_its_status() -> None:
    result = run("list")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAME", "STATUS", "MODALITIES", "CHECKPOINT", "TITLE"]
    rows = {line.split()[0]: line.split()[1:4] for line in lines[1:]}
    assert rows["gemma4-12b-it-int4-autoround-c8"] == [
        "production",
        "text,image",
        "Intel/gemma-4-12B-it-int4-AutoRound",
    ]
    assert rows["qwen3-vl-30b-a3b-fp8"][0] == "blocked-native-xpu-fp8"
    assert len(rows) == len(list((REPO / "profiles").glob("*.env")))


def test_list_says_not_recorded_where_the_lab_named_no_checkpoint() -> None:
    result = run("list")
    row = next(line for line in result.stdout.splitlines() if line.startswith("minimax-m27-c1 "))
    assert row.split()[1:5] == ["baseline", "text", "not", "recorded"]


def test_list_json_has_the_documented_fields() -> None:
    result = run("list", "--json")
    assert result.returncode == 0
    items = json.loads(result.stdout)
    for item in items:
        assert {"name", "title", "hf_id", "status", "modalities", "purpose"} <= item.keys()
    by_name = {item["name"]: item for item in items}
    assert by_name["qwen36-35b-a3b-int4-autoround"]["modalities"] == "text,image"


def test_show_prints_the_resolved_profile_and_argv() -> None:
    result = run("show", "gemma4-12b-it-int4-autoround-c64")
    assert result.returncode == 0, result.stderr
    assert "--max-model-len 4480" in result.stdout
    assert "--max-num-seqs 64" in result.stdout
    assert "extends: gemma4-12b-it-int4-autoround\n" in result.stdout


def test_show_says_the_gate_image_step_applies_to_an_image_profile() -> None:
    result = run("show", "gemma4-12b-it-int4-autoround-c8")
    assert result.returncode == 0, result.stderr
    assert "  checkpoint: Intel/gemma-4-12B-it-int4-AutoRound\n" in result.stdout
    assert "  purpose:    Active full-context Gemma 4 profile: 32768-token context" in result.stdout
    assert "  gate image step: applies (modalities text,image)" in result.stdout


def test_show_says_the_gate_image_step_does_not_apply_to_a_text_profile() -> None:
    result = run("show", "minimax-m27-c1")
    assert result.returncode == 0, result.stderr
    assert "  checkpoint: not recorded\n" in result.stdout
    assert "  gate image step: does not apply (modalities text)" in result.stdout
    data = json.loads(run("show", "minimax-m27-c1", "--json").stdout)
    assert (data["hf_id"], data["gate_image_step"]) == ("", False)
    data = json.loads(run("show", "gemma3-12b-it-int4-autoround", "--json").stdout)
    assert (data["hf_id"], data["gate_image_step"]) == ("OPEA/gemma-3-12b-it-int4-AutoRound", True)


def test_show_json_argv_matches_the_builder() -> None:
    result = run("show", "cpu-smollm2-135m", "--json")
    data = json.loads(result.stdout)
    assert data["argv"][data["argv"].index("--served-model-name") + 1] == "smollm2-135m-instruct"
    assert data["frontdoor"]["max_active_generations"] == 4


def test_validate_all_shipped_profiles() -> None:
    result = run("validate")
    assert result.returncode == 0, result.stderr
    assert "0 invalid" in result.stdout


def test_misspelt_key_fails_with_a_located_message(tmp_path: Path) -> None:
    (tmp_path / "typo.env").write_text(
        (REPO / "profiles" / "cpu-smollm2-135m.env").read_text() + "VLLM_MAX_NUM_SEQ=2\n"
    )
    result = run("validate", "typo", profiles=tmp_path)
    assert result.returncode == 1
    assert "typo.env:" in result.stderr
    assert "VLLM_MAX_NUM_SEQ=2: unknown key (did you mean VLLM_MAX_NUM_SEQS?)" in result.stderr
    assert "Traceback" not in result.stderr


def test_show_unknown_profile_is_an_error_not_a_traceback() -> None:
    result = run("show", "gemma4-c8")
    assert result.returncode == 1
    assert "no such profile" in result.stderr
    assert "Traceback" not in result.stderr


def test_usage_error_exits_2() -> None:
    assert run("frobnicate").returncode == 2


def test_bench_unknown_flag_is_named_not_reported_as_an_invalid_compare_choice() -> None:
    """Regression: `bench --out x.json` said "argument compare: invalid choice: 'x.json'"."""
    result = run("bench", "--out", "x.json", "--json")
    assert result.returncode == 2
    assert "unrecognized arguments: --out x.json" in result.stderr
    assert "invalid choice" not in result.stderr


def test_a_flag_prefix_is_not_taken_for_a_longer_flag() -> None:
    """`--out` is not `--output-tokens` (argparse's abbreviations are off)."""
    result = run("bench", "--out", "64")
    assert result.returncode == 2
    assert "unrecognized arguments: --out 64" in result.stderr


def test_bench_stray_value_is_unrecognized_and_compare_still_parses() -> None:
    assert "unrecognized arguments: x.json" in run("bench", "x.json").stderr
    result = run("bench", "compare", "missing-a.json", "missing-b.json")
    assert result.returncode == 1
    assert "missing-a.json" in result.stderr

"""``vllm_reference``: the argv of vLLM's client and the bracketed comparison (pure)."""

from __future__ import annotations

import io
import itertools
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from orchestrator.evidence.bench import vllm_reference
from orchestrator.evidence.bench.metrics import summarize


def test_bracketed_accepts_within_tolerance_of_the_span_and_reports_drift() -> None:
    verdict = vllm_reference.bracketed(before=40.0, after=50.0, ours=48.0, tolerance=0.10)
    assert verdict["within"] and verdict["gap_to_vllm_mean"] == pytest.approx(48 / 45 - 1, 1e-3)
    assert verdict["vllm_drift"] == 0.25
    assert vllm_reference.bracketed(40.0, 50.0, 54.9, 0.10)["within"]  # < 50 * 1.1
    assert vllm_reference.bracketed(50.0, 40.0, 36.1, 0.10)["within"]  # > 40 * 0.9, any order
    assert not vllm_reference.bracketed(40.0, 50.0, 55.1, 0.10)["within"]
    assert not vllm_reference.bracketed(40.0, 42.0, 35.9, 0.10)["within"]


def test_argv_asks_for_the_shape_greedy_and_detailed_results() -> None:
    shape = vllm_reference.Shape(prompt_tokens=64, output_tokens=48, requests=8, concurrency=2)
    argv = vllm_reference.argv(shape, model="m", tokenizer="/opt/m", base_url="http://x:1")
    pairs = dict(itertools.pairwise(argv))
    assert pairs["--random-input-len"] == "64" and pairs["--random-output-len"] == "48"
    assert pairs["--num-prompts"] == "8" and pairs["--max-concurrency"] == "2"
    assert pairs["--temperature"] == "0" and pairs["--base-url"] == "http://x:1"
    assert {"--ignore-eos", "--save-detailed", "--save-result"} <= set(argv)
    assert f"{pairs['--result-dir']}/{pairs['--result-filename']}" == vllm_reference.RESULT_PATH


def test_records_from_a_detailed_result_summarize_like_vllm() -> None:
    result = {
        "start_times": [100.0, 100.5],
        "input_lens": [64, 64],
        "output_lens": [3, 3],
        "ttfts": [0.2, 0.3],
        "itls": [[0.1, 0.1], [0.05, 0.15]],
        "latencies": [0.4, 0.5],
        "errors": ["", ""],
    }
    records = vllm_reference.records(result, concurrency=2)
    assert [r.start_s for r in records] == [0.0, 0.5]
    assert [r.end_s for r in records] == [0.4, 1.0]
    summary = summarize(records, 2)
    assert summary.completed == 2 and summary.output_tokens == 6
    assert summary.tpot.mean == pytest.approx(((0.4 - 0.2) / 2 + (0.5 - 0.3) / 2) / 2)
    assert summary.itl.n == 4 and summary.wall_s == 1.0


def test_bench_archive_runs_bench_without_the_rest_of_the_orchestrator(tmp_path: Path) -> None:
    """Regression: after the move to orchestrator/evidence/bench/ the archive packed the wrong
    directory (``evidence/``), so ``bench`` inside the vLLM container could not import."""
    with tarfile.open(fileobj=io.BytesIO(vllm_reference.bench_archive())) as tar:
        tar.extractall(tmp_path, filter="data")
    root = tmp_path / vllm_reference.BENCH_DIR.rsplit("/", 1)[1]
    check = (
        "import runpy, sys; sys.argv = ['x', sys.argv[1], 'bench', '--help']; "
        f"code = {vllm_reference._BENCH_MAIN!r}; "
        "import contextlib, io\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "    try:\n"
        "        exec(code)\n"
        "    except SystemExit as exc:\n"
        "        assert exc.code == 0, exc.code\n"
        "import orchestrator\n"
        "print(orchestrator.__file__)\n"
        "print(sorted(m for m in ('docker', 'pydantic') if m in sys.modules))\n"
        "print('--concurrency' in out.getvalue())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", check, str(root)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    where, heavy, helped = result.stdout.splitlines()
    assert where.startswith(str(root))
    assert heavy == "[]"
    assert helped == "True"

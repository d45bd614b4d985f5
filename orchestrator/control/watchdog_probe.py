"""The watchdog's probes: real generations sent straight to the model container.

Never through the frontdoor, so a probe never takes a client's place under the cap (it does add
one short sequence to vLLM's batch, which is why it runs only when no token flowed for an
interval, and the decode probe only when no client is active).

- **liveness**: ``POST /v1/completions`` for 1 token. Proof when it returns ≥ 1 token. When it
  does not answer in time, vLLM's own counter ``vllm:generation_tokens_total`` (``/metrics``,
  read before and after) decides: if it grew, the engine generated meanwhile and the probe only
  queued behind busy sequences (every ``max_num_seqs`` place taken by long non-streamed
  generations); that is proof too. A stopped engine leaves the counter flat.
- **decode**: the same, streamed, for ``tokens`` tokens with ``ignore_eos`` (a fixed shape:
  the same short prompt every time), and the decode rate is (events after the first) / (time
  from the first to the last). On vLLM every streamed event carries one token.

Both are bounded by ``timeout_s`` over the whole exchange (httpx's timeouts bound each read; the
deadline check bounds a stream that trickles). A decode stream that reaches the deadline with
tokens in hand is cut there and is *proof*, with the rate it measured: a model that decodes
slower than ``tokens / timeout_s`` is degraded, not wedged (only silence is a wedge). Neither
raises: a failure is a ``ProbeResult``.
"""

from __future__ import annotations

import json
import time

import httpx

from orchestrator.control.watchdog import ProbeKind, ProbeResult
from orchestrator.prometheus_text import series_totals

#: vLLM's counter of generated tokens, which grows while the engine works for anyone.
GENERATED = "vllm:generation_tokens_total"
PROMPT = "The quick brown fox jumps over the lazy dog. Once upon a time"


def liveness(base_url: str, served: str, timeout_s: float) -> ProbeResult:
    before = generated_tokens(base_url)
    result = _liveness(base_url, served, timeout_s)
    if result.ok or before is None:
        return result
    after = generated_tokens(base_url)
    if after is not None and after > before:
        return ProbeResult(
            "liveness",
            ok=True,
            latency_s=result.latency_s,
            note=f"the probe {'timed out' if result.timed_out else 'failed'}, but vLLM generated "
            f"{after - before:.0f} tokens meanwhile (busy, not wedged)",
        )
    return result


def generated_tokens(base_url: str) -> float | None:
    """vLLM's ``vllm:generation_tokens_total`` (summed over engines), or None."""
    try:
        response = httpx.get(f"{base_url}/metrics", timeout=5)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    return series_totals(response.text, (GENERATED,)).get(GENERATED)


def _liveness(base_url: str, served: str, timeout_s: float) -> ProbeResult:
    start = time.monotonic()
    body = {"model": served, "prompt": PROMPT, "max_tokens": 1, "temperature": 0}
    try:
        response = httpx.post(f"{base_url}/v1/completions", json=body, timeout=timeout_s)
        latency = time.monotonic() - start
        if response.status_code != 200:
            return ProbeResult(
                "liveness",
                ok=False,
                latency_s=latency,
                error=f"HTTP {response.status_code}: {response.text[:200]}",
            )
        tokens = int((response.json().get("usage") or {}).get("completion_tokens") or 0)
    except httpx.TimeoutException:
        return _timeout("liveness", start, timeout_s)
    except (httpx.HTTPError, ValueError, TypeError) as exc:
        return _failed("liveness", start, exc)
    if tokens < 1:
        return ProbeResult("liveness", ok=False, latency_s=latency, error="no tokens returned")
    return ProbeResult("liveness", ok=True, latency_s=latency, tokens=tokens)


def decode(base_url: str, served: str, tokens: int, timeout_s: float) -> ProbeResult:
    start = time.monotonic()
    deadline = start + timeout_s
    body = {
        "model": served,
        "prompt": PROMPT,
        "max_tokens": tokens,
        "temperature": 0,
        "ignore_eos": True,  # vLLM: always the full shape, whatever the model would say
        "stream": True,
    }
    times: list[float] = []
    cut = False
    try:
        with httpx.stream(
            "POST", f"{base_url}/v1/completions", json=body, timeout=timeout_s
        ) as response:
            if response.status_code != 200:
                response.read()
                return ProbeResult(
                    "decode",
                    ok=False,
                    latency_s=time.monotonic() - start,
                    error=f"HTTP {response.status_code}: {response.text[:200]}",
                )
            for line in response.iter_lines():
                now = time.monotonic()
                if now > deadline:
                    if not times:
                        return _timeout("decode", start, timeout_s)
                    cut = True  # tokens are flowing, slowly: the rate so far is the figure
                    break
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                event = json.loads(line[6:])
                if event.get("choices"):
                    times.append(now)
    except httpx.TimeoutException:
        return _timeout("decode", start, timeout_s)
    except (httpx.HTTPError, ValueError, TypeError) as exc:
        return _failed("decode", start, exc)
    latency = time.monotonic() - start
    if not times:
        return ProbeResult("decode", ok=False, latency_s=latency, error="no tokens streamed")
    rate = (
        (len(times) - 1) / (times[-1] - times[0])
        if len(times) > 1 and times[-1] > times[0]
        else None
    )
    return ProbeResult(
        "decode",
        ok=True,
        latency_s=latency,
        tokens=len(times),
        decode_tok_s=rate,
        note=f"{len(times)} of {tokens} tokens, cut at the {timeout_s:g}s bound" if cut else None,
    )


def _timeout(kind: ProbeKind, start: float, timeout_s: float) -> ProbeResult:
    return ProbeResult(
        kind,
        ok=False,
        latency_s=time.monotonic() - start,
        timed_out=True,
        error=f"no answer within {timeout_s:g}s",
    )


def _failed(kind: ProbeKind, start: float, exc: Exception) -> ProbeResult:
    return ProbeResult(
        kind,
        ok=False,
        latency_s=time.monotonic() - start,
        error=f"{type(exc).__name__}: {exc}",
    )

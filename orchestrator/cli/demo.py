"""``python -m orchestrator demo``: wait until the endpoint serves, then show one real answer.

This is the last step of ``./run up``: it proves the whole path (LAN port, frontdoor, model)
with one chat request and prints the ``/status`` summary an operator looks at first.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import httpx

from orchestrator.errors import ModelSlotError


def _status(client: httpx.Client) -> dict[str, Any] | None:
    try:
        response = client.get("/status", timeout=5)
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    body: dict[str, Any] = response.json()
    return body


def _models(client: httpx.Client) -> list[str]:
    """The served model names, or [] while the model is not answering.

    A frontdoor that has just started restores its last route before the orchestrator has
    confirmed it, so "serving" alone is not proof; the model answering is.
    """
    try:
        response = client.get("/v1/models", timeout=10)
    except httpx.HTTPError:
        return []
    if response.status_code != 200:
        return []
    return [str(model["id"]) for model in response.json().get("data", [])]


def route_state(status: dict[str, Any]) -> tuple[str, str]:
    route = status.get("route") or {}
    return str(route.get("state", "unknown")), str(route.get("reason") or "")


def wait_serving(client: httpx.Client, timeout_s: float) -> dict[str, Any]:
    """Poll /status until the route serves; print each change of state with the elapsed time."""
    start = time.monotonic()
    last = ""
    while True:
        elapsed = time.monotonic() - start
        status = _status(client)
        if status is None:
            line = "frontdoor not answering yet"
        else:
            state, reason = route_state(status)
            name = (status.get("model_slot") or {}).get("name") or "-"
            if state == "serving" and _models(client):
                print(f"  [{elapsed:5.0f}s] serving {name}", file=sys.stderr)
                return status
            if state == "faulted":
                raise ModelSlotError(
                    f"the model is faulted: {reason}. See `python -m orchestrator status` and "
                    "`docker logs modelslot-model`; switch to another profile to recover."
                )
            line = f"{state} {name}" + (f": {reason}" if reason else "")
        if line != last:
            print(f"  [{elapsed:5.0f}s] {line}", file=sys.stderr)
            last = line
        if elapsed > timeout_s:
            raise ModelSlotError(
                f"not serving after {timeout_s:.0f}s (last: {line}). Look at "
                "`docker compose logs orchestrator` and `docker logs modelslot-model`."
            )
        time.sleep(1)  # a progress poll of a remote state, not synchronisation between threads


def chat(client: httpx.Client, model: str, prompt: str) -> str:
    response = client.post(
        "/v1/chat/completions",
        json={
            "model": model,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": 64,
            "temperature": 0,
        },
        timeout=120,
    )
    if response.status_code != 200:
        raise ModelSlotError(f"chat request failed: {response.status_code} {response.text}")
    content: str = response.json()["choices"][0]["message"]["content"]
    return content


def summary(status: dict[str, Any]) -> list[str]:
    slot = status.get("model_slot") or {}
    front = status.get("frontdoor") or {}
    state, reason = route_state(status)
    facts = (status.get("route") or {}).get("startup_facts") or status.get("startup_facts") or {}
    lines = [
        f"profile      {slot.get('name')}  ({slot.get('status')})  {slot.get('title')}",
        f"route        {state}{': ' + reason if reason else ''}",
        f"generations  cap {front.get('max_active_generations')}, "
        f"queue timeout {front.get('queue_timeout_s')} s, "
        f"active {front.get('active_generations')}, queued {front.get('queued_generations')}",
    ]
    if "kv_cache_tokens" in facts:
        line = f"kv cache     {facts['kv_cache_tokens']:,} tokens"
        if "max_concurrency" in facts:
            line += f", {facts['max_concurrency']}x concurrency at max_model_len"
        lines.append(line)
    return lines


def cmd_demo(args: argparse.Namespace) -> int:
    with httpx.Client(base_url=args.base_url) as client:
        print(f"waiting for {args.base_url} to serve (up to {args.timeout:.0f}s)", file=sys.stderr)
        status = wait_serving(client, args.timeout)
        model = _models(client)[0]
        answer = chat(client, model, args.prompt)
        print(f"\n> {args.prompt}\n{model}: {answer.strip()}\n")
        print("\n".join(summary(client.get("/status", timeout=5).json() or status)))
    return 0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser("demo", help="wait until the endpoint serves and show one answer")
    p.add_argument("--base-url", default="http://127.0.0.1:8000")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds to wait (default 900)")
    p.add_argument("--prompt", default="What is the capital of France? Answer in one sentence.")
    p.set_defaults(func=cmd_demo)

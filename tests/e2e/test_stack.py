"""The whole stack as an operator runs it: `docker compose` with the real images, real vLLM CPU.

One compose project (tests/e2e/stack.py; its own name, network, ports, state dir and slot
name, so it cannot touch a developer's stack) goes through the life of a host, in order: first
boot on the default profile, frontdoor restart, orchestrator restart under load, a switch from
the CLI, and a down/up that stands in for a reboot. The tests share the project because each
vLLM start costs ~40 s here; each test asserts its own step.
"""

from __future__ import annotations

import threading

import docker
import httpx
import pytest

from tests.e2e.stack import Stack, now
from tests.support import wait_until

pytestmark = [pytest.mark.docker, pytest.mark.vllm, pytest.mark.e2e]


def served_models(stack: Stack) -> list[str]:
    with stack.openai() as client:
        return [model.id for model in client.models.list()]


def stream_chat(stack: Stack, model: str) -> str:
    with stack.openai() as client:
        stream = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "Say hello."}],
            max_tokens=16,
            temperature=0,
            stream=True,
        )
        return "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)


def test_compose_up_from_nothing_serves_the_default_profile(stack: Stack) -> None:
    stack.compose("up", "-d")
    stack.wait_serving("cpu-smollm2-135m")
    assert stream_chat(stack, "smollm2-135m-instruct").strip()
    status = stack.status()
    assert status["ok"] is True
    assert status["model_slot"]["name"] == "cpu-smollm2-135m"
    assert status["frontdoor"]["max_active_generations"] == 4
    labelled = stack.client.containers.list(
        all=True,
        filters={
            "label": [
                "modelslot.role=model",
                f"modelslot.instance={stack.env['MODEL_SLOT_INSTANCE']}",
            ]
        },
    )
    assert [c.name for c in labelled] == [stack.container_name]


def test_frontdoor_restart_keeps_the_model_and_serves_again(stack: Stack) -> None:
    before = stack.model()
    stack.compose("restart", "frontdoor")
    wait_until(lambda: stack.serving("cpu-smollm2-135m"), 30, "the frontdoor to serve again")
    assert stream_chat(stack, "smollm2-135m-instruct").strip()
    after = stack.model()
    assert after.id == before.id
    assert after.attrs["State"]["StartedAt"] == before.attrs["State"]["StartedAt"]


def test_orchestrator_restart_reloads_nothing_and_drops_nothing(stack: Stack) -> None:
    before = stack.model()
    outcomes: list[int | str] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=stack.base_url, timeout=60) as client:
            while not stop.is_set():
                try:
                    response = client.post(
                        "/v1/completions",
                        json={
                            "model": "smollm2-135m-instruct",
                            "prompt": "One, two,",
                            "max_tokens": 4,
                        },
                    )
                    outcomes.append(response.status_code)
                except httpx.HTTPError as exc:
                    outcomes.append(repr(exc))

    thread = threading.Thread(target=load)
    thread.start()
    try:
        wait_until(lambda: len(outcomes) >= 1, 60, "the first request under load")
        stack.compose("restart", "orchestrator")
        orchestrator = stack.compose("ps", "-q", "orchestrator").stdout.strip()
        wait_until(
            lambda: stack.client.containers.get(orchestrator).status == "running",
            60,
            "the orchestrator to run again",
        )
        wait_until((stack.state_dir / "control.sock").exists, 60, "the controller's socket")
        seen = len(outcomes)
        wait_until(lambda: len(outcomes) >= seen + 2, 60, "requests after the restart")
    finally:
        stop.set()
        thread.join(timeout=90)
    assert outcomes, "no request was sent"
    assert all(code == 200 for code in outcomes), outcomes
    after = stack.model()
    assert after.id == before.id
    assert after.attrs["State"]["StartedAt"] == before.attrs["State"]["StartedAt"]


def test_switch_from_the_cli_while_the_stack_runs(stack: Stack) -> None:
    result = stack.cli("switch", "cpu-tiny")
    assert result.returncode == 0, result.stdout + result.stderr
    stack.wait_serving("cpu-tiny", timeout_s=30)
    assert served_models(stack) == ["tiny-llama"]
    with stack.openai() as client:
        answer = client.completions.create(model="tiny-llama", prompt="a b c", max_tokens=8)
    assert answer.usage is not None
    assert answer.usage.completion_tokens > 0
    assert stack.model().labels["modelslot.profile"] == "cpu-tiny"


def test_down_then_up_brings_back_the_last_profile(stack: Stack) -> None:
    stack.compose("down")
    with pytest.raises(docker.errors.NotFound):
        stack.model()  # `down` took the model container with it
    started = now()
    stack.compose("up", "-d")
    # The frontdoor restores its last route from its volume at once; what counts is the
    # orchestrator bringing the model back and flipping the route again.
    stack.wait_serving("cpu-tiny", since=started)
    assert served_models(stack) == ["tiny-llama"]
    assert stack.model().labels["modelslot.profile"] == "cpu-tiny"

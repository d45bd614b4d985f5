"""Pure logic: admission, rewrites, settings, route persistence. No sockets."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from frontdoor import rewrite
from frontdoor.admission import Admission
from frontdoor.errors import Refusal
from frontdoor.route import Limits, Route, initial, load, save
from frontdoor.settings import Settings, SettingsError


class FakeGate:
    """The route owner, faked: admission reads ``route`` and ``paused`` from it."""

    def __init__(self, route: Route) -> None:
        self.route = route
        self.paused = False
        self.admission = Admission(self, max_queued_body_bytes=1 << 20)

    def set(self, **update: Any) -> None:
        was_open = self.admission.open
        self.route = self.route.model_copy(update=update)
        self.admission.changed(was_open)


def _gate(cap: int = 1, queue: float = 10.0, hold: float = 10.0, **limits: Any) -> FakeGate:
    return FakeGate(
        Route(
            upstream="http://127.0.0.1:9",
            state="serving",
            switch_hold_s=hold,
            limits=Limits(max_active_generations=cap, queue_timeout_s=queue, **limits),
        )
    )


def _adm(cap: int = 1, queue: float = 10.0, hold: float = 10.0) -> Admission:
    return _gate(cap, queue, hold).admission


def test_admission_is_fifo() -> None:
    async def scenario() -> list[int]:
        adm = _adm(cap=1)
        await adm.acquire()
        order: list[int] = []

        async def waiter(i: int) -> None:
            await adm.acquire()
            order.append(i)
            adm.release(0.1)

        tasks = [asyncio.create_task(waiter(i)) for i in range(4)]
        assert await adm.wait_until(lambda: adm.queued == 4, 5)
        adm.release(0.1)
        await asyncio.gather(*tasks)
        return order

    assert asyncio.run(scenario()) == [0, 1, 2, 3]


def test_cancelled_waiter_leaves_the_queue_and_does_not_leak_a_slot() -> None:
    async def scenario() -> None:
        adm = _adm(cap=1)
        await adm.acquire()
        task = asyncio.create_task(adm.acquire())
        assert await adm.wait_until(lambda: adm.queued == 1, 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert adm.queued == 0
        adm.release(0.1)
        assert adm.active == 0

    asyncio.run(scenario())


def test_grant_and_cancel_in_the_same_turn_gives_the_slot_back() -> None:
    async def scenario() -> None:
        adm = _adm(cap=1)
        await adm.acquire()
        task = asyncio.create_task(adm.acquire())
        assert await adm.wait_until(lambda: adm.queued == 1, 5)
        adm.release(0.1)  # grants the waiter (active back to 1)...
        task.cancel()  # ...which is cancelled before it runs
        with pytest.raises(asyncio.CancelledError):
            await task
        assert adm.active == 0

    asyncio.run(scenario())


def test_switching_closes_the_gate_and_extends_deadlines_to_the_hold() -> None:
    async def scenario() -> None:
        gate = _gate(cap=1, queue=0.05, hold=5)
        adm = gate.admission
        await adm.acquire()
        task = asyncio.create_task(adm.acquire())
        assert await adm.wait_until(lambda: adm.queued == 1, 5)
        gate.set(state="switching", reason="x", upstream=None)
        adm.release(
            0.1
        )  # a slot frees during the switch: nobody may be admitted to the old upstream
        assert adm.active == 0 and adm.queued == 1
        gate.set(state="serving", reason=None, upstream="http://127.0.0.1:9")
        assert await task >= 0  # admitted by the new route, though far past its queue timeout
        assert adm.active == 1

    asyncio.run(scenario())


def test_retry_after_grows_with_load() -> None:
    gate = _gate(cap=2)
    adm = gate.admission
    idle = adm.retry_after()
    adm.active = 2
    for _ in range(20):
        adm.release(30.0)
        adm.active += 1
    assert adm.retry_after() > idle
    assert 1 <= adm.retry_after() <= 120
    gate.set(state="down", reason="x", upstream=None)
    with pytest.raises(Refusal) as refused:
        adm.refuse_if_closed()
    assert refused.value.status == 503 and refused.value.retry_after


def _apply(path: str, body: dict[str, Any], **limits: Any) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(
        rewrite.apply(path, json.dumps(body).encode(), Limits(**limits))
    )
    return result


def test_rewrite_needed_only_when_configured_for_the_path() -> None:
    assert not rewrite.needed("/v1/chat/completions", Limits())
    assert rewrite.needed("/v1/chat/completions", Limits(max_output_tokens=5))
    assert not rewrite.needed("/inference/v1/generate", Limits(max_output_tokens=5))
    assert not rewrite.needed("/v1/completions", Limits(chat_template_kwargs={"a": 1}))
    assert not rewrite.needed("/v1/completions", Limits(rewrite_request_model=True))  # no name


@pytest.mark.parametrize(
    ("given", "expected"),
    [(None, 100), (0, 100), (-3, 100), (True, 100), ("9", 100), (50, 50), (100, 100), (5000, 500)],
)
def test_token_budget(given: object, expected: int) -> None:
    body: dict[str, Any] = (
        {"prompt": "x"} if given is None else {"prompt": "x", "max_tokens": given}
    )
    assert (
        _apply("/v1/completions", body, default_max_output_tokens=100, max_output_tokens=500)[
            "max_tokens"
        ]
        == expected
    )


def test_cap_without_default_applies_the_cap_to_missing_values() -> None:
    assert _apply("/v1/responses", {}, max_output_tokens=64) == {"max_output_tokens": 64}
    assert (
        _apply("/v1/chat/completions", {}, default_max_output_tokens=900, max_output_tokens=64)[
            "max_tokens"
        ]
        == 64
    )


def test_settings_from_env_reads_the_lab_names(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("s3cret\n")
    s = Settings.from_env(
        {
            "FRONTDOOR_PORT": "9000",
            "FRONTDOOR_BACKEND_URL": "http://m:8000",
            "FRONTDOOR_MAX_ACTIVE_GENERATIONS": "8",
            "FRONTDOOR_QUEUE_TIMEOUT_S": "0",
            "FRONTDOOR_LOG_EVENTS": "1",
            "FRONTDOOR_CHAT_TEMPLATE_KWARGS_JSON": '{"enable_thinking": false}',
            "FRONTDOOR_API_KEYS": "a, b,",
            "FRONTDOOR_ADMIN_TOKEN_FILE": str(token_file),
            "MODEL_SLOT_NAME": "gemma",
            "FRONTDOOR_REWRITE_REQUEST_MODEL": "true",
        }
    )
    assert (s.port, s.max_active_generations, s.queue_timeout_s, s.log_events) == (
        9000,
        8,
        0.0,
        True,
    )
    assert s.chat_template_kwargs == {"enable_thinking": False}
    assert s.api_keys == {"a", "b"} and s.admin_token == "s3cret"
    assert s.model_slot.name == "gemma" and s.rewrite_request_model is True
    route, origin = initial(s)
    assert route.state == "serving" and route.limits.max_active_generations == 8
    assert "FRONTDOOR_BACKEND_URL" in origin


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("FRONTDOOR_MAX_ACTIVE_GENERATIONS", "0"),
        ("FRONTDOOR_QUEUE_TIMEOUT_S", "soon"),
        ("FRONTDOOR_LOG_EVENTS", "maybe"),
        ("FRONTDOOR_BACKEND_URL", "https://model:8000"),
        ("FRONTDOOR_CHAT_TEMPLATE_KWARGS_JSON", "[1]"),
    ],
)
def test_settings_errors_name_the_key_and_value(key: str, value: str) -> None:
    with pytest.raises(SettingsError) as error:
        Settings.from_env({key: value})
    assert key in str(error.value) and repr(value) in str(error.value)


def test_route_save_is_atomic_and_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "state" / "route.json"
    route = Route(upstream="http://m:8000", state="serving", startup_facts={"kv": 1})
    save(path, route)
    assert load(path) == (route, None)
    assert [p.name for p in path.parent.iterdir()] == ["route.json"]
    path.write_text('{"state": "serving"}')  # serving without an upstream: invalid
    loaded, problem = load(path)
    assert loaded is None and problem and "upstream" in problem


def test_event_tail_keeps_the_last_bytes_across_chunks() -> None:
    from frontdoor.events import Tail, tokens_from_tail

    chunks = [bytes([65 + i % 26]) * (i * 37 % 900 + 1) for i in range(200)]
    chunks.append(b'data: {"usage": {"prompt_tokens": 7, "completion_tokens": 64}}\n\n')
    tail = Tail(4096)
    for chunk in chunks:
        tail.add(chunk)
    assert tail.value() == b"".join(chunks)[-4096:]
    assert tokens_from_tail(tail.value()) == {"prompt_tokens": 7, "completion_tokens": 64}

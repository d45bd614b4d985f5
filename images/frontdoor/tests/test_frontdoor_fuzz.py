"""Fuzz the body and rewrite paths: whatever the bytes, the frontdoor answers with an OpenAI error
body or relays the request, and never answers 500 itself (DESIGN invariant 5).

Every rewrite is on (model name, output-token default and cap, chat_template_kwargs), so every
JSON generation route parses and re-serialises the body: the path where a lone surrogate, an
integer of 5,000 digits or 100,000 levels of nesting used to give ``500 text/plain``. The
upstream is the echo fake, so a relay is recognisable and what was sent can be checked: a
rewritten body is always strict JSON (no NaN/Infinity, no surrogates) with the cap applied.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fd_fakes import FakeUpstream
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

REWRITTEN = [
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/messages",
    "/v1/responses",
    "/invocations",
    "/inference/v1/generate",
    "/generative_scoring",
]
PATHS = [*REWRITTEN, "/v1/chat/completions/batch", "/v1/embeddings", "/tokenize", "/pooling"]
TOKEN_FIELDS = ["max_tokens", "max_completion_tokens", "max_output_tokens"]
CAP = 64
# The output-token budget fields per route, as the rewrite applies them.
BUDGET_FIELDS = {
    "/v1/chat/completions": ("max_completion_tokens", "max_tokens"),
    "/v1/completions": ("max_tokens",),
    "/v1/messages": ("max_tokens",),
    "/v1/responses": ("max_output_tokens",),
}


class Fuzzed:
    """``python -m frontdoor`` in its own process (so its recursion limit and stack are the
    production ones, not the test runner's), standalone with every rewrite on."""

    def __init__(self, log: Path) -> None:
        self.upstream = FakeUpstream()
        env = {
            **os.environ,
            "FRONTDOOR_HOST": "127.0.0.1",
            "FRONTDOOR_PORT": "0",
            "FRONTDOOR_ADMIN_PORT": "0",
            "FRONTDOOR_ADMIN_TOKEN": "t",
            "FRONTDOOR_BACKEND_URL": self.upstream.url,
            "FRONTDOOR_REWRITE_REQUEST_MODEL": "1",
            "FRONTDOOR_SERVED_MODEL_NAME": "served",
            "FRONTDOOR_DEFAULT_MAX_OUTPUT_TOKENS": "16",
            "FRONTDOOR_MAX_OUTPUT_TOKENS": str(CAP),
            "FRONTDOOR_CHAT_TEMPLATE_KWARGS_JSON": '{"enable_thinking": false}',
        }
        self.log = log
        with log.open("w") as stderr:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "frontdoor"], env=env, stderr=stderr
            )
        deadline = time.monotonic() + 30
        while not (found := re.search(r"listening on 127\.0\.0\.1:(\d+)", log.read_text())):
            assert self.proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the frontdoor never said where it listens"
            time.sleep(0.05)
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{found.group(1)}", timeout=30)

    def close(self) -> str:
        """Stop everything; return what the frontdoor wrote to stderr."""
        self.client.close()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.upstream.stop()
        return self.log.read_text()


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    running = Fuzzed(tmp_path_factory.mktemp("fuzz") / "frontdoor.stderr")
    yield running
    stderr = running.close()
    # An exception that escaped the app would have been logged here by uvicorn.
    assert "Traceback" not in stderr and "Exception in ASGI" not in stderr, stderr[-3000:]


# -- what a hostile client sends ----------------------------------------------------------

_ODD_STRINGS = st.sampled_from(["\ud800", "\udfff", "a\udc00b", "\x00", "\u2028", "\ufeff"])
_STRINGS = st.one_of(st.text(max_size=20), _ODD_STRINGS)
_NUMBERS = st.one_of(
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
)
_JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), _NUMBERS, _STRINGS),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(_STRINGS, st.sampled_from(TOKEN_FIELDS)), children, max_size=4),
    ),
    max_leaves=20,
)


@st.composite
def _objects(draw: st.DrawFn) -> bytes:
    """A JSON object as a generation body, with the fields the rewrites touch given any value."""
    body: dict[str, Any] = draw(st.dictionaries(_STRINGS, _JSON_VALUES, max_size=4))
    for name in draw(st.lists(st.sampled_from([*TOKEN_FIELDS, "model", "messages"]))):
        body[name] = draw(_JSON_VALUES)
    if draw(st.booleans()):
        body["chat_template_kwargs"] = draw(_JSON_VALUES)
    # ensure_ascii escapes lone surrogates as \ud800, which is valid JSON text.
    text = json.dumps(body, ensure_ascii=draw(st.booleans()), allow_nan=True)
    return text.encode("utf-8", "surrogatepass")


@st.composite
def _pathological(draw: st.DrawFn) -> bytes:
    """The shapes that used to crash the rewrite: huge integers, deep nesting, odd literals."""
    kind = draw(st.sampled_from(["int", "nest-list", "nest-object", "literal", "tail"]))
    if kind == "int":
        digits = "9" * draw(st.integers(min_value=4000, max_value=20000))
        field = draw(st.sampled_from([*TOKEN_FIELDS, "x"]))
        return f'{{"{field}": {digits}}}'.encode()
    if kind == "nest-list":
        n = draw(st.integers(min_value=2000, max_value=200_000))
        return b'{"messages": ' + b"[" * n + b"]" * n + b"}"
    if kind == "nest-object":
        n = draw(st.integers(min_value=2000, max_value=100_000))
        return b'{"a": ' * n + b"1" + b"}" * n
    if kind == "literal":
        value = draw(st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1e-999"]))
        return f'{{"max_tokens": {value}, "temperature": {value}}}'.encode()
    return draw(_objects()) + draw(st.binary(min_size=1, max_size=8))


_BODIES = st.one_of(st.binary(max_size=512), _objects(), _pathological())


def _check(answer: httpx.Response, path: str) -> None:
    assert answer.status_code != 500, answer.text[:300]
    data = answer.json()  # every answer is JSON: the echo's, or the frontdoor's own error
    if "error" in data:
        error = data["error"]
        assert set(error) >= {"message", "type", "param", "code"}, data
        assert isinstance(error["message"], str) and error["message"]
        assert answer.status_code in (400, 413), answer.text[:300]
        assert path in REWRITTEN  # unparsed routes are relayed for the model server to judge
        return
    assert answer.status_code == 200 and data["path"] == path
    if path not in REWRITTEN:
        return

    # What the frontdoor wrote after a rewrite is strict JSON, the cap applied.
    def strict(constant: str) -> None:
        raise AssertionError(f"non-standard JSON constant {constant} sent upstream")

    sent = json.loads(data["body"], parse_constant=strict)
    assert isinstance(sent, dict) and sent["model"] == "served"
    if path == "/invocations":  # vLLM's alias: chat when it has messages, else completions
        path = "/v1/chat/completions" if "messages" in sent else "/v1/completions"
    fields = BUDGET_FIELDS.get(path, ())
    present = [sent[f] for f in fields if sent.get(f) is not None]
    assert not fields or present, sent  # a missing budget got the default
    for value in present:
        assert isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= CAP


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(path=st.sampled_from(PATHS), body=_BODIES)
def test_any_body_on_any_generation_route_gets_an_openai_error_or_a_relay_never_500(
    fuzzed: Fuzzed, path: str, body: bytes
) -> None:
    answer = fuzzed.client.post(
        path, content=body, headers={"content-type": "application/json", "x-fake-echo": "1"}
    )
    _check(answer, path)


@pytest.mark.parametrize(
    "body",
    [
        b'{"messages": [], "x": "\\ud800"}',
        b'{"max_tokens": ' + b"9" * 5000 + b"}",
        b'{"messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"messages": [], "temperature": 1e999}',
    ],
    ids=["lone-surrogate", "5000-digit-int", "nested-100000", "float-overflow"],
)
def test_bodies_that_gave_500_text_plain_with_rewrites_on_get_400_openai_errors(
    fuzzed: Fuzzed, body: bytes
) -> None:
    """Regression: UnicodeEncodeError, ValueError and RecursionError escaped the rewrite as
    ``500 text/plain Internal Server Error``; 1e999 became ``Infinity``, which is not JSON."""
    answer = fuzzed.client.post(
        "/v1/chat/completions", content=body, headers={"content-type": "application/json"}
    )
    assert answer.status_code == 400, answer.text[:300]
    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["error"]["type"] == "invalid_request_error"

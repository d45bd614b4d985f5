"""The relay's edges: limits, errors, rewrites, headers, auth, status, metrics and events."""

from __future__ import annotations

import base64
import json
import socket

import httpx
import pytest
from conftest import StartFrontdoor
from fd_fakes import Echo, FakeUpstream
from frontdoor.route import Limits, Route

CHAT = "/v1/chat/completions"


def _echo(front_url: str, path: str, body: object, **headers: str) -> Echo:
    r = httpx.post(front_url + path, json=body, headers={"x-fake-echo": "1", **headers}, timeout=10)
    assert r.status_code == 200, r.text
    echo: Echo = r.json()
    return echo


def _rewriting(url: str, **limits: object) -> Route:
    return Route(upstream=url, state="serving", limits=Limits.model_validate(limits))


def test_oversized_body_gets_413(upstream: FakeUpstream, start_frontdoor: StartFrontdoor) -> None:
    front = start_frontdoor(backend_url=upstream.url, max_body_bytes=1000)
    big = {"model": "m", "messages": [{"role": "user", "content": "x" * 2000}]}
    r = httpx.post(front.url + CHAT, json=big, timeout=10)
    assert r.status_code == 413
    assert r.json()["error"]["type"] == "request_too_large"
    # Without a Content-Length (chunked upload), on a streamed non-generation path too.
    r = httpx.post(front.url + "/v1/files", content=iter([b"y" * 600, b"y" * 600]), timeout=10)
    assert r.status_code == 413
    assert upstream.seen == [] or all(len(s.body) <= 1000 for s in upstream.seen)
    assert front.fd.admission.active == 0


def test_garbage_json_with_rewrites_on_gets_400_not_500(
    upstream: FakeUpstream, start_frontdoor: StartFrontdoor
) -> None:
    front = start_frontdoor(
        _rewriting(upstream.url, rewrite_request_model=True, served_model_name="served")
    )
    for garbage in [b"{not json", b"[1, 2]", b"\xff\xfe"]:
        r = httpx.post(
            front.url + CHAT, content=garbage, headers={"content-type": "application/json"}
        )
        assert r.status_code == 400, garbage
        assert r.json()["error"]["type"] == "invalid_request_error"
    assert upstream.seen == []
    assert front.wait(lambda: front.fd.admission.active == 0)


def test_garbage_json_without_rewrites_is_relayed_for_the_model_server_to_judge(
    upstream: FakeUpstream, start_frontdoor: StartFrontdoor
) -> None:
    front = start_frontdoor(backend_url=upstream.url)
    r = httpx.post(front.url + CHAT, content=b"{not json", headers={"x-fake-echo": "1"})
    assert r.status_code == 200
    assert r.json()["body"] == "{not json"


def test_model_rewrite_and_token_budget_per_endpoint(
    upstream: FakeUpstream, start_frontdoor: StartFrontdoor
) -> None:
    front = start_frontdoor(
        _rewriting(
            upstream.url,
            rewrite_request_model=True,
            served_model_name="served",
            default_max_output_tokens=256,
            max_output_tokens=1024,
        )
    )

    def sent(path: str, body: dict[str, object]) -> dict[str, object]:
        received: dict[str, object] = json.loads(_echo(front.url, path, body)["body"])
        return received

    chat = sent(CHAT, {"model": "gpt-4o", "messages": []})
    assert chat["model"] == "served" and chat["max_tokens"] == 256  # missing -> default
    chat = sent(
        CHAT, {"model": "x", "messages": [], "max_completion_tokens": 99999, "max_tokens": 10}
    )
    assert chat["max_completion_tokens"] == 1024 and chat["max_tokens"] == 10  # larger -> capped
    chat = sent(CHAT, {"messages": [], "max_tokens": "lots"})
    assert chat["max_tokens"] == 256  # invalid -> default
    assert sent("/v1/completions", {"prompt": "a", "max_tokens": 5000})["max_tokens"] == 1024
    assert sent("/v1/messages", {"messages": []})["max_tokens"] == 256
    responses = sent("/v1/responses", {"input": "a", "max_output_tokens": 0})
    assert responses["max_output_tokens"] == 256 and "max_tokens" not in responses
    scoring = sent("/generative_scoring", {"model": "x"})
    assert scoring == {"model": "served"}  # no token field there


def test_chat_template_kwargs_merge_where_the_client_wins(
    upstream: FakeUpstream, start_frontdoor: StartFrontdoor
) -> None:
    front = start_frontdoor(
        _rewriting(
            upstream.url, chat_template_kwargs={"enable_thinking": False, "reasoning": "low"}
        )
    )
    body = {"messages": [], "chat_template_kwargs": {"enable_thinking": True}}
    sent = json.loads(_echo(front.url, CHAT, body)["body"])
    assert sent["chat_template_kwargs"] == {"enable_thinking": True, "reasoning": "low"}
    sent = json.loads(_echo(front.url, CHAT, {"messages": []})["body"])
    assert sent["chat_template_kwargs"] == {"enable_thinking": False, "reasoning": "low"}
    # Not a chat path: untouched.
    assert json.loads(_echo(front.url, "/v1/completions", {"prompt": "a"})["body"]) == {
        "prompt": "a"
    }


def test_image_chat_request_passes_through_byte_for_byte(
    upstream: FakeUpstream, start_frontdoor: StartFrontdoor
) -> None:
    front = start_frontdoor(backend_url=upstream.url)
    pixel = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 64).decode()
    body = json.dumps(
        {
            "model": "m",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "what is this?"},
                        {
                            "type": "image_url",
                            "image_url": {"url": f"data:image/png;base64,{pixel}"},
                        },
                    ],
                }
            ],
        },
        indent=1,
    ).encode()
    r = httpx.post(
        front.url + CHAT,
        content=body,
        headers={"x-fake-echo": "1", "content-type": "application/json"},
    )
    assert r.json()["body"].encode() == body


def test_headers_hop_by_hop_stripped_and_forwarded_headers_set(
    upstream: FakeUpstream, start_frontdoor: StartFrontdoor
) -> None:
    front = start_frontdoor(backend_url=upstream.url)
    r = httpx.get(
        front.url + "/v1/models?x=1&y=%20",
        headers={
            "x-fake-echo": "1",
            "connection": "keep-alive, x-private",
            "x-private": "secret",
            "keep-alive": "timeout=5",
            "te": "trailers",
            "x-forwarded-for": "10.0.0.9",
            "authorization": "Bearer client-key",
        },
    )
    seen = r.json()
    headers = seen["headers"]
    assert seen["query"] == "x=1&y=%20"
    for hop in ["keep-alive", "te", "x-private", "proxy-authorization"]:
        assert hop not in headers
    assert headers["x-forwarded-for"] == "10.0.0.9, 127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-host"] == front.url.removeprefix("http://")
    assert headers["host"] == upstream.url.removeprefix("http://")
    assert headers["authorization"] == "Bearer client-key"  # end-to-end header kept


def test_upstream_connect_failure_gives_502_backend_error(start_frontdoor: StartFrontdoor) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    front = start_frontdoor(backend_url=dead)
    for method, path in [("POST", CHAT), ("GET", "/v1/models")]:
        r = httpx.request(method, front.url + path, json={"messages": []}, timeout=10)
        assert r.status_code == 502
        assert r.json()["error"]["type"] == "backend_error"
    assert front.fd.metrics.upstream_errors["connect"] == 2
    assert front.wait(lambda: front.fd.admission.active == 0)


def test_upstream_timeout_gives_504(
    upstream: FakeUpstream, start_frontdoor: StartFrontdoor
) -> None:
    front = start_frontdoor(backend_url=upstream.url, backend_timeout_s=0.2)
    r = httpx.post(
        front.url + CHAT, json={"messages": []}, headers={"x-fake-hold": "never"}, timeout=10
    )
    assert r.status_code == 504
    assert r.json()["error"]["type"] == "backend_timeout"
    assert upstream.wait_closes(1)  # and the upstream request was abandoned, not left running


def test_upstream_breaking_mid_stream_ends_the_stream_with_an_error_event(
    upstream: FakeUpstream, start_frontdoor: StartFrontdoor
) -> None:
    front = start_frontdoor(backend_url=upstream.url)
    with httpx.stream(
        "POST",
        front.url + CHAT,
        json={"stream": True},
        headers={"x-fake-sse": "10", "x-fake-break": "3"},
        timeout=10,
    ) as r:
        body = r.read()
    assert body.count(b'"i"') == 3
    assert b"backend_error" in body.splitlines()[-2]
    assert front.fd.metrics.upstream_errors["broken"] == 1


def test_upstream_errors_are_relayed_with_their_status_and_body(
    upstream: FakeUpstream, start_frontdoor: StartFrontdoor
) -> None:
    front = start_frontdoor(backend_url=upstream.url)
    r = httpx.post(front.url + CHAT, json={}, headers={"x-fake-status": "400"})
    assert r.status_code == 400
    assert r.json()["error"]["message"] == "fake failure"


def test_api_keys_when_on(upstream: FakeUpstream, start_frontdoor: StartFrontdoor) -> None:
    front = start_frontdoor(backend_url=upstream.url, api_keys=frozenset({"k1", "k2"}))
    assert httpx.post(front.url + CHAT, json={}).status_code == 401
    bad = httpx.post(front.url + CHAT, json={}, headers={"authorization": "Bearer nope"})
    assert bad.status_code == 401 and bad.json()["error"]["type"] == "authentication_error"
    assert (
        httpx.get(front.url + "/v1/models", headers={"authorization": "Bearer nope"}).status_code
        == 401
    )
    assert (
        httpx.post(front.url + CHAT, json={}, headers={"authorization": "Bearer k2"}).status_code
        == 200
    )
    assert (
        httpx.post(front.url + "/v1/messages", json={}, headers={"x-api-key": "k1"}).status_code
        == 200
    )
    assert httpx.get(front.url + "/status").json()["frontdoor"]["auth"] == "on"
    assert len(upstream.seen) == 2


def test_status_has_the_lab_keys(upstream: FakeUpstream, start_frontdoor: StartFrontdoor) -> None:
    from frontdoor.settings import ModelSlotMeta

    meta = ModelSlotMeta(
        name="smollm2",
        title="SmolLM2",
        hf_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        modalities="text",
        status="baseline",
    )
    front = start_frontdoor(backend_url=upstream.url, model_slot=meta, max_active_generations=3)
    for path in ["/status", "/frontdoor/status"]:
        status = httpx.get(front.url + path).json()
        assert status["ok"] is True
        assert status["model_slot"] == {
            "name": "smollm2",
            "title": "SmolLM2",
            "hf_id": "HuggingFaceTB/SmolLM2-135M-Instruct",
            "modalities": "text",
            "status": "baseline",
        }
        keys = {
            "host",
            "port",
            "backend",
            "max_active_generations",
            "queue_timeout_s",
            "active_generations",
            "queued_generations",
            "total_generation_requests",
            "event_logging",
            "auth",
        }
        assert keys <= set(status["frontdoor"])
        assert status["frontdoor"]["backend"] == upstream.url
        assert status["frontdoor"]["max_active_generations"] == 3
        assert status["frontdoor"]["auth"] == "off"
        assert status["route"]["state"] == "serving"
        assert "startup_facts" in status


def test_metrics_count_requests_refusals_and_latency(
    upstream: FakeUpstream, start_frontdoor: StartFrontdoor
) -> None:
    front = start_frontdoor(
        _rewriting(upstream.url, rewrite_request_model=True, served_model_name="s")
    )
    httpx.post(front.url + CHAT, json={"messages": []})
    httpx.post(front.url + CHAT, content=b"nope")
    httpx.get(front.url + "/v1/models")
    httpx.get(front.url + "/some/scanner/path")
    text = httpx.get(front.url + "/metrics").text
    assert 'frontdoor_requests_total{path="/v1/chat/completions",status="200"} 1' in text
    assert 'frontdoor_requests_total{path="/v1/chat/completions",status="400"} 1' in text
    assert 'frontdoor_requests_total{path="/v1/models",status="200"} 1' in text
    assert 'frontdoor_requests_total{path="other",status="200"} 1' in text
    assert 'frontdoor_refusals_total{type="invalid_request_error"} 1' in text
    assert "frontdoor_generation_duration_seconds_count 2" in text
    assert "frontdoor_generations_total 2" in text
    assert "frontdoor_time_to_first_byte_seconds_count 1" in text
    assert "frontdoor_active_generations 0" in text
    assert 'frontdoor_route_state{state="serving"} 1' in text


def test_event_log_writes_one_json_line_per_generation(
    upstream: FakeUpstream, start_frontdoor: StartFrontdoor, capsys: pytest.CaptureFixture[str]
) -> None:
    front = start_frontdoor(backend_url=upstream.url, log_events=True)
    with httpx.stream(
        "POST", front.url + CHAT, json={"stream": True}, headers={"x-fake-sse": "4"}
    ) as r:
        r.read()
    httpx.get(front.url + "/v1/models")  # not a generation: no event
    assert front.wait(lambda: front.fd.admission.active == 0)
    lines = [
        json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")
    ]
    assert len(lines) == 1
    event = lines[0]
    assert event["path"] == CHAT and event["status"] == 200 and event["queued"] is False
    assert event["client"] == "127.0.0.1"
    assert event["tokens"] == {"prompt_tokens": 3, "completion_tokens": 4}
    assert event["ttft"] is not None and event["elapsed"] >= event["ttft"]
    assert {"time", "queue_wait", "error"} <= set(event)


def test_cors_when_configured(upstream: FakeUpstream, start_frontdoor: StartFrontdoor) -> None:
    front = start_frontdoor(backend_url=upstream.url, cors_allow_origin="*")
    r = httpx.options(
        front.url + CHAT, headers={"origin": "http://ui", "access-control-request-method": "POST"}
    )
    assert r.status_code == 204 and r.headers["access-control-allow-origin"] == "*"
    assert httpx.get(front.url + "/v1/models").headers["access-control-allow-origin"] == "*"
    assert upstream.seen[0].method == "GET"  # the preflight was answered here


def test_head_and_keep_alive_reuse_of_upstream_connections(
    upstream: FakeUpstream, start_frontdoor: StartFrontdoor
) -> None:
    front = start_frontdoor(backend_url=upstream.url)
    with httpx.Client(base_url=front.url, timeout=10) as client:
        head = client.head("/v1/models")
        assert head.status_code == 200 and head.content == b""
        for _ in range(5):
            assert client.get("/v1/models").status_code == 200
            with client.stream("POST", CHAT, json={}, headers={"x-fake-sse": "3"}) as r:
                assert r.read().endswith(b"data: [DONE]\n\n")
    # HEAD's connection is not reused (its body length is unknowable); all the others share one.
    assert upstream.connections == 2


def test_upstream_silent_mid_stream_past_the_read_timeout_ends_with_an_error_event(
    upstream: FakeUpstream, start_frontdoor: StartFrontdoor
) -> None:
    front = start_frontdoor(backend_url=upstream.url, backend_timeout_s=0.3)
    headers = {"x-fake-sse": "3", "x-fake-step": "never"}  # event 0, then silence for good
    with httpx.stream(
        "POST", front.url + CHAT, json={"stream": True}, headers=headers, timeout=10
    ) as r:
        body = r.read()
    assert body.count(b'"i"') == 1
    assert b"timeout" in body.splitlines()[-2]
    assert upstream.wait_closes(1)  # the silent upstream request was abandoned
    assert front.fd.metrics.upstream_errors["timeout"] == 1


def test_slow_or_silent_clients_get_408_and_are_closed(
    upstream: FakeUpstream, start_frontdoor: StartFrontdoor
) -> None:
    front = start_frontdoor(backend_url=upstream.url, header_timeout_s=0.3)
    host, port = front.url.removeprefix("http://").split(":")
    with (
        socket.create_connection((host, int(port)), timeout=10) as silent,
        socket.create_connection((host, int(port)), timeout=10) as slow,
    ):
        slow.sendall(b"GET /v1/models HTTP/1.1\r\nhost: x\r\n")  # headers never finished
        for sock in (silent, slow):
            answer = b""
            while chunk := sock.recv(4096):  # until the frontdoor closes it
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 408")
            assert b'"type": "request_timeout"' in answer
    assert upstream.seen == []


def test_header_timeout_does_not_cut_long_responses_or_kept_alive_connections(
    upstream: FakeUpstream, start_frontdoor: StartFrontdoor
) -> None:
    front = start_frontdoor(backend_url=upstream.url, header_timeout_s=0.3)
    with httpx.Client(base_url=front.url, timeout=10) as client:
        headers = {"x-fake-sse": "6", "x-fake-interval": "0.1"}  # 0.5 s > the header timeout
        with client.stream("POST", CHAT, json={"stream": True}, headers=headers) as r:
            assert r.read().endswith(b"data: [DONE]\n\n")
        assert client.get("/v1/models").status_code == 200  # same connection, next request


@pytest.mark.parametrize("path", [CHAT, "/tokenize"])
def test_a_stalled_request_body_gets_408_and_holds_nothing(
    upstream: FakeUpstream, start_frontdoor: StartFrontdoor, path: str
) -> None:
    """Headers promise 100 bytes, 10 arrive, then nothing: 408 after FRONTDOOR_BODY_TIMEOUT_S.

    A generation's body is read before admission, so the stalled client never held a slot; a
    streamed (non-generation) body is cut off and its upstream request abandoned.
    """
    front = start_frontdoor(backend_url=upstream.url, body_timeout_s=0.3)
    host, port = front.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            "content-length: 100\r\n\r\n".encode()
            + b'{"model": '
        )
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408"), answer
    error = json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]
    assert error["type"] == "request_timeout"
    assert "FRONTDOOR_BODY_TIMEOUT_S" in error["message"]
    assert front.fd.admission.total == 0 and front.fd.admission.active == 0
    if path == CHAT:
        assert upstream.seen == []

"""Every client resource has a bound (DESIGN invariant 6), and every refusal is an OpenAI body.

Over real sockets against a real frontdoor: request-head bytes and field count (431), a
malformed request line (400), the header deadline counted from the connection's first byte, the
overall body deadline (408), the generation queue's depth and the bytes its bodies hold (503
``queue_full`` with Retry-After), and concurrent non-generation relays (503 with Retry-After).
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
from conftest import (
    ADMIN_TOKEN,
    RunningFrontdoor,
    StartFrontdoor,
    SteppedClockLoop,
    raw_request,
)
from fd_fakes import FakeUpstream
from frontdoor.route import Limits, Route
from frontdoor.settings import Settings

CHAT = "/v1/chat/completions"
BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def _connect(front: RunningFrontdoor) -> socket.socket:
    host, port = front.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=20)


def _read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Read until the frontdoor closes the connection (or a whole Content-Length body is in)."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep:
            lines = head.decode("latin-1").split("\r\n")
            headers = {
                k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])
            }
            if len(body) >= int(headers.get("content-length", "-1")) >= 0:
                break
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith("HTTP/1.1 "), data[:200]
    status = int(lines[0].split(" ")[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    return status, headers, body


def _openai_error(body: bytes) -> dict[str, object]:
    error = json.loads(body)["error"]
    assert isinstance(error, dict)
    assert set(error) >= {"message", "type", "param", "code"}, error
    return error


def _route(url: str, cap: int, max_queued_generations: int = 64) -> Route:
    limits = Limits(
        max_active_generations=cap,
        queue_timeout_s=30,
        max_queued_generations=max_queued_generations,
    )
    return Route(upstream=url, state="serving", limits=limits)


def _post(url: str, hold: str | None = None, body: object = BODY) -> httpx.Response:
    headers = {"x-fake-hold": hold} if hold else {}
    return httpx.post(url + CHAT, json=body, headers=headers, timeout=30)


def _readable(sock: socket.socket) -> bool:
    """Whether an answer (or the close) is already waiting in ``sock``, without waiting."""
    return bool(select.select([sock], [], [], 0)[0])


def _poll(predicate: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    """Poll an observable condition with a deadline (for counters that notify nobody)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


# -- the request head ---------------------------------------------------------------------


def test_an_endless_header_line_gets_431_at_the_byte_limit_not_megabytes_later(
    upstream: FakeUpstream, start_frontdoor: StartFrontdoor
) -> None:
    front = start_frontdoor(backend_url=upstream.url, max_header_bytes=8192)
    with _connect(front) as sock:
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nhost: x\r\nx-endless: ")
        sent = 0
        try:
            while sent < 4 * 1024 * 1024:  # stop sending once the frontdoor has refused us
                sock.sendall(b"a" * 4096)
                sent += 4096
        except (BrokenPipeError, ConnectionResetError):
            pass
        status, headers, body = _read_answer(sock)
    assert status == 431
    assert headers["content-type"] == "application/json"
    error = _openai_error(body)
    assert error["type"] == "request_header_too_large"
    assert "FRONTDOOR_MAX_HEADER_BYTES" in str(error["message"])
    assert upstream.seen == []
    assert httpx.get(front.url + "/health", timeout=5).status_code == 200


def test_a_head_just_under_the_byte_limit_with_a_body_in_the_same_packet_is_served(
    upstream: FakeUpstream, start_frontdoor: StartFrontdoor
) -> None:
    """Only the head counts: body bytes that arrive in the same read are not head bytes."""
    front = start_frontdoor(backend_url=upstream.url, max_header_bytes=4096)
    body = json.dumps({**BODY, "pad": "b" * 20000}).encode()
    head = (
        f"POST {CHAT} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        f"x-fake-echo: 1\r\ncontent-length: {len(body)}\r\nx-pad: "
    )
    head += "p" * (4000 - len(head)) + "\r\n\r\n"
    with _connect(front) as sock:
        sock.sendall(head.encode() + body)
        status, _, answer = _read_answer(sock)
    assert status == 200, answer[:300]
    assert json.loads(json.loads(answer)["body"])["pad"] == "b" * 20000


def test_too_many_header_fields_get_431(
    upstream: FakeUpstream, start_frontdoor: StartFrontdoor
) -> None:
    front = start_frontdoor(backend_url=upstream.url, max_headers=20)
    with _connect(front) as sock:
        fields = "".join(f"x-h{i}: v\r\n" for i in range(21))
        sock.sendall(f"GET /v1/models HTTP/1.1\r\nhost: x\r\n{fields}\r\n".encode())
        status, _, body = _read_answer(sock)
    assert status == 431
    error = _openai_error(body)
    assert "FRONTDOOR_MAX_HEADERS" in str(error["message"])
    assert upstream.seen == []
    # 15 fields plus httpx's own 5 (host, accept, ...) is within the limit.
    headers = {f"x-h{i}": "v" for i in range(15)}
    assert httpx.get(front.url + "/v1/models", headers=headers, timeout=5).status_code == 200


def test_a_malformed_request_line_gets_400_with_an_openai_body_not_plain_text(
    upstream: FakeUpstream, start_frontdoor: StartFrontdoor
) -> None:
    front = start_frontdoor(backend_url=upstream.url)
    with _connect(front) as sock:
        sock.sendall(b"GET /v1/models HTTP/9\x00\r\n\r\n")
        status, headers, body = _read_answer(sock)
    assert status == 400
    assert headers["content-type"] == "application/json"
    assert _openai_error(body)["type"] == "invalid_request_error"


def test_header_deadline_counts_from_the_connections_first_byte_not_restarted_by_it(
    upstream: FakeUpstream,
) -> None:
    """A client that connects, waits most of the header timeout, then trickles its head gets
    408 one timeout after connecting; before, the first byte restarted the timer (2x).

    The frontdoor runs on a loop whose clock the test moves, so "one timeout after connecting"
    is a point the test chooses, not a race with the machine's load.
    """
    timeout_s = 60.0
    loop = SteppedClockLoop()
    settings = Settings(
        backend_url=upstream.url, header_timeout_s=timeout_s, admin_token=ADMIN_TOKEN
    )
    front = RunningFrontdoor(settings, loop=loop)
    connections = front.servers.public.server_state.connections
    try:
        with _connect(front) as sock:
            # Accepted (the protocol is in uvicorn's set): its header deadline is armed.
            _poll(lambda: len(connections) == 1, "the frontdoor to accept the connection")
            front.call(loop.jump(0.8 * timeout_s))
            assert not _readable(sock), "answered before the header timeout"
            # The head begins, and does not end. ``jump`` runs on the loop after the frontdoor
            # has read these bytes (they were in its socket before the jump was scheduled).
            sock.sendall(b"GET /v1/models HTTP/1.1\r\nhost: x\r\nx-slow: s")
            front.call(loop.jump(0.3 * timeout_s))  # 1.1 timeouts after connecting
            # The 408 is written by the timer ``jump`` waited for, so it is in our socket now.
            # A restarted deadline would be 1.8 timeouts away: nothing would be there.
            assert _readable(sock), "no answer 1.1 header timeouts after connecting: it moved"
            status, _, body = _read_answer(sock)
    finally:
        front.stop()
    assert status == 408
    assert "FRONTDOOR_HEADER_TIMEOUT_S" in str(_openai_error(body)["message"])


# -- the request body ---------------------------------------------------------------------


def test_a_body_trickled_past_the_overall_deadline_gets_408(
    upstream: FakeUpstream, start_frontdoor: StartFrontdoor
) -> None:
    """One byte every 50 ms never trips the idle timeout, but the whole body must arrive within
    FRONTDOOR_BODY_DEADLINE_S: 408, and the generation never held a slot."""
    front = start_frontdoor(backend_url=upstream.url, body_timeout_s=5, body_deadline_s=0.5)
    with _connect(front) as sock:
        sock.sendall(
            f"POST {CHAT} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            "content-length: 100000\r\n\r\n".encode()
        )
        stop = threading.Event()

        def trickle() -> None:
            for _ in range(400):  # 20 s at most: long past any deadline under test
                if stop.wait(0.05):
                    return
                try:
                    sock.send(b" ")
                except OSError:
                    return

        sender = threading.Thread(target=trickle, daemon=True)
        sender.start()
        try:
            status, _, body = _read_answer(sock)
        finally:
            stop.set()
            sender.join(5)
    assert status == 408
    error = _openai_error(body)
    assert error["type"] == "request_timeout"
    assert "FRONTDOOR_BODY_DEADLINE_S" in str(error["message"])
    assert front.fd.admission.total == 0 and front.fd.admission.active == 0
    assert upstream.seen == []


# -- the generation queue -----------------------------------------------------------------


def test_a_full_queue_refuses_the_next_generation_with_503_queue_full_and_retry_after(
    upstream: FakeUpstream, start_frontdoor: StartFrontdoor
) -> None:
    front = start_frontdoor(_route(upstream.url, cap=1, max_queued_generations=2))
    adm = front.fd.admission
    with ThreadPoolExecutor(3) as pool:
        active = pool.submit(_post, front.url, "go")
        assert upstream.wait_requests(1)
        queued = [pool.submit(_post, front.url, "go") for _ in range(2)]
        assert front.wait(lambda: adm.queued == 2)
        refused = _post(front.url)
        assert refused.status_code == 503
        assert int(refused.headers["retry-after"]) >= 1
        error = _openai_error(refused.content)
        assert error["type"] == "queue_full"
        assert "FRONTDOOR_MAX_QUEUED_GENERATIONS" in str(error["message"])
        upstream.release("go")
        assert [f.result().status_code for f in [active, *queued]] == [200] * 3
    assert len(upstream.seen) == 3
    assert front.fd.metrics.refusals["queue_full"] == 1


def test_queued_bodies_past_their_byte_bound_get_503_queue_full(
    upstream: FakeUpstream, start_frontdoor: StartFrontdoor
) -> None:
    front = start_frontdoor(
        _route(upstream.url, cap=1, max_queued_generations=100), max_queued_body_bytes=30000
    )
    adm = front.fd.admission
    big = {**BODY, "pad": "x" * 20000}
    with ThreadPoolExecutor(2) as pool:
        active = pool.submit(_post, front.url, "go")
        assert upstream.wait_requests(1)
        queued = pool.submit(_post, front.url, "go", big)
        assert front.wait(lambda: adm.queued == 1)
        assert adm.queued_bytes > 20000
        metrics = httpx.get(front.url + "/metrics", timeout=5).text
        assert f"frontdoor_queued_body_bytes {adm.queued_bytes}\n" in metrics
        assert httpx.get(front.url + "/status").json()["frontdoor"]["queued_body_bytes"] > 20000
        refused = _post(front.url, body=big)  # 2 x 20 kB would exceed the 30 kB bound
        assert refused.status_code == 503
        assert int(refused.headers["retry-after"]) >= 1
        error = _openai_error(refused.content)
        assert error["type"] == "queue_full"
        assert "FRONTDOOR_MAX_QUEUED_BODY_BYTES" in str(error["message"])
        upstream.release("go")
        assert active.result().status_code == 200
        assert queued.result().status_code == 200
    assert front.wait(lambda: adm.active == 0 and adm.queued == 0)
    assert adm.queued_bytes == 0  # every byte counted in was counted out


def test_queued_bytes_are_given_back_when_a_queued_client_leaves(
    upstream: FakeUpstream, start_frontdoor: StartFrontdoor
) -> None:
    front = start_frontdoor(_route(upstream.url, cap=1))
    adm = front.fd.admission
    with ThreadPoolExecutor(1) as pool:
        active = pool.submit(_post, front.url, "go")
        assert upstream.wait_requests(1)
        sock = raw_request(front.url, CHAT, json.dumps({**BODY, "pad": "y" * 5000}).encode())
        assert front.wait(lambda: adm.queued == 1)
        assert adm.queued_bytes > 5000
        sock.close()
        assert front.wait(lambda: adm.queued == 0)
        assert adm.queued_bytes == 0
        upstream.release("go")
        assert active.result().status_code == 200


# -- requests that are not generations ----------------------------------------------------


def test_concurrent_non_generation_relays_are_bounded_with_503_and_retry_after(
    upstream: FakeUpstream, start_frontdoor: StartFrontdoor
) -> None:
    front = start_frontdoor(backend_url=upstream.url, max_active_relays=2)

    def get_held() -> httpx.Response:
        return httpx.get(front.url + "/v1/models", headers={"x-fake-hold": "go"}, timeout=30)

    with ThreadPoolExecutor(2) as pool:
        held = [pool.submit(get_held) for _ in range(2)]
        assert upstream.wait_requests(2)
        assert "frontdoor_active_relays 2\n" in httpx.get(front.url + "/metrics").text
        refused = httpx.get(front.url + "/v1/models", timeout=10)
        assert refused.status_code == 503
        assert int(refused.headers["retry-after"]) >= 1
        assert "FRONTDOOR_MAX_ACTIVE_RELAYS" in str(_openai_error(refused.content)["message"])
        upstream.release("go")
        assert [f.result().status_code for f in held] == [200, 200]
    _poll(lambda: front.fd.relays.active == 0, "the relays to be given back")
    assert httpx.get(front.url + "/v1/models", timeout=10).status_code == 200

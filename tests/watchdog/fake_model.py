"""A small real HTTP server that answers like vLLM's completions endpoint, for the probes'
mechanics (timeouts, errors, the decode arithmetic). It never decides that a feature works: the
watchdog's acceptance tests run against real vLLM (test_watchdog_vllm.py)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeModel:
    """``mode``: ``ok`` answers; ``hang`` never answers (until ``stop``); ``error`` answers 500.
    Streams ``interval_s`` apart, so a decode probe measures 1 / interval_s tok/s."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.interval_s = 0.01
        self.requests: list[dict[str, Any]] = []
        self.generated: float | None = None  # vllm:generation_tokens_total; None: no /metrics
        self.generating = 0.0  # added to it on every /metrics read (an engine busy elsewhere)
        self._release = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: object) -> None:
                pass

            def do_GET(self) -> None:
                if self.path != "/metrics" or owner.generated is None:
                    self.send_response(404)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                owner.generated += owner.generating
                text = f'vllm:generation_tokens_total{{engine="0"}} {owner.generated}\n'.encode()
                self.send_response(200)
                self.send_header("content-length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                owner.requests.append(body)
                if owner.mode == "hang":
                    owner._release.wait(60)
                    return
                if owner.mode == "error":
                    payload = (
                        b'{"error": {"message": "engine dead", "type": "InternalServerError"}}'
                    )
                    self.send_response(500)
                    self.send_header("content-length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                if not body.get("stream"):
                    answer = json.dumps({"usage": {"completion_tokens": body["max_tokens"]}})
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer.encode())
                    return
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("connection", "close")
                self.end_headers()
                for i in range(body["max_tokens"]):
                    if i:
                        time.sleep(owner.interval_s)
                    event = {"choices": [{"index": 0, "text": "x"}]}
                    self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                    self.wfile.flush()
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()

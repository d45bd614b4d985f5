"""Answers the slot's readiness ladder like vLLM (health, models, one completion) and, on
``POST /test/fault``, prints a Level Zero device-lost line and exits 1: a planted device fault.
Standard library only; runs as PID 1 and stops on SIGTERM."""

import json
import os
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NAME = os.environ.get("VLLM_SERVED_MODEL_NAME", "fault")
MAX_LEN = int(os.environ.get("VLLM_MAX_MODEL_LEN", "512"))


class Handler(BaseHTTPRequestHandler):
    def _json(self, code: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/health":
            self._json(200, {})
        elif self.path == "/v1/models":
            self._json(200, {"data": [{"id": NAME, "max_model_len": MAX_LEN}]})
        else:
            self._json(404, {"error": {"message": "not found"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        self.rfile.read(length)
        if self.path == "/v1/completions":
            self._json(200, {"choices": [{"text": " ok"}], "usage": {"completion_tokens": 1}})
        elif self.path == "/test/fault":
            self._json(200, {"faulting": True})
            print(
                "RuntimeError: level_zero backend failed with error: 20 "
                "(UR_RESULT_ERROR_DEVICE_LOST)",
                flush=True,
            )
            os._exit(1)
        else:
            self._json(404, {"error": {"message": "not found"}})

    def log_message(self, format: str, *args: object) -> None:
        return


server = ThreadingHTTPServer(("0.0.0.0", 8000), Handler)
signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
print("INFO fault stand-in serving", NAME, flush=True)
print("INFO:     Application startup complete.", flush=True)
server.serve_forever()
sys.exit(0)

"""``python -m frontdoor``: the entry point starts from the environment, stops on SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import httpx
from fd_fakes import FakeUpstream


def test_python_m_frontdoor_serves_from_env_and_exits_cleanly_on_sigterm(
    upstream: FakeUpstream,
) -> None:
    env = {
        **os.environ,
        "FRONTDOOR_HOST": "127.0.0.1",
        "FRONTDOOR_PORT": "0",
        "FRONTDOOR_ADMIN_PORT": "0",
        "FRONTDOOR_BACKEND_URL": upstream.url,
        "FRONTDOOR_ADMIN_TOKEN": "t",
        "MODEL_SLOT_NAME": "fake",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "frontdoor"], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stderr is not None
        port = admin_port = None
        for line in proc.stderr:  # blocks until the process logs; ends if it dies
            found = re.search(r"listening on 127\.0\.0\.1:(\d+) \(admin 127\.0\.0\.1:(\d+)\)", line)
            if found:
                port, admin_port = int(found.group(1)), int(found.group(2))
                break
        assert port, "the frontdoor never said where it listens"
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(url + "/health").json() == {"status": "ok"}
        assert httpx.get(url + "/status").json()["model_slot"]["name"] == "fake"
        assert httpx.post(url + "/v1/chat/completions", json={}).status_code == 200
        route = httpx.get(
            f"http://127.0.0.1:{admin_port}/admin/route", headers={"authorization": "Bearer t"}
        )
        assert route.json()["upstream"] == upstream.url
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


def test_bad_configuration_exits_2_and_names_the_variable() -> None:
    env = {**os.environ, "FRONTDOOR_MAX_ACTIVE_GENERATIONS": "lots"}
    done = subprocess.run(  # noqa: PLW1510 - the return code is the assertion
        [sys.executable, "-m", "frontdoor"], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2
    assert "FRONTDOOR_MAX_ACTIVE_GENERATIONS='lots'" in done.stderr

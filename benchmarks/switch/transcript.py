"""Record a real operator session (switch, status, stop, up) for docs/slot.md.

    .venv/bin/python benchmarks/switch/transcript.py > /tmp/transcript.md

Runs on a slot instance of its own (container ``modelslot-docs``) with a real frontdoor process
(``python -m frontdoor``) on loopback ports, the shipped CPU profiles plus the test-only ones
(for the refusal and rollback examples), and prints each command with its output.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
PY = sys.executable


def wait_reconciled(state_dir: Path) -> None:
    sys.path.insert(0, str(REPO))
    from orchestrator.control import controller

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        answer = controller.ask(state_dir, {"op": "status"}, lambda _: None)
        if answer and answer.get("reconciled"):
            return
        time.sleep(0.2)
    raise SystemExit("the controller did not come up")


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="modelslot-docs-"))
    profiles = work / "profiles"
    profiles.mkdir()
    for source in [
        *(REPO / "profiles").glob("cpu-*.env"),
        *(REPO / "tests/slot/profiles").glob("*.env"),
    ]:
        shutil.copy(source, profiles / source.name)
    token = secrets.token_urlsafe(16)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODEL_SLOT_", "FRONTDOOR_"))}
    fd_env = {
        **env,
        "FRONTDOOR_PORT": "18100",
        "FRONTDOOR_ADMIN_HOST": "127.0.0.1",
        "FRONTDOOR_ADMIN_PORT": "18101",
        "FRONTDOOR_ADMIN_TOKEN": token,
        "FRONTDOOR_STATE_DIR": str(work / "frontdoor"),
    }
    env.update(
        {
            "MODEL_SLOT_PROFILES_DIR": str(profiles),
            "MODEL_SLOT_STATE_DIR": str(work / "state"),
            "MODEL_SLOT_CONTAINER_NAME": "modelslot-docs",
            "MODEL_SLOT_INSTANCE": "docs",
            "MODEL_SLOT_BACKEND_PORT": "18090",
            "MODEL_SLOT_FRONTDOOR_ADMIN_URL": "http://127.0.0.1:18101",
            "MODEL_SLOT_ADMIN_TOKEN": token,
            "PYTHONPATH": str(REPO),
        }
    )
    frontdoor = subprocess.Popen(
        [PY, "-m", "frontdoor"], env=fd_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get("http://127.0.0.1:18100/health", timeout=1)
            break
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)

    def run(*args: str, shown: str | None = None) -> None:
        print(f"$ {shown or 'python -m orchestrator ' + ' '.join(args)}")
        done = subprocess.run(
            [PY, "-m", "orchestrator", *args], env=env, capture_output=True, text=True, check=False
        )
        sys.stdout.write(done.stdout)
        for line in done.stderr.splitlines():
            print(line)
        if done.returncode:
            print(f"(exit code {done.returncode})")
        print()
        sys.stdout.flush()

    def models() -> None:
        print("$ curl -s http://127.0.0.1:18100/v1/models")
        body = httpx.get("http://127.0.0.1:18100/v1/models", timeout=10).json()
        print([(m["id"], m.get("max_model_len")) for m in body["data"]])
        print()

    controller = None
    try:
        print("```")
        run("status")
        run("switch", "cpu-tiny")
        run("switch", "cpu-smollm2-135m")
        models()
        run("status")
        run("switch", "test-missing-model")
        run("switch", "test-rejected")
        run("switch", "test-exits")
        models()
        run("stop")
        run("status")
        print("$ python -m orchestrator up &   # the controller; its log:")
        log_path = work / "controller.log"
        with log_path.open("wb") as log:
            controller = subprocess.Popen(
                [PY, "-m", "orchestrator", "up"], env=env, stdout=log, stderr=log
            )
        wait_reconciled(work / "state")
        run("switch", "cpu-tiny")
        print("$ docker kill modelslot-docs")
        subprocess.run(["docker", "kill", "modelslot-docs"], capture_output=True, check=False)
        deadline = time.monotonic() + 300
        seen_down = False
        while time.monotonic() < deadline:
            state = httpx.get(
                "http://127.0.0.1:18101/admin/route",
                headers={"authorization": f"Bearer {token}"},
                timeout=5,
            ).json()["state"]
            seen_down = seen_down or state == "down"
            if seen_down and state == "serving":
                break
            time.sleep(0.2)
        run("status")
        controller.send_signal(signal.SIGTERM)
        controller.wait(60)
        print("$ cat controller.log   # (the up process, after SIGTERM)")
        print(log_path.read_text().rstrip())
        print("```")
    finally:
        if controller is not None and controller.poll() is None:
            controller.kill()
        subprocess.run(
            [PY, "-m", "orchestrator", "stop"], env=env, capture_output=True, check=False
        )
        frontdoor.send_signal(signal.SIGTERM)
        frontdoor.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())

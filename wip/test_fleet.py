"""Two model-slot hosts behind a real LiteLLM proxy started from ``deploy/fleet/``.

Two compose stacks on this machine stand in for two B70 hosts (their own projects, ports,
state and model containers; vLLM CPU with the tiny model). The proxy runs the shipped
``deploy/fleet/litellm.yaml`` unchanged, from the pinned ``deploy/fleet/requirements.txt``
(``./run test`` installs it into ``.venv-fleet``). What a client of the proxy must see:

* while host A switches profiles, a steady stream of requests all succeed, and none waits out
  A's switch hold (A answers 503 at once to ``X-Model-Slot-Hold: 0`` and the router retries B);
* a request for a model only A serves reaches A.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import docker
import httpx
import openai
import pytest

from tests.e2e.stack import REPO, Stack, compose_stack, free_port
from tests.support import wait_until

pytestmark = [pytest.mark.docker, pytest.mark.vllm, pytest.mark.e2e]

FLEET = REPO / "deploy" / "fleet"
LITELLM = REPO / ".venv-fleet" / "bin" / "litellm"
MASTER_KEY = "sk-model-slot-fleet-test-0123456789"
TINY, SMOL = "tiny-llama", "smollm2-135m-instruct"


@dataclass
class Fleet:
    a: Stack
    b: Stack
    proxy_url: str
    log: Path

    def client(self) -> openai.OpenAI:
        # No client-side retries: what is measured is the proxy's routing, not the SDK's.
        return openai.OpenAI(base_url=f"{self.proxy_url}/v1", api_key=MASTER_KEY, max_retries=0)

    def chat(self, model: str) -> tuple[str, float]:
        """One short chat through the proxy: (the host base URL that answered, seconds)."""
        start = time.monotonic()
        with self.client() as client:
            raw = client.chat.completions.with_raw_response.create(
                model=model,
                messages=[{"role": "user", "content": "Say hello."}],
                max_tokens=4,
                temperature=0,
            )
        elapsed = time.monotonic() - start
        completion = raw.parse()
        assert completion.choices, completion
        return raw.headers.get("x-litellm-model-api-base", ""), elapsed


def _start_proxy(a: Stack, b: Stack, log: Path) -> Iterator[str]:
    if not LITELLM.exists():
        pytest.fail(
            f"{LITELLM} is missing: `./run test` installs deploy/fleet/requirements.txt into "
            ".venv-fleet (or: python3 -m venv .venv-fleet && .venv-fleet/bin/pip install -r "
            "deploy/fleet/requirements.txt)"
        )
    port = free_port()
    env = {
        **os.environ,
        "MODEL_SLOT_HOST_A": f"{a.base_url}/v1",
        "MODEL_SLOT_HOST_B": f"{b.base_url}/v1",
        "LITELLM_MASTER_KEY": MASTER_KEY,
        "LITELLM_LOG": "INFO",
    }
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(LITELLM), "--config", str(FLEET / "litellm.yaml"), "--host", "127.0.0.1",
             "--port", str(port)],
            cwd=FLEET, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def alive() -> bool:
        assert proc.poll() is None, f"the LiteLLM proxy exited:\n{log.read_text()[-4000:]}"
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{url}/health/liveliness", timeout=2).status_code == 200
        return False

    try:
        wait_until(alive, 180, "the LiteLLM proxy to answer /health/liveliness")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def fleet(
    docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    tag = f"fleet{os.getpid()}"
    log = tmp_path_factory.mktemp("litellm") / "litellm.log"
    with (
        compose_stack(docker_client, tmp_path_factory, f"{tag}a", "cpu-tiny") as a,
        compose_stack(docker_client, tmp_path_factory, f"{tag}b", "cpu-tiny") as b,
    ):
        a.compose("up", "-d")
        b.compose("up", "-d")
        # Generous: on a busy 2-core machine two first starts at once can take minutes.
        a.wait_serving("cpu-tiny", timeout_s=900)
        b.wait_serving("cpu-tiny", timeout_s=900)
        for url in _start_proxy(a, b, log):
            yield Fleet(a, b, url, log)


@dataclass
class Stream:
    """Requests sent one after another from a thread until stopped; every outcome kept."""

    fleet: Fleet
    model: str
    served: list[tuple[float, str, float]] = field(default_factory=list)  # (at, host, seconds)
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            at = time.monotonic()
            try:
                host, seconds = self.fleet.chat(self.model)
                self.served.append((at, host, seconds))
            except Exception as exc:  # every failure is the test's finding, kept whole
                self.failures.append(f"{type(exc).__name__}: {exc}")


def test_a_steady_stream_through_the_proxy_all_succeeds_while_one_host_switches(
    fleet: Fleet,
) -> None:
    stream = Stream(fleet, TINY)
    thread = threading.Thread(target=stream.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: len(stream.served) >= 4, 120, "the stream to be served before")
        begun = time.monotonic()
        switch = fleet.a.cli("switch", "cpu-smollm2-135m", timeout=1500)
        ended = time.monotonic()
        assert switch.returncode == 0, switch.stdout + switch.stderr
        count = len(stream.served)
        wait_until(lambda: len(stream.served) >= count + 4, 120, "the stream to be served after")
    finally:
        stream.stop.set()
        thread.join(120)
    assert stream.failures == [], stream.failures[:5]
    during = [host for at, host, _ in stream.served if begun <= at <= ended]
    assert len(during) >= 3, f"only {len(during)} requests were sent during the switch"
    worst = max(s for _, _, s in stream.served)
    hold = float(fleet.a.status()["route"]["switch_hold_s"])
    print(
        f"\nfleet: {len(stream.served)} requests, {len(during)} during A's "
        f"{ended - begun:.1f} s switch ({during.count(fleet.a.base_url + '/v1')} served by A, "
        f"{during.count(fleet.b.base_url + '/v1')} by B), max latency {worst:.2f} s "
        f"(A's hold {hold:g} s)"
    )
    assert worst < hold, f"a request took {worst:.1f} s: it waited out a hold of {hold:g} s"


def test_a_model_only_one_host_serves_reaches_that_host(fleet: Fleet) -> None:
    fleet.a.wait_serving("cpu-smollm2-135m", timeout_s=600)
    assert [m.id for m in fleet.a.openai().models.list()] == [SMOL]
    assert [m.id for m in fleet.b.openai().models.list()] == [TINY]
    hosts = {fleet.chat(SMOL)[0] for _ in range(4)}
    assert hosts == {f"{fleet.a.base_url}/v1"}, hosts
    hosts = {fleet.chat(TINY)[0] for _ in range(4)}
    assert hosts == {f"{fleet.b.base_url}/v1"}, hosts

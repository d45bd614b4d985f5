"""Two model-slot hosts behind a real LiteLLM proxy started from ``deploy/fleet/``.

Two compose stacks on this machine stand in for two hosts (their own projects, ports, state
and model containers; vLLM CPU with the tiny model), each on its own CPUs (``MODEL_SLOT_CPUSET``,
as two slots sharing one host must be: vLLM CPU binds its OpenMP threads inside the container's
CPUs, so without it both engines bind to the same core and starve each other). The proxy runs
the shipped ``deploy/fleet/litellm.yaml`` unchanged, from the pinned
``deploy/fleet/requirements.txt`` (``./run test`` installs it into ``.venv-fleet``). What a
client of the proxy must see:

* while host A switches profiles, a steady stream of requests all succeed, and none waits out
  A's switch hold (A answers 503 at once to ``X-Model-Slot-Hold: 0`` and the router retries B);
* a request for a model only one host serves reaches that host.

This module does not use the package's shared ``stack`` fixture: it brings up its own two.
The stream's figures (max latency, who served what) are printed and written to
``fleet-stream.json`` in the test's temporary directory.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import docker
import httpx
import openai
import pytest

from orchestrator import cpus
from orchestrator.slot.docker_slot import host_cpus
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
    a_cpus: frozenset[int]
    b_cpus: frozenset[int]
    proxy_url: str
    log: Path
    results: Path

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

    def host(self, api_base: str) -> str:
        """Which stack an ``x-litellm-model-api-base`` names: "A", "B" or the value itself."""
        return {f"{self.a.base_url}/v1": "A", f"{self.b.base_url}/v1": "B"}.get(api_base, api_base)


def split_cpus() -> tuple[frozenset[int], frozenset[int]]:
    """(A's CPUs, B's CPUs): the upper and lower half of this machine's. A is the host that
    switches; it gets the last CPU, the one an unconstrained vLLM CPU engine (`auto`: all CPUs
    but the last) elsewhere on this Docker engine leaves free."""
    have = sorted(host_cpus())
    if len(have) < 2:
        pytest.fail(f"two stacks on their own CPUs need 2 CPUs; this machine has {have}")
    half = len(have) // 2
    return frozenset(have[half:]), frozenset(have[:half])


def omp_cpus(stack: Stack) -> frozenset[int]:
    """The CPUs the stack's vLLM engine bound its OpenMP threads to (its startup facts)."""
    facts = stack.status()["startup_facts"]
    assert "omp_cpus" in facts, f"no OpenMP binding in the startup facts: {facts}"
    return cpus.parse(str(facts["omp_cpus"]))


def metric(stack: Stack, name: str) -> float:
    """The sum of a frontdoor metric's samples (all label sets), from its /metrics."""
    text = httpx.get(f"{stack.base_url}/metrics", timeout=5).text
    pattern = re.compile(rf"^{re.escape(name)}(?:{{[^}}]*}})? ([0-9.e+-]+)$", re.MULTILINE)
    return sum((float(value) for value in pattern.findall(text)), 0.0)


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
            proc.wait(30)


@pytest.fixture(scope="module")
def fleet(
    docker_client: docker.DockerClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fleet]:
    tag = f"fleet{os.getpid()}"
    a_cpus, b_cpus = split_cpus()
    results = tmp_path_factory.mktemp("fleet")
    log = results / "litellm.log"
    with (
        compose_stack(
            docker_client, tmp_path_factory, f"{tag}a", "cpu-tiny",
            {"MODEL_SLOT_CPUSET": cpus.format_ids(a_cpus)},
        ) as a,
        compose_stack(
            docker_client, tmp_path_factory, f"{tag}b", "cpu-tiny",
            {"MODEL_SLOT_CPUSET": cpus.format_ids(b_cpus)},
        ) as b,
    ):  # fmt: skip
        a.compose("up", "-d")
        b.compose("up", "-d")
        # Generous: on a busy 2-core machine two first starts at once can take minutes.
        a.wait_serving("cpu-tiny", timeout_s=900)
        b.wait_serving("cpu-tiny", timeout_s=900)
        for url in _start_proxy(a, b, log):
            yield Fleet(a, b, a_cpus, b_cpus, url, log, results)


def test_each_host_s_engine_binds_to_its_own_cpus(fleet: Fleet) -> None:
    assert fleet.a.model().attrs["HostConfig"]["CpusetCpus"] == cpus.format_ids(fleet.a_cpus)
    assert fleet.b.model().attrs["HostConfig"]["CpusetCpus"] == cpus.format_ids(fleet.b_cpus)
    a, b = omp_cpus(fleet.a), omp_cpus(fleet.b)
    assert a and a <= fleet.a_cpus, f"A's engine bound to {sorted(a)}, not within its CPUs"
    assert b and b <= fleet.b_cpus, f"B's engine bound to {sorted(b)}, not within its CPUs"


@dataclass
class Served:
    at: float  # monotonic time the request was sent
    host: str  # "A" or "B"
    seconds: float


@dataclass
class Stream:
    """Requests sent one after another from a thread until stopped; every outcome kept."""

    fleet: Fleet
    model: str
    served: list[Served] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            at = time.monotonic()
            try:
                api_base, seconds = self.fleet.chat(self.model)
                self.served.append(Served(at, self.fleet.host(api_base), seconds))
            except Exception as exc:  # every failure is the test's finding, kept whole
                self.failures.append(f"{type(exc).__name__}: {exc}")


def test_a_steady_stream_through_the_proxy_all_succeeds_while_one_host_switches(
    fleet: Fleet,
) -> None:
    hold = float(fleet.a.status()["route"]["switch_hold_s"])
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
    assert not thread.is_alive(), "the stream's last request did not return"

    during = [s for s in stream.served if begun <= s.at <= ended]
    worst = max(s.seconds for s in stream.served)
    worst_during = max((s.seconds for s in during), default=0.0)
    result = {
        "requests": len(stream.served),
        "failed": len(stream.failures),
        "switch_s": round(ended - begun, 1),
        "during_switch": len(during),
        "during_switch_served_by": {h: sum(s.host == h for s in during) for h in ("A", "B")},
        "max_latency_s": round(worst, 3),
        "max_latency_during_switch_s": round(worst_during, 3),
        "a_switch_hold_s": hold,
        "refused": {  # by each frontdoor, at once, for the proxy to retry elsewhere
            name: {
                kind: metric(stack, f'frontdoor_refusals_total{{type="{kind}"}}')
                for kind in ("switching", "model_not_served", "busy")
            }
            for name, stack in (("A", fleet.a), ("B", fleet.b))
        },
        "queue_wait_s": {
            "A": metric(fleet.a, "frontdoor_queue_wait_seconds_sum"),
            "B": metric(fleet.b, "frontdoor_queue_wait_seconds_sum"),
        },
        "cpus": {"A": cpus.format_ids(fleet.a_cpus), "B": cpus.format_ids(fleet.b_cpus)},
        "samples": [asdict(s) | {"at": round(s.at - begun, 3)} for s in stream.served],
    }
    path = fleet.results / "fleet-stream.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"\nfleet: {result['requests']} requests, {len(during)} during A's "
        f"{result['switch_s']} s switch (served by {result['during_switch_served_by']}), "
        f"max latency {worst:.3f} s (during the switch {worst_during:.3f} s; A's hold {hold:g} s),"
        f" refused at once: {json.dumps(result['refused'])}; {path}"
    )

    assert stream.failures == [], stream.failures[:5]
    assert len(during) >= 3, f"only {len(during)} requests were sent during the switch"
    # Who served while A switched is the router's business; that B alone could is the point.
    assert {s.host for s in during} <= {"A", "B"}, during
    # A request that waited out A's hold took at least the hold; none may have.
    assert worst < hold, f"a request took {worst:.1f} s: it waited out a hold of {hold:g} s"
    # And none was held at all: every deployment sends X-Model-Slot-Hold: 0, so neither
    # frontdoor made a generation wait for a place (a held one adds its wait to this sum).
    assert result["queue_wait_s"] == {"A": 0.0, "B": 0.0}, result["queue_wait_s"]


def test_a_model_only_one_host_serves_reaches_that_host(fleet: Fleet) -> None:
    fleet.a.wait_serving("cpu-smollm2-135m", timeout_s=600)
    assert [m.id for m in fleet.a.openai().models.list()] == [SMOL]
    assert [m.id for m in fleet.b.openai().models.list()] == [TINY]
    assert {fleet.host(fleet.chat(SMOL)[0]) for _ in range(4)} == {"A"}
    assert {fleet.host(fleet.chat(TINY)[0]) for _ in range(4)} == {"B"}

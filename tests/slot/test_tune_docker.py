"""``tune context`` and ``tune concurrency`` on real vLLM CPU through the real switch.

One slot instance serves the module, in order (a vLLM start costs 40 s to minutes here). The
CPU profile's KV cache is fixed (``VLLM_CPU_KVCACHE_SPACE=1``), so the boundary vLLM's facts
imply is known from any one start: the largest length L on the step grid with KV / L >= N.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import docker
import docker.errors
import pytest

from orchestrator.control.state import StateStore
from orchestrator.evidence.store import EvidenceStore
from orchestrator.profiles.store import ProfileStore
from tests.slot.conftest import REPO, SlotUnderTest
from tests.support import wait_until

pytestmark = [pytest.mark.docker, pytest.mark.vllm]

SOURCE, PREVIOUS, N = "cpu-smollm2-135m", "cpu-tiny", 8


class Sampler:
    """Counts the slot's containers (any state) every 50 ms while a command runs."""

    def __init__(self, slot: SlotUnderTest) -> None:
        self.label = f"modelslot.instance={slot.instance}"
        self.counts: list[int] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        client = docker.from_env(timeout=600)
        while not self.done.is_set():
            # the low-level list: one API call, no inspect that could race a removal
            try:
                found = client.api.containers(all=True, filters={"label": [self.label]})
            except (docker.errors.DockerException, OSError):
                continue  # a busy engine's timeout is a missed sample, not a count
            self.counts.append(len(found))
            self.done.wait(0.05)
        client.close()

    def __enter__(self) -> Sampler:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join(10)


@pytest.fixture(scope="module")
def slot(module_slot: SlotUnderTest) -> SlotUnderTest:
    # A start that times out is a failed row, not "too high": give a busy box room.
    source = module_slot.profiles_dir / f"{SOURCE}.env"
    text = source.read_text()
    assert "MODEL_SLOT_STARTUP_TIMEOUT_S=300\n" in text
    source.write_text(text.replace("TIMEOUT_S=300\n", "TIMEOUT_S=1200\n"))
    done = module_slot.cli("switch", PREVIOUS, timeout=1500)
    assert done.returncode == 0, done.stderr
    return module_slot


def assert_back_on_previous(slot: SlotUnderTest) -> None:
    assert StateStore(slot.state_dir).load().current == PREVIOUS
    [container] = slot.labelled()
    assert container.status == "running"
    assert container.labels["modelslot.profile"] == PREVIOUS
    previous = ProfileStore(slot.profiles_dir).load(PREVIOUS)
    assert container.labels["modelslot.profile-hash"] == previous.hash


def test_tune_context_finds_the_boundary_the_facts_imply(slot: SlotUnderTest) -> None:
    with Sampler(slot) as sampler:
        done = slot.cli(
            "tune", "context", SOURCE, "--sequences", str(N), "--json", "--max-starts", "5",
            timeout=3600,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    doc: dict[str, Any] = json.loads(done.stdout)
    print(done.stderr)
    rows = doc["rows"]
    step = doc["step"]
    # the facts of the starts it made: one fixed pool, and the boundary it implies
    pools = {row["kv_cache_tokens"] for row in rows if row["kv_cache_tokens"]}
    assert len(pools) == 1, rows
    (kv,) = pools
    implied = math.floor(kv / N / step) * step
    winner = doc["winner"]["max_model_len"]
    assert winner == implied, rows
    by_len = {row["max_model_len"]: row for row in rows}
    assert by_len[winner]["outcome"] == "selected"
    assert by_len[winner]["max_concurrency"] >= N
    assert by_len[winner + step]["outcome"] == "too high"
    assert by_len[winner + step]["max_concurrency"] < N
    assert all(row["start_s"] and row["start_s"] > 0 for row in rows)
    # one model container at most at every sample, and back where it started
    assert max(sampler.counts) <= 1, "two model containers existed at once"
    assert len(sampler.counts) > 20, "the sampler did not sample"
    assert doc["previous"] == PREVIOUS
    assert doc["restored"] == f"back on {PREVIOUS}, verified"
    assert_back_on_previous(slot)
    # the winner as a profile that extends the source, and no candidate left behind
    store = ProfileStore(slot.profiles_dir)
    chosen = store.load(doc["winner"]["profile"])
    assert chosen.chain[1] == SOURCE
    assert chosen.status == f"research-c{N}"
    assert chosen.max_model_len == winner
    assert f"tune context {SOURCE} --sequences {N}" in chosen.path.read_text()
    assert sorted(p.stem for p in slot.profiles_dir.glob(f"{SOURCE}-ctx*.env")) == [chosen.name]
    kept = [e for e in EvidenceStore(slot.state_dir).entries(SOURCE) if e.kind == "tune-context"]
    assert len(kept) == 1 and kept[0].document["winner"]["max_model_len"] == winner


@contextlib.contextmanager
def ctrl_c_reaches_children() -> Iterator[None]:
    """Children started here get SIGINT's default, as under a terminal. A test run started in
    the background of a script (``./run test &``) ignores SIGINT, children inherit an ignored
    signal across exec, and Python then never raises KeyboardInterrupt: seen here, the search
    ran to its end and exited 0 instead of 130."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def test_an_interrupted_search_ends_back_on_the_previous_profile(slot: SlotUnderTest) -> None:
    assert_back_on_previous(slot)
    lines: list[str] = []
    before = sorted(slot.profiles_dir.glob(f"{SOURCE}-ctx*.env"))
    with Sampler(slot) as sampler, ctrl_c_reaches_children():
        search = subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "tune", "context", SOURCE,
             "--sequences", str(N), "--step", "256", "--json"],
            env=slot.env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert search.stderr is not None
        reader = threading.Thread(target=lambda: lines.extend(search.stderr or []), daemon=True)
        reader.start()

        def candidate_starting() -> bool:
            return any(
                c.labels.get("modelslot.profile", "").startswith(f"{SOURCE}-ctx")
                for c in slot.labelled()
            )

        wait_until(candidate_starting, 600, "the search's first candidate container")
        search.send_signal(signal.SIGINT)  # Ctrl-C, mid-start
        out, _ = search.communicate(timeout=900)
        reader.join(10)
    assert search.returncode == 130, "".join(lines)
    doc: dict[str, Any] = json.loads(out)
    assert doc["interrupted"] is True
    assert doc["why_stopped"].startswith("interrupted after ")
    assert doc["restored"] == f"back on {PREVIOUS}, verified"
    assert max(sampler.counts) <= 1, "two model containers existed at once"
    assert_back_on_previous(slot)
    assert doc["winner"] is None  # interrupted before any start finished
    assert sorted(slot.profiles_dir.glob(f"{SOURCE}-ctx*.env")) == before  # candidate removed


def lock_version() -> str:
    text = (REPO / "images" / "vllm-cpu" / "requirements.lock").read_text()
    match = re.search(r"^vllm-cpu==([^\s;]+)", text, re.MULTILINE)
    assert match is not None
    return match.group(1)


def test_tune_concurrency_end_to_end_and_its_fingerprint(slot: SlotUnderTest) -> None:
    """A small ladder on the real SmolLM2 (the tiny model's tokenizer cannot build exact
    prompts); its evidence names the real image and vLLM. Runs last: it leaves SOURCE on."""
    done = slot.cli("switch", SOURCE, timeout=1500)
    assert done.returncode == 0, done.stderr
    [container] = slot.labelled()
    port = container.attrs["NetworkSettings"]["Ports"]["8000/tcp"][0]["HostPort"]
    done = slot.cli(
        "tune", "concurrency", SOURCE, "--base-url", f"http://127.0.0.1:{port}",
        "--prompt-tokens", "64", "--output-tokens", "32", "--requests-per-level", "8",
        "--json", "--quiet",
        timeout=1500,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    doc: dict[str, Any] = json.loads(done.stdout)
    assert [level["concurrency"] for level in doc["levels"]] == [1, 2, 4]  # 4 sequences
    tune = doc["tune"]
    assert tune["knee"] in (1, 2, 4)
    assert tune["suggested"]["VLLM_MAX_NUM_SEQS"] == str(tune["knee"])
    fingerprint = doc["fingerprint"]
    image = docker.from_env().images.get(container.image.id)
    assert fingerprint["image"]["id"] == image.id == container.attrs["Image"]
    assert fingerprint["container"]["profile_hash"] == container.labels["modelslot.profile-hash"]
    assert fingerprint["vllm"]["version"] == lock_version()
    assert fingerprint["patches"] == {"applied": [], "note": "the image's build applied no patches"}
    assert fingerprint["xpu"]["note"] == "CPU profile: no XPU devices, nothing to read"
    assert fingerprint["host"]["kernel"]
    kept = EvidenceStore(slot.state_dir).entries(SOURCE)
    assert [e.kind for e in kept] == ["tune-context", "tune-context", "tune-concurrency"]

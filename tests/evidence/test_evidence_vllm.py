"""The evidence tools against a real vLLM CPU server (SmolLM2-135M-Instruct), one shared server.

Numbers are not asserted against fixed values (this box has 2 shared cores): fields, their
consistency, and the agreement with vLLM's own ``vllm bench serve`` and ``/metrics`` are (the
same arithmetic on the same data, the same work, times that contain the server's).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator.cli.main import main
from orchestrator.evidence.bench import vllm_reference
from orchestrator.evidence.bench.metrics import summarize
from tests.support import wait_until

from .conftest import REPO, Live, run_soak

pytestmark = [pytest.mark.docker, pytest.mark.vllm]


def bench(live: Live, out: Path, *extra: str) -> dict[str, Any]:
    code = main(["bench", "--base-url", live.base_url, "--json-out", str(out), "--quiet", *extra])
    document: dict[str, Any] = json.loads(out.read_text())
    assert code == 0, [level["summary"]["errors"] for level in document["levels"]]
    return document


def test_ladder_c1_c2_every_field_consistent(live: Live, tmp_path: Path) -> None:
    doc = bench(
        live,
        tmp_path / "ladder.json",
        "--concurrency",
        "1,2",
        "--prompt-tokens",
        "64",
        "--output-tokens",
        "24",
        "--probes",
    )
    assert doc["base_url"] == live.base_url
    assert doc["model"] == live.served_model_name
    assert doc["max_model_len"] == live.max_model_len
    assert doc["models"]["data"][0]["id"] == live.served_model_name
    assert doc["shape"] == {
        "prompt_tokens": 64,
        "output_tokens": 24,
        "chat": False,
        "shared_prefix_tokens": 0,
        "mode": "cold",
        "seed": 0,
    }
    assert [level["concurrency"] for level in doc["levels"]] == [1, 2]
    for level in doc["levels"]:
        records, s = level["records"], level["summary"]
        assert len(records) == s["requests"] == s["completed"] == 2 * level["concurrency"]
        for r in records:
            assert r["success"], r["error"]
            assert r["output_tokens"] == 24  # from the server's usage, = requested
            assert r["prompt_tokens"] == 64  # the server counted what /tokenize counted
            assert 1 <= r["chunks"] <= 24
            assert len(r["itl_s"]) == r["chunks"] - 1
            assert 0 < r["ttft_s"] <= r["e2e_s"]
            assert r["queue_s"] is not None and r["queue_s"] < r["ttft_s"]
        assert s["output_tokens"] == 24 * len(records)
        assert s["wall_s"] == pytest.approx(max(r["end_s"] for r in records))
        assert s["output_tok_s"] == pytest.approx(s["output_tokens"] / s["wall_s"])
        for key in ("ttft", "tpot", "itl", "e2e", "queue"):
            assert all(s[key][stat] is not None for stat in ("mean", "p50", "p95", "max"))
        assert s["decode_tok_s"] > 0 and s["decode_tok_s_per_request"] > 0
    near, over = doc["probes"]
    assert near["passed"] and near["prompt_tokens"] == live.max_model_len - 24
    assert over["passed"] and over["status"] == 400


FIDELITY = vllm_reference.Shape(prompt_tokens=64, output_tokens=48, requests=8, concurrency=2)


def run_vllm_bench_serve(live: Live) -> dict[str, Any]:
    """One ``vllm bench serve`` run inside the model container against the same server."""
    model_dir = live.profile.get("VLLM_MODEL") or ""
    return vllm_reference.run_vllm(
        live.container, FIDELITY, model=live.served_model_name, tokenizer=model_dir
    )


@pytest.fixture(scope="module")
def vllm_detailed(live: Live) -> dict[str, Any]:
    return run_vllm_bench_serve(live)


def test_summary_definitions_equal_vllm_bench_serve_on_its_own_measurements(
    vllm_detailed: dict[str, Any],
) -> None:
    """bench's arithmetic, fed vLLM's per-request numbers, reproduces vLLM's summary.

    Same data on both sides, so this is exact (floating-point tolerance) and does not depend on
    the box's load: it pins the definitions (TPOT excludes the first token, ITL is pooled per
    chunk, percentiles interpolate like numpy) to vLLM 0.32.0's ``calculate_metrics``.
    """
    theirs = vllm_detailed
    assert theirs["completed"] == FIDELITY.requests and theirs["failed"] == 0
    mine = summarize(vllm_reference.records(theirs, FIDELITY.concurrency), FIDELITY.concurrency)
    assert mine.completed == theirs["completed"]
    assert mine.output_tokens == theirs["total_output_tokens"]
    assert mine.prompt_tokens == theirs["total_input_tokens"]
    stats = {"ttft": mine.ttft, "tpot": mine.tpot, "itl": mine.itl, "e2el": mine.e2e}
    for name, ours in stats.items():
        assert ours.mean * 1000 == pytest.approx(theirs[f"mean_{name}_ms"], rel=1e-9), name
        assert ours.p50 * 1000 == pytest.approx(theirs[f"median_{name}_ms"], rel=1e-9), name
        for q in ("p50", "p95", "p99"):
            assert getattr(ours, q) * 1000 == pytest.approx(theirs[f"{q}_{name}_ms"], rel=1e-9), (
                name,
                q,
            )
    # bench's wall runs from the first start to the last end: inside vLLM's duration, which
    # also holds the client's set-up and tear-down; the throughput is over the shorter window.
    assert 0 < mine.wall_s <= theirs["duration"]
    assert mine.output_tok_s >= theirs["output_throughput"]


def test_bench_gives_vllm_the_same_work_and_its_times_contain_vllms_own(
    live: Live, vllm_detailed: dict[str, Any]
) -> None:
    """Fidelity without comparing speeds: bench, run in the model container like vLLM's tool,
    with no warm-up, against vLLM's own ``/metrics`` read just before and after it.

    - **The same work.** vLLM's counters grew by exactly the requests and the prompt and output
      tokens bench reports, which are the ones ``vllm bench serve`` sent for the same shape.
    - **Times that contain the server's.** Each request's bench clock starts before the server
      has the request and stops after the server produced what it waited for (the first token;
      the end of the stream), so bench's TTFTs and request times add up to at least what vLLM's
      histograms added for the same requests. A bench that started late (at the response
      headers, after a queue) or stopped early would fall below.

    Both hold whatever the load. How close bench's numbers come to vLLM's tool's is a
    measurement, made side by side in ``benchmarks/fidelity/run.py`` (docs/evidence.md).
    """
    theirs = vllm_detailed

    def totals(series: tuple[str, ...] = vllm_reference.SERVER_SERIES) -> dict[str, float]:
        page = httpx.get(f"{live.base_url}/metrics", timeout=30).text
        found = vllm_reference.server_totals(page, series)
        assert set(found) == set(series), found
        return found

    # Nothing of an earlier test's may still be running: it would add to the counters.
    wait_until(lambda: not any(totals(vllm_reference.SERVER_BUSY).values()), 120, "vLLM to be idle")
    before = totals()
    level = vllm_reference.run_bench_level(live.container, FIDELITY, warmup=False)
    after = totals()
    added = {name: after[name] - before[name] for name in vllm_reference.SERVER_SERIES}
    summary, records = level["summary"], level["records"]
    n = FIDELITY.requests
    assert summary["completed"] == theirs["completed"] == n, summary["errors"]
    for count in (
        "vllm:request_success_total",
        "vllm:time_to_first_token_seconds_count",
        "vllm:e2e_request_latency_seconds_count",
    ):
        assert added[count] == n, added  # bench's requests, and nothing else, reached vLLM
    assert summary["output_tokens"] == theirs["total_output_tokens"] == n * FIDELITY.output_tokens
    assert added["vllm:generation_tokens_total"] == summary["output_tokens"], added
    assert summary["prompt_tokens"] == n * FIDELITY.prompt_tokens
    assert added["vllm:prompt_tokens_total"] == summary["prompt_tokens"], added
    assert theirs["input_lens"] == [FIDELITY.prompt_tokens] * n
    ttft = sum(r["ttft_s"] for r in records)
    e2e = sum(r["end_s"] - r["start_s"] for r in records)
    print(
        f"bench / vLLM server, summed over {n} requests: TTFT {ttft:.3f} / "
        f"{added['vllm:time_to_first_token_seconds_sum']:.3f} s, request "
        f"{e2e:.3f} / {added['vllm:e2e_request_latency_seconds_sum']:.3f} s"
    )
    assert ttft >= added["vllm:time_to_first_token_seconds_sum"], (ttft, added)
    assert e2e >= added["vllm:e2e_request_latency_seconds_sum"], (e2e, added)


def test_canary_baseline_passes_twice_and_tampered_fails(
    live: Live, live_baseline: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["canary", "--base-url", live.base_url, "--expect", "baseline", "--quiet"]
    for _ in range(2):
        assert main([*args, "--baseline", str(live_baseline), "--repeat", "2"]) == 0
    out = capsys.readouterr().out
    assert out.count("match") >= 12 and "FAILED" not in out

    tampered = json.loads(live_baseline.read_text())
    tampered["hashes"]["exact_ok"] = "f" * 64
    path = tmp_path / "tampered.json"
    path.write_text(json.dumps(tampered))
    assert main([*args, "--baseline", str(path)]) == 1
    assert "exact_ok (run 1): baseline mismatch" in capsys.readouterr().out


def test_gate_passes_on_the_cpu_profile_and_promotes_a_copy(
    live: Live, live_baseline: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    for path in (REPO / "profiles").glob("cpu-*.env"):
        shutil.copy(path, profiles)
    name = live.profile.name
    code = main(
        [
            "gate",
            name,
            "--base-url",
            live.base_url,
            "--profiles-dir",
            str(profiles),
            "--state-dir",
            str(tmp_path / "state"),
            "--decode-prompt-tokens",
            "64",
            "--decode-tokens",
            "24",
            "--requests-per-level",
            "4",
            "--canary-expect",
            "baseline",
            "--canary-baseline",
            str(live_baseline),
            "--promote",
            "--quiet",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    [path] = (tmp_path / "state" / "evidence").glob(f"{name}/{live.profile.hash[:12]}/*-gate.json")
    report = json.loads(path.read_text())
    assert report["profile"]["hash"] == live.profile.hash
    results = {step["name"]: step["result"] for step in report["steps"]}
    assert results == {
        "models": "pass",
        "completion": "pass",
        "image": "skipped",
        "decode": "pass",
        "ttft": "pass",
        "concurrency": "pass",
        "canary": "pass",
    }
    steps = {step["name"]: step for step in report["steps"]}
    assert steps["models"]["numbers"]["max_model_len"] == live.max_model_len
    assert steps["decode"]["numbers"]["output_tok_s"] > 0
    assert set(steps["ttft"]["numbers"]) == {f"ttft_ms_at_{live.max_model_len}"}
    assert set(steps["concurrency"]["numbers"]) == {"c2", "c4"}
    assert steps["concurrency"]["numbers"]["c4"]["ok"] == "4/4"
    assert "text-only" in steps["image"]["reason"]
    assert "MODEL_SLOT_STATUS=production" in (profiles / f"{name}.env").read_text()
    assert report["promoted"].endswith("-> MODEL_SLOT_STATUS=production")


def test_soak_short_interval_ends_cleanly(
    live: Live, live_baseline: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    baseline = ("--canary-expect", "baseline", "--baseline", str(live_baseline))
    code, summary = run_soak(
        capsys,
        live.base_url,
        tmp_path,
        duration_s="24",
        interval_s="12",
        prompt_tokens="32",
        output_tokens="16",
        extra=baseline,
    )
    assert code == 0, summary
    # Two 12 s slots in 24 s. A cycle that overran its slot on a loaded box makes the next one
    # a skipped slot, not a bunched-up cycle (the schedule itself is unit-tested on a fake clock).
    assert summary["cycles"] + summary["missed_slots"] == 2
    assert summary["cycles"] == summary["clean_cycles"] >= 1
    assert summary["anomalies"] == []
    assert summary["elapsed_s"] >= 24
    rows = [json.loads(line) for line in (tmp_path / "soak.jsonl").read_text().splitlines()]
    assert [r["cycle"] for r in rows] == list(range(1, summary["cycles"] + 1))
    assert all(r["baseline"] == "match" and r["status"] == "clean" for r in rows)
    assert all(r["quality"] == "unjudged" for r in rows)  # baseline mode: hashes, not answers
    rates = [r["wall_tok_s"] for r in rows]
    assert summary["wall_tok_s"]["min"] == min(rates) and summary["wall_tok_s"]["max"] == max(rates)
    tsv = (tmp_path / "soak.tsv").read_text().splitlines()
    assert len(tsv) == 1 + summary["cycles"]


class InProcessFrontdoor:
    """The real frontdoor (its own package), in this process, routed to the live server."""

    def __init__(self, live: Live) -> None:
        from frontdoor.core import Frontdoor
        from frontdoor.route import Limits, Profile, Route
        from frontdoor.server import Servers, bind
        from frontdoor.settings import Settings

        route = Route(
            upstream=live.base_url,
            state="serving",
            profile=Profile(**live.profile.metadata()),
            limits=Limits.model_validate(live.profile.frontdoor_limits()),
        )
        public, admin = bind("127.0.0.1", 0), bind("127.0.0.1", 0)
        settings = Settings(port=public.getsockname()[1], admin_port=admin.getsockname()[1])
        self.servers = Servers(Frontdoor(settings, route), public, admin)
        self.url = f"http://127.0.0.1:{settings.port}"
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_until_complete, args=(self.servers.serve(),), daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.servers.stop)
        self.thread.join(20)
        self.loop.close()


def test_bench_and_gate_through_the_frontdoor(
    live: Live, live_baseline: Path, tmp_path: Path
) -> None:
    """Through the frontdoor, the profile comes from /status and the gate checks its hash."""
    front = InProcessFrontdoor(live)
    try:
        doc = bench(
            dataclasses.replace(live, base_url=front.url),
            tmp_path / "fd.json",
            "--concurrency",
            "2",
            "--prompt-tokens",
            "48",
            "--output-tokens",
            "16",
        )
        code = main(
            [
                "gate",
                live.profile.name,
                "--base-url",
                front.url,
                "--profiles-dir",
                str(REPO / "profiles"),
                "--state-dir",
                str(tmp_path / "state"),
                "--decode-prompt-tokens",
                "32",
                "--decode-tokens",
                "16",
                "--ttft-contexts",
                "512",
                "--levels",
                "2",
                "--canary-expect",
                "baseline",
                "--canary-baseline",
                str(live_baseline),
                "--quiet",
            ]
        )
    finally:
        front.stop()
    assert doc["base_url"] == front.url
    assert doc["profile"]["name"] == live.profile.name
    assert doc["profile"]["hash"] == live.profile.hash
    assert doc["status"]["route"]["profile"]["hash"] == live.profile.hash
    assert all(r["output_tokens"] == 16 for r in doc["levels"][0]["records"])
    [path] = (tmp_path / "state" / "evidence").glob("*/*/*-gate.json")
    report = json.loads(path.read_text())
    assert code == 0, report["steps"]
    assert report["active"] == f"/status: active profile {live.profile.name!r}"
    assert [s["result"] for s in report["steps"]] == [
        "pass",
        "pass",
        "skipped",
        "pass",
        "pass",
        "pass",
        "pass",
    ]

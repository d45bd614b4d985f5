"""Fidelity: ``bench`` against vLLM's own ``vllm bench serve``, same server, same shape.

    .venv/bin/python benchmarks/fidelity/run.py --rounds 4 --json benchmarks/fidelity/result.json

Starts the profile (default ``cpu-smollm2-135m``) in a slot instance of its own (container
``modelslot-fidelity``, label ``modelslot.instance=fidelity``, a Docker-chosen loopback port),
or uses a running vLLM container with ``--container NAME``. Each round runs both tools back to
back with the same shape (greedy, ``ignore_eos``, exact prompt length), alternating which goes
first. vLLM's client runs inside the model container; so does ``bench`` by default (its package
is copied in), sharing the container's CPU share and loopback path; ``--bench-in host`` runs it
from this host through the published port instead. ``--busy-cores N`` keeps N host processes
spinning meanwhile, to see the tools on a busy shared box. The table shows each round's output
throughput and mean TTFT/TPOT from both, and the gap. Target: within 10%.

Rounds are printed as they are, with no retry or bracketing: on a shared 2-core box the load
moves by more than 10% between two runs seconds apart, and the table shows it. The tests hold
the tools to exact agreement on the same measurements
(``test_summary_definitions_equal_vllm_bench_serve_on_its_own_measurements``) and bench within
10% of the span of the vLLM runs just before and after it
(``test_fidelity_bench_within_10_percent_of_vllm_bench_serve``).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from orchestrator.cli.main import main as orchestrator_main  # noqa: E402
from orchestrator.config import Paths  # noqa: E402
from orchestrator.evidence.bench import vllm_reference  # noqa: E402
from orchestrator.output import table, write_json  # noqa: E402
from orchestrator.profiles.store import ProfileStore  # noqa: E402
from orchestrator.slot.docker_slot import DockerSlot, SlotConfig  # noqa: E402

TARGET_GAP = 0.10


def spin() -> None:
    """A host process that only burns CPU (``--busy-cores``)."""
    while True:
        pass


def run_bench(target: Any, shape: vllm_reference.Shape, work: Path) -> Any:
    """``target``: the model container to run bench in, or the base URL to run it against."""
    if not isinstance(target, str):
        return vllm_reference.run_bench(target, shape)
    out = work / "bench.json"
    argv = ["bench", "--base-url", target, "--json-out", str(out), "--quiet"]
    argv += ["--concurrency", str(shape.concurrency), "--prompt-tokens", str(shape.prompt_tokens)]
    argv += ["--output-tokens", str(shape.output_tokens)]
    argv += ["--requests-per-level", str(shape.requests)]
    if orchestrator_main(argv) != 0:
        raise SystemExit("bench failed; see its table above")
    return json.loads(out.read_text())["levels"][0]["summary"]


def one_round(
    number: int, container: Any, target: Any, shape: vllm_reference.Shape, names: list[str]
) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="modelslot-fidelity-"))
    vllm_first = number % 2 == 1
    print(f"round {number}: {'vllm first' if vllm_first else 'bench first'}", file=sys.stderr)
    if vllm_first:
        theirs = vllm_reference.run_vllm(container, shape, model=names[0], tokenizer=names[1])
        mine = run_bench(target, shape, work)
    else:
        mine = run_bench(target, shape, work)
        theirs = vllm_reference.run_vllm(container, shape, model=names[0], tokenizer=names[1])
    row = {
        "round": number,
        "first": "vllm" if vllm_first else "bench",
        "vllm_out_tok_s": round(theirs["output_throughput"], 2),
        "bench_out_tok_s": round(mine["output_tok_s"], 2),
        "vllm_ttft_ms": round(theirs["mean_ttft_ms"], 1),
        "bench_ttft_ms": round(mine["ttft"]["mean"] * 1000, 1),
        "vllm_tpot_ms": round(theirs["mean_tpot_ms"], 1),
        "bench_tpot_ms": round(mine["tpot"]["mean"] * 1000, 1),
    }
    row["gap_out_tok_s"] = round(row["bench_out_tok_s"] / row["vllm_out_tok_s"] - 1, 4)
    row["gap_ttft"] = round(row["bench_ttft_ms"] / row["vllm_ttft_ms"] - 1, 4)
    row["gap_tpot"] = round(row["bench_tpot_ms"] / row["vllm_tpot_ms"] - 1, 4)
    row["within_target"] = all(abs(row[k]) <= TARGET_GAP for k in row if k.startswith("gap_"))
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--profile", default="cpu-smollm2-135m")
    parser.add_argument("--container", help="a running vLLM container of --profile to reuse")
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--output-tokens", type=int, default=48)
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument(
        "--bench-in",
        choices=["container", "host"],
        default="container",
        help="run bench inside the model container beside vLLM's client, sharing its CPU share "
        "and loopback path (default), or on this host through the published port",
    )
    parser.add_argument(
        "--busy-cores",
        type=int,
        default=0,
        help="keep this many host processes spinning during the rounds (a busy shared box)",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the result here")
    args = parser.parse_args()

    env = {
        "MODEL_SLOT_CONTAINER_NAME": "modelslot-fidelity",
        "MODEL_SLOT_INSTANCE": "fidelity",
        "MODEL_SLOT_BACKEND_PORT": "0",
        "MODEL_SLOT_PROFILES_DIR": os.environ.get(
            "MODEL_SLOT_PROFILES_DIR", str(REPO / "profiles")
        ),
    }
    paths = Paths.from_env(env)
    profile = ProfileStore(paths.profiles_dir).load(args.profile)
    shape = vllm_reference.Shape(
        args.prompt_tokens, args.output_tokens, args.requests, args.concurrency
    )
    slot = DockerSlot(SlotConfig.from_env(env))
    started = args.container is None
    if started:
        print(f"starting {profile.name} as modelslot-fidelity", file=sys.stderr, flush=True)
        slot.stop(grace_s=5)
        info = slot.create(profile, paths.model_root)
        slot.wait_ready(profile, on_step=lambda s: print(f"  {s}", file=sys.stderr, flush=True))
        base_url = slot.probe_url(profile, info)
        container = slot.client.containers.get(info.id)
    else:
        container = slot.client.containers.get(args.container)
        port = container.attrs["NetworkSettings"]["Ports"][f"{profile.container_port}/tcp"]
        base_url = f"http://127.0.0.1:{port[0]['HostPort']}"
    names = [profile.served_model_name, profile.get("VLLM_MODEL")]
    spinners = [multiprocessing.Process(target=spin, daemon=True) for _ in range(args.busy_cores)]
    try:
        for spinner in spinners:
            spinner.start()
        target = container if args.bench_in == "container" else base_url
        rows = [one_round(n, container, target, shape, names) for n in range(1, args.rounds + 1)]
    finally:
        for spinner in spinners:
            spinner.terminate()
        if started:
            slot.stop(grace_s=5)
    headers = list(rows[0])
    print(table(headers, [[row[h] for h in headers] for row in rows]))
    result = {"profile": profile.name, "shape": asdict(shape), "target_gap": TARGET_GAP}
    result["bench_in"] = args.bench_in
    result["busy_cores"] = args.busy_cores
    result["rounds"] = rows
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

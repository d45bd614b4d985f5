"""Switch timing: how much time a switch spends beyond the new container's own cold start.

    .venv/bin/python benchmarks/switch/run.py --switches 4 --json benchmarks/switch/result.json

Switches back and forth between two CPU profiles (default ``cpu-tiny`` and
``cpu-smollm2-135m``) on a slot instance of its own (container ``modelslot-bench``, label
``modelslot.instance=bench``, a Docker-chosen loopback port), with a real frontdoor in this
process so the switching/drain/flip phases do real HTTP. It runs the same ``Switcher`` as
``python -m orchestrator switch``.

The container's cold start is vLLM's own: from the container process start (Docker's
``State.StartedAt``) to vLLM's "Application startup complete." (Docker's log timestamp, the
same clock). Everything else is the switch's overhead: lock, resolve, preflight, telling the
frontdoor, draining, stopping the old container, the create call, the readiness probes after
vLLM said it was up (including the one real generation), reading the facts, the flip and the
state write. Target: under 2 s per switch.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from orchestrator.config import Paths  # noqa: E402
from orchestrator.control.frontdoor_client import FrontdoorClient  # noqa: E402
from orchestrator.control.state import StateStore  # noqa: E402
from orchestrator.control.switch import Switcher  # noqa: E402
from orchestrator.profiles.store import ProfileStore  # noqa: E402
from orchestrator.slot import facts  # noqa: E402
from orchestrator.slot.docker_slot import DockerSlot, SlotConfig  # noqa: E402

TARGET_S = 2.0


def _ts(text: str) -> datetime:
    """Docker's RFC 3339 with nanoseconds (``...:07.434248088Z``) or an ISO-8601 string."""
    stamp = facts.docker_timestamp(text + " ")
    return stamp if stamp is not None else datetime.fromisoformat(text)


def start_frontdoor(state_dir: Path) -> tuple[Any, str, str]:
    """The real frontdoor on port-0 sockets in a thread (needs images/frontdoor installed)."""
    import threading

    import uvloop
    from frontdoor.core import Frontdoor
    from frontdoor.server import Servers, bind
    from frontdoor.settings import Settings

    token = secrets.token_urlsafe(16)
    public, admin = bind("127.0.0.1", 0), bind("127.0.0.1", 0)
    settings = Settings(
        admin_token=token,
        state_dir=state_dir,
        port=public.getsockname()[1],
        admin_port=admin.getsockname()[1],
    )
    servers = Servers(Frontdoor(settings), public, admin)
    loop = uvloop.new_event_loop()
    threading.Thread(target=loop.run_until_complete, args=(servers.serve(),), daemon=True).start()
    return servers, f"http://127.0.0.1:{settings.admin_port}", token


def one_switch(switcher: Switcher, slot: DockerSlot, name: str) -> dict[str, Any]:
    t0 = time.monotonic()
    switcher.lock.acquire(wait_s=60)
    try:
        report = switcher.switch(name, lock_wait_s=time.monotonic() - t0)
    finally:
        switcher.lock.release()
    attrs = slot.inspect() or {}
    started = attrs.get("State", {}).get("StartedAt")
    complete = report.startup_facts.get("startup_complete_at")
    cold = (_ts(complete) - _ts(started)).total_seconds() if started and complete else float("nan")
    phases = {p["name"]: p["duration_s"] for p in report.phases}
    # The container's cold start happens inside create (after its start call) + ready.
    phases["ready_beyond_cold_start"] = round(
        phases.get("create", 0) + phases.get("ready", 0) - cold, 3
    )
    total = report.total_s + phases.get("lock", 0)
    return {
        "to": name,
        "previous": report.previous,
        "outcome": report.outcome,
        "total_s": round(total, 3),
        "cold_start_s": round(cold, 3),
        "overhead_s": round(total - cold, 3),
        "phases": phases,
        "startup_facts": report.startup_facts,
    }


OVERHEAD_PHASES = (
    "lock", "resolve", "preflight", "switching", "drain", "stop",
    "ready_beyond_cold_start", "facts", "flip", "persist",
)  # fmt: skip


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def mean(values: list[float]) -> float:
        return round(statistics.fmean(values), 3) if values else float("nan")

    return {
        "switches": len(rows),
        "mean_total_s": mean([r["total_s"] for r in rows]),
        "mean_cold_start_s": mean([r["cold_start_s"] for r in rows]),
        "mean_overhead_s": mean([r["overhead_s"] for r in rows]),
        "max_overhead_s": max((r["overhead_s"] for r in rows), default=float("nan")),
        # The old container's own graceful shutdown (vLLM's engine and worker teardown after
        # SIGTERM) is to a switch what the new one's cold start is: the model's time, not ours.
        "mean_overhead_without_old_shutdown_s": mean(
            [r["overhead_s"] - r["phases"].get("stop", 0.0) for r in rows]
        ),
        "mean_phase_s": {
            phase: mean([r["phases"].get(phase, 0.0) for r in rows]) for phase in OVERHEAD_PHASES
        },
        "target_overhead_s": TARGET_S,
        "meets_target": all(r["overhead_s"] < TARGET_S for r in rows),
    }


def render(rows: list[dict[str, Any]], summary: dict[str, Any]) -> str:
    head = ["#", "to", "total", "cold start", "overhead", *OVERHEAD_PHASES]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, row in enumerate(rows, 1):
        cells = [
            str(i),
            row["to"],
            f"{row['total_s']:.2f}",
            f"{row['cold_start_s']:.2f}",
            f"**{row['overhead_s']:.2f}**",
            *(f"{row['phases'].get(p, 0.0):.2f}" for p in OVERHEAD_PHASES),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    means = summary["mean_phase_s"]
    lines.append(
        "| mean | | "
        + f"{summary['mean_total_s']:.2f} | {summary['mean_cold_start_s']:.2f} | "
        + f"**{summary['mean_overhead_s']:.2f}** | "
        + " | ".join(f"{means[p]:.2f}" for p in OVERHEAD_PHASES)
        + " |"
    )
    verdict = "meets" if summary["meets_target"] else "MISSES"
    lines.append(
        f"\nOverhead per switch: mean {summary['mean_overhead_s']:.2f} s, max "
        f"{summary['max_overhead_s']:.2f} s; {verdict} the {TARGET_S:g} s target. Without the "
        f"old vLLM's own shutdown (the stop column): mean "
        f"{summary['mean_overhead_without_old_shutdown_s']:.2f} s. (seconds)"
    )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--switches", type=int, default=4)
    parser.add_argument("--profiles", nargs=2, default=["cpu-tiny", "cpu-smollm2-135m"])
    parser.add_argument("--json", type=Path, default=None, help="write the result here")
    parser.add_argument("--no-frontdoor", action="store_true")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="modelslot-bench-"))
    env = {
        "MODEL_SLOT_CONTAINER_NAME": "modelslot-bench",
        "MODEL_SLOT_INSTANCE": "bench",
        "MODEL_SLOT_BACKEND_PORT": "0",
        "MODEL_SLOT_STATE_DIR": str(work / "state"),
        "MODEL_SLOT_PROFILES_DIR": os.environ.get(
            "MODEL_SLOT_PROFILES_DIR", str(REPO / "profiles")
        ),
    }
    paths = Paths.from_env(env)
    frontdoor = None
    servers = None
    if not args.no_frontdoor:
        servers, admin_url, token = start_frontdoor(work / "frontdoor")
        frontdoor = FrontdoorClient(admin_url, token)
    slot = DockerSlot(SlotConfig.from_env(env))
    switcher = Switcher(
        ProfileStore(paths.profiles_dir),
        slot,
        state=StateStore(paths.state_dir),
        frontdoor=frontdoor,
        paths=paths,
        drain_timeout_s=5,
    )
    switcher.lock.purpose = "switch benchmark"
    first, second = args.profiles
    rows: list[dict[str, Any]] = []
    try:
        print(f"warm-up: start {first} (not counted)", file=sys.stderr, flush=True)
        one_switch(switcher, slot, first)
        for i in range(args.switches):
            name = second if i % 2 == 0 else first
            row = one_switch(switcher, slot, name)
            print(
                f"switch {i + 1}/{args.switches} -> {name}: total {row['total_s']:.2f}s, "
                f"cold start {row['cold_start_s']:.2f}s, overhead {row['overhead_s']:.2f}s",
                file=sys.stderr,
                flush=True,
            )
            rows.append(row)
    finally:
        slot.stop(15)
        if servers is not None:
            servers.stop()
    summary = summarize(rows)
    print(render(rows, summary))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "when": datetime.now().astimezone().isoformat(timespec="seconds"),
                    "host_cpus": os.cpu_count(),
                    "profiles": args.profiles,
                    "summary": summary,
                    "switches": rows,
                },
                indent=2,
            )
            + "\n"
        )
    return 0 if summary["meets_target"] else 1


if __name__ == "__main__":
    sys.exit(main())

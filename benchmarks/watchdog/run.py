"""What the watchdog costs, and how fast it finds a wedge, on vLLM CPU.

    .venv/bin/python benchmarks/watchdog/run.py --json benchmarks/watchdog/result.json

On a slot instance of its own (container ``modelslot-wdbench``, label
``modelslot.instance=wdbench``, a Docker-chosen loopback port), with the profile given
(default ``cpu-smollm2-135m``, the CPU default):

1. **Probe cost.** ``--liveness N`` 1-token probes and ``--decode M`` decode probes of the
   default shape (``MODEL_SLOT_WATCHDOG_DECODE_TOKENS``), one after another on an idle model;
   their mean engine time divided by the default intervals is the fraction of serving capacity
   the probes take *at most* (they run only when no token flowed for a probe interval, so a
   model serving traffic gets none): ``liveness_s / PROBE_INTERVAL_S + decode_s /
   DECODE_INTERVAL_S``. Target: under 1 %.
2. **A wedge.** ``SIGSTOP`` of ``VLLM::EngineCore``, the real watchdog runner and port with the
   profile's settings (the defaults unless ``--probe-interval``/``--wedge`` say otherwise), the
   restart done by the same ``Switcher.start`` the controller uses: seconds from the stop to the
   ``wedged`` verdict, and to serving again (ready check with a real generation passed).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from orchestrator.config import Paths  # noqa: E402
from orchestrator.control import watchdog_probe  # noqa: E402
from orchestrator.control.state import StateStore  # noqa: E402
from orchestrator.control.switch import Switcher  # noqa: E402
from orchestrator.control.watchdog import WatchdogSettings  # noqa: E402
from orchestrator.control.watchdog_port import SlotWatchdogPort  # noqa: E402
from orchestrator.control.watchdog_runner import WatchdogRunner  # noqa: E402
from orchestrator.profiles.store import ProfileStore  # noqa: E402
from orchestrator.slot.docker_slot import Slot, SlotConfig  # noqa: E402
from orchestrator.slot.xpu_smi import XpuSmi  # noqa: E402

TARGET_FRACTION = 0.01


def engine_core_pid(container: Any) -> int:
    top = container.top()
    cmd, pid = top["Titles"].index("CMD"), top["Titles"].index("PID")
    for row in top["Processes"]:
        if "VLLM::EngineCore" in row[cmd]:
            return int(row[pid])
    raise SystemExit(f"no VLLM::EngineCore in docker top: {top['Processes']}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="cpu-smollm2-135m")
    p.add_argument("--liveness", type=int, default=20)
    p.add_argument("--decode", type=int, default=5)
    p.add_argument("--probe-interval", type=float, help="default: the profile's")
    p.add_argument("--wedge", type=float, help="default: the profile's")
    p.add_argument("--json", help="write the result here")
    args = p.parse_args()

    state_dir = Path(tempfile.mkdtemp(prefix="modelslot-wdbench-"))
    env = {
        "MODEL_SLOT_CONTAINER_NAME": "modelslot-wdbench",
        "MODEL_SLOT_INSTANCE": "wdbench",
        "MODEL_SLOT_BACKEND_PORT": "0",
        "MODEL_SLOT_STATE_DIR": str(state_dir),
        "MODEL_SLOT_PROFILES_DIR": str(REPO / "profiles"),
    }
    paths = Paths.from_env(env)
    slot = Slot(SlotConfig.from_env(env))
    store = ProfileStore(paths.profiles_dir)
    profile = store.load(args.profile)
    switcher = Switcher(store, slot, state=StateStore(state_dir), frontdoor=None, paths=paths)
    settings = WatchdogSettings.from_profile(profile)
    if args.probe_interval or args.wedge:
        settings = WatchdogSettings(
            **{
                **settings.__dict__,
                "probe_interval_s": args.probe_interval or settings.probe_interval_s,
                "wedge_s": args.wedge or settings.wedge_s,
            }
        )
    result: dict[str, Any] = {"profile": profile.name, "settings": settings.__dict__}
    try:
        print(f"starting {profile.name} ...", flush=True)
        switcher.start(profile, "bench")
        info = slot.current()
        assert info is not None
        base = slot.probe_url(profile, info)
        served = profile.served_model_name

        live = [
            watchdog_probe.liveness(base, served, settings.wedge_s) for _ in range(args.liveness)
        ]
        decode = [
            watchdog_probe.decode(base, served, settings.decode_tokens, settings.wedge_s)
            for _ in range(args.decode)
        ]
        assert all(r.ok for r in live + decode), [r.error for r in live + decode if not r.ok]
        live_s = statistics.mean(r.latency_s for r in live)
        decode_s = statistics.mean(r.latency_s for r in decode)
        rates = [r.decode_tok_s for r in decode if r.decode_tok_s]
        fraction = live_s / settings.probe_interval_s + decode_s / settings.decode_interval_s
        result["cost"] = {
            "liveness_probe_s_mean": round(live_s, 4),
            "liveness_probe_s_max": round(max(r.latency_s for r in live), 4),
            "decode_probe_s_mean": round(decode_s, 4),
            "decode_tok_s_median": round(statistics.median(rates), 2) if rates else None,
            "capacity_fraction_at_most": round(fraction, 5),
            "target": TARGET_FRACTION,
            "ok": fraction < TARGET_FRACTION,
        }
        print(json.dumps(result["cost"], indent=2), flush=True)

        restarts: list[str] = []
        port = SlotWatchdogPort(state_dir, None, restarts.append, restarts.append, XpuSmi())
        port.aim(base, served)
        runner = WatchdogRunner(port)
        runner.arm(settings, profile.hash, None, fresh=True)
        while runner.view()["verdict"] != "ok":
            runner.step()
            time.sleep(0.2)
        container = slot.client.containers.get(info.id)
        pid = engine_core_pid(container)
        os.kill(pid, signal.SIGSTOP)
        stopped = time.monotonic()
        print(f"SIGSTOP {pid} (VLLM::EngineCore); waiting for the verdict ...", flush=True)
        while not restarts:
            runner.step()
            time.sleep(0.2)  # the controller's runner ticks once a second
        detected = time.monotonic() - stopped
        switcher.start(profile, "watchdog-restart")  # what the controller does on the verdict
        serving = time.monotonic() - stopped
        result["wedge"] = {
            "detected_s": round(detected, 1),
            "bound_s": settings.probe_interval_s + settings.wedge_s,
            "serving_again_s": round(serving, 1),
            "restart_s": round(serving - detected, 1),
            "reason": restarts[0],
        }
        print(json.dumps(result["wedge"], indent=2), flush=True)
    finally:
        slot.stop(5)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result.get("cost", {}).get("ok") else 1


if __name__ == "__main__":
    raise SystemExit(main())

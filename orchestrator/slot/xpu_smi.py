"""Device telemetry from Intel's ``xpu-smi`` (XPU Manager's CLI), per GPU.

Two commands, in their documented output formats (intel/xpumanager ``doc/smi_user_guide.md``):

- ``xpu-smi dump -d -1 -m 0,1,3,18,12 -n 1``: CSV, one row per device::

      Timestamp, DeviceId, GPU Utilization (%), GPU Power (W), GPU Core Temperature ...
      06:14:46.000,    0, 97.00, 180.61, 61, ...

  (the full header in ``tests/watchdog/data/xpu-smi-dump.csv``).

  Columns are found by their header names, not their position; a value xpu-smi cannot read
  is ``N/A`` or empty and becomes None (some need root, e.g. temperature).
- ``xpu-smi ps -j``: ``{"device_util_by_proc_list": [{"process_id", "process_name",
  "device_id", "mem_size", "shared_mem_size"}]}`` (kB): the processes holding each GPU. xpu-smi
  lists itself on every device; that row is left out.

Not yet run against a real B70 (the lab host was not reachable from CI): the parser is tested on
the documented format only. Without ``xpu-smi`` on the PATH, telemetry says so and the metrics
report ``modelslot_device_telemetry_available 0``.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

#: Metric ids of ``xpu-smi dump -m``: utilisation, power, core temperature, memory used, resets.
DUMP_METRICS = "0,1,3,18,12"
TIMEOUT_S = 15.0

_COLUMNS = {
    "GPU Utilization (%)": "utilization_percent",
    "GPU Power (W)": "power_w",
    "GPU Core Temperature (Celsius Degree)": "temperature_c",
    "GPU Memory Used (MiB)": "memory_used_mib",
    "Reset Counter": "engine_resets",
}


@dataclass(frozen=True)
class GpuSample:
    gpu: str
    utilization_percent: float | None = None
    memory_used_mib: float | None = None
    power_w: float | None = None
    temperature_c: float | None = None
    engine_resets: int | None = None


@dataclass(frozen=True)
class DeviceProcess:
    pid: int
    name: str
    device_id: int
    mem_kib: int | None = None


@dataclass(frozen=True)
class Telemetry:
    available: bool
    source: str | None = None
    reason: str | None = None
    gpus: list[GpuSample] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class XpuSmiError(Exception):
    """xpu-smi ran but said something this parser cannot read; the message shows it."""


Runner = Callable[[Sequence[str]], str]


def parse_dump(text: str) -> list[GpuSample]:
    """The CSV of ``xpu-smi dump``: the last row of each device."""
    lines = [line for line in text.splitlines() if line.strip()]
    start = next((i for i, line in enumerate(lines) if "DeviceId" in line), None)
    if start is None:
        raise XpuSmiError(f"no 'DeviceId' header in xpu-smi dump output: {text[:200]!r}")
    rows = list(csv.reader(lines[start:], skipinitialspace=True))
    header = [name.strip() for name in rows[0]]
    device = header.index("DeviceId")
    wanted = {index: _COLUMNS[name] for index, name in enumerate(header) if name in _COLUMNS}
    samples: dict[str, GpuSample] = {}
    for row in rows[1:]:
        cells = [cell.strip() for cell in row]
        if len(cells) <= device or not cells[device]:
            continue
        values: dict[str, Any] = {}
        for index, key in wanted.items():
            number = _number(cells[index]) if index < len(cells) else None
            if number is not None and key == "engine_resets":
                values[key] = int(number)
            else:
                values[key] = number
        samples[cells[device]] = GpuSample(gpu=cells[device], **values)
    return list(samples.values())


def parse_ps(text: str) -> list[DeviceProcess]:
    """``xpu-smi ps -j``, without xpu-smi's own rows."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise XpuSmiError(f"xpu-smi ps -j did not print JSON ({exc.msg}): {text[:200]!r}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("device_util_by_proc_list"), list):
        raise XpuSmiError(f"xpu-smi ps -j: no device_util_by_proc_list in {text[:200]!r}")
    out = []
    for item in raw["device_util_by_proc_list"]:
        if not isinstance(item, dict) or item.get("process_name") == "xpu-smi":
            continue
        try:
            pid, device = int(item["process_id"]), int(item["device_id"])
        except (KeyError, TypeError, ValueError):
            continue
        mem = item.get("mem_size")
        out.append(
            DeviceProcess(
                pid=pid,
                name=str(item.get("process_name", "?")),
                device_id=device,
                mem_kib=int(mem) if isinstance(mem, int | float) else None,
            )
        )
    return out


def _number(cell: str) -> float | None:
    if not cell or cell.upper() == "N/A":
        return None
    try:
        return float(cell)
    except ValueError:
        return None


def _run(argv: Sequence[str]) -> str:
    result = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=TIMEOUT_S, check=False
    )
    if result.returncode != 0:
        raise XpuSmiError(
            f"{' '.join(argv)} exited {result.returncode}: "
            f"{(result.stderr or result.stdout).strip()[:300]}"
        )
    return result.stdout


class XpuSmi:
    """The host's xpu-smi, or its absence. ``runner`` and ``which`` are replaceable in tests."""

    def __init__(
        self,
        runner: Runner = _run,
        which: Callable[[str], str | None] = shutil.which,
        command: str = "xpu-smi",
    ) -> None:
        self.runner = runner
        self.path = which(command)

    @property
    def present(self) -> bool:
        return self.path is not None

    def telemetry(self) -> Telemetry:
        if self.path is None:
            return Telemetry(False, reason="no device telemetry: xpu-smi is not on the PATH")
        argv = [self.path, "dump", "-d", "-1", "-m", DUMP_METRICS, "-n", "1"]
        try:
            gpus = parse_dump(self.runner(argv))
        except (XpuSmiError, OSError, subprocess.TimeoutExpired) as exc:
            return Telemetry(False, source="xpu-smi dump", reason=f"no device telemetry: {exc}")
        return Telemetry(True, source="xpu-smi dump", gpus=gpus)

    def processes(self) -> list[DeviceProcess] | None:
        """Who holds each GPU; None without xpu-smi. Raises XpuSmiError when it fails."""
        if self.path is None:
            return None
        try:
            return parse_ps(self.runner([self.path, "ps", "-j"]))
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise XpuSmiError(f"xpu-smi ps -j: {exc}") from None

    def holders(self, own_pids: set[int]) -> list[str]:
        """Preflight's "nothing else holds the devices": processes on a GPU that are not the
        slot's own (``own_pids``: host PIDs of the model container, from ``docker top``).
        Empty without xpu-smi (Docker's device check still runs)."""
        found = self.processes() or []
        return [
            f"GPU {p.device_id}: pid {p.pid} ({p.name})"
            + (f", {p.mem_kib / 1024:.0f} MiB" if p.mem_kib else "")
            for p in found
            if p.pid not in own_pids
        ]

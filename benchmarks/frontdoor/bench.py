"""Relay benchmark: direct vs the frontdoor vs nginx (proxy_buffering off), one run, same load.

    .venv/bin/python benchmarks/frontdoor/bench.py [--json results/frontdoor-bench.json]

Targets: the synthetic upstream direct; the frontdoor with its own upstream client; the frontdoor
with each library client of ``--clients`` (``library_clients.py``, default aiohttp); nginx.
Workloads, each against every target in turn, the order rotated round by round:
* c1 first event: sequential short streams on one keep-alive connection; the time from writing
  the request to receiving the first event. "Added" latency = target percentile - direct's.
* c16 and c64 throughput: 16 (64) connections each streaming back-to-back events for a fixed
  time; events/s counted by the client, plus the relay process's CPU per 1,000 events
  (/proc/<pid>/stat).
* paced: sequential streams of a few events sent ``--paced-gap-ms`` apart (8 events 40 ms
  apart, like a slow model); each event carries the upstream's CLOCK_MONOTONIC send time, so
  the client gets every event's lag, send to receipt. "held" counts events whose lag reached
  the gap: an event that waited for the next one, the mark of a buffering relay.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import uvloop

HERE = Path(__file__).resolve().parent
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class Phase:
    """One concurrency level's throughput phase: events counted by the client, relay CPU."""

    events: int = 0
    seconds: float = 0.0
    cpu_s: float | None = None
    errors: int = 0

    def add(self, other: Phase) -> None:
        self.events += other.events
        self.seconds += other.seconds
        self.errors += other.errors
        if other.cpu_s is not None:
            self.cpu_s = (self.cpu_s or 0.0) + other.cpu_s

    def rate(self) -> int:
        return round(self.events / self.seconds) if self.seconds else 0

    def cpu_per_1k(self) -> float | None:
        if self.cpu_s is None or not self.events:
            return None
        return round(self.cpu_s * 1e6 / self.events, 2)


@dataclass
class Result:
    target: str
    c1_first_event_ms: list[float] = field(default_factory=list)
    phases: dict[int, Phase] = field(default_factory=dict)
    paced_lag_ms: list[float] = field(default_factory=list)
    paced_gap_ms: float = 0.0

    def add(self, other: Result) -> None:
        self.c1_first_event_ms += other.c1_first_event_ms
        for c, phase in other.phases.items():
            self.phases.setdefault(c, Phase()).add(phase)
        self.paced_lag_ms += other.paced_lag_ms
        self.paced_gap_ms = other.paced_gap_ms

    def summary(self) -> dict[str, float | int | str | None]:
        lat = sorted(self.c1_first_event_ms)
        row: dict[str, float | int | str | None] = {
            "target": self.target,
            "c1_p50_ms": _pct(lat, 50),
            "c1_p99_ms": _pct(lat, 99),
        }
        for c, phase in sorted(self.phases.items()):
            row[f"c{c}_events_per_s"] = phase.rate()
            row[f"c{c}_relay_cpu_ms_per_1k_events"] = phase.cpu_per_1k()
            row[f"c{c}_errors"] = phase.errors
        if self.paced_lag_ms:
            lags = sorted(self.paced_lag_ms)
            row["paced_events"] = len(lags)
            row["paced_lag_p50_ms"] = _pct(lags, 50)
            row["paced_lag_p99_ms"] = _pct(lags, 99)
            row["paced_lag_max_ms"] = round(lags[-1], 3)
            row["paced_held"] = sum(1 for lag in lags if lag >= self.paced_gap_ms)
        return row


def _num(value: float | int | str | None) -> float:
    return float(value) if isinstance(value, int | float) else float("nan")


def _pct(values: list[float], p: int) -> float:
    if not values:
        return float("nan")
    k = (len(values) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return round(values[lo] + (values[hi] - values[lo]) * (k - lo), 3)


class Conn(asyncio.Protocol):
    """A lean keep-alive HTTP/1.1 client connection: one chunked SSE response at a time."""

    def __init__(self) -> None:
        self.done: asyncio.Future[int] | None = None
        self.first: asyncio.Future[float] | None = None
        self.buf = bytearray()
        self.lags: list[float] | None = None  # paced streams: ms from "sent" to receipt
        self.scanned = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.lags is not None:
            now = time.monotonic()  # CLOCK_MONOTONIC, the clock the upstream stamps with
            while (at := self.buf.find(b'"sent":', self.scanned)) >= 0:
                end = self.buf.find(b",", at)
                if end < 0:
                    break  # the stamp is split across reads: the rest comes with the next
                self.lags.append((now - float(self.buf[at + 7 : end])) * 1000)
                self.scanned = end
        if self.first is not None and not self.first.done() and b"data: " in self.buf:
            self.first.set_result(time.perf_counter())
        if self.buf.endswith(b"\r\n0\r\n\r\n") and self.done is not None and not self.done.done():
            self.done.set_result(self.buf.count(b"data: {"))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_exception(ConnectionError("closed"))

    async def stream(
        self, host: str, n: int, body: bytes = b"", query: bytes = b""
    ) -> tuple[float, int]:
        loop = asyncio.get_running_loop()
        self.buf = bytearray()
        self.scanned = 0
        self.first, self.done = loop.create_future(), loop.create_future()
        body = (
            body or b'{"model":"bench","stream":true,"messages":[{"role":"user","content":"hi"}]}'
        )
        start = time.perf_counter()
        self.transport.write(
            b"POST /v1/chat/completions?n=%d%s HTTP/1.1\r\nhost: %s\r\n"
            b"content-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
            % (n, query, host.encode(), len(body), body)
        )
        first = await self.first
        events = await self.done
        return (first - start) * 1000, events

    async def paced(self, host: str, n: int, gap_ms: float) -> list[float]:
        """One stream of ``n`` events ``gap_ms`` apart: each event's lag, send to receipt."""
        self.lags = []
        try:
            _, events = await self.stream(host, n, query=b"&gap_ms=%g" % gap_ms)
            if events != n or len(self.lags) != n:
                raise ConnectionError(f"paced stream: {events} events, {len(self.lags)} stamps")
            return self.lags
        finally:
            self.lags = None


async def vllm_ttft(ports: dict[str, int], model: str, requests: int) -> dict[str, list[float]]:
    """Sequential one-token streamed chats: ms to the first event, i.e. vLLM's TTFT.

    Targets alternate request by request (and swap order every other time), so the model's own
    drift (load, caches) hits all of them alike.
    """
    body = json.dumps(
        {
            "model": model,
            "stream": True,
            "max_tokens": 1,
            "messages": [{"role": "user", "content": "Say one word."}],
        }
    ).encode()
    conns = {name: await _connect(port) for name, port in ports.items()}
    for conn in conns.values():
        for _ in range(3):
            await conn.stream("bench", 0, body)
    samples: dict[str, list[float]] = {name: [] for name in ports}
    order = list(conns)
    for _ in range(requests):
        order.reverse()
        for name in order:
            samples[name].append((await conns[name].stream("bench", 0, body))[0])
    for conn in conns.values():
        conn.transport.close()
    return samples


async def _connect(port: int) -> Conn:
    _, conn = await asyncio.get_running_loop().create_connection(Conn, "127.0.0.1", port)
    return conn


async def run_target(name: str, port: int, pid: int | None, args: argparse.Namespace) -> Result:
    result = Result(name)
    conn = await _connect(port)
    for _ in range(5):  # warm-up: connections, code paths
        await conn.stream("bench", 4)
    for _ in range(args.c1_requests):
        ms, _ = await conn.stream("bench", 4)
        result.c1_first_event_ms.append(ms)
    result.paced_gap_ms = args.paced_gap_ms
    for _ in range(args.paced_streams):
        result.paced_lag_ms += await conn.paced("bench", args.paced_events, args.paced_gap_ms)
    conn.transport.close()
    for concurrency in args.concurrency:
        result.phases[concurrency] = await _throughput(port, pid, concurrency, args)
    return result


async def _throughput(
    port: int, pid: int | None, concurrency: int, args: argparse.Namespace
) -> Phase:
    phase = Phase()
    conns = [await _connect(port) for _ in range(concurrency)]
    cpu0 = _cpu(pid)
    start = time.perf_counter()
    deadline = start + args.seconds

    async def worker(c: Conn) -> None:
        while time.perf_counter() < deadline:
            try:
                _, events = await c.stream("bench", args.events)
            except ConnectionError:
                phase.errors += 1
                return
            phase.events += events

    await asyncio.gather(*(worker(c) for c in conns))
    phase.seconds = time.perf_counter() - start
    cpu1 = _cpu(pid)
    phase.cpu_s = None if cpu0 is None or cpu1 is None else cpu1 - cpu0
    for c in conns:
        c.transport.close()
    return phase


def _cpu(pid: int | None) -> float | None:
    if pid is None:
        return None
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def _start_frontdoor(
    backend: str, client: str = "builtin", source: str | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    """``python -m frontdoor``; with a library ``client``, through ``library_clients.py``; with
    ``source``, the ``frontdoor`` package found there (an older checkout, for before/after)."""
    port, admin = _free_port(), _free_port()
    env = {
        **os.environ,
        "FRONTDOOR_HOST": "127.0.0.1",
        "FRONTDOOR_PORT": str(port),
        "FRONTDOOR_ADMIN_PORT": str(admin),
        "FRONTDOOR_BACKEND_URL": backend,
        "FRONTDOOR_MAX_ACTIVE_GENERATIONS": "64",
        "FRONTDOOR_QUEUE_TIMEOUT_S": "30",
    }
    env.pop("FRONTDOOR_STATE_DIR", None)
    if source:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [source, env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "frontdoor"]
    if client != "builtin":
        command = [sys.executable, str(HERE / "library_clients.py"), client]
    proc = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait_port(port, proc)
    return proc, port


def _vllm_rows(args: argparse.Namespace, fd_port: int) -> dict[str, dict[str, float]]:
    host, _, port = args.vllm_url.removeprefix("http://").rstrip("/").partition(":")
    assert host in ("127.0.0.1", "localhost"), "the lean client speaks to 127.0.0.1 only"
    ports = {"vllm direct": int(port), "vllm via frontdoor": fd_port}
    samples = uvloop.run(vllm_ttft(ports, args.vllm_model, 60))
    rows = {
        name: {"ttft_p50_ms": _pct(sorted(v), 50), "ttft_p90_ms": _pct(sorted(v), 90)}
        for name, v in samples.items()
    }
    print(f"{'target':<20} {'TTFT p50 ms':>12} {'TTFT p90 ms':>12}   (1-token chats, c1)")
    for name, row in rows.items():
        print(f"{name:<20} {row['ttft_p50_ms']:>12} {row['ttft_p90_ms']:>12}")
    return rows


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port} after {timeout}s")


def _nginx_conf(tmp: Path, port: int, upstream: int) -> Path:
    conf = tmp / "nginx.conf"
    conf.write_text(f"""
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    upstream model {{ server 127.0.0.1:{upstream}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://model;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            tcp_nodelay on;
        }}
    }}
}}
""")
    return conf


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--c1-requests", type=int, default=200, help="per round")
    parser.add_argument(
        "--concurrency",
        type=int,
        nargs="+",
        default=[16, 64],
        help="connections of each throughput phase",
    )
    parser.add_argument("--events", type=int, default=500, help="events per throughput stream")
    parser.add_argument(
        "--seconds", type=float, default=5.0, help="duration of each throughput phase"
    )
    parser.add_argument("--rounds", type=int, default=3, help="repeat the targets, interleaved")
    parser.add_argument("--paced-streams", type=int, default=10, help="per round; 0: none")
    parser.add_argument("--paced-events", type=int, default=8, help="events per paced stream")
    parser.add_argument("--paced-gap-ms", type=float, default=40.0, help="between paced events")
    parser.add_argument(
        "--clients",
        nargs="*",
        default=["aiohttp"],
        help="library upstream clients to run the frontdoor with too (library_clients.py)",
    )
    parser.add_argument(
        "--frontdoor-from",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="also run the frontdoor package found in DIR (e.g. an older checkout's "
        "images/frontdoor, from `git archive`), as target NAME: before/after in one run",
    )
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument(
        "--vllm-url", default=None, help="also compare c1 TTFT on a real vLLM (http://host:port)"
    )
    parser.add_argument("--vllm-model", default="smollm2-135m-instruct")
    args = parser.parse_args()

    procs: list[subprocess.Popen[bytes]] = []
    tmp = Path(tempfile.mkdtemp(prefix="frontdoor-bench-"))
    try:
        up = subprocess.Popen(
            [sys.executable, str(HERE / "sse_upstream.py")], stdout=subprocess.PIPE
        )
        procs.append(up)
        assert up.stdout is not None
        up_port = int(up.stdout.readline())

        frontdoor, fd_port = _start_frontdoor(f"http://127.0.0.1:{up_port}")
        procs.append(frontdoor)
        targets: list[tuple[str, int, int | None]] = [("direct", up_port, None)]
        targets.append(("frontdoor", fd_port, frontdoor.pid))
        for client in args.clients:
            if importlib.util.find_spec(client) is None:
                print(f"skipping fd+{client}: not installed (pip install {client})")
                continue
            proc, port = _start_frontdoor(f"http://127.0.0.1:{up_port}", client)
            procs.append(proc)
            targets.append((f"fd+{client}", port, proc.pid))
        for spec in args.frontdoor_from:
            label, _, source = spec.partition("=")
            proc, port = _start_frontdoor(f"http://127.0.0.1:{up_port}", source=source)
            procs.append(proc)
            targets.append((label, port, proc.pid))

        ng_port = _free_port()
        nginx = subprocess.Popen(
            [
                NGINX,
                "-p",
                str(tmp),
                "-c",
                str(_nginx_conf(tmp, ng_port, up_port)),
                "-e",
                str(tmp / "error.log"),
            ],
            stderr=subprocess.DEVNULL,
        )
        procs.append(nginx)
        _wait_port(ng_port, nginx)
        targets.append(("nginx", ng_port, _nginx_worker(nginx.pid)))

        results: dict[str, Result] = {name: Result(name) for name, _, _ in targets}
        per_round: list[dict[str, float | int | str | None]] = []
        for i in range(args.rounds):
            # Rotate the order each round, so drift in the machine's load hits every target.
            shift = i % len(targets)
            for name, port, pid in targets[shift:] + targets[:shift]:
                r = uvloop.run(run_target(name, port, pid, args))
                per_round.append(r.summary())
                results[name].add(r)
        report = _report(results, args)
        report["per_round"] = per_round
        spread = _round_spread(per_round, [name for name, _, _ in targets], args)
        report["spread"] = spread
        print(report["table"])
        print("per round, median [min..max] over the rounds; x nginx and CPU : nginx per round:")
        for name, line in spread.items():
            print(f"  {name:<12} {line}")
        if args.vllm_url:
            vfd, vfd_port = _start_frontdoor(args.vllm_url)
            procs.append(vfd)
            report["vllm"] = _vllm_rows(args, vfd_port)
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(
                json.dumps({k: v for k, v in report.items() if k != "table"}, indent=2)
            )
            print(f"wrote {args.json}")
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


def _nginx_worker(master: int) -> int | None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == master:
                    return int(entry.name)
        time.sleep(0.05)
    return None


def _spread(values: list[float]) -> str:
    nums = sorted(v for v in values if not math.isnan(v))
    if not nums:
        return "-"
    fmt = "{:.0f}" if nums[-1] >= 100 else "{:.3f}"
    return f"{fmt.format(nums[len(nums) // 2])} [{fmt.format(nums[0])}..{fmt.format(nums[-1])}]"


def _round_spread(
    per_round: list[dict[str, float | int | str | None]],
    names: list[str],
    args: argparse.Namespace,
) -> dict[str, str]:
    """Each target's figures round by round, and its ratios to nginx *in the same round*: on a
    shared machine the load drifts between rounds, and a same-round ratio cancels some of it."""

    def num(row: dict[str, float | int | str | None], key: str) -> float:
        value = row[key]
        return float(value) if isinstance(value, int | float) else float("nan")

    nginx = [r for r in per_round if r["target"] == "nginx"]
    direct = [r for r in per_round if r["target"] == "direct"]
    out = {}
    for name in names:
        rounds = [r for r in per_round if r["target"] == name]
        pairs = list(zip(rounds, direct, nginx, strict=True))
        added = [num(r, "c1_p50_ms") - num(d, "c1_p50_ms") for r, d, _ in pairs]
        added99 = [num(r, "c1_p99_ms") - num(d, "c1_p99_ms") for r, d, _ in pairs]
        parts = [f"+p50 {_spread(added)}", f"+p99 {_spread(added99)}"]
        for c in args.concurrency:
            rate, cpu = f"c{c}_events_per_s", f"c{c}_relay_cpu_ms_per_1k_events"
            rates = [num(r, rate) for r, _, _ in pairs]
            ratios = [num(r, rate) / num(n, rate) for r, _, n in pairs]
            parts.append(f"c{c} ev/s {_spread(rates)} x nginx {_spread(ratios)}")
            if name != "direct":
                cpus = [num(r, cpu) / num(n, cpu) for r, _, n in pairs]
                parts.append(f"c{c} CPU : nginx {_spread(cpus)}")
        if args.paced_streams:
            paced = [num(r, "paced_lag_p50_ms") - num(d, "paced_lag_p50_ms") for r, d, _ in pairs]
            held = [num(r, "paced_held") for r, _, _ in pairs]
            parts.append(f"paced +p50 {_spread(paced)} held {_spread(held)}")
        out[name] = "; ".join(parts)
    return out


def _report(results: dict[str, Result], args: argparse.Namespace) -> dict[str, object]:
    rows = {name: r.summary() for name, r in results.items()}
    direct, nginx = rows["direct"], rows["nginx"]
    header = f"{'target':<12} {'c1 p50':>7} {'c1 p99':>7} {'+p50':>6} {'+p99':>6}"
    for c in args.concurrency:
        header += f" {f'c{c} ev/s':>10} {'x nginx':>7} {'CPU/1k':>6}"
    header += f" {'errors':>6}"
    lines = [header]
    for name, row in rows.items():
        add50 = round(float(row["c1_p50_ms"]) - float(direct["c1_p50_ms"]), 3)  # type: ignore[arg-type]
        add99 = round(float(row["c1_p99_ms"]) - float(direct["c1_p99_ms"]), 3)  # type: ignore[arg-type]
        row["added_p50_ms"], row["added_p99_ms"] = add50, add99
        line = f"{name:<12} {row['c1_p50_ms']:>7} {row['c1_p99_ms']:>7} {add50:>6} {add99:>6}"
        errors = 0
        for c in args.concurrency:
            rate = float(row[f"c{c}_events_per_s"] or 0)
            ratio = round(rate / float(nginx[f"c{c}_events_per_s"] or 1), 3)
            row[f"c{c}_rate_vs_nginx"] = ratio
            cpu = row[f"c{c}_relay_cpu_ms_per_1k_events"]
            errors += int(row[f"c{c}_errors"] or 0)
            line += f" {round(rate):>10} {ratio:>7} {cpu if cpu is not None else '-':>6}"
        lines.append(line + f" {errors:>6}")
    if args.paced_streams:
        lines.append(
            f"paced: {args.paced_events} events {args.paced_gap_ms:g} ms apart, "
            f"{args.paced_streams} streams per round; lag = upstream write to client receipt"
        )
        lines.append(
            f"{'target':<12} {'events':>6} {'lag p50':>8} {'lag p99':>8} {'lag max':>8} "
            f"{'+p50':>6} {'held':>5}"
        )
        for name, row in rows.items():
            added = round(_num(row["paced_lag_p50_ms"]) - _num(direct["paced_lag_p50_ms"]), 3)
            row["paced_added_p50_ms"] = added
            lines.append(
                f"{name:<12} {row['paced_events']:>6} {row['paced_lag_p50_ms']:>8} "
                f"{row['paced_lag_p99_ms']:>8} {row['paced_lag_max_ms']:>8} {added:>6} "
                f"{row['paced_held']:>5}"
            )
    load = os.getloadavg()
    lines.append(
        "ms; +p50/+p99 = added over direct at c1; CPU/1k = relay CPU ms per 1,000 events; "
        "held = paced events whose lag reached the gap (waited for the next one). "
        f"Load average (1/5/15 min) after the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
        f"cores: {os.cpu_count()}"
    )
    return {
        "table": "\n".join(lines),
        "rows": rows,
        "params": vars(args) | {"json": str(args.json) if args.json else None},
        "loadavg": load,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


if __name__ == "__main__":
    main()

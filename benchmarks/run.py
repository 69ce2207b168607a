#!/usr/bin/env python3
"""sockit's benchmark suite: sockit against its peers, same run, same client.

    python3 benchmarks/run.py                 # full run, ~10 minutes
    python3 benchmarks/run.py --quick         # 1 round, short durations
    python3 benchmarks/run.py --only tcp50    # one scenario

Each server runs pinned to CPU 0 and `sockit bench` to CPU 1 (PERF.md), on
loopback, on a port of its own. Every scenario runs against every peer in
turn, and the whole set is repeated (rounds interleave the peers), so
medians are comparable. Besides the client's view (requests/s, latency),
the server's CPU time per request is read from /proc (utime+stime of the
server and all its descendants), since on two cores requests/s can be the
client's limit. Idle-connection memory is RSS growth per connection.

Writes benchmarks/core-results.md (a markdown table with ratios sockit/peer)
and prints it. Needs: a release build of sockit (built here if missing),
gcc, python3; optional peers are skipped when not installed (redis-server,
socat, ncat, nginx). Only loopback traffic; every load is bounded in time.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PEERS = Path(__file__).resolve().parent / "peers"
SOCKIT = ROOT / "target" / "release" / "sockit"
SERVER_CPU = "0"
CLIENT_CPU = "1"
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, limit: float = 10.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on port {port}")


def tree_cpu_seconds(pid: int) -> float:
    """utime+stime (+ reaped children) of pid and every live descendant."""
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()
        stats[int(entry)] = fields
        children.setdefault(int(fields[1]), []).append(int(entry))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        f = stats.get(p)
        if f:
            # fields[11..14] = utime stime cutime cstime (stat fields 14-17)
            total += sum(int(x) for x in f[11:15])
        todo.extend(children.get(p, []))
    return total / TICKS


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1])
    return 0


@dataclass
class Server:
    """A peer under test: how to start it and what it speaks."""

    name: str
    argv: list[str]  # may contain {port}
    kinds: set[str]  # scenario kinds it serves: ping, echo, udp, idle
    request: str | None = None  # fixed request line (redis: PING)
    reads_listening_line: int = 0  # how many `listening on` lines it prints
    prepare: object = None  # called with the port before start (config files)
    port: int = 0
    udp_port: int = 0
    tls_port: int = 0
    proc: subprocess.Popen | None = None
    pid: int = 0
    cwd: Path | None = None
    env: dict[str, str] = field(default_factory=dict)

    def start(self, mode: str) -> None:
        self.port = self.udp_port = free_port()
        if self.prepare:
            self.prepare(self.port)
        argv = [a.format(port=self.port, mode=mode) for a in self.argv]
        self.proc = subprocess.Popen(
            ["taskset", "-c", SERVER_CPU, *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            cwd=self.cwd,
            env={**os.environ, **self.env},
            text=True,
            start_new_session=True,
        )
        if self.reads_listening_line:
            for _ in range(self.reads_listening_line):
                line = self.proc.stdout.readline()
                if not line.startswith("listening on "):
                    raise RuntimeError(f"{self.name}: unexpected line {line!r}")
                port = int(line.rsplit(":", 1)[1])
                if line.startswith("listening on udp://"):
                    self.udp_port = port
                elif line.startswith("listening on tls://"):
                    self.tls_port = port
                else:
                    self.port = port
        else:
            wait_port(self.port)
        self.pid = self.proc.pid

    def stop(self) -> None:
        if self.proc:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
            self.proc = None


def sockit_bench(addr: str, args: list[str], duration: str, warmup: str) -> dict:
    argv = [
        "taskset", "-c", CLIENT_CPU, str(SOCKIT), "bench", addr,
        "-d", duration, "--warmup", warmup, "--json", "--threads", "1", *args,
    ]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise RuntimeError(f"bench failed: {out.stderr.strip()}")
    return json.loads(out.stdout)


@dataclass
class Scenario:
    key: str
    title: str
    kind: str  # ping | echo | udp | idle
    bench_args: list[str]
    metric: str  # what the table shows


SCENARIOS = [
    Scenario("tcp1", "TCP ping, 1 connection", "ping", ["-c", "1"], "latency"),
    Scenario("tcp50", "TCP ping, 50 connections", "ping", ["-c", "50"], "throughput"),
    Scenario("tcp50x16", "TCP ping, 50 connections x pipeline 16", "ping",
             ["-c", "50", "--pipeline", "16"], "throughput"),
    Scenario("udp1", "UDP ping, 1 socket", "udp", ["-c", "1"], "throughput"),
    Scenario("udp16", "UDP ping, 16 sockets", "udp", ["-c", "16"], "throughput"),
    Scenario("udp50", "UDP ping, 50 sockets", "udp", ["-c", "50"], "throughput"),
    Scenario("echo64k", "TCP echo, 64 KiB messages, 8 connections", "echo",
             ["-c", "8", "-s", "64KiB"], "bytes"),
    Scenario("idle10k", "10,000 idle TCP connections", "idle", [], "memory"),
]


def sockit_server(name: str, binary: Path) -> Server:
    return Server(name, [str(binary), "serve", "{mode}", "-q", "--max-conns", "20000",
                         "-l", "tcp://127.0.0.1:0", "-l", "udp://127.0.0.1:0"],
                  {"ping", "echo", "udp", "idle"}, reads_listening_line=2)


def peers(tmp: Path, baseline: Path | None) -> list[Server]:
    epoll = tmp / "epoll_server"
    subprocess.run(["gcc", "-O2", "-o", str(epoll), str(PEERS / "epoll_server.c")], check=True)
    servers = [sockit_server("sockit", SOCKIT)]
    if baseline:
        # An earlier build, to measure a change against in the same run.
        servers.append(sockit_server("sockit baseline", baseline))
    servers += [
        Server("C epoll", [str(epoll), "tcp", "{port}", "{mode}"], {"ping", "echo"}),
        Server("C epoll udp", [str(epoll), "udp", "0", "ping"], {"udp"},
               reads_listening_line=1),
    ]
    if shutil.which("redis-server"):
        servers.append(Server("redis", ["redis-server", "--port", "{port}", "--bind", "127.0.0.1",
                                        "--save", "", "--appendonly", "no", "--maxclients", "20000"],
                              {"ping", "idle"}, request="PING"))
    servers.append(Server("python threads", [sys.executable, str(PEERS / "thread_server.py"), "0"],
                          {"ping"}, reads_listening_line=1, cwd=PEERS))
    servers.append(Server("python asyncio", [sys.executable, str(PEERS / "asyncio_server.py"), "0"],
                          {"ping"}, reads_listening_line=1, cwd=PEERS))
    if shutil.which("socat"):
        servers.append(Server("socat fork", ["socat", "TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr",
                                             "EXEC:cat"], {"ping"}))
    if shutil.which("nginx"):
        conf = tmp / "nginx.conf"

        def write_conf(port: int) -> None:
            conf.write_text(
                f"worker_processes 1; daemon off; pid {tmp}/nginx.pid; error_log {tmp}/nginx.err;\n"
                "events { worker_connections 20000; }\n"
                "http { access_log off; keepalive_timeout 300s; client_header_timeout 300s;\n"
                f"  server {{ listen 127.0.0.1:{port}; root {tmp}; }} }}\n"
            )

        servers.append(Server("nginx", ["nginx", "-c", str(conf)], {"idle"}, prepare=write_conf))
    return servers


def idle_connections(server: Server, count: int) -> float:
    """Server RSS growth per idle connection, in bytes."""
    # nginx's master forks a worker: measure the worker, which holds them.
    pid = server.pid
    for _ in range(50):
        kids = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
        if server.name != "nginx" or kids:
            break
        time.sleep(0.1)
    if server.name == "nginx":
        pid = int(kids[0])
    time.sleep(0.3)
    before = rss_kib(pid)
    socks = []
    try:
        for _ in range(count):
            socks.append(socket.create_connection(("127.0.0.1", server.port)))
        time.sleep(1.0)
        after = rss_kib(pid)
    finally:
        for s in socks:
            s.close()
    return (after - before) * 1024 / count


def run_one(server: Server, sc: Scenario, duration: str, warmup: str) -> dict | None:
    mode = {"ping": "ping", "udp": "ping", "echo": "echo", "idle": "ping"}[sc.kind]
    server.start(mode)
    try:
        if sc.kind == "idle":
            return {"bytes_per_conn": idle_connections(server, 10_000)}
        scheme, port = ("udp", server.udp_port) if sc.kind == "udp" else ("tcp", server.port)
        args = list(sc.bench_args)
        if server.request:
            args += ["--request", server.request]
        cpu0 = tree_cpu_seconds(server.pid)
        report = sockit_bench(f"{scheme}://127.0.0.1:{port}", args, duration, warmup)
        cpu = tree_cpu_seconds(server.pid) - cpu0
        measured = report["duration_s"]
        total_s = measured + float(warmup.rstrip("s"))
        served = report["requests"] * total_s / measured if measured else 0
        lat = report.get("latency_ms") or {}
        return {
            "rps": report["requests_per_sec"],
            "bps": report["received_bytes_per_sec"],
            "p50": lat.get("p50"),
            "p99": lat.get("p99"),
            "cpu_us": cpu / served * 1e6 if served else None,
            "errors": report["errors"] + report["timeouts"],
        }
    except Exception as e:  # a peer failing must not end the run
        print(f"  {server.name} / {sc.key}: {e}", file=sys.stderr)
        return None
    finally:
        server.stop()


def fmt(x: float | None, digits: int = 0) -> str:
    if x is None:
        return "-"
    if digits == 0:
        return f"{x:,.0f}"
    return f"{x:,.{digits}f}"


def summarize(values: list[float]) -> tuple[float, float, float] | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return statistics.median(values), min(values), max(values)


def table(results: dict, servers: list[Server], rounds: int) -> str:
    lines = []
    for sc in SCENARIOS:
        rows = [(s.name, results.get((s.name, sc.key))) for s in servers]
        rows = [(n, r) for n, r in rows if r]
        if not rows:
            continue
        lines.append(f"\n### {sc.title}\n")
        fields = {
            "latency": [("p50 ms", "p50", 3), ("p99 ms", "p99", 3), ("req/s", "rps", 0), ("server CPU µs/req", "cpu_us", 2)],
            "throughput": [("req/s", "rps", 0), ("server CPU µs/req", "cpu_us", 2), ("p99 ms", "p99", 3)],
            "bytes": [("MiB/s", "mibs", 1), ("server CPU µs/req", "cpu_us", 1)],
            "memory": [("RSS bytes/conn", "bytes_per_conn", 0)],
        }[sc.metric]
        head = "| server | " + " | ".join(f"{t} (median, min-max)" for t, _, _ in fields)
        head += " | sockit ÷ peer |"
        lines.append(head)
        lines.append("|" + " --- |" * (len(fields) + 2))
        sockit = dict(rows).get("sockit")
        for name, runs in rows:
            cells = []
            for _, key, digits in fields:
                vals = [r.get(key) if key != "mibs" else (r["bps"] / 2**20 if r.get("bps") else None) for r in runs]
                s = summarize(vals)
                cells.append("-" if s is None else f"{fmt(s[0], digits)} ({fmt(s[1], digits)}-{fmt(s[2], digits)})")
            ratio = "-"
            if sockit and name != "sockit":
                key = fields[0][1]
                mine = summarize([r.get(key) if key != "mibs" else r["bps"] for r in sockit])
                theirs = summarize([r.get(key) if key != "mibs" else r["bps"] for r in runs])
                if mine and theirs and theirs[0]:
                    ratio = f"{mine[0] / theirs[0]:.2f} ({fields[0][0]})"
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {ratio} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", default="3s")
    ap.add_argument("--warmup", default="1s")
    ap.add_argument("--quick", action="store_true", help="1 round of 1s")
    ap.add_argument("--only", action="append", help="scenario key(s) to run")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "core-results.md"))
    ap.add_argument("--baseline", type=Path,
                    help="another sockit binary (an earlier build) to run as one more peer")
    ap.add_argument("--peer", action="append",
                    help="run only these servers (by name, e.g. 'C epoll udp'); sockit always runs")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.duration, args.warmup = 1, "1s", "1s"
    if not SOCKIT.exists():
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    scenarios = [s for s in SCENARIOS if not args.only or s.key in args.only]
    with tempfile.TemporaryDirectory(prefix="sockit-bench-") as tmp:
        servers = peers(Path(tmp), args.baseline)
        if args.peer:
            servers = [s for s in servers if s.name.startswith("sockit") or s.name in args.peer]
        results: dict = {}
        for rnd in range(args.rounds):
            for sc in scenarios:
                for server in servers:
                    if sc.kind not in server.kinds:
                        continue
                    print(f"round {rnd + 1}/{args.rounds}: {sc.key} / {server.name}", file=sys.stderr)
                    r = run_one(server, sc, args.duration, args.warmup)
                    if r:
                        results.setdefault((server.name, sc.key), []).append(r)
    header = (
        f"Benchmarks: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{os.cpu_count()} CPUs, server on CPU {SERVER_CPU}, `sockit bench` on CPU {CLIENT_CPU}, "
        f"{args.rounds} round(s) of {args.duration} after {args.warmup} warm-up; "
        "medians with min-max. Ratio: sockit's median over the peer's, in the first "
        "column's unit: above 1 is better for throughput, below 1 is better for latency and memory.\n"
    )
    text = header + table(results, servers, args.rounds) + "\n"
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()

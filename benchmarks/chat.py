#!/usr/bin/env python3
"""sockit's chat benchmarks: `sockit serve chat --flood-rate 0` against
`ncat --chat` and ngircd (an IRC server): fan-out deliveries/s and
delivery latency, the same load against each server in one run.

    python3 benchmarks/chat.py                # 3 rounds, ~10 minutes
    python3 benchmarks/chat.py --quick        # 1 short round, ~2 minutes
    python3 benchmarks/chat.py --only fan100,stuck100 --rounds 5

Each server runs pinned to CPU 0 and the load generator
(benchmarks/chatload.py, one Python process on epoll) to CPU 1 (PERF.md;
`--unpinned` lets both use both). In the closed-loop rows (fan100,
fan500, busy100, ws100) and the one-sender open-loop rows (fan100-rate,
fan500-rate, redis100) chatload.py connects and joins, then hands the
sockets to benchmarks/peers/fanload.c (built with gcc -O3), which runs
the load in C: the Python loop's core, three quarters of it in the
interpreter, was the limit of the closed loops for every server, and in
the open loops reading 100 members one after the other added ~1 ms to
every line's latency (`--python-loop` runs them in Python anyway).
A delivery is one line received by one
member. Every line has a 32-byte text; every 8th carries its send time
(`--probe-every`), read back at receipt for the latency. Scenarios:

- fan100, fan500: one sender, 100 or 500 members, closed loop: the
  sender keeps `--window` lines (default 512) that some member has not
  yet received, written `--batch` (32) at a time, like wrk's fixed
  number of connections. Deliveries/s, server CPU per delivery, and the
  latency under that load (mostly queueing: window / rate).
- busy100: 100 members, every one of them sending, closed loop: the
  members take turns to write `--batch` lines while fewer than
  `--window` lines are owed to the member furthest behind (each is owed
  every line but its own). Deliveries/s with everyone talking at once,
  as fast as the server lets them (C loop only).
- fan100-rate, fan500-rate: the same rooms with the sender open loop at
  `--latency-load` deliveries/s (default 50,000: 500 lines/s to 100
  members, 100 to 500), which every server here sustains: the latency
  rows, counted from each line's intended send time.
- all100: 100 members, each sending `--rate` lines/s (default 10,
  staggered; 99,000 deliveries/s offered), open loop, after `--fill`
  bytes (6 MB) said by one member in 400-byte lines.
- stuck100: the same plus a 101st member that connects, joins and never
  reads (receive buffer 4 KiB). On loopback the kernel lets a server
  queue up to 4 MB to it (`tcp_wmem`; sockit caps it at 64 KiB), hence
  the fill: when the measured part begins it is full. ncat writes to it
  until it blocks, and the whole room stalls; sockit drops it once its
  `--queue` (1000 lines) is full, ngircd once its 32 KiB send queue is.
- ws100: fan100 with the members on sockit's WebSocket (`--web`, `/ws`,
  no Origin header, which web.rs allows; one text frame per line) and
  the sender on TCP, against fan100's TCP members in the same round:
  sockit only, no peer has one.
- redis100: two sockit servers joined by `--redis` through a
  redis-server of its own (`--save '' --appendonly no`, a free port; all
  three on CPU 0): the sender on server A at `--redis-rate` lines/s
  (default 1,000), 100 members on server B: the cross-server latency,
  against the same load on one server. Skipped, saying so, when `sockit
  serve chat --help` lists no `--redis` or redis-server is missing.

- room10k: one room of `--room-members` (10,000) members and one sender
  at `--room-rate` lines/s (100) for `--room-duration` s (10), then a
  burst of 100 lines in one write; generator benchmarks/roomload.py
  (latency on every 50th member in join order, read eagerly; the others
  read once a second by a second process, every line counted; the
  server's RSS per member before the join, after it, after each member
  sent a line, and after the traffic). sockit runs with `--quiet-joins
  1000 --max-conns 10100`; the peer is benchmarks/peers/fanout_server.c,
  a minimal C epoll room (no notices at all), the platform's reference.
  ncat is not run here: it announces every connection to every member,
  with no way to stop it (50 million lines to fill the room), and ngircd
  would need 10,000 IRC logins, each told of every other member.

The members set TCP_QUICKACK after every read (`--no-quickack` leaves
delayed ACKs on). ncat and ngircd do not set TCP_NODELAY, and on
loopback (MSS 64 KiB) Nagle then holds each of their small writes until
the member's delayed ACK, up to 40 ms: without quick ACKs their p99 is
about 40 ms and their closed-loop deliveries/s about half. Quick ACKs
give the peers their best case.

ngircd gets a config of its own (a temp dir, `ngircd -n -f`): 500
clients from 127.0.0.1 (`MaxConnectionsIP = 0`, `MaxJoins = 0`),
penalties off (`MaxPenaltyTime = 0`), and every client OPERs and sets
user mode +F (relaxed flood protection). What is left of its flood
control cannot be configured: it parses at most 10 commands of a +F
client per pass of its main loop (3 without +F), and it disconnects a
client whose unparsed input passes 2 KiB or whose send queue passes
32 KiB; the tables count the members a server closed, and a run whose
sender was closed fails. ncat's chat has no limits (`-m 2000` lets 500
members in) and no flow control of its own, and it names the sender
(`<user5> `) once per chunk it reads, not per line: in the closed-loop
rows it reads up to 8 KiB at a time from the sender and writes that
chunk to every member as it came, with the name before its first line
only. It relays bytes there, where sockit and ngircd handle lines.

The generator's CPU use over the measured part is reported: near 100 %
means the generator, not the server, set the pace; the deliveries/s
ratio is then a lower bound for the faster server, and the server CPU
per delivery (utime+stime of its process tree, as run.py) is the figure
to compare (PERF.md). So is the server's: near 100 % means the server
was the limit. The closed-loop rows also give the bytes a member's read
got on average: a server that writes to a member in smaller pieces
makes its members (here, the generator) read more often for the same
lines. The generator also adds ~0.5-1 ms to every
latency at 100 members (it reads them one after the other).

Writes benchmarks/chat-results.md and prints it. Needs a release build
(`SOCKIT_BIN` names another binary), python3 and taskset; ncat, ngircd
and redis-server are optional and skipped when missing (`apt-get install
ncat ngircd redis-server`; the ngircd system service Debian starts is
not used, stop it). Loopback only; every load is bounded in time and
count.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402  (the suite's server and measuring helpers)
from run import Server, fmt, summarize, tree_cpu_seconds  # noqa: E402

SOCKIT = Path(os.environ.get("SOCKIT_BIN", run.SOCKIT))
LOAD = Path(__file__).resolve().parent / "chatload.py"
ROOM_LOAD = Path(__file__).resolve().parent / "roomload.py"
FANOUT_C = Path(__file__).resolve().parent / "peers" / "fanout_server.c"
FANLOAD_C = Path(__file__).resolve().parent / "peers" / "fanload.c"
# A generator this busy (share of its core) was the limit of its run.
GEN_BOUND = 0.9


@dataclass
class Scenario:
    key: str
    title: str
    mode: str  # one | rate | all | each (see chatload.Load) | room (roomload.py)
    members: int
    stuck: bool = False
    web: bool = False  # sockit only: members on the WebSocket
    redis: bool = False  # sockit only: two servers over Redis


# Not run on its own: redis100's load on one server, measured with it.
REDIS_LOCAL = Scenario("redis100-local", "the same load on one server, no Redis", "rate", 100, redis=True)

SCENARIOS = [
    Scenario("fan100", "one sender, 100 members (closed loop)", "one", 100),
    Scenario("fan500", "one sender, 500 members (closed loop)", "one", 500),
    Scenario("fan100-rate", "one sender, 100 members, fixed rate", "rate", 100),
    Scenario("fan500-rate", "one sender, 500 members, fixed rate", "rate", 500),
    Scenario("busy100", "100 members, each sending (closed loop)", "each", 100),
    Scenario("all100", "100 members, each sending", "all", 100),
    Scenario("stuck100", "100 members each sending, one stuck member", "all", 100, stuck=True),
    Scenario("ws100", "one sender, 100 WebSocket members (closed loop)", "one", 100, web=True),
    Scenario("redis100", "two servers over Redis: sender on A, 100 members on B", "rate", 100,
             redis=True),
    Scenario("room10k", "one room of 10,000, one sender", "room", 10_000),
]


NGIRCD_CONF = """\
[Global]
Name = bench.sockit.invalid
Info = sockit chat benchmark
Listen = 127.0.0.1
Ports = {port}
MotdPhrase = bench
PidFile = {tmp}/ngircd.pid
[Limits]
MaxConnections = 0
MaxConnectionsIP = 0
MaxJoins = 0
MaxPenaltyTime = 0
PingTimeout = 600
PongTimeout = 600
[Options]
DNS = no
Ident = no
PAM = no
[Operator]
Name = bench
Password = bench
"""

SOCKIT_CHAT = ["serve", "chat", "-q", "--flood-rate", "0", "--max-conns", "5000"]


def sockit_server(extra: list[str] | None = None, web: bool = False) -> Server:
    argv = [str(SOCKIT), *SOCKIT_CHAT, "-l", "tcp://127.0.0.1:{port}", *(extra or [])]
    server = Server("sockit", argv, set())
    if web:
        server.argv += ["--web", ""]

        def web_port(_port: int) -> None:
            server.web_port = run.free_port()
            server.argv[-1] = f"tcp://127.0.0.1:{server.web_port}"

        server.prepare = web_port
    return server


def servers(tmp: Path) -> dict[str, tuple[Server, str]]:
    """Each server under test, and the protocol its members speak."""
    out = {"sockit": (sockit_server(), "sockit")}
    if shutil.which("ncat"):
        out["ncat"] = (Server("ncat", ["ncat", "-l", "--chat", "-m", "2000", "127.0.0.1", "{port}"],
                              set()), "ncat")
    if shutil.which("ngircd"):
        conf = tmp / "ngircd.conf"

        def write_conf(port: int) -> None:
            conf.write_text(NGIRCD_CONF.format(port=port, tmp=tmp))

        # In the foreground ngircd logs every connection to stdout, and a
        # pipe nobody reads fills after ~260 joins and blocks it: the log
        # goes to /dev/null (exec keeps the pid ours).
        argv = ["sh", "-c", f"exec ngircd -n -f {conf} >/dev/null 2>&1"]
        out["ngircd"] = (Server("ngircd", argv, set(), prepare=write_conf), "irc")
    return out


def run_generator(spec: dict, pids: list[int], load: Path = LOAD, timeout: float = 30) -> dict:
    """Runs the generator; adds the servers' CPU over its measured part."""
    argv = ["taskset", "-c", run.CLIENT_CPU, sys.executable, str(load), json.dumps(spec)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    result = None
    try:
        cpu = {}
        for line in proc.stdout:
            word = line.strip()
            if word in ("START", "END"):
                cpu[word] = sum(tree_cpu_seconds(p) for p in pids)
            elif word.startswith("{"):
                result = json.loads(word)
                break
        proc.wait(timeout=timeout)
        if result is None:
            raise RuntimeError(f"generator failed: {proc.stderr.read().strip()[-800:]}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    server_cpu = cpu.get("END", 0) - cpu.get("START", 0)
    result["server_cpu"] = server_cpu / result["wall_s"] if result["wall_s"] else None
    result["cpu_us"] = server_cpu / result["deliveries"] * 1e6 if result["deliveries"] else None
    return result


def spec_for(sc: Scenario, args, proto: str, member_port: int, sender_port: int) -> dict:
    if sc.redis:
        rate = args.redis_rate
    elif sc.mode == "rate":
        rate = args.latency_load / sc.members
    else:
        rate = args.rate
    return {
        "mode": sc.mode,
        "members": sc.members,
        "stuck": sc.stuck,
        "member_proto": "ws" if sc.web else proto,
        "sender_proto": proto,
        "member_addr": ["127.0.0.1", member_port],
        "sender_addr": ["127.0.0.1", sender_port],
        "warmup": args.warmup,
        "duration": args.duration,
        "window": args.window,
        "batch": args.batch,
        "rate": rate,
        "probe_every": args.probe_every,
        "quickack": not args.no_quickack,
        "fill": args.fill if sc.key in ("all100", "stuck100") else 0,
        "engine": args.engine,
    }


def measure(server: Server, proto: str, sc: Scenario, args) -> dict | None:
    server.start("chat")
    try:
        port = server.port
        if sc.web:
            run.wait_port(server.web_port)
            port = server.web_port
        return run_generator(spec_for(sc, args, proto, port, server.port), [server.pid])
    except Exception as e:  # a peer failing must not end the run
        print(f"  {server.name} / {sc.key}: {e}", file=sys.stderr)
        return None
    finally:
        server.stop()


def measure_redis(sc: Scenario, args, tmp: Path) -> dict | None:
    """Sender on server A, members on server B, one Redis between them."""
    redis = Server("redis", ["redis-server", "--port", "{port}", "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp)], set())
    redis.start("")
    url = f"redis://127.0.0.1:{redis.port}"
    a, b = sockit_server(["--redis", url]), sockit_server(["--redis", url])
    try:
        a.start("chat")
        b.start("chat")
        spec = spec_for(sc, args, "sockit", b.port, a.port)
        return run_generator(spec, [a.pid, b.pid, redis.pid])
    except Exception as e:
        print(f"  sockit / {sc.key}: {e}", file=sys.stderr)
        return None
    finally:
        a.stop()
        b.stop()
        redis.stop()


def room_servers(tmp: Path) -> dict[str, tuple[Server, str]]:
    """room10k's servers: sockit set for a big room, and the C reference."""
    base = [a for a in SOCKIT_CHAT if a not in ("--max-conns", "5000")]
    argv = [str(SOCKIT), *base, "--quiet-joins", "1000", "--max-conns", "10100", "-l",
            "tcp://127.0.0.1:{port}"]
    out = {"sockit": (Server("sockit", argv, set()), "/rooms")}
    binary = tmp / "fanout_server"
    if shutil.which("gcc"):
        subprocess.run(["gcc", "-O2", "-o", str(binary), str(FANOUT_C)], check=True)
        out["C epoll"] = (Server("C epoll", [str(binary), "{port}"], set()), "/nick x")
    return out


def measure_room(server: Server, spoke: str, args) -> dict | None:
    server.start("chat")
    try:
        spec = {"members": args.room_members, "addr": ["127.0.0.1", server.port],
                "rate": args.room_rate, "duration": args.room_duration, "burst": 100,
                "sample_every": 50, "server_pid": server.pid, "spoke": spoke}
        return run_generator(spec, [server.pid], ROOM_LOAD, timeout=120)
    except Exception as e:
        print(f"  {server.name} / room10k: {e}", file=sys.stderr)
        return None
    finally:
        server.stop()


def room_report(runs: dict, args) -> list[str]:
    """room10k's own tables: latency, counts, memory."""
    if not runs:
        return []
    out = ["", f"#### room10k: one room of {args.room_members:,} members, one sender at "
           f"{args.room_rate:g} lines/s for {args.room_duration:g} s, then 100 lines at once", "",
           "Latency on every 50th member (ms, from each line's intended send time; the burst: its last "
           "line), every member's lines counted; server CPU over the measured part. Medians with "
           "min-max.", "",
           "| server | p50 ms | p99 ms | max ms | burst ms | deliveries counted / expected | fewest lines "
           "a member got / sent | members closed | drop notices | server CPU µs/delivery | server core "
           "busy | generator core busy | join s |",
           "|" + " --- |" * 13]
    for name, r in runs.items():
        expected = median(r, "expected")
        out.append(f"| {name} | {cell(r, 'p50', 2)} | {cell(r, 'p99', 2)} | {cell(r, 'max', 1)} | "
                   f"{cell(r, 'burst_max', 1)} | {fmt(median(r, 'deliveries'))} / {fmt(expected)} | "
                   f"{fmt(median(r, 'fewest'))} / {fmt(median(r, 'sent'))} | {cell(r, 'closed')} | "
                   f"{cell(r, 'drop_notices')} | {cell(r, 'cpu_us', 3)} | {cell(r, 'server_cpu', 2)} | "
                   f"{cell(r, 'gen_cpu', 2)} | {cell(r, 'join_s', 1)} |")
    out += ["", "Server RSS per member (bytes: RSS after the phase less RSS with only the sender, over "
            "the members; medians):", "",
            "| server | joined, never spoke (quiet room) | then each sent a line and read its answer | "
            "after the traffic |", "| --- | --- | --- | --- |"]
    for name, r in runs.items():
        cells = []
        for phase in ("joined", "spoke", "traffic"):
            s = summarize([x["rss_per_member"].get(phase) for x in r])
            cells.append("-" if s is None else fmt(s[0]))
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    return out


def cell(runs: list[dict] | None, key: str, digits: int = 0) -> str:
    s = summarize([r.get(key) for r in runs or []])
    return "-" if s is None else f"{fmt(s[0], digits)} ({fmt(s[1], digits)}-{fmt(s[2], digits)})"


def median(runs: list[dict] | None, key: str) -> float | None:
    s = summarize([r.get(key) for r in runs or []])
    return s[0] if s else None


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a and b else "-"


def latency(runs: list[dict] | None) -> str:
    p50, p99 = median(runs, "p50"), median(runs, "p99")
    return "-" if p50 is None else f"{p50:.2f} / {p99:.2f}"


def title(sc: Scenario, args) -> str:
    """The scenario's title with its load."""
    if sc.redis:
        return f"{sc.title}, {args.redis_rate:,.0f} lines/s"
    if sc.mode == "rate":
        return f"{sc.title}, {args.latency_load / sc.members:,.0f} lines/s"
    if sc.mode == "all":
        return f"{sc.title} {args.rate:g} lines/s"
    return sc.title


def report(results: dict, scenarios: list[Scenario], names: list[str], args, notes: list[str],
           loads: tuple[float, float]) -> str:
    peers = [n for n in names if n != "sockit"]
    pin = "unpinned" if args.unpinned else f"server on CPU {run.SERVER_CPU}, generator on CPU {run.CLIENT_CPU}"
    out = [
        f"Chat benchmarks: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} CPUs, "
        f"{pin}, load average {loads[0]:.1f} at the start and {loads[1]:.1f} at the end (anything else "
        "running skews the figures), "
        f"{args.rounds} round(s) of {args.duration:g} s after {args.warmup:g} s warm-up; "
        f"medians. Window {args.window} lines, batches of {args.batch}; "
        f"{'quick ACKs' if not args.no_quickack else 'delayed ACKs'}. "
        "Ratios are sockit's median over the peer's; latency is p50 / p99 in ms. "
        f"†: the generator's core was at least {GEN_BOUND:.0%} busy, so it, not the server, set the "
        "pace: read the server CPU per delivery below.\n",
        "| scenario | " + " | ".join(f"{n} deliveries/s" for n in names) + " | "
        + " | ".join(f"sockit ÷ {p}" for p in peers) + " | "
        + " | ".join(f"{n} p50 / p99 ms" for n in names) + " |",
        "|" + " --- |" * (1 + 2 * len(names) + len(peers)),
    ]
    room = {n: r for (key, n), r in results.items() if key == "room10k"}
    scenarios = [sc for sc in scenarios if sc.mode != "room"]
    for sc in scenarios:
        row = [results.get((sc.key, n)) for n in names]
        if not any(row):
            continue
        mine = median(results.get((sc.key, "sockit")), "dps")
        cells = [(fmt(median(r, "dps")) + (" †" if (median(r, "gen_cpu") or 0) >= GEN_BOUND else ""))
                 if r else "-" for r in row]
        ratios = [ratio(mine, median(results.get((sc.key, p)), "dps")) for p in peers]
        lats = [latency(r) for r in row]
        out.append(f"| {sc.key}: {title(sc, args)} | " + " | ".join(cells + ratios + lats) + " |")
    out += ["", "Server CPU per delivery (µs, which is also ms per 1000 deliveries), and the generator's "
            "CPU (share of its core) over the measured part:", "",
            "| scenario | " + " | ".join(f"{n} µs/delivery | {n} generator" for n in names) + " | "
            + " | ".join(f"sockit ÷ {p} (CPU)" for p in peers) + " |",
            "|" + " --- |" * (1 + 2 * len(names) + len(peers))]
    for sc in scenarios:
        row = [results.get((sc.key, n)) for n in names]
        if not any(row):
            continue
        cells = []
        for r in row:
            gen = median(r, "gen_cpu")
            cells += [fmt(median(r, "cpu_us"), 3) if r else "-", f"{gen:.0%}" if gen is not None else "-"]
        mine = median(results.get((sc.key, "sockit")), "cpu_us")
        ratios = [ratio(mine, median(results.get((sc.key, p)), "cpu_us")) for p in peers]
        out.append(f"| {sc.key} | " + " | ".join(cells + ratios) + " |")
    out += ["", "Every run, medians with min-max:", ""]
    for sc in scenarios:
        rows = [(n, results.get((sc.key, n))) for n in names]
        rows = [(n, r) for n, r in rows if r]
        if not rows:
            continue
        out += [f"\n#### {sc.key}: {title(sc, args)}\n",
                "| server | deliveries/s | p50 ms | p99 ms | max ms | server CPU µs/delivery | "
                "server core busy | generator core busy | bytes a member read | lines sent | lines not sent | "
                "members closed |",
                "|" + " --- |" * 12]
        for n, r in rows:
            out.append(f"| {n} | {cell(r, 'dps')} | {cell(r, 'p50', 2)} | {cell(r, 'p99', 2)} | "
                       f"{cell(r, 'max', 1)} | {cell(r, 'cpu_us', 3)} | {cell(r, 'server_cpu', 2)} | "
                       f"{cell(r, 'gen_cpu', 2)} | {cell(r, 'read_bytes')} | {cell(r, 'sent')} | "
                       f"{cell(r, 'skipped')} | {cell(r, 'closed')} |")
    out += room_report(room, args)
    out.append("")
    for n in names:
        a, b = median(results.get(("stuck100", n)), "dps"), median(results.get(("all100", n)), "dps")
        closed = [r["stuck_closed"] for r in results.get(("stuck100", n), [])]
        if a is not None and b:
            notes.append(f"With one stuck member, {n} delivered {a / b:.2f}x its deliveries/s without it, "
                         f"and closed the stuck member in {sum(closed)} of {len(closed)} runs.")
    for sc in scenarios:
        for n in names:
            runs = results.get((sc.key, n), [])
            if any(r["closed"] for r in runs):
                notes.append(f"{sc.key}: {n} closed reading members in {sum(1 for r in runs if r['closed'])} "
                             f"of {len(runs)} runs ({', '.join(str(r['closed']) for r in runs)}).")
    ws, tcp = median(results.get(("ws100", "sockit")), "dps"), median(results.get(("fan100", "sockit")), "dps")
    if ws and tcp:
        wcpu = median(results.get(("ws100", "sockit")), "cpu_us")
        tcpu = median(results.get(("fan100", "sockit")), "cpu_us")
        notes.append(f"WebSocket members against TCP members (sockit, same rounds): {ws / tcp:.2f}x the "
                     f"deliveries/s, {ratio(wcpu, tcpu)}x the server CPU per delivery.")
    local = median(results.get(("redis100-local", "sockit")), "p99")
    remote = median(results.get(("redis100", "sockit")), "p99")
    if local is not None and remote is not None:
        notes.append(f"Across two servers over Redis, p99 {remote:.2f} ms; on one server, same load: "
                     f"{local:.2f} ms.")
    out += [f"- {n}" for n in notes]
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=5.0, help="measured seconds per run (default 5)")
    ap.add_argument("--warmup", type=float, default=2.0, help="seconds of load before measuring (default 2)")
    ap.add_argument("--quick", action="store_true", help="1 round of 2 s after 1 s")
    ap.add_argument("--only", help="comma-separated scenarios: " + ", ".join(s.key for s in SCENARIOS))
    ap.add_argument("--peers", help="comma-separated servers besides sockit (default: every one found)")
    ap.add_argument("--window", type=int, default=512, help="closed loop: lines in flight at most")
    ap.add_argument("--batch", type=int, default=32, help="closed loop: lines per write")
    ap.add_argument("--latency-load", type=float, default=50_000,
                    help="the -rate scenarios: deliveries/s offered (default 50000)")
    ap.add_argument("--rate", type=float, default=10, help="all100, stuck100: lines/s per member")
    ap.add_argument("--redis-rate", type=float, default=1000, help="redis100: lines/s")
    ap.add_argument("--fill", type=int, default=6_000_000,
                    help="all100, stuck100: bytes said in long lines before measuring (default 6 MB)")
    ap.add_argument("--probe-every", type=int, default=8, help="every Nth line carries its send time")
    ap.add_argument("--room-members", type=int, default=10_000, help="room10k: members (default 10000)")
    ap.add_argument("--room-rate", type=float, default=100, help="room10k: lines/s (default 100)")
    ap.add_argument("--room-duration", type=float, default=10, help="room10k: seconds (default 10)")
    ap.add_argument("--no-quickack", action="store_true", help="members leave delayed ACKs on")
    ap.add_argument("--unpinned", action="store_true", help="server and generator on any CPU")
    ap.add_argument("--python-loop", action="store_true",
                    help="the fanload.c rows: the Python loop instead")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "chat-results.md"))
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.duration, args.warmup = 1, 2.0, 1.0
    if args.unpinned:
        run.SERVER_CPU = run.CLIENT_CPU = "0-1"
    if not SOCKIT.exists():
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=run.ROOT, check=True)
    scenarios = [s for s in SCENARIOS if not args.only or s.key in args.only.split(",")]
    notes: list[str] = []
    if any(s.redis for s in scenarios):
        help_text = subprocess.run([str(SOCKIT), "serve", "chat", "--help"], capture_output=True,
                                   text=True).stdout
        why = None
        if "--redis" not in help_text:
            why = "this sockit has no `serve chat --redis`"
        elif not shutil.which("redis-server"):
            why = "redis-server is not installed"
        if why:
            print(f"skipping redis100: {why}", file=sys.stderr)
            notes.append(f"redis100 skipped: {why}.")
            scenarios = [s for s in scenarios if not s.redis]
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="sockit-chat-bench-") as tmp:
        args.engine = None
        if not args.python_loop and shutil.which("gcc"):
            args.engine = str(Path(tmp) / "fanload")
            subprocess.run(["gcc", "-O3", "-o", args.engine, str(FANLOAD_C)], check=True)
        elif any(s.mode in ("one", "each") for s in scenarios):
            notes.append("The closed-loop rows ran the Python loop (`--python-loop` or no gcc): "
                         "its core, not the server's, is then the limit; busy100 needs the C loop "
                         "and was not run.")
            scenarios = [s for s in scenarios if s.mode != "each"]
        have = servers(Path(tmp))
        if args.peers:
            wanted = {"sockit", *args.peers.split(",")}
            have = {n: v for n, v in have.items() if n in wanted}
        web = sockit_server(web=True)
        results: dict = {}

        def record(key: str, name: str, r: dict | None) -> None:
            if r:
                print(f"  {fmt(r['dps'])} deliveries/s, p50 {fmt(r['p50'], 2)} p99 {fmt(r['p99'], 2)} ms, "
                      f"server {fmt(r['cpu_us'], 3)} µs/delivery, generator CPU {r['gen_cpu'] or 0:.0%}, "
                      f"closed {r['closed']}", file=sys.stderr)
                results.setdefault((key, name), []).append(r)

        for rnd in range(args.rounds):
            for sc in scenarios:
                if sc.mode == "room":
                    for name, (server, spoke) in room_servers(Path(tmp)).items():
                        print(f"round {rnd + 1}/{args.rounds}: {sc.key} / {name}", file=sys.stderr)
                        r = measure_room(server, spoke, args)
                        if r:
                            print(f"  p50 {fmt(r['p50'], 2)} p99 {fmt(r['p99'], 2)} ms, {r['deliveries']:,} of "
                                  f"{r['expected']:,} delivered, closed {r['closed']}, RSS/member "
                                  f"{r['rss_per_member']}", file=sys.stderr)
                            results.setdefault((sc.key, name), []).append(r)
                    continue
                if sc.redis:
                    print(f"round {rnd + 1}/{args.rounds}: {sc.key} / sockit, one server", file=sys.stderr)
                    server, proto = have["sockit"]
                    record("redis100-local", "sockit", measure(server, proto, sc, args))
                    print(f"round {rnd + 1}/{args.rounds}: {sc.key} / sockit, two servers", file=sys.stderr)
                    record(sc.key, "sockit", measure_redis(sc, args, Path(tmp)))
                    continue
                for name, (server, proto) in have.items():
                    if name != "sockit" and sc.web:
                        continue
                    print(f"round {rnd + 1}/{args.rounds}: {sc.key} / {name}", file=sys.stderr)
                    record(sc.key, name, measure(web if sc.web else server, proto, sc, args))
    shown = [x for sc in scenarios for x in ([sc, REDIS_LOCAL] if sc.redis else [sc])]
    text_ = report(results, shown, list(have), args, notes, (load_before, os.getloadavg()[0]))
    Path(args.out).write_text(text_)
    print(text_)


if __name__ == "__main__":
    main()

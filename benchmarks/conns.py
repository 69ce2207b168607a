#!/usr/bin/env python3
"""Many concurrent TCP connections on one server: what each costs, idle and
after it has spoken and gone quiet, and proof that every one is served.

    python3 benchmarks/conns.py                       # 100,000 (needs --workers)
    python3 benchmarks/conns.py --conns 18000         # what one process holds
    python3 benchmarks/conns.py --conns 100000 --workers 8
    python3 benchmarks/conns.py --conns 100000 --servers 6  # 6 sockit processes
    python3 benchmarks/conns.py --conns 18000 --peer nginx   # the same for nginx

One `sockit serve ping -l tcp://127.0.0.1:0` (pinned to CPU 0; with
`--workers W` passed through, the memory is summed over the process and
all its children; with `--servers N`, N independent sockit processes on
ports of their own, summed) and several client processes (pinned to CPU 1), each
holding its share of the connections under the 20,000-descriptor limit and
binding them to its own source address, 127.0.0.2 ... 127.0.0.9, so the
ephemeral port range (28,232 ports per source and destination) is not the
limit. Connections are opened non-blocking, a bounded number in flight.

    phase 1  all connections open, none has spoken: RSS per connection
    phase 2  each sends `ping TAG` and reads `pong TAG`; then all stay
             quiet past the park interval (--park-after): RSS per
             connection again, the "spoken then quiet" figure
    phase 3  one more request on every connection: every one answered
             (missing ones are counted and reported)

RSS per connection is the server's growth over its RSS before the first
connection (VmRSS of the server and every descendant, from /proc),
divided by the connections open. A phase waits until the server has seen
them all: the `sockit_connections_active` and `sockit_connections_parked`
gauges when it serves --metrics (one process), else until its RSS has
stopped moving. Every phase is bounded by --timeout; the whole run by the
connection count.

With --service http sockit serves its hello page and each request is an
HTTP/1.1 keep-alive `GET /`. With --peer nginx the same three phases run
against nginx (1 worker, HTTP
keep-alive: `GET /` for a small file) for comparison.

Prints a table and writes JSON (--json, default benchmarks/conns-results.json).
Needs python3 and a release build (built if missing; $SOCKIT_BIN overrides);
nginx only for --peer nginx. Loopback only.
"""
from __future__ import annotations

import sys
from pathlib import Path

# benchmarks/http.py would shadow the standard library's http package.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import errno  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import selectors  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SOCKIT = Path(os.environ.get("SOCKIT_BIN", ROOT / "target" / "release" / "sockit"))
SERVER_CPU = "0"
CLIENT_CPU = "1"
# Each client process stays well under the 20,000-descriptor limit.
MAX_PER_CLIENT = 15_000
SOURCES = [f"127.0.0.{i}" for i in range(2, 10)]
# Connects in flight per client process: the server's backlog is 4096.
CONNECT_WINDOW = 256
# Linux's IP_BIND_ADDRESS_NO_PORT (not in Python's socket module before
# 3.12): a socket bound to a source address gets its port at connect(),
# chosen for the whole 4-tuple. Without it bind() picks the port alone,
# from the odd half of the range first, and slows to a crawl past ~14,000
# ports per source address.
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
# The server's descriptors beyond its connections: listeners, epoll sets,
# the metrics endpoint.
FD_MARGIN = 100


# --------------------------------------------------------------------------
# The client process: holds its connections, obeys one command per line on
# stdin, answers each with one JSON line on stdout.


def client_main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--first", type=int, default=0, help="number of the first connection")
    ap.add_argument("--http", action="store_true", help="requests are HTTP/1.1 GET /")
    a = ap.parse_args(argv)
    client = Client(a)
    for line in sys.stdin:
        cmd = line.split()
        if not cmd:
            continue
        if cmd[0] == "open":
            result = client.open_all(float(cmd[1]))
        elif cmd[0] == "request":
            result = client.request_all(cmd[1], float(cmd[2]))
        else:
            break
        print(json.dumps(result), flush=True)
    for s in client.socks:
        s.close()


class Client:
    def __init__(self, a: argparse.Namespace) -> None:
        self.a = a
        self.socks: list[socket.socket] = []
        self.sel = selectors.DefaultSelector()

    def open_all(self, limit: float) -> dict:
        start = time.monotonic()
        deadline = start + limit
        pending: dict[int, socket.socket] = {}
        made = failed = 0
        first_error = ""
        while (made < self.a.count or pending) and time.monotonic() < deadline:
            while made < self.a.count and len(pending) < CONNECT_WINDOW:
                made += 1
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setblocking(False)
                try:
                    s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                    s.bind((self.a.source, 0))
                    err = s.connect_ex((self.a.host, self.a.port))
                except OSError as e:
                    err = e.errno
                if err in (0, errno.EINPROGRESS):
                    pending[s.fileno()] = s
                    self.sel.register(s, selectors.EVENT_WRITE)
                else:
                    failed += 1
                    first_error = first_error or os.strerror(err)
                    s.close()
            for key, _ in self.sel.select(timeout=0.2):
                s = key.fileobj
                self.sel.unregister(s)
                del pending[s.fileno()]
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    failed += 1
                    first_error = first_error or os.strerror(err)
                    s.close()
                else:
                    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    self.socks.append(s)
        for s in pending.values():
            self.sel.unregister(s)
            s.close()
        failed += len(pending) + (self.a.count - made)
        return {"opened": len(self.socks), "failed": failed, "error": first_error,
                "secs": time.monotonic() - start}

    def request(self, tag: str, i: int) -> tuple[bytes, bytes]:
        """The request on connection i and the reply it must get (for
        HTTP, the end of the response head is checked instead)."""
        if self.a.http:
            return b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", b"HTTP/1.1 200"
        n = self.a.first + i
        return f"ping {tag}-{n}\n".encode(), f"pong {tag}-{n}\n".encode()

    def complete(self, got: bytes) -> bool:
        if not self.a.http:
            return got.endswith(b"\n")
        head, sep, body = got.partition(b"\r\n\r\n")
        if not sep:
            return False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                return len(body) >= int(value)
        return True

    def request_all(self, tag: str, limit: float) -> dict:
        start = time.monotonic()
        deadline = start + limit
        want: dict[int, bytes] = {}
        got: dict[int, bytes] = {}
        answered = wrong = lost = 0
        example = ""
        for i, s in enumerate(self.socks):
            req, reply = self.request(tag, i)
            try:
                # A few dozen bytes into an empty socket buffer: never short.
                s.send(req)
            except OSError as e:
                lost += 1
                example = example or f"send: {e}"
                continue
            want[i] = reply
            got[i] = b""
            self.sel.register(s, selectors.EVENT_READ, i)
        while want and time.monotonic() < deadline:
            for key, _ in self.sel.select(timeout=0.2):
                i = key.data
                s = key.fileobj
                try:
                    data = s.recv(4096)
                except OSError as e:
                    data = b""
                    example = example or f"recv: {e}"
                got[i] += data
                done = not data or self.complete(got[i])
                if not done:
                    continue
                self.sel.unregister(s)
                reply = want.pop(i)
                if not data and not self.complete(got[i]):
                    lost += 1
                    example = example or f"closed after {got[i][:60]!r}"
                elif got[i].startswith(reply):
                    answered += 1
                else:
                    wrong += 1
                    example = example or f"got {got[i][:60]!r}, want {reply!r}"
        for i in want:
            self.sel.unregister(self.socks[i])
        return {"answered": answered, "wrong": wrong, "lost": lost, "unanswered": len(want),
                "example": example, "secs": time.monotonic() - start}


# --------------------------------------------------------------------------
# The coordinator.


def tree_rss_kib(pid: int) -> int:
    """VmRSS of pid and every live descendant, in KiB."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(raw[raw.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
        todo.extend(children.get(p, []))
    return total


def gauges(metrics_url: str) -> dict[str, float]:
    """The sums of sockit's connection gauges over its listeners."""
    body = urllib.request.urlopen(metrics_url + "/metrics", timeout=5).read().decode()
    sums: dict[str, float] = {}
    for line in body.splitlines():
        if line.startswith("#"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in ("sockit_connections_active", "sockit_connections_parked"):
            sums[name] = sums.get(name, 0) + float(line.rsplit(" ", 1)[1])
    return sums


class Target:
    """The server under test: one process (and its children), or with
    --servers N that many independent sockit processes, each on its own
    port."""

    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.procs: list[subprocess.Popen] = []
        self.ports: list[int] = []
        self.metrics_urls: list[str] = []
        self.http = args.peer == "nginx" or args.service == "http"
        if args.peer == "nginx":
            self.start_nginx(tmp)
        else:
            per_server = -(-args.conns // args.servers)
            for _ in range(args.servers):
                self.start_sockit(per_server)

    def start_sockit(self, conns: int) -> None:
        a = self.args
        argv = [str(SOCKIT), "serve", a.service, "-q", "-l", "tcp://127.0.0.1:0",
                "--max-conns", str(conns + FD_MARGIN), "--idle-timeout", "30m",
                "--park-after", a.park_after]
        if a.workers:
            # The parent serves the workers' metrics added up.
            argv += ["--workers", str(a.workers)]
        argv += ["--metrics", "127.0.0.1:0"]
        proc = self.popen(argv)
        self.procs.append(proc)
        for _ in range(2):
            line = proc.stdout.readline()
            if not line.startswith("listening on "):
                raise SystemExit(f"sockit: unexpected line {line!r}")
            addr = line.split()[-1]
            if addr.startswith("http://"):
                self.metrics_urls.append(addr)
            else:
                self.ports.append(int(addr.rsplit(":", 1)[1]))

    def start_nginx(self, tmp: Path) -> None:
        if not shutil.which("nginx"):
            raise SystemExit("--peer nginx: nginx is not installed (apt-get install nginx-light)")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.ports.append(port)
        # The worker runs as an unprivileged user: it must read the root.
        tmp.chmod(0o755)
        (tmp / "index.html").write_text("ok\n")
        conf = tmp / "nginx.conf"
        conf.write_text(
            f"worker_processes 1; daemon off; pid {tmp}/nginx.pid; error_log {tmp}/nginx.err;\n"
            f"worker_rlimit_nofile 20000;\n"
            "events { worker_connections 19900; }\n"
            "http { access_log off; keepalive_timeout 30m; keepalive_requests 1000000;\n"
            "  client_header_timeout 30m;\n"
            f"  server {{ listen 127.0.0.1:{port} backlog=4096; root {tmp}; }} }}\n"
        )
        self.procs.append(self.popen(["nginx", "-c", str(conf)]))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("nginx did not start")

    def popen(self, argv: list[str]) -> subprocess.Popen:
        pin = ["taskset", "-c", SERVER_CPU] if not self.args.no_pin else []
        return subprocess.Popen([*pin, *argv], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, text=True, start_new_session=True)

    def rss_kib(self) -> int:
        return sum(tree_rss_kib(p.pid) for p in self.procs)

    def settle(self, opened: int, parked: bool, limit: float) -> str:
        """Waits until the server holds `opened` connections (all parked,
        with `parked`): by its gauges when it has them, else until its
        RSS has stopped moving. Says how it knew."""
        deadline = time.monotonic() + limit
        if self.metrics_urls:
            while time.monotonic() < deadline:
                g: dict[str, float] = {}
                for url in self.metrics_urls:
                    for k, v in gauges(url).items():
                        g[k] = g.get(k, 0) + v
                active = g.get("sockit_connections_active", 0)
                waiting = g.get("sockit_connections_parked", 0)
                if active == opened and (not parked or waiting == opened):
                    time.sleep(0.5)
                    return f"gauges: {int(active)} active, {int(waiting)} parked"
                time.sleep(0.2)
            return f"gauges never settled: {g}"
        last, steady_since = -1, time.monotonic()
        while time.monotonic() < deadline:
            now = self.rss_kib()
            if now != last:
                last, steady_since = now, time.monotonic()
            elif time.monotonic() - steady_since >= 1.5:
                return "RSS steady for 1.5 s"
            time.sleep(0.25)
        return "RSS never steady"

    def stop(self) -> None:
        for p in self.procs:
            try:
                os.killpg(p.pid, 9)
            except ProcessLookupError:
                pass
            p.wait()


def parse_seconds(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60}
    for suffix in ("ms", "s", "m"):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * units[suffix]
    return float(text)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        client_main(sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--conns", type=int, default=100_000, help="connections to hold (default 100000)")
    ap.add_argument("--workers", type=int, default=0,
                    help="sockit serve --workers N (spread the connections over N processes)")
    ap.add_argument("--servers", type=int, default=1,
                    help="independent sockit processes, each on its own port, the connections "
                         "spread over them (what --workers does in one command)")
    ap.add_argument("--clients", type=int, default=0,
                    help="client processes (default: 8, more when each would hold over 15,000)")
    ap.add_argument("--park-after", default="3s", help="sockit serve --park-after (default 3s)")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds each phase may take")
    ap.add_argument("--peer", choices=["sockit", "nginx"], default="sockit")
    ap.add_argument("--service", choices=["ping", "http"], default="ping",
                    help="what sockit serves: ping (default), or http (keep-alive GET /: "
                         "what a quiet HTTP/1.1 connection costs)")
    ap.add_argument("--no-pin", action="store_true", help="do not pin server and clients to CPUs")
    ap.add_argument("--json", default=str(Path(__file__).resolve().parent / "conns-results.json"))
    ap.add_argument("--out", help="also write the table here (markdown), as benchmarks/all.py asks")
    args = ap.parse_args()
    if args.conns < 1:
        raise SystemExit("--conns must be at least 1")
    one_process = 20_000 - FD_MARGIN
    if args.servers < 1 or (args.servers > 1 and (args.workers or args.peer == "nginx")):
        raise SystemExit("--servers N: N >= 1, and not with --workers or --peer nginx")
    if args.peer == "sockit" and not args.workers and -(-args.conns // args.servers) > one_process:
        raise SystemExit(f"--conns {args.conns}: one process holds at most {one_process} "
                         "(20,000 descriptors); give --workers N or --servers N")
    if args.peer == "nginx" and args.conns > one_process:
        raise SystemExit(f"--peer nginx runs one worker: at most {one_process} connections")
    clients = args.clients or max(len(SOURCES), -(-args.conns // MAX_PER_CLIENT))
    # Each client talks to one server: as many clients for each.
    clients = -(-clients // args.servers) * args.servers
    clients = min(clients, args.conns)
    if -(-args.conns // clients) > MAX_PER_CLIENT:
        raise SystemExit(f"{clients} client processes cannot hold {args.conns} connections")
    if args.peer == "sockit" and not SOCKIT.exists():
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    park_s = parse_seconds(args.park_after)

    with tempfile.TemporaryDirectory(prefix="sockit-conns-") as tmp:
        target = Target(args, Path(tmp))
        procs: list[subprocess.Popen] = []
        try:
            time.sleep(0.5)
            base = target.rss_kib()
            share, extra = divmod(args.conns, clients)
            first = 0
            for i in range(clients):
                count = share + (1 if i < extra else 0)
                argv = [sys.executable, __file__, "--client", "--host", "127.0.0.1",
                        "--port", str(target.ports[i % len(target.ports)]),
                        "--source", SOURCES[i % len(SOURCES)],
                        "--count", str(count), "--first", str(first)]
                if target.http:
                    argv.append("--http")
                pin = ["taskset", "-c", CLIENT_CPU] if not args.no_pin else []
                procs.append(subprocess.Popen([*pin, *argv], stdin=subprocess.PIPE,
                                              stdout=subprocess.PIPE, text=True))
                first += count

            def everyone(command: str) -> list[dict]:
                for p in procs:
                    p.stdin.write(command + "\n")
                    p.stdin.flush()
                out = []
                for p in procs:
                    line = p.stdout.readline()
                    if not line:
                        raise SystemExit("a client process died")
                    out.append(json.loads(line))
                return out

            def total(results: list[dict], key: str) -> int:
                return sum(r[key] for r in results)

            phases: dict[str, dict] = {}
            print(f"opening {args.conns} connections from {clients} client processes ...",
                  file=sys.stderr)
            t = time.monotonic()
            opened_r = everyone(f"open {args.timeout}")
            opened = total(opened_r, "opened")
            open_secs = time.monotonic() - t
            # New connections of every service wait in the lot.
            how = target.settle(opened, parked=bool(target.metrics_urls), limit=args.timeout)
            rss = target.rss_kib()
            phases["idle"] = {"conns": opened, "failed": total(opened_r, "failed"),
                              "errors": sorted({r["error"] for r in opened_r if r["error"]}),
                              "open_secs": round(open_secs, 2), "rss_kib": rss,
                              "bytes_per_conn": (rss - base) * 1024 / max(opened, 1),
                              "settled": how}
            print(f"phase 1: {phases['idle']}", file=sys.stderr)

            def request_phase(tag: str) -> dict:
                t = time.monotonic()
                r = everyone(f"request {tag} {args.timeout}")
                return {"answered": total(r, "answered"), "wrong": total(r, "wrong"),
                        "lost": total(r, "lost"), "unanswered": total(r, "unanswered"),
                        "examples": [x["example"] for x in r if x["example"]][:3],
                        "secs": round(time.monotonic() - t, 2)}

            spoke = request_phase("one")
            peak = target.rss_kib()
            # Quiet past the park interval: wait for it, then for the
            # server to show them all parked (or its memory to settle).
            time.sleep(park_s + 1.0)
            # Only ping parks again (HTTP keeps its task until the header
            # timeout closes the connection, 10 s after its last request).
            reparks = bool(target.metrics_urls) and args.service == "ping"
            how = target.settle(opened, parked=reparks, limit=args.timeout)
            rss = target.rss_kib()
            phases["quiet"] = {**spoke, "rss_kib": rss, "peak_rss_kib": peak,
                               "bytes_per_conn": (rss - base) * 1024 / max(opened, 1),
                               "settled": how}
            print(f"phase 2: {phases['quiet']}", file=sys.stderr)

            phases["final"] = request_phase("two")
            missing = opened - phases["final"]["answered"]
            phases["final"]["missing"] = missing
            print(f"phase 3: {phases['final']}", file=sys.stderr)
        finally:
            for p in procs:
                try:
                    p.stdin.write("quit\n")
                    p.stdin.flush()
                except OSError:
                    pass
            for p in procs:
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
            target.stop()

    report = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "server": args.peer, "service": "http" if target.http else "ping", "conns": args.conns,
        "servers": args.servers, "workers": args.workers or 1,
        "clients": clients, "park_after": args.park_after if args.peer == "sockit" else None,
        "base_rss_kib": base, "phases": phases,
    }
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    name = args.peer if args.peer == "nginx" else f"sockit {args.service}"
    if args.workers:
        name += f" --workers {args.workers}"
    if args.servers > 1:
        name += f", {args.servers} processes"
    idle, quiet, final = phases["idle"], phases["quiet"], phases["final"]
    table = [
        f"{name}: {opened:,} of {args.conns:,} connections open "
        f"({clients} client processes), base RSS {base:,} KiB, {report['when']}",
        "",
        "| phase | RSS KiB | bytes/conn | answered | missing |",
        "| --- | --- | --- | --- | --- |",
        f"| 1. open, never spoken | {idle['rss_kib']:,} | {idle['bytes_per_conn']:,.0f} | - | - |",
        f"| 2. spoken, then quiet past {args.park_after} | {quiet['rss_kib']:,} "
        f"| {quiet['bytes_per_conn']:,.0f} | {quiet['answered']:,} "
        f"| {opened - quiet['answered']:,} |",
        f"| 3. a request on every one | - | - | {final['answered']:,} | {missing:,} |",
        "",
        f"Peak RSS while all were speaking: {quiet['peak_rss_kib']:,} KiB; JSON in "
        f"`{Path(args.json).name}`.",
    ]
    print("\n" + "\n".join(table))
    if args.out:
        Path(args.out).write_text("\n".join(table) + "\n")
    if missing or idle["failed"]:
        sys.exit(1)


if __name__ == "__main__":
    main()

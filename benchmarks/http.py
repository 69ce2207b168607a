#!/usr/bin/env python3
"""sockit's HTTP benchmarks: `sockit serve http --root` against nginx and
`python3 -m http.server`, with wrk (HTTP/1.1) and h2load (HTTP/2 over TLS).

    python3 benchmarks/http.py              # 3 rounds, ~4 minutes
    python3 benchmarks/http.py --quick      # 1 short round

Server pinned to CPU 0, the load generator to CPU 1 (PERF.md). nginx runs
one worker with sendfile on and the access log off. Scenarios:

- 1k: a 1 KiB file, `wrk -t1 -c50`: requests/s and server CPU per request;
- 1m: a 1 MiB file, `wrk -t1 -c8`: bytes/s;
- h2: the 1 KiB file over HTTPS with HTTP/2, `h2load -c50 -m10`.

Writes benchmarks/http-results.md and prints it. Needs a release build,
wrk and h2load (`apt-get install wrk nghttp2-client nginx-light`);
missing tools or peers are skipped. miniserve and static-web-server join
the plain-HTTP scenarios when on PATH (`cargo install --locked miniserve
static-web-server`).
"""
from __future__ import annotations

import argparse
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402
from run import Server, fmt, summarize, tree_cpu_seconds  # noqa: E402
from tls import make_cert  # noqa: E402


def servers(tmp: Path, www: Path, cert: Path, key: Path) -> dict[str, Server]:
    sockit = str(run.SOCKIT)
    out = {
        "sockit": Server("sockit", [sockit, "serve", "http", "-q", "--root", str(www),
                                    "-l", "tcp://127.0.0.1:0", "--tls-cert", str(cert),
                                    "--tls-key", str(key), "-l", "tls://127.0.0.1:0"],
                         set(), reads_listening_line=2),
        "python http.server": Server("python http.server",
                                     [sys.executable, "-m", "http.server", "--bind", "127.0.0.1",
                                      "--directory", str(www), "{port}"], set()),
    }
    if shutil.which("nginx"):
        conf = tmp / "nginx-http.conf"

        def write_conf(port: int) -> None:
            tls = out["nginx"].tls_port = run.free_port()
            conf.write_text(
                f"worker_processes 1; daemon off; pid {tmp}/nginx.pid; error_log {tmp}/nginx.err;\n"
                "events { worker_connections 20000; }\n"
                "http { access_log off; sendfile on; tcp_nopush on; keepalive_requests 1000000;\n"
                "  types { text/plain txt; application/octet-stream bin; }\n"
                f"  server {{ listen 127.0.0.1:{port}; root {www}; }}\n"
                f"  server {{ listen 127.0.0.1:{tls} ssl http2; root {www};\n"
                f"    ssl_certificate {cert}; ssl_certificate_key {key}; }} }}\n"
            )

        out["nginx"] = Server("nginx", ["nginx", "-c", str(conf)], set(), prepare=write_conf)
    # The Rust static servers a user might pick instead, when installed
    # (`cargo install --locked miniserve static-web-server`); plain HTTP
    # only. Each on its defaults, logging off.
    if shutil.which("miniserve"):
        out["miniserve"] = Server("miniserve", ["miniserve", "--interfaces", "127.0.0.1", "--port",
                                                "{port}", "--quiet", str(www)], set())
    if shutil.which("static-web-server"):
        out["static-web-server"] = Server("static-web-server", [
            "static-web-server", "--host", "127.0.0.1", "--port", "{port}", "--root", str(www),
            "--log-level", "error"], set())
    return out


def wait_for_port(port: int, limit: float = 10.0) -> None:
    """Until something accepts on the port (servers without a listening line)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


def tls_port(server: Server) -> int:
    # sockit says which in its listening lines; nginx's is set with its
    # config.
    return server.tls_port


def wrk(url: str, conns: int, duration: str) -> dict:
    out = subprocess.run(["taskset", "-c", run.CLIENT_CPU, "wrk", "-t1", f"-c{conns}", f"-d{duration}",
                          "--latency", url], capture_output=True, text=True, timeout=120).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"{url}: error responses: {out.strip().splitlines()[-3:]}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    m = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", out)
    scale = {"B": 1, "KB": 2**10, "MB": 2**20, "GB": 2**30}[m.group(2)]
    p99 = re.search(r"99%\s+([\d.]+)(\w+)", out)
    p99_ms = float(p99.group(1)) * {"us": 1e-3, "ms": 1, "s": 1e3}[p99.group(2)] if p99 else None
    return {"rps": rps, "bps": float(m.group(1)) * scale, "total": total, "p99": p99_ms}


def h2load(url: str, duration: str) -> dict:
    out = subprocess.run(["taskset", "-c", run.CLIENT_CPU, "h2load", "-c50", "-m10", "-D",
                          duration.rstrip("s"), url], capture_output=True, text=True, timeout=120).stdout
    rps = float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out).group(1))
    done = int(re.search(r"(\d+) succeeded", out).group(1))
    status = re.search(r"status codes: (\d+) 2xx", out)
    if not status or int(status.group(1)) < done:
        raise RuntimeError(f"{url}: not every response was 2xx")
    return {"rps": rps, "bps": None, "total": done, "p99": None}


def measure(server: Server, scenario: str, duration: str) -> dict | None:
    server.start("http")
    try:
        if not server.reads_listening_line:
            wait_for_port(server.port)
        cpu0 = tree_cpu_seconds(server.pid)
        if scenario == "h2":
            if not server.tls_port or not shutil.which("h2load"):
                return None
            r = h2load(f"https://127.0.0.1:{tls_port(server)}/1k.txt", duration)
        else:
            path, conns = ("/1k.txt", 50) if scenario == "1k" else ("/1m.bin", 8)
            r = wrk(f"http://127.0.0.1:{server.port}{path}", conns, duration)
        cpu = tree_cpu_seconds(server.pid) - cpu0
        r["cpu_us"] = cpu / r["total"] * 1e6 if r["total"] else None
        return r
    except Exception as e:  # a peer failing must not end the run
        print(f"  {server.name} / {scenario}: {e}", file=sys.stderr)
        return None
    finally:
        server.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", default="5s")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", help="comma-separated scenarios: 1k, 1m, h2")
    ap.add_argument("--peers", help="comma-separated servers besides sockit (default: every one found)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "http-results.md"))
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.duration = 1, "2s"
    if not shutil.which("wrk"):
        sys.exit("wrk is needed: apt-get install wrk")
    if not run.SOCKIT.exists():
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=run.ROOT, check=True)
    scenarios = [("1k", "1 KiB file, wrk -c 50", "rps", "req/s"),
                 ("1m", "1 MiB file, wrk -c 8", "bps", "MiB/s"),
                 ("h2", "1 KiB file, HTTP/2 over TLS, h2load -c 50 -m 10", "rps", "req/s")]
    with tempfile.TemporaryDirectory(prefix="sockit-http-bench-") as tmp:
        tmp = Path(tmp)
        # nginx's worker drops root for nobody: it must be able to read.
        tmp.chmod(0o755)
        www = tmp / "www"
        www.mkdir()
        (www / "1k.txt").write_bytes(b"x" * 1023 + b"\n")
        (www / "1m.bin").write_bytes(bytes(range(256)) * 4096)
        _, cert, key = make_cert(tmp)
        have = servers(tmp, www, cert, key)
        if args.peers:
            wanted = {"sockit", *args.peers.split(",")}
            have = {name: server for name, server in have.items() if name in wanted}
        if args.only:
            scenarios = [s for s in scenarios if s[0] in args.only.split(",")]
        results: dict = {}
        for rnd in range(args.rounds):
            for key_, *_ in scenarios:
                for name, server in have.items():
                    print(f"round {rnd + 1}/{args.rounds}: {key_} / {name}", file=sys.stderr)
                    r = measure(server, key_, args.duration)
                    if r:
                        results.setdefault((key_, name), []).append(r)
    lines = [f"HTTP benchmarks: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, server on CPU "
             f"{run.SERVER_CPU}, load on CPU {run.CLIENT_CPU}, {args.rounds} round(s) of {args.duration}; "
             "medians with min-max. Ratio: sockit's median over the peer's.\n"]
    for key_, title, metric, unit in scenarios:
        rows = [(n, results.get((key_, n))) for n in have]
        rows = [(n, r) for n, r in rows if r]
        if not rows:
            continue
        lines.append(f"\n### {title}\n")
        lines.append(f"| server | {unit} | server CPU µs/req | p99 ms | sockit ÷ peer |")
        lines.append("| --- | --- | --- | --- | --- |")
        scale = 2**20 if metric == "bps" else 1
        mine = summarize([r[metric] / scale for r in dict(rows).get("sockit", [])])
        for name, runs in rows:
            def cell(k: str, digits: int, sc: float = 1) -> str:
                s = summarize([r[k] / sc if r.get(k) is not None else None for r in runs])
                return "-" if s is None else f"{fmt(s[0], digits)} ({fmt(s[1], digits)}-{fmt(s[2], digits)})"
            theirs = summarize([r[metric] / scale for r in runs])
            ratio = f"{mine[0] / theirs[0]:.2f}" if mine and theirs and theirs[0] and name != "sockit" else "-"
            lines.append(f"| {name} | {cell(metric, 1 if metric == 'bps' else 0, scale)} | "
                         f"{cell('cpu_us', 2)} | {cell('p99', 3)} | {ratio} |")
    text = "\n".join(lines) + "\n"
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""sockit's TLS benchmarks: the TLS tax, the TLS peers, and handshakes/s.

    python3 benchmarks/tls.py                  # 3 rounds, ~8 minutes
    python3 benchmarks/tls.py --quick          # 1 short round
    python3 benchmarks/tls.py --old PATH       # also the reshaping check

Scenarios (server pinned to CPU 0, `sockit bench` to CPU 1, as run.py):

- ping50: TCP ping, 50 connections, over tcp:// and tls:// (sockit), and
  over TLS against socat `OPENSSL-LISTEN,fork EXEC:cat` and
  `ncat --ssl --exec /bin/cat` (both echo the ping line, which is all
  the bench client needs). The figure: server CPU per request.
- echo64k: 64 KiB messages, 8 connections, tcp:// vs tls:// and the
  same TLS peers. The figure: bytes/s.
- handshakes: `sockit bench --reconnect -c 16`: a new TLS connection per
  request, with session resumption and without (`--no-resume`), against
  sockit and nginx's stream module with ssl (1 worker, `return`).
- reshape (with --old PATH): ping50 and pipelined x16 over plain TCP,
  the given older sockit binary against the current one, for server CPU
  per request.

All peers get the same ECDSA P-256 certificate, made here with openssl.
Writes benchmarks/tls-results.md and prints it. Needs: a release build,
openssl; socat, ncat and nginx + libnginx-mod-stream are optional
(`apt-get install socat ncat nginx-light libnginx-mod-stream`).
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402  (the suite's server and measuring helpers)
from run import Server, fmt, summarize, tree_cpu_seconds  # noqa: E402

NGINX_STREAM = Path("/usr/lib/nginx/modules/ngx_stream_module.so")


def make_cert(tmp: Path) -> tuple[Path, Path, Path]:
    """A CA, and a P-256 server certificate for 127.0.0.1 signed by it."""
    ca, ca_key = tmp / "ca.pem", tmp / "ca-key.pem"
    cert, key, csr = tmp / "cert.pem", tmp / "key.pem", tmp / "cert.csr"
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    sh = lambda *argv: subprocess.run(list(argv), check=True, capture_output=True)  # noqa: E731
    sh("openssl", "req", "-x509", *ec, "-days", "2", "-subj", "/CN=sockit bench CA",
       "-keyout", str(ca_key), "-out", str(ca))
    sh("openssl", "req", *ec, "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(csr))
    ext = tmp / "ext.cnf"
    ext.write_text("basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n")
    sh("openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
       "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(cert))
    return ca, cert, key


def servers(tmp: Path, cert: Path, key: Path, old: Path | None) -> dict[str, Server]:
    sockit = str(run.SOCKIT)
    tls_args = ["--tls-cert", str(cert), "--tls-key", str(key)]
    out = {
        "sockit tcp": Server("sockit tcp", [sockit, "serve", "{mode}", "-q", "-l", "tcp://127.0.0.1:0"],
                             set(), reads_listening_line=1),
        "sockit tls": Server("sockit tls", [sockit, "serve", "{mode}", "-q", *tls_args,
                                            "-l", "tls://127.0.0.1:0"], set(), reads_listening_line=1),
    }
    if old:
        out["sockit old tcp"] = Server("sockit old tcp", [str(old), "serve", "{mode}", "-q",
                                                          "-l", "tcp://127.0.0.1:0"],
                                       set(), reads_listening_line=1)
    if shutil.which("socat"):
        out["socat ssl"] = Server("socat ssl", [
            "socat", f"OPENSSL-LISTEN:{{port}},bind=127.0.0.1,fork,reuseaddr,cert={cert},key={key},verify=0",
            "EXEC:cat"], set())
    if shutil.which("ncat"):
        out["ncat ssl"] = Server("ncat ssl", ["ncat", "--ssl", "--ssl-cert", str(cert), "--ssl-key", str(key),
                                              "-k", "-l", "127.0.0.1", "{port}", "--exec", "/bin/cat"], set())
    if shutil.which("nginx") and NGINX_STREAM.exists():
        conf = tmp / "nginx-stream.conf"

        def write_conf(port: int) -> None:
            conf.write_text(
                f"load_module {NGINX_STREAM};\n"
                f"worker_processes 1; daemon off; pid {tmp}/nginx.pid; error_log {tmp}/nginx.err;\n"
                "events { worker_connections 20000; }\n"
                "stream { server {\n"
                f"  listen 127.0.0.1:{port} ssl; ssl_certificate {cert}; ssl_certificate_key {key};\n"
                "  ssl_session_cache shared:SSL:10m; ssl_session_tickets on;\n"
                "  return \"pong\\n\"; } }\n"
            )

        out["nginx stream ssl"] = Server("nginx stream ssl", ["nginx", "-c", str(conf)], set(),
                                         prepare=write_conf)
    return out


def measure(server: Server, mode: str, scheme: str, args: list[str], duration: str,
            warmup: str) -> dict | None:
    server.start(mode)
    try:
        cpu0 = tree_cpu_seconds(server.pid)
        # A sockit tls:// listener announces its port as tls_port.
        port = server.tls_port if scheme == "tls" and server.tls_port else server.port
        report = run.sockit_bench(f"{scheme}://127.0.0.1:{port}", args, duration, warmup)
        cpu = tree_cpu_seconds(server.pid) - cpu0
        measured = report["duration_s"]
        total_s = measured + float(warmup.rstrip("s"))
        served = report["requests"] * total_s / measured if measured else 0
        return {
            "rps": report["requests_per_sec"],
            "bps": report["received_bytes_per_sec"],
            "hps": report.get("handshakes_per_sec"),
            "resumed": report.get("resumed"),
            "p99": (report.get("latency_ms") or {}).get("p99"),
            "cpu_us": cpu / served * 1e6 if served else None,
            "errors": report["errors"],
        }
    except Exception as e:  # a peer failing must not end the run
        print(f"  {server.name}: {e}", file=sys.stderr)
        return None
    finally:
        server.stop()


# (key, title, mode, rows, common bench args, metric, metric title); a row
# is (server, scheme, extra bench args, the label of the row it is compared
# with or None). The ratio column is this row's metric over that row's.
def scenarios(have: dict[str, Server], ca: Path) -> list[tuple]:
    tls = ["--ca", str(ca)]
    peers = [p for p in ("socat ssl", "ncat ssl") if p in have]
    tls_row = "sockit tls"
    out = [
        ("ping50", "TCP ping, 50 connections: plain vs TLS", "ping",
         [("sockit tcp", "tcp", [], None), ("sockit tls", "tls", tls, "sockit tcp")]
         + [(p, "tls", tls, tls_row) for p in peers],
         ["-c", "50"], "cpu_us", "server CPU µs/req"),
        ("echo64k", "Echo, 64 KiB messages, 8 connections: plain vs TLS", "echo",
         [("sockit tcp", "tcp", [], None), ("sockit tls", "tls", tls, "sockit tcp")]
         + [(p, "tls", tls, tls_row) for p in peers],
         ["-c", "8", "-s", "64KiB"], "bps", "MiB/s"),
        ("handshakes", "New TLS connection per request, 16 at once", "ping",
         [("sockit tls", "tls", tls + ["--reconnect"], None),
          ("sockit tls", "tls", tls + ["--reconnect", "--no-resume"], None)]
         + ([("nginx stream ssl", "tls", tls + ["--reconnect"], "sockit tls (resumed)"),
             ("nginx stream ssl", "tls", tls + ["--reconnect", "--no-resume"],
              "sockit tls (full handshakes)")]
            if "nginx stream ssl" in have else []),
         ["-c", "16"], "hps", "handshakes/s"),
    ]
    if "sockit old tcp" in have:
        out.append(("reshape", "Plain TCP ping, before and after the reshaping", "ping",
                    [("sockit old tcp", "tcp", ["-c", "50"], None),
                     ("sockit tcp", "tcp", ["-c", "50"], "sockit old tcp 50 conns"),
                     ("sockit old tcp", "tcp", ["-c", "50", "--pipeline", "16"], None),
                     ("sockit tcp", "tcp", ["-c", "50", "--pipeline", "16"],
                      "sockit old tcp x16 pipeline")],
                    [], "cpu_us", "server CPU µs/req"))
    return out


def label(name: str, extra: list[str]) -> str:
    bits = [name]
    if "--no-resume" in extra:
        bits.append("(full handshakes)")
    elif "--reconnect" in extra:
        bits.append("(resumed)")
    if "--pipeline" in extra:
        bits.append(f"x{extra[extra.index('--pipeline') + 1]} pipeline")
    elif "-c" in extra and extra[extra.index("-c") + 1] == "50" and "--reconnect" not in extra:
        bits.append("50 conns")
    return " ".join(bits)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", default="3s")
    ap.add_argument("--warmup", default="1s")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--old", type=Path, help="an older sockit binary for the reshaping check")
    ap.add_argument("--only", action="append")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "tls-results.md"))
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.duration, args.warmup = 1, "1s", "1s"
    if not run.SOCKIT.exists():
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=run.ROOT, check=True)
    with tempfile.TemporaryDirectory(prefix="sockit-tls-bench-") as tmp:
        tmp = Path(tmp)
        ca, cert, key = make_cert(tmp)
        have = servers(tmp, cert, key, args.old)
        plan = [s for s in scenarios(have, ca) if not args.only or s[0] in args.only]
        results: dict = {}
        for rnd in range(args.rounds):
            for key_, _, mode, rows, common, _, _ in plan:
                for name, scheme, extra, _ in rows:
                    row = label(name, extra)
                    print(f"round {rnd + 1}/{args.rounds}: {key_} / {row}", file=sys.stderr)
                    r = measure(have[name], mode, scheme, common + extra, args.duration, args.warmup)
                    if r:
                        results.setdefault((key_, row), []).append(r)
    lines = [
        f"TLS benchmarks: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, server on CPU "
        f"{run.SERVER_CPU}, `sockit bench` on CPU {run.CLIENT_CPU}, {args.rounds} round(s) of "
        f"{args.duration} after {args.warmup} warm-up; medians with min-max. Ratio: this row's "
        "median of the first column over the named row's.\n"
    ]
    for key_, title, _, rows, _, metric, metric_title in plan:
        lines.append(f"\n### {title}\n")
        lines.append(f"| server | {metric_title} | req/s | server CPU µs/req | p99 ms | ratio |")
        lines.append("| --- | --- | --- | --- | --- | --- |")
        scale = 2**20 if metric == "bps" else 1.0
        medians = {}
        for name, _, extra, ref in rows:
            row = label(name, extra)
            runs = results.get((key_, row))
            if not runs:
                continue

            def cell(k: str, digits: int, scale: float = 1.0) -> str:
                s = summarize([r[k] / scale if r.get(k) is not None else None for r in runs])
                return "-" if s is None else f"{fmt(s[0], digits)} ({fmt(s[1], digits)}-{fmt(s[2], digits)})"

            main_s = summarize([r[metric] / scale if r.get(metric) is not None else None for r in runs])
            medians[row] = main_s[0] if main_s else None
            ratio = "-"
            if ref and medians.get(ref) and medians[row]:
                ratio = f"{medians[row] / medians[ref]:.2f} × {ref}"
            lines.append(f"| {row} | {cell(metric, 2 if metric == 'cpu_us' else 1, scale)} "
                         f"| {cell('rps', 0)} | {cell('cpu_us', 2)} | {cell('p99', 3)} | {ratio} |")
    text = "\n".join(lines) + "\n"
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()

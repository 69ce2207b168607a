#!/usr/bin/env python3
"""A soak test: mixed load on every kind of service sockit runs, for a
while, with the server's memory sampled and every error counted.

    python3 benchmarks/soak.py                 # 10 minutes
    python3 benchmarks/soak.py --duration 120  # two

One `sockit serve --config` process runs echo (TCP, UDP), ping (TCP, TLS,
UDP, Unix), hello, HTTP (plain and TLS: a small file, a listing, a 304, a
range), chat (members talking and checking what they hear) and exec
(`cat`). Client threads loop on each for the whole run, over new and
kept connections, loopback only, each paced so the run is load, not a
benchmark. Every 10 s the server's RSS is sampled. At the end: a table of
RSS over time, transactions and errors per kind, and exit 1 if there was
any error or the RSS grew past the bound after warm-up (default 16 MiB
between the 60 s sample and the last).
"""
from __future__ import annotations

import sys
from pathlib import Path

# benchmarks/http.py would shadow the standard library's http package.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse  # noqa: E402
import http.client  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
import ssl  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
# The binary under test: $SOCKIT_BIN (the test suite passes its own), or
# the release build.
SOCKIT = Path(os.environ.get("SOCKIT_BIN", ROOT / "target" / "release" / "sockit"))

ok: Counter = Counter()
errors: Counter = Counter()
first_error: dict[str, str] = {}
lock = threading.Lock()
stop = threading.Event()


def record(kind: str, error: BaseException | None = None) -> None:
    with lock:
        if error is None:
            ok[kind] += 1
        else:
            errors[kind] += 1
            first_error.setdefault(kind, repr(error))


def loop(kind: str, pace: float, once) -> None:
    """Runs `once` until the end, pacing it; counts each outcome."""
    while not stop.is_set():
        try:
            once()
            record(kind)
        except Exception as e:  # every failure counts
            if not stop.is_set():
                record(kind, e)
        time.sleep(pace)


def recv_exactly(s: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise ConnectionError(f"closed after {len(data)} of {n} bytes")
        data += chunk
    return data


def tcp(addr: tuple[str, int]) -> socket.socket:
    s = socket.create_connection(addr, timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=600)
    ap.add_argument("--growth-mib", type=float, default=16)
    args = ap.parse_args()
    if not SOCKIT.exists():
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)

    with tempfile.TemporaryDirectory(prefix="sockit-soak-") as tmp:
        tmp = Path(tmp)
        www = tmp / "www"
        (www / "dir").mkdir(parents=True)
        (www / "1k.txt").write_bytes(b"x" * 1023 + b"\n")
        (www / "big.bin").write_bytes(os.urandom(300_000))
        for i in range(50):
            (www / "dir" / f"file{i}.txt").write_text(f"file {i}\n")
        unix = tmp / "ping.sock"
        ports = {k: free_port() for k in ["echo", "ping", "ping_tls", "hello", "http", "https", "chat", "exec"]}
        conf = tmp / "soak.toml"
        conf.write_text(f'''
[[service]]
name = "echo"
listen = ["tcp://127.0.0.1:{ports['echo']}", "udp://127.0.0.1:{ports['echo']}"]
[[service]]
name = "ping"
listen = ["tcp://127.0.0.1:{ports['ping']}", "udp://127.0.0.1:{ports['ping']}", "tls://127.0.0.1:{ports['ping_tls']}", "unix://{unix}"]
[[service]]
name = "hello"
listen = ["tcp://127.0.0.1:{ports['hello']}"]
[[service]]
name = "http"
listen = ["tcp://127.0.0.1:{ports['http']}", "tls://127.0.0.1:{ports['https']}"]
root = "{www}"
[[service]]
name = "chat"
listen = ["tcp://127.0.0.1:{ports['chat']}"]
flood_rate = 0
[[service]]
name = "exec"
listen = ["tcp://127.0.0.1:{ports['exec']}"]
command = ["cat"]
''')
        log = open(tmp / "server.log", "w")
        server = subprocess.Popen([str(SOCKIT), "serve", "-q", "--config", str(conf)],
                                  stdout=subprocess.PIPE, stderr=log, text=True)
        listening = [server.stdout.readline() for _ in range(11)]
        assert all(l.startswith("listening on") for l in listening), listening
        lo = "127.0.0.1"
        tls_ctx = ssl.create_default_context()
        tls_ctx.check_hostname = False
        tls_ctx.verify_mode = ssl.CERT_NONE

        def echo_kept():
            s = echo_kept.s
            payload = os.urandom(512)
            s.sendall(payload)
            assert recv_exactly(s, 512) == payload
        echo_kept.s = tcp((lo, ports["echo"]))

        def echo_new():
            with tcp((lo, ports["echo"])) as s:
                s.sendall(b"once\n")
                assert recv_exactly(s, 5) == b"once\n"

        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.settimeout(2)
        seq = [0]

        def ping_udp():
            seq[0] += 1
            udp.sendto(f"ping {seq[0]}".encode(), (lo, ports["ping"]))
            while True:
                data, _ = udp.recvfrom(100)
                if data == f"pong {seq[0]}".encode():
                    return

        def ping_tls():
            raw = tcp((lo, ports["ping_tls"]))
            with tls_ctx.wrap_socket(raw) as s:
                for i in range(20):
                    s.sendall(f"ping {i}\n".encode())
                    assert recv_exactly(s, len(f"pong {i}\n")) == f"pong {i}\n".encode()

        def ping_unix():
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(10)
                s.connect(str(unix))
                s.sendall(b"ping u\n")
                assert recv_exactly(s, 7) == b"pong u\n"

        def hello():
            with tcp((lo, ports["hello"])) as s:
                s.sendall(b"soak\n")
                assert recv_exactly(s, 12) == b"Hello, soak\n"

        def http_kept():
            c = http_kept.c
            c.request("GET", "/1k.txt")
            r = c.getresponse()
            body = r.read()
            assert r.status == 200 and len(body) == 1024, r.status
            etag = r.getheader("etag")
            c.request("GET", "/1k.txt", headers={"If-None-Match": etag})
            r = c.getresponse()
            r.read()
            assert r.status == 304, r.status
            c.request("GET", "/big.bin", headers={"Range": "bytes=1000-1999"})
            r = c.getresponse()
            assert r.status == 206 and len(r.read()) == 1000
            c.request("GET", "/dir/", headers={"Accept-Encoding": "gzip"})
            r = c.getresponse()
            r.read()
            assert r.status == 200 and r.getheader("content-encoding") == "gzip"
        http_kept.c = http.client.HTTPConnection(lo, ports["http"], timeout=10)

        def https_new():
            c = http.client.HTTPSConnection(lo, ports["https"], timeout=10, context=tls_ctx)
            c.request("GET", "/big.bin")
            r = c.getresponse()
            assert r.status == 200 and len(r.read()) == 300_000
            c.close()

        def exec_cat():
            with tcp((lo, ports["exec"])) as s:
                s.sendall(b"through cat\n")
                s.shutdown(socket.SHUT_WR)
                assert recv_exactly(s, 12) == b"through cat\n"

        threads = [
            ("echo kept", 0.002, echo_kept), ("echo new", 0.01, echo_new),
            ("ping udp", 0.002, ping_udp), ("ping tls", 0.05, ping_tls),
            ("ping unix", 0.01, ping_unix), ("hello", 0.01, hello),
            ("http kept", 0.005, http_kept), ("https new", 0.05, https_new),
            ("exec cat", 0.05, exec_cat),
        ]
        workers = [threading.Thread(target=loop, args=t, daemon=True) for t in threads]
        workers += chat_threads(lo, ports["chat"])
        for w in workers:
            w.start()

        samples = []
        start = time.monotonic()
        while time.monotonic() - start < args.duration:
            samples.append((time.monotonic() - start, rss_kib(server.pid), sum(ok.values()), sum(errors.values())))
            time.sleep(min(10, max(0.1, args.duration - (time.monotonic() - start))))
        samples.append((time.monotonic() - start, rss_kib(server.pid), sum(ok.values()), sum(errors.values())))
        stop.set()
        for w in workers:
            w.join(timeout=15)
        alive = server.poll() is None
        server.terminate()
        server.wait(timeout=20)

    print(f"soak: {args.duration:.0f} s, server {'alive' if alive else 'DEAD'} at the end\n")
    print("| t (s) | RSS (KiB) | transactions | errors |")
    print("| --- | --- | --- | --- |")
    for t, rss, n, e in samples:
        print(f"| {t:.0f} | {rss} | {n} | {e} |")
    print("\n| kind | transactions | errors | first error |")
    print("| --- | --- | --- | --- |")
    for kind in sorted(set(ok) | set(errors)):
        print(f"| {kind} | {ok[kind]} | {errors[kind]} | {first_error.get(kind, '')} |")
    warm = next((rss for t, rss, *_ in samples if t >= 60), samples[0][1])
    growth = (samples[-1][1] - warm) / 1024
    print(f"\nRSS after warm-up {warm} KiB, at the end {samples[-1][1]} KiB: {growth:+.1f} MiB "
          f"(bound {args.growth_mib} MiB)")
    failed = sum(errors.values()) > 0 or growth > args.growth_mib or not alive
    sys.exit(1 if failed else 0)


def chat_threads(lo: str, port: int) -> list[threading.Thread]:
    """Ten members in one room: each says a numbered line every 50 ms and
    checks, at the end, that it heard every other member's lines in
    order."""
    members = []
    for i in range(10):
        s = tcp((lo, port))
        s.sendall(f"/nick soak{i}\n".encode())
        members.append(s)
    time.sleep(0.5)

    def talk(i: int, s: socket.socket) -> None:
        n = 0
        while not stop.is_set():
            try:
                s.sendall(f"line {n}\n".encode())
                record("chat sent")
            except Exception as e:
                record("chat sent", e)
                return
            n += 1
            time.sleep(0.05)

    def listen(i: int, s: socket.socket) -> None:
        buf = b""
        last: dict[str, int] = {}
        s.settimeout(2)
        while not stop.is_set():
            try:
                data = s.recv(65536)
            except socket.timeout:
                continue
            except Exception as e:
                record("chat heard", e)
                return
            if not data:
                record("chat heard", ConnectionError("closed"))
                return
            buf += data
            *lines, buf = buf.split(b"\n")
            for line in lines:
                text = line.decode(errors="replace").rstrip("\r")
                if text.startswith("[soak") and "] line " in text:
                    who, n = text[1:].split("] line ")
                    if int(n) != last.get(who, -1) + 1:
                        record("chat heard", AssertionError(f"{who}: {last.get(who)} then {n}"))
                    last[who] = int(n)
                    record("chat heard")

    out = []
    for i, s in enumerate(members):
        out.append(threading.Thread(target=talk, args=(i, s), daemon=True))
        out.append(threading.Thread(target=listen, args=(i, s), daemon=True))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The load generator of benchmarks/chat.py's room10k scenario: one big
room (10,000 members by default), one sender at a fixed rate, the
delivery latency on a sample of the members and the server's memory per
member, reported as one JSON line.

    taskset -c 1 python3 benchmarks/roomload.py '{"members": 10000, ...}'

Python cannot read a million lines a second from 10,000 sockets, so the
members are read two ways. Every `sample_every`-th member in join order
(every 50th: 200 of 10,000) stays in this process and is read eagerly
(epoll), and every line the sender sends carries its intended send time
(`^T<ns>;`, CLOCK_MONOTONIC), read back at receipt: the latency rows
come from these members only. All the others are handed (SCM_RIGHTS, in
join order) to a second process, the bulk reader, which reads each of
them once every `bulk_every` seconds (1 s): their lines wait in the
kernel's buffers meanwhile (100 lines/s of 40-odd bytes is 4.5 KB a
second, well within them), and it counts every line each one got. It
runs at nice 19, so that its passes (a few hundred ms of Python each)
do not delay the sampled members, which share its core. At the
end every member must have got every line the sender sent: the report
gives the deliveries counted, the fewest lines any member got, and the
members the server closed (a member dropped as too slow is closed).

The phases, each with the server's RSS (VmRSS of `server_pid`) after it:

1. `start`: the sender has joined (and taken its name), nobody else.
2. `joined`: every member has joined and read what it was sent (its
   welcome, and the join notices of the rooms small enough to have them);
   none has said anything. A quiet room.
3. `spoke`: every member has sent one line (`spoke`, default `/rooms`,
   answered to it alone: a line read and a line written for each member
   without 10,000 x 10,000 deliveries) and read its answer.
4. the measured part: the sender at `rate` lines/s for `duration`
   seconds (open loop, counted from each line's intended send time), then
   `burst` lines in one write; `traffic` is the RSS once every member has
   read them all and `settle` seconds have passed.

Prints `START` and `END` around the measured part (chat.py reads the
server's CPU time at both). Loopback only; every phase is bounded in
time; the members are spread over two processes (the per-process
descriptor limit is 20,000).
"""
from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from chatload import PROBE, PROTOS, TEXT_LEN, connect, cpu_now  # noqa: E402

# Descriptors handed over per sendmsg (SCM_RIGHTS takes at most 253).
FDS_PER_MESSAGE = 200


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def probe_line(proto, ns: int) -> bytes:
    t = b"^T%d;" % ns
    return proto.line(t + b"-" * (TEXT_LEN - len(t)))


class Counted:
    """What one member has read: lines (`^`), and a probe cut by a read's end."""

    __slots__ = ("count", "tail", "closed", "answered", "notices")

    def __init__(self) -> None:
        self.count = 0
        self.tail = b""
        self.closed = False
        self.answered = False
        self.notices = 0

    def feed(self, data: bytes, lat: list[int] | None, now: int) -> None:
        data = self.tail + data
        self.count += data.count(b"^") - self.tail.count(b"^")
        if lat is not None:
            lat.extend(now - int(ts) for ts in PROBE.findall(data))
        if b"dropped (too slow)" in data:
            self.notices += 1
        if b"* rooms:" in data or b"* you are now" in data:
            self.answered = True
        last = data.rfind(b"^")
        self.tail = data[last:] if last >= 0 and data.find(b";", last) < 0 else b""


def read_all(sock: socket.socket, c: Counted, lat: list[int] | None, now: int) -> None:
    """Reads what is there now, without waiting."""
    while True:
        try:
            data = sock.recv(1 << 16)
        except (BlockingIOError, InterruptedError):
            return
        except ConnectionError:
            data = b""
        if not data:
            c.closed = True
            return
        c.feed(data, lat, now)


# --- the bulk reader (a process of its own) -------------------------------

def bulk(spec: dict, channel: socket.socket) -> None:
    """Takes members over `channel`, reads each once a pass, answers the
    main process's commands (one line each on stdin, one JSON line each on
    stdout)."""
    # The bulk reader shares the generator's core with the sampled
    # members, whose latency is the figure: it yields to them (a pass
    # over 9,800 sockets takes a few hundred ms of Python).
    os.nice(19)
    socks: list[socket.socket] = []
    counts: list[Counted] = []
    every = spec.get("bulk_every", 1.0)
    scratch = bytearray(1 << 16)
    spoke = spec.get("spoke", "/rooms").encode() + b"\n"

    def take_fds() -> None:
        while True:
            try:
                _, fds, _, _ = socket.recv_fds(channel, 16, FDS_PER_MESSAGE)
            except BlockingIOError:
                return
            if not fds:
                return
            for fd in fds:
                s = socket.socket(fileno=fd)
                s.setblocking(False)
                socks.append(s)
                counts.append(Counted())

    def one_pass(fast: bool = False) -> None:
        """Reads every member once; `fast` only counts lines (and EOF), as
        during the traffic, where nothing else is looked for."""
        now = time.perf_counter_ns()
        for s, c in zip(socks, counts):
            if c.closed:
                continue
            if not fast:
                read_all(s, c, None, now)
                continue
            while True:
                try:
                    n = s.recv_into(scratch)
                except (BlockingIOError, InterruptedError):
                    break
                except ConnectionError:
                    n = 0
                if n == 0:
                    c.closed = True
                    break
                c.count += scratch.count(b"^", 0, n)
                if n < len(scratch):
                    break

    def reply(obj: dict) -> None:
        print(json.dumps(obj), flush=True)

    channel.setblocking(False)
    next_pass = time.monotonic()
    counting = False
    while True:
        take_fds()
        timeout = max(0.0, next_pass - time.monotonic())
        ready, _, _ = select.select([sys.stdin, channel], [], [], timeout)
        if channel in ready:
            take_fds()
        if time.monotonic() >= next_pass:
            one_pass(fast=counting)
            next_pass = time.monotonic() + every
        if sys.stdin not in ready:
            continue
        command = sys.stdin.readline().split()
        if not command or command[0] == "QUIT":
            return
        if command[0] == "DRAIN":
            take_fds()
            time.sleep(0.2)
            one_pass()
            reply({"members": len(socks)})
        elif command[0] == "SPEAK":
            for s, c in zip(socks, counts):
                c.answered = False
                try:
                    s.send(spoke)
                except OSError:
                    c.closed = True
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not all(c.answered or c.closed for c in counts):
                one_pass()
                time.sleep(0.05)
            reply({"unanswered": sum(1 for c in counts if not (c.answered or c.closed))})
        elif command[0] == "RESET":
            for c in counts:
                c.count = 0
            counting = True
            reply({})
        elif command[0] == "FINISH":
            # Reads until every member has every line, or the deadline.
            want, deadline = int(command[1]), time.monotonic() + float(command[2])
            while time.monotonic() < deadline:
                one_pass()
                if all(c.count >= want or c.closed for c in counts):
                    break
                time.sleep(0.05)
            got = [c.count for c in counts]
            reply({
                "members": len(counts),
                "deliveries": sum(got),
                "fewest": min(got) if got else None,
                "most": max(got) if got else None,
                "short": sum(1 for g in got if g < want),
                "closed": sum(1 for c in counts if c.closed),
                "drop_notices": sum(c.notices for c in counts),
            })


# --- the main process -----------------------------------------------------

class Room:
    def __init__(self, spec: dict):
        self.spec = spec
        self.proto = PROTOS[spec.get("proto", "sockit")]
        self.addr = tuple(spec["addr"])
        self.pid = spec.get("server_pid") or 0
        self.rss: dict[str, int | None] = {}
        self.samples: list[socket.socket] = []
        self.sample_counts: list[Counted] = []
        self.phase_s: dict[str, float] = {}

    def command(self, line: str) -> dict:
        self.child.stdin.write(line + "\n")
        self.child.stdin.flush()
        out = self.child.stdout.readline()
        if not out:
            raise RuntimeError(f"bulk reader failed: {self.child.stderr.read()[-800:]}")
        return json.loads(out)

    def drain_samples(self, lat: list[int] | None = None) -> None:
        now = time.perf_counter_ns()
        for s, c in zip(self.samples, self.sample_counts):
            if not c.closed:
                read_all(s, c, lat, now)
        try:
            while self.sender.recv(1 << 20):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    def settle(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.drain_samples()
            time.sleep(0.02)

    def join(self) -> None:
        s = self.spec
        n, every = s["members"], s.get("sample_every", 50)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.child = subprocess.Popen(
            [sys.executable, __file__, "--bulk", json.dumps(s), str(theirs.fileno())],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            pass_fds=[theirs.fileno()])
        theirs.close()
        self.sender = connect(self.addr, self.proto, "s0")
        self.sender.setblocking(False)
        self.settle(0.5)
        self.rss["start"] = rss_kib(self.pid)
        batch: list[socket.socket] = []
        t0 = time.monotonic()
        deadline = t0 + s.get("join_timeout", 120)
        for i in range(n):
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {i} of {n} members joined in time")
            sock = connect(self.addr, self.proto, "")
            sock.setblocking(False)
            if i % every == 0:
                self.samples.append(sock)
                self.sample_counts.append(Counted())
            else:
                batch.append(sock)
                if len(batch) == FDS_PER_MESSAGE:
                    self.hand_over(ours, batch)
            if i % 500 == 499:
                # What small rooms say about joins is read as it comes.
                self.drain_samples()
        self.hand_over(ours, batch)
        self.phase_s["join"] = time.monotonic() - t0
        got = self.command("DRAIN")
        if got["members"] != n - len(self.samples):
            raise RuntimeError(f"the bulk reader has {got['members']} members")
        self.settle(1.0)
        self.rss["joined"] = rss_kib(self.pid)

    def hand_over(self, channel: socket.socket, batch: list[socket.socket]) -> None:
        if batch:
            socket.send_fds(channel, [b"m"], [b.fileno() for b in batch])
            for b in batch:
                b.close()
            batch.clear()

    def speak(self) -> None:
        spoke = self.spec.get("spoke", "/rooms").encode() + b"\n"
        t0 = time.monotonic()
        for s, c in zip(self.samples, self.sample_counts):
            c.answered = False
            s.send(spoke)
        got = self.command("SPEAK")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not all(c.answered for c in self.sample_counts):
            self.settle(0.05)
        unanswered = got["unanswered"] + sum(1 for c in self.sample_counts if not c.answered)
        if unanswered:
            raise RuntimeError(f"{unanswered} members got no answer to {spoke!r}")
        self.phase_s["spoke"] = time.monotonic() - t0
        self.settle(1.0)
        self.rss["spoke"] = rss_kib(self.pid)

    def traffic(self) -> dict:
        s = self.spec
        for c in self.sample_counts:
            c.count = 0
        self.command("RESET")
        ep = select.epoll()
        fd_index = {sock.fileno(): i for i, sock in enumerate(self.samples)}
        for fd in fd_index:
            ep.register(fd, select.EPOLLIN)
        lat: list[int] = []
        interval = int(1e9 / s["rate"])
        start = time.perf_counter_ns()
        end = start + int(s["duration"] * 1e9)
        due, sent, pending = start, 0, b""
        print("START", flush=True)
        cpu0, wall0 = cpu_now(), start

        def poll(timeout: float) -> None:
            ready = ep.poll(0)
            if not ready and timeout > 0:
                select.select([ep.fileno()], [], [], timeout)
                ready = ep.poll(0)
            now = time.perf_counter_ns()
            for fd, _ in ready:
                i = fd_index[fd]
                c = self.sample_counts[i]
                read_all(self.samples[i], c, lat, now)
                if c.closed:
                    ep.unregister(fd)

        def send(data: bytes) -> None:
            nonlocal pending
            data = pending + data
            try:
                n = self.sender.send(data)
            except BlockingIOError:
                n = 0
            pending = data[n:]

        while True:
            now = time.perf_counter_ns()
            if now >= end:
                break
            if due <= now:
                send(probe_line(self.proto, due))
                sent += 1
                due += interval
            elif pending:
                send(b"")
            poll(min(max(0, due - time.perf_counter_ns()), 5_000_000) / 1e9)
        # The burst: many lines in one write, then nothing; its latency
        # (to the last of its lines) is reported on its own.
        timed, lat = lat, []
        burst = s.get("burst", 100)
        ts = time.perf_counter_ns()
        send(b"".join(probe_line(self.proto, ts) for _ in range(burst)))
        sent += burst
        wait_end = time.perf_counter_ns() + int(s.get("tail_wait", 10) * 1e9)
        while time.perf_counter_ns() < wait_end:
            if pending:
                send(b"")
            if all(c.count >= sent or c.closed for c in self.sample_counts):
                break
            poll(0.005)
        done = time.perf_counter_ns()
        print("END", flush=True)
        cpu = cpu_now() - cpu0
        wall = (done - wall0) / 1e9
        burst_max = max(lat) / 1e6 if lat else None
        lat = sorted(timed)
        bulk = self.command(f"FINISH {sent} {s.get('tail_wait', 10) + 5}")
        self.settle(s.get("settle", 2.0))
        self.rss["traffic"] = rss_kib(self.pid)

        def pct(q: float) -> float | None:
            return lat[min(len(lat) - 1, int(q * len(lat)))] / 1e6 if lat else None

        sample = [c.count for c in self.sample_counts]
        members = len(self.samples) + bulk["members"]
        return {
            "sent": sent,
            "wall_s": wall,
            "deliveries": sum(sample) + bulk["deliveries"],
            "expected": sent * members,
            "dps": (sum(sample) + bulk["deliveries"]) / wall if wall else 0.0,
            "fewest": min([*sample, bulk["fewest"] if bulk["fewest"] is not None else sent]),
            "short": sum(1 for g in sample if g < sent) + bulk["short"],
            "closed": sum(1 for c in self.sample_counts if c.closed) + bulk["closed"],
            "drop_notices": sum(c.notices for c in self.sample_counts) + bulk["drop_notices"],
            "probes": len(lat),
            "p50": pct(0.50),
            "p99": pct(0.99),
            "max": lat[-1] / 1e6 if lat else None,
            "burst": burst,
            "burst_max": burst_max,
            "gen_cpu": cpu / wall if wall else None,
        }

    def run(self) -> dict:
        try:
            self.join()
            self.speak()
            result = self.traffic()
        finally:
            if getattr(self, "child", None) and self.child.poll() is None:
                try:
                    self.child.stdin.write("QUIT\n")
                    self.child.stdin.flush()
                    self.child.wait(timeout=5)
                except (OSError, subprocess.TimeoutExpired):
                    self.child.kill()
        n = self.spec["members"]
        per = {}
        base = self.rss.get("start")
        for phase in ("joined", "spoke", "traffic"):
            v = self.rss.get(phase)
            per[phase] = (v - base) * 1024 / n if v is not None and base is not None else None
        result.update({
            "members": n,
            "samples": len(self.samples),
            "rss_kib": self.rss,
            "rss_per_member": per,
            "join_s": self.phase_s.get("join"),
            "spoke_s": self.phase_s.get("spoke"),
        })
        return result


if __name__ == "__main__":
    if sys.argv[1] == "--bulk":
        spec = json.loads(sys.argv[2])
        bulk(spec, socket.socket(fileno=int(sys.argv[3])))
    else:
        print(json.dumps(Room(json.loads(sys.argv[1])).run()), flush=True)

#!/usr/bin/env python3
"""The load generator of benchmarks/chat.py: one run of one chat scenario
against one server, from one Python process, reported as one JSON line.

    taskset -c 1 python3 benchmarks/chatload.py '{"mode": "one", ...}'

chat.py runs it pinned to CPU 1 and reads its stdout: `START` when the
measured part begins, `END` when it ends (chat.py reads the server's CPU
time at both), then the figures. The spec's keys are those chat.py's
`spec_for` writes. With `engine` set (chat.py builds
benchmarks/peers/fanload.c), the closed loops (modes `one` and `each`)
and the one-sender open loop (mode `rate`) run in that C program, on the
sockets joined here: the loop below then only connects, joins and
syncs.

One process on epoll; each member is a socket it reads. Every line sent
has a 32-byte text starting with `^`, and every `probe_every`-th line is
a probe `^T<ns>;` carrying its send time (`time.perf_counter_ns`,
CLOCK_MONOTONIC; open loop: the intended send time, so a stalled server
is not excused). Lines are counted by their `^`, which no name, prefix
or notice has, so the prefix each server puts before a line (`[s0] `,
`<user5> `, `:s0!~s0@127.0.0.1 PRIVMSG #bench :`, a WebSocket frame
header) needs no parsing: a read costs a `count` and a regex over the
bytes, and the generator's time goes to the system calls (on this VM
about 6 us a `recv`, whatever the server). Reading 100 members one after
the other, the generator itself adds ~0.5-1 ms to the latency of every
line, whatever the server.

Members set TCP_QUICKACK after every read (unless the spec says not):
ncat and ngircd do not set TCP_NODELAY, and on loopback (MSS 64 KiB)
Nagle then holds each small write until the member's delayed ACK, up to
40 ms.
"""
from __future__ import annotations

import base64
import heapq
import json
import os
import re
import select
import socket
import subprocess
import sys
import time

CHANNEL = b"#bench"
TEXT_LEN = 32
PROBE = re.compile(rb"\^T(\d+);")
# A member its server closed (sockit and ngircd drop members that fall
# too far behind) no longer holds the sender's window back.
GONE = 1 << 62
# An open-loop sender whose server stopped reading it queues no more
# than this; the lines past it are counted as not sent.
PENDING_LIMIT = 64 * 1024
# The text of the lines said before stuck100 (and all100, to match): long,
# and under IRC's 512 bytes with ngircd's prefix.
FILL_LINE = 400


def text(probe_ns: int | None) -> bytes:
    """A line's text: `^` and filler, or a probe `^T<send ns>;`."""
    if probe_ns is None:
        return b"^" + b"-" * (TEXT_LEN - 1)
    t = b"^T%d;" % probe_ns
    return t + b"-" * (TEXT_LEN - len(t))


def read_until(sock: socket.socket, needle: bytes, got: bytes = b"") -> bytes:
    while needle not in got:
        data = sock.recv(65536)
        if not data:
            raise RuntimeError(f"closed while waiting for {needle!r}: {got[-200:]!r}")
        got += data
    return got


class Proto:
    """How a member joins one kind of server, and how it says a line:
    `prefix`, the text, `suffix`."""

    prefix, suffix = b"", b"\n"

    def join(self, sock: socket.socket, nick: str) -> None:
        raise NotImplementedError

    def line(self, body: bytes) -> bytes:
        return self.prefix + body + self.suffix


class SockitProto(Proto):
    def join(self, sock: socket.socket, nick: str) -> None:
        read_until(sock, b"* welcome")
        if nick:
            sock.sendall(b"/nick %s\n" % nick.encode())
            read_until(sock, b"you are now %s" % nick.encode())


class NcatProto(Proto):
    def join(self, sock: socket.socket, nick: str) -> None:
        # ncat names everyone <userN> itself and tells the newcomer who
        # is there.
        read_until(sock, b"already connected")


class IrcProto(Proto):
    prefix, suffix = b"PRIVMSG " + CHANNEL + b" :", b"\r\n"

    def join(self, sock: socket.socket, nick: str) -> None:
        n = nick.encode()
        sock.sendall(b"NICK %s\r\nUSER %s 0 * :bench\r\n" % (n, n))
        read_until(sock, b" 001 ")
        # Only an operator may set +F, ngircd's relaxed flood protection.
        sock.sendall(b"OPER bench bench\r\nMODE %s +F\r\nJOIN %s\r\n" % (n, CHANNEL))
        got = read_until(sock, b" 366 ")
        if b" 381 " not in got:
            raise RuntimeError(f"OPER refused: {got[-300:]!r}")


class WsProto(SockitProto):
    """A sockit member on the WebSocket: the upgrade, then frames."""

    def join(self, sock: socket.socket, nick: str) -> None:
        key = base64.b64encode(os.urandom(16))
        # No Origin header, as a non-browser client: allowed (web.rs).
        sock.sendall(b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                     b"Sec-WebSocket-Key: " + key + b"\r\n\r\n")
        got = read_until(sock, b"\r\n\r\n")
        if not got.startswith(b"HTTP/1.1 101"):
            raise RuntimeError(f"no upgrade: {got[:200]!r}")
        # Frames from the server are not masked: the text is there as is.
        # A frame's length byte is never `^` (94) here: lines are 37 bytes.
        read_until(sock, b"* welcome", got)


PROTOS = {"sockit": SockitProto(), "ncat": NcatProto(), "irc": IrcProto(), "ws": WsProto()}


def connect(addr: tuple[str, int], proto: Proto, nick: str, rcvbuf: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(10)
    sock.connect(addr)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    proto.join(sock, nick)
    return sock


def drain(socks: list[socket.socket]) -> None:
    """Reads what the joins left (notices, announcements) on each socket."""
    time.sleep(0.3)
    for s in socks:
        s.setblocking(False)
        try:
            while s.recv(1 << 20):
                pass
        except BlockingIOError:
            pass


def cpu_now() -> float:
    t = os.times()
    return t.user + t.system


class Load:
    """One scenario against one server, from this process.

    mode `one`: a sender of its own, closed loop (window); `rate`: a
    sender of its own at a fixed rate; `all`: every member sends at a
    fixed rate; `each`: every member sends, in turn, closed loop (the C
    loop only). Open-loop lines carry their intended send time.
    """

    def __init__(self, spec: dict):
        self.spec = spec
        self.buf = bytearray(1 << 18)
        self.mv = memoryview(self.buf)
        self.lat: list[int] = []
        self.measuring = False
        self.received = 0  # deliveries while measuring
        self.sent = 0  # lines sent while measuring
        self.skipped = 0  # lines an open-loop sender could not send
        self.quickack = spec["quickack"]
        self.filled = 0

    def setup(self) -> None:
        s = self.spec
        mproto, self.sproto = PROTOS[s["member_proto"]], PROTOS[s["sender_proto"]]
        maddr, saddr = tuple(s["member_addr"]), tuple(s["sender_addr"])
        every_sends = self.every_sends = s["mode"] in ("all", "each")
        # sockit members keep their address names unless they send; IRC
        # needs a nick.
        named = every_sends or s["member_proto"] == "irc"
        self.members = [connect(maddr, mproto, f"n{i}" if named else "") for i in range(s["members"])]
        if s["stuck"]:
            # Joins like the others, then never reads again (kept open
            # until the end of the run).
            self.stuck = connect(maddr, mproto, "stuck" if named else "", rcvbuf=4096)
        self.senders = self.members if every_sends else [connect(saddr, self.sproto, "s0")]
        drain(self.members + ([] if every_sends else self.senders))
        self.ep = select.epoll()
        self.ep_fd = [self.ep.fileno()]
        self.member_fd = {m.fileno(): i for i, m in enumerate(self.members)}
        self.sender_fd = {m.fileno(): j for j, m in enumerate(self.senders)}
        for fd in {**self.member_fd, **self.sender_fd}:
            self.ep.register(fd, select.EPOLLIN)
        self.counts = [0] * len(self.members)
        self.tails = [b""] * len(self.members)
        self.pending = [b""] * len(self.senders)
        self.dead = [False] * len(self.senders)
        self.closed = 0

    def read_member(self, i: int, now: int) -> None:
        buf, tail = self.buf, self.tails[i]
        t = len(tail)
        if t:
            buf[:t] = tail
        sock = self.members[i]
        try:
            n = sock.recv_into(self.mv[t:])
        except (BlockingIOError, InterruptedError):
            return
        except ConnectionError:
            n = 0
        if n == 0:
            self.ep.unregister(sock.fileno())
            self.counts[i] = GONE
            self.closed += 1
            if self.every_sends:
                self.dead[i] = True
            return
        if self.quickack:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        end = t + n
        got = buf.count(b"^", t, end)
        self.counts[i] += got
        if self.measuring:
            self.received += got
            self.lat.extend(now - int(ts) for ts in PROBE.findall(buf, 0, end))
        # A probe cut by the end of this read is finished by the next one
        # (its `^` is counted once, in the bytes it came in).
        last = buf.rfind(b"^", 0, end)
        self.tails[i] = bytes(buf[last:end]) if last >= 0 and buf.find(b";", last, end) < 0 else b""

    def read_sender(self, j: int) -> None:
        try:
            while True:
                if not self.senders[j].recv(1 << 20):
                    raise RuntimeError("the server closed a sender's connection")
        except (BlockingIOError, InterruptedError):
            pass

    def write(self, j: int, data: bytes) -> None:
        """Sends data on sender j, or queues what the socket does not take."""
        if self.dead[j]:
            return
        if self.pending[j]:
            self.pending[j] += data
            return
        sock = self.senders[j]
        try:
            n = sock.send(data)
        except BlockingIOError:
            n = 0
        except OSError:
            self.dead[j] = True
            return
        if n < len(data):
            self.pending[j] = data[n:]
            self.ep.modify(sock.fileno(), select.EPOLLIN | select.EPOLLOUT)

    def flush(self, j: int) -> None:
        sock = self.senders[j]
        try:
            n = sock.send(self.pending[j])
        except BlockingIOError:
            return
        except OSError:
            self.dead[j], self.pending[j] = True, b""
            return
        self.pending[j] = self.pending[j][n:]
        if not self.pending[j]:
            self.ep.modify(sock.fileno(), select.EPOLLIN)

    def events(self, timeout: float) -> None:
        """Handles what is ready, waiting at most timeout seconds for it.

        epoll_wait counts whole milliseconds, too coarse for open-loop
        sends a fraction of one apart: an idle wait is a select() on the
        epoll descriptor, to the microsecond; a busy loop never waits.
        """
        ready = self.ep.poll(0)
        if not ready and timeout > 0:
            select.select(self.ep_fd, [], [], timeout)
            ready = self.ep.poll(0)
        now = time.perf_counter_ns()
        member_fd, sender_fd = self.member_fd, self.sender_fd
        for fd, ev in ready:
            if ev & select.EPOLLOUT and not self.dead[sender_fd[fd]]:
                self.flush(sender_fd[fd])
            if ev & (select.EPOLLIN | select.EPOLLERR | select.EPOLLHUP):
                i = member_fd.get(fd)
                if i is None:
                    self.read_sender(sender_fd[fd])
                elif self.counts[i] != GONE:
                    self.read_member(i, now)

    def sync(self) -> None:
        """Until every member has heard sender 0: the room is ready."""
        deadline = time.monotonic() + 15
        others = range(1, len(self.members)) if self.every_sends else range(len(self.members))
        while any(self.counts[i] == 0 for i in others):
            if time.monotonic() > deadline:
                missing = sum(1 for i in others if self.counts[i] == 0)
                raise RuntimeError(f"{missing} members never heard the sender")
            self.write(0, self.sproto.line(text(None)))
            self.events(0.005)
        settle = time.perf_counter_ns() + 200_000_000
        while time.perf_counter_ns() < settle:
            self.events(0.01)

    def fill(self) -> None:
        """Says `fill` bytes in long lines from sender 0, closed loop, before
        the measured part, so that a stuck member's buffers are full when
        it begins. On loopback the kernel lets a server queue up to 4 MB
        (`tcp_wmem`) to a member that does not read (sockit caps it at
        64 KiB), and at the scenario's rate that would take minutes. Ends
        early when no member has heard anything new for 1.5 s: the room
        stalled."""
        others = range(1, len(self.members))
        line = self.sproto.line(b"^" + b"=" * (FILL_LINE - 1))
        lines = self.spec["fill"] // len(line)
        window = 64
        sent, base = 0, min(self.counts[i] for i in others)
        progress, last = base, time.monotonic()
        deadline = last + 30
        while sent < lines and time.monotonic() < deadline:
            floor = min(self.counts[i] for i in others)
            if floor > progress:
                progress, last = floor, time.monotonic()
            elif time.monotonic() - last > 1.5:
                break
            room = window - (sent - (floor - base))
            if room > 0 and not self.pending[0]:
                k = min(room, 16, lines - sent)
                self.write(0, line * k)
                sent += k
            self.events(0.01)
        self.filled = sent * len(line)

    def stuck_closed(self) -> bool:
        """Whether the server closed the stuck member: what it was sent
        (up to the MBs the kernel held), then EOF; or data to no end."""
        deadline = time.monotonic() + 5
        self.stuck.settimeout(0.5)
        try:
            while time.monotonic() < deadline:
                if not self.stuck.recv(1 << 20):
                    return True
        except TimeoutError:
            return False
        except ConnectionError:
            return True
        return False

    def run_in_c(self) -> dict:
        """The loop in C (benchmarks/peers/fanload.c, built by chat.py),
        on the sockets joined here; it prints START and END itself. In
        mode `each` the members are the senders (-1 for the sender's
        descriptor); in mode `rate` the sender is open loop at `rate`
        lines/s."""
        s = self.spec
        members = self.members
        lone = [] if s["mode"] == "each" else [self.senders[0]]
        for sock in [*lone, *members]:
            sock.setblocking(False)
        sender_fd = str(lone[0].fileno()) if lone else "-1"
        rate = s["rate"] if s["mode"] == "rate" else 0
        argv = [s["engine"], sender_fd, str(s["window"]), str(s["batch"]), str(rate),
                str(s["probe_every"]), str(s["warmup"]), str(s["duration"]), str(int(self.quickack)),
                self.sproto.prefix.decode(), self.sproto.suffix.decode(),
                *(str(m.fileno()) for m in members)]
        fds = [sock.fileno() for sock in [*lone, *members]]
        proc = subprocess.Popen(argv, pass_fds=fds, stdout=subprocess.PIPE, text=True)
        result = None
        for line in proc.stdout:
            if line.startswith("{"):
                result = json.loads(line)
            else:
                print(line.strip(), flush=True)
        if proc.wait() != 0 or result is None:
            raise RuntimeError(f"fanload exited with {proc.returncode}")
        result.update(filled=0, stuck_closed=None, engine="c")
        return result

    def run(self) -> dict:
        self.setup()
        self.sync()
        s = self.spec
        if s["mode"] in ("one", "each", "rate") and s.get("engine"):
            return self.run_in_c()
        if s["mode"] == "each":
            raise RuntimeError("mode `each` needs the C loop (benchmarks/peers/fanload.c)")
        if s.get("fill"):
            self.fill()
        start = time.perf_counter_ns()
        warm_end = start + int(s["warmup"] * 1e9)
        end = warm_end + int(s["duration"] * 1e9)
        every, line = s["probe_every"], self.sproto.line
        closed_loop = s["mode"] == "one"
        if closed_loop:
            window, batch, seq, in_flight_base = s["window"], s["batch"], 0, min(self.counts)
            sent_total = 0
        else:
            n = len(self.senders)
            interval = int(1e9 / s["rate"])
            heap = [(start + interval * j // n, j) for j in range(n)]
            heapq.heapify(heap)
            seqs = [0] * n
        cpu0 = wall0 = None
        while True:
            now = time.perf_counter_ns()
            if now >= end:
                break
            if not self.measuring and now >= warm_end:
                self.measuring = True
                cpu0, wall0 = cpu_now(), now
                print("START", flush=True)
            if closed_loop:
                room = window - (sent_total - (min(self.counts) - in_flight_base))
                # The window filled up to the brim, `batch` lines a write.
                while room > 0 and not self.pending[0]:
                    k = min(room, batch)
                    ts = time.perf_counter_ns()
                    out = []
                    for _ in range(k):
                        out.append(line(text(ts if seq % every == 0 else None)))
                        seq += 1
                    self.write(0, b"".join(out))
                    sent_total += k
                    room -= k
                    if self.measuring:
                        self.sent += k
                if self.dead[0]:
                    raise RuntimeError("the server closed the sender's connection")
                timeout = 0.01
            else:
                while heap[0][0] <= now:
                    due, j = heap[0]
                    heapq.heapreplace(heap, (due + interval, j))
                    if self.dead[j]:
                        continue
                    if len(self.pending[j]) > PENDING_LIMIT:
                        # The server stopped reading this sender: the line
                        # is counted as not sent, the schedule goes on.
                        if self.measuring:
                            self.skipped += 1
                        continue
                    k = seqs[j]
                    seqs[j] += 1
                    self.write(j, line(text(due if k % every == 0 else None)))
                    if self.measuring:
                        self.sent += 1
                timeout = min(max(0, heap[0][0] - time.perf_counter_ns()), 10_000_000) / 1e9
            self.events(timeout)
        now = time.perf_counter_ns()
        print("END", flush=True)
        cpu = cpu_now() - cpu0 if cpu0 is not None else 0.0
        wall = (now - wall0) / 1e9 if wall0 else 0.0
        self.lat.sort()

        def pct(q: float) -> float | None:
            return self.lat[min(len(self.lat) - 1, int(q * len(self.lat)))] / 1e6 if self.lat else None

        return {
            "wall_s": wall,
            "deliveries": self.received,
            "dps": self.received / wall if wall else 0.0,
            "sent": self.sent,
            "skipped": self.skipped,
            "probes": len(self.lat),
            "p50": pct(0.50),
            "p99": pct(0.99),
            "max": self.lat[-1] / 1e6 if self.lat else None,
            "gen_cpu": cpu / wall if wall else None,
            "closed": self.closed,
            "filled": self.filled,
            "stuck_closed": self.stuck_closed() if self.spec["stuck"] else None,
        }


if __name__ == "__main__":
    print(json.dumps(Load(json.loads(sys.argv[1])).run()), flush=True)

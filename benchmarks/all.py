#!/usr/bin/env python3
"""Every benchmark suite in one command, and `benchmarks/results.md`.

    python3 benchmarks/all.py              # every suite, full length (about an hour)
    python3 benchmarks/all.py --quick      # every suite, one short round (~15 minutes)
    python3 benchmarks/all.py --only core,chat
    python3 benchmarks/all.py --only chat --gather   # re-run one suite, keep the others' tables

Runs the suites one after another, never two at once (on two cores a
second load would be measured as the first one's noise):

    core   run.py    ping, pipelined ping, UDP, echo, idle memory vs C epoll, redis, Python, socat
    tls    tls.py    TLS ping and handshakes vs socat, ncat, nginx stream
    http   http.py   static files, HTTP/2 vs nginx, static-web-server, miniserve, http.server
    chat   chat.py   fan-out vs ncat --chat and ngircd, a stuck member, WebSocket, Redis
    room   chat.py   a 10,000-member room (scenario room10k)
    conns  conns.py  100,000 connections over worker processes, RSS per connection
    mesh   mesh.py   100 `sockit peer` nodes: convergence, broadcast, down detection

Each suite writes its own table (`benchmarks/*-results.md`, committed, the
detail); this script gathers them, in the order above, into
`benchmarks/results.md` with the time each took. Every figure in it
comes from this one run. A suite that fails or passes its time limit is
reported there as such and the rest still run. With `--gather`, the
suites not named by `--only` are not run but their last tables are
gathered too, each under its own date, and the summary says which ran.

Each suite is bounded by its own limit (`--limit-scale` stretches them
all); every load inside them is bounded in time and count as well.
Needs what the suites need (each installs nothing: see their --help);
suites whose script is missing are skipped.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclass
class Suite:
    key: str
    script: str
    out: str  # the suite's own results file, in benchmarks/
    full: list[str] = field(default_factory=list)
    quick: list[str] = field(default_factory=lambda: ["--quick"])
    limit_s: int = 1200  # full run; quick runs get a third


SUITES = [
    Suite("core", "run.py", "core-results.md", limit_s=1200),
    Suite("tls", "tls.py", "tls-results.md", limit_s=900),
    Suite("http", "http.py", "http-results.md", limit_s=1200),
    Suite("chat", "chat.py", "chat-results.md",
          full=["--only", "fan100,fan500,busy100,fan100-rate,fan500-rate,all100,stuck100,ws100,redis100"],
          quick=["--quick", "--only", "fan100,fan500,busy100,fan100-rate,fan500-rate,all100,stuck100,ws100,redis100"],
          limit_s=1500),
    Suite("room", "chat.py", "room-results.md",
          full=["--only", "room10k", "--rounds", "3"], quick=["--only", "room10k", "--rounds", "1"],
          limit_s=900),
    Suite("conns", "conns.py", "conns-results.md",
          # 100,000 takes about a minute here: the quick run holds them too.
          full=["--conns", "100000", "--workers", "8"], quick=["--conns", "100000", "--workers", "8"],
          limit_s=900),
    Suite("mesh", "mesh.py", "mesh-results.md", limit_s=900),
]


def run_suite(suite: Suite, quick: bool, scale: float) -> tuple[str, float]:
    """Runs one suite; its outcome in a word or two, and the seconds taken."""
    script = HERE / suite.script
    if not script.exists():
        return "skipped (no script)", 0.0
    args = suite.quick if quick else suite.full
    limit = suite.limit_s * scale / (3 if quick else 1)
    argv = [sys.executable, str(script), *args, "--out", str(HERE / suite.out)]
    print(f"== {suite.key}: {' '.join(argv[1:])} (limit {limit:.0f} s)", file=sys.stderr, flush=True)
    start = time.monotonic()
    try:
        done = subprocess.run(argv, timeout=limit, stdout=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return f"stopped at its {limit:.0f} s limit", time.monotonic() - start
    took = time.monotonic() - start
    if done.returncode != 0:
        return f"failed (exit {done.returncode})", took
    return "ok", took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="one short round of each suite")
    ap.add_argument("--only", help="comma-separated suites: " + ", ".join(s.key for s in SUITES))
    ap.add_argument("--limit-scale", type=float, default=1.0, help="stretch every suite's time limit")
    ap.add_argument("--gather", action="store_true",
                    help="with --only: also gather the other suites' last tables, without running them")
    ap.add_argument("--out", default=str(HERE / "results.md"))
    args = ap.parse_args()
    wanted = set(args.only.split(",")) if args.only else None
    unknown = (wanted or set()) - {s.key for s in SUITES}
    if unknown:
        ap.error(f"unknown suite(s): {', '.join(sorted(unknown))}")
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    outcomes = []
    for suite in SUITES:
        if wanted and suite.key not in wanted:
            if args.gather and (HERE / suite.out).exists():
                outcomes.append((suite, "not run: its last table", 0.0))
            continue
        outcome, took = run_suite(suite, args.quick, args.limit_scale)
        outcomes.append((suite, outcome, took))
    lines = [
        "# sockit benchmarks: every suite, one run",
        "",
        f"Started {started}, {'quick' if args.quick else 'full'} run of `benchmarks/all.py`"
        f"{' (some suites only, the others gathered from their last runs)' if args.gather else ''}; "
        "each suite ran alone, one after another. Every ratio below is sockit over a peer "
        "measured in the same suite run; each suite's own header gives its date and its method "
        "(servers pinned to one core and the load generator to the other, interleaved rounds, medians).",
        "",
        "| suite | script | outcome | minutes |",
        "| --- | --- | --- | --- |",
    ]
    for suite, outcome, took in outcomes:
        lines.append(f"| {suite.key} | `{suite.script}` | {outcome} | {took / 60:.1f} |")
    for suite, outcome, _ in outcomes:
        lines += ["", f"## {suite.key} ({suite.script})", ""]
        result = HERE / suite.out
        if outcome in ("ok", "not run: its last table") and result.exists():
            text = result.read_text().strip()
            # The suites' own headings go one level down under the suite's.
            lines += [("#" + l if l.startswith("#") else l) for l in text.splitlines()]
        else:
            lines.append(f"No figures: {outcome}.")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Start-up: tcpwdist's time to "Tracing" beside bare bpftrace's own
time to attach the same program, per bpftrace version.

    bench/bench_startup.py [--runs N] [BPFTRACE ...]

Bare: ``bpftrace -e PROGRAM`` (the program auto chose, as --program
prints it, without the header comment), timed from spawn to its attach
notice (the ``__BPFTRACE_NOTIFY_PROBES_ATTACHED`` hook, 0.14+, on stdout or
stderr).  tcpwdist: spawn to its "Tracing ... Hit Ctrl-C" line, which it
prints once bpftrace has attached: what it adds is the Python start, the
host's facts (``bpftrace --version``, and ``--info`` where it decides),
and reading the notice.  Both are stopped with SIGINT.  Medians of N runs,
alternating; one JSON line per bpftrace.  Needs root.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def until(proc: subprocess.Popen, word: bytes, timeout: float = 120) -> float:
    """Seconds until ``word`` appears on the process's stdout or stderr."""
    t0 = time.monotonic()
    sel = selectors.DefaultSelector()
    for stream in (proc.stdout, proc.stderr):
        os.set_blocking(stream.fileno(), False)
        sel.register(stream, selectors.EVENT_READ)
    seen = b""
    while time.monotonic() - t0 < timeout:
        for key, _ in sel.select(0.5):
            chunk = key.fileobj.read(65536) or b""
            seen += chunk
            if word in seen:
                return time.monotonic() - t0
        if proc.poll() is not None:
            raise SystemExit(f"ended before {word!r}: {seen[-500:]!r}")
    raise SystemExit(f"no {word!r} within {timeout} s")


def timed(argv: list[str], word: bytes, env: dict[str, str]) -> float:
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            cwd=ROOT)
    until(proc, word)
    elapsed = time.monotonic() - t0
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    return elapsed


def program_for(bpftrace: str) -> str:
    done = subprocess.run([sys.executable, "-m", "tcpwdist", "--bpftrace", bpftrace,
                           "--program"], cwd=ROOT, capture_output=True, text=True, check=True)
    return done.stdout.split("*/\n\n", 1)[1]  # without the header comment, as run live


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("bpftraces", nargs="*", default=["bpftrace"])
    args = ap.parse_args()
    for bpftrace in args.bpftraces:
        version = subprocess.run([bpftrace, "--version"], capture_output=True,
                                 text=True).stdout.strip()
        program = program_for(bpftrace)
        env = dict(os.environ, __BPFTRACE_NOTIFY_PROBES_ATTACHED="1", BPFTRACE_COLOR="never")
        bare, tool = [], []
        for _ in range(args.runs):
            bare.append(timed([bpftrace, "-e", program], b"__BPFTRACE_NOTIFY_PROBES_ATTACHED",
                              env))
            tool.append(timed([sys.executable, "-m", "tcpwdist", "--bpftrace", bpftrace,
                               "-o", "json"], b"Hit Ctrl-C", dict(os.environ)))
        print(json.dumps({
            "bpftrace": version, "probe": program.split(":", 1)[0],
            "bare_attach_s": {"median": round(statistics.median(bare), 3),
                              "min": round(min(bare), 3), "max": round(max(bare), 3)},
            "tcpwdist_tracing_s": {"median": round(statistics.median(tool), 3),
                                   "min": round(min(tool), 3), "max": round(max(tool), 3)},
            "added_s": round(statistics.median(tool) - statistics.median(bare), 3)}),
            flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

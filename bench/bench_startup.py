#!/usr/bin/env python3
"""Start-up: tcpwdist's time to "Tracing" beside bare bpftrace's own
time to attach, per bpftrace version.

    bench/bench_startup.py [--runs N] [--tcpwdist CMD] [BPFTRACE ...]

Bare: ``bpftrace -e PROGRAM`` (the canonical program auto chose, as
--program prints it without the header comment, and bpftrace's default
map size), timed from spawn to its attach notice (the
``__BPFTRACE_NOTIFY_PROBES_ATTACHED`` hook, 0.14+, on stdout or stderr).
tcpwdist: spawn to its "Tracing" line, which it prints once bpftrace has
attached; twice: with ``--max-keys 4096`` (bpftrace's own default, so the
same map as bare) and with its default 65536, whose bigger map bpftrace
allocates as it starts (beside bare bpftrace given that map size too).
What tcpwdist adds is the Python start, the host's facts (``bpftrace
--version``, and ``--info`` where it decides) and its program's two more
probes (the once-a-second snapshot, END).  All
are stopped with SIGINT.  Medians of N runs, alternating; one JSON line
per bpftrace.  ``--tcpwdist``: the command to time (an installed
tcpwdist, as users run it; default: this tree's, ``python -m
tcpwdist``).  Needs root.
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
    ap.add_argument("--tcpwdist", help="the tcpwdist command to time (default: this tree's)")
    ap.add_argument("bpftraces", nargs="*", default=["bpftrace"])
    args = ap.parse_args()
    for bpftrace in args.bpftraces:
        version = subprocess.run([bpftrace, "--version"], capture_output=True,
                                 text=True).stdout.strip()
        program = program_for(bpftrace)
        env = dict(os.environ, __BPFTRACE_NOTIFY_PROBES_ATTACHED="1", BPFTRACE_COLOR="never")
        tool_cmd = (args.tcpwdist.split() if args.tcpwdist
                    else [sys.executable, "-m", "tcpwdist"])
        # bpftrace's map size: the old name up to 0.19, the new from 0.20
        # (0.20-0.23 read both), as tcpwdist sets it.
        big = dict(env, BPFTRACE_MAP_KEYS_MAX="65536", BPFTRACE_MAX_MAP_KEYS="65536")
        runs: dict[str, list[float]] = {"bare_attach_s": [], "tcpwdist_tracing_s": [],
                                        "bare_65536_keys_s": [],
                                        "tcpwdist_default_max_keys_s": []}
        for _ in range(args.runs):
            for key, bare_env in (("bare_attach_s", env), ("bare_65536_keys_s", big)):
                runs[key].append(timed([bpftrace, "-e", program],
                                       b"__BPFTRACE_NOTIFY_PROBES_ATTACHED", bare_env))
            for key, extra in (("tcpwdist_tracing_s", ["--max-keys", "4096"]),
                               ("tcpwdist_default_max_keys_s", [])):
                runs[key].append(timed(tool_cmd + ["--bpftrace", bpftrace, "-o", "json"] + extra,
                                       b"Tracing", dict(os.environ)))
        out: dict[str, object] = {"bpftrace": version, "probe": program.split(":", 1)[0],
                                  "tcpwdist": " ".join(tool_cmd)}
        for key, times in runs.items():
            out[key] = {"median": round(statistics.median(times), 3),
                        "min": round(min(times), 3), "max": round(max(times), 3)}
        bare = statistics.median(runs["bare_attach_s"])
        out["added_s"] = round(statistics.median(runs["tcpwdist_tracing_s"]) - bare, 3)
        out["added_default_max_keys_s"] = round(
            statistics.median(runs["tcpwdist_default_max_keys_s"])
            - statistics.median(runs["bare_65536_keys_s"]), 3)
        print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

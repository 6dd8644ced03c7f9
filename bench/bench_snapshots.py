#!/usr/bin/env python3
"""What the cumulative map dumps cost tcpwdist, by map size.

    bench/bench_snapshots.py [--seconds S] [--entries 1000,10000,60000]

The program prints its whole map once a second (snapshots: the progress
line, and what was seen if bpftrace dies) or once an interval (interval
reports, each the difference of two dumps).  tcpwdist's share of that is
reading the dump and, per interval, parsing it.  This runs tcpwdist
against tests/fake/bpftrace printing a real-format dump of N (pid, comm,
bucket) entries (bench/gendump.py) once a second, and reads tcpwdist's
own CPU time (utime + stime of its process, bpftrace's not included):

* snapshots: ``tcpwdist -o json -d S`` with stderr a terminal, so the
  progress line is on (the issue's target: under 5% of one core at 60,000);
* intervals: ``tcpwdist -o json 1 -d S``: CPU per interval.

bpftrace's own cost of printing such a map is not here: that needs a real
map of that size (see BENCHMARKS.md).  No root needed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import pexpect

ROOT = Path(__file__).resolve().parent.parent
FAKE = ROOT / "tests" / "fake" / "bpftrace"
sys.path.insert(0, str(ROOT / "bench"))
import gendump  # noqa: E402

AS_ROOT = ("import sys; from tcpwdist import cli, live; live.is_root = lambda: True; "
           "sys.exit(cli.main())")
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def run(entries: int, seconds: float, interval: bool, dump_file: str) -> dict:
    args = ["-c", AS_ROOT, "--bpftrace", str(FAKE), "-o", "json", "-d", str(seconds)]
    if interval:
        args += ["1"]
    env = dict(os.environ, FAKE_MODE="ok", FAKE_SNAPSHOT_DUMP=dump_file, FAKE_PERIOD="1")
    child = pexpect.spawn(sys.executable, args, cwd=str(ROOT), env=env, timeout=seconds + 60,
                          dimensions=(24, 200), maxread=1 << 20)
    child.expect("Tracing TCP writes")  # -d: "... for S s..."
    start_cpu, t0 = cpu_seconds(child.pid), time.monotonic()
    last = start_cpu
    while child.isalive() and time.monotonic() - t0 < seconds - 0.2:
        try:
            child.read_nonblocking(1 << 20, timeout=0.2)
        except pexpect.TIMEOUT:
            pass
        except pexpect.EOF:
            break
        try:
            last = cpu_seconds(child.pid)  # read before it exits: the final dump not counted
        except OSError:
            break
    wall = time.monotonic() - t0
    child.expect(pexpect.EOF)
    child.close()
    used = last - start_cpu
    out = {"entries": entries, "mode": "intervals" if interval else "snapshots",
           "wall_s": round(wall, 2), "cpu_s": round(used, 3),
           "cpu_share": round(used / wall, 4)}
    if interval:
        out["cpu_per_interval_s"] = round(used / max(1, int(wall)), 3)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--entries", default="1000,10000,60000")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(x) for x in args.entries.split(",")):
            path = Path(tmp) / f"dump-{n}.txt"
            text = gendump.render(n)
            path.write_text(text[text.index("\n\n\n") + 3:])  # the map, as print(@) gives it
            for interval in (False, True):
                print(json.dumps(run(n, args.seconds, interval, str(path))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

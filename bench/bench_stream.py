#!/usr/bin/env python3
"""Streaming benchmark: `tcpwdist -r -` reading a long capture from a pipe.

    python3 bench/bench_stream.py [--keys 200] [--mb 2048] [--quick]

The capture is what `tcpwdist -w` writes in a long run: once-a-second
dumps of the cumulative map (KEYS processes), each closed by tcpwdist's
snapshot mark, then the final dump (bench/gendump.py --capture, generated
as it is read: it is never on disk).  Prints the input's size, the
reader's peak RSS (from wait4) and wall time, its throughput, and whether
the report was exact.  --quick is the CI mode: 2 MB, no conclusions drawn.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import gendump  # noqa: E402


def snapshot_bytes(keys: int) -> int:
    return len(next(p for i, p in enumerate(gendump.capture(keys, 2)) if i == 1).encode())


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keys", type=int, default=200)
    ap.add_argument("--mb", type=float, default=2048)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.mb = 2
    snapshots = max(1, int(args.mb * (1 << 20) / snapshot_bytes(args.keys)))
    gen = subprocess.Popen([sys.executable, str(HERE / "gendump.py"), "--capture",
                            str(args.keys), str(snapshots)], stdout=subprocess.PIPE)
    with tempfile.TemporaryFile() as out:
        t0 = time.perf_counter()
        reader = subprocess.Popen([sys.executable, "-m", "tcpwdist", "-r", "-", "-o", "json"],
                                  cwd=HERE.parent, stdin=gen.stdout, stdout=out)
        assert gen.stdout is not None
        gen.stdout.close()
        _, status, usage = os.wait4(reader.pid, 0)
        reader.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        gen.wait()
        out.seek(0)
        doc = json.loads(out.read())
    lows = gendump.CAPTURE_LOWS
    got = {p["pid"]: [next((b["count"] for b in p["buckets"] if b["value"] == lo), 0)
                      for lo in lows] for p in doc["processes"]}
    exact = got == {pid: gendump.final_counts(pid, snapshots)
                    for pid in range(1000, 1000 + args.keys)}
    size = snapshot_bytes(args.keys) * snapshots
    print(f"keys: {args.keys}  snapshots: {snapshots}  input: {size / (1 << 20):.0f} MiB")
    print(f"tcpwdist -r -: exit {reader.returncode}, peak RSS {usage.ru_maxrss / 1024:.1f} MiB, "
          f"{wall:.1f} s, {size / (1 << 20) / wall:.1f} MiB/s")
    print(f"report exact: {exact}")
    return 0 if exact and reader.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

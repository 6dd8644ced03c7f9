#!/usr/bin/env python3
"""Parser benchmark: `tcpwdist -r FILE -o json` on a large text dump, against
a plain regular-expression parser of the same file (bench/regex_baseline.py).

    python3 bench/bench_parse.py [--rows 100000] [--runs 7] [--quick]

Runs the two alternately (so load on the machine hits both alike), checks
that they report the same processes and buckets, and prints the median,
min and max wall time of each and the ratio of the medians.  --quick is
the CI mode: 2,000 rows, 2 runs, no conclusions drawn.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import gendump  # noqa: E402


def timed(cmd: list[str]) -> tuple[float, bytes]:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, check=True)
    return time.perf_counter() - t0, done.stdout


def same(a: bytes, b: bytes) -> bool:
    def key(doc: bytes) -> list:
        return [(p["pid"], p["writes"], p["buckets"]) for p in json.loads(doc)["processes"]]

    return key(a) == key(b)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.rows, args.runs = 2_000, 2
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "dump.txt"
        path.write_text(gendump.render(args.rows))
        ours = [sys.executable, "-m", "tcpwdist", "-r", str(path), "-o", "json"]
        base = [sys.executable, str(HERE / "regex_baseline.py"), str(path)]
        t_ours, t_base = [], []
        for _ in range(args.runs):
            t, out_ours = timed(ours)
            t_ours.append(t)
            t, out_base = timed(base)
            t_base.append(t)
        if not same(out_ours, out_base):
            print("MISMATCH: tcpwdist and the baseline disagree", file=sys.stderr)
            return 1
    m_ours, m_base = statistics.median(t_ours), statistics.median(t_base)
    print(f"rows: {args.rows}  runs: {args.runs}")
    print(f"tcpwdist -r -o json: median {m_ours:.3f} s  (min {min(t_ours):.3f}, "
          f"max {max(t_ours):.3f})")
    print(f"regex baseline:      median {m_base:.3f} s  (min {min(t_base):.3f}, "
          f"max {max(t_base):.3f})")
    print(f"ratio: {m_ours / m_base:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

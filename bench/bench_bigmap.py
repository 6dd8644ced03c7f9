#!/usr/bin/env python3
"""What a big map costs bpftrace and tcpwdist, live: the once-a-second
print(@) of the cumulative map (snapshots, and interval reports).

    sudo bench/bench_bigmap.py [--entries 1000,10000,60000] [--seconds 10]
                               [--bpftrace PATH]

For each size, tcpwdist -o json runs (no terminal, as under nohup: the
snapshots are printed anyway, for the partial report) with the real
bpftrace; forked writers, one after another, each with its own comm,
make one send(2) of each size 1, 2, 4, ... 65536 bytes (17 buckets), so
the map holds N (pid, comm, bucket) entries.  Then, with no more writes,
it reads the CPU time (utime + stime) that bpftrace and tcpwdist spend
for ``--seconds``: what printing and reading the whole map once a second
costs.  The same again with 1 s interval reports (``tcpwdist -o json 1``:
each dump parsed and subtracted).  One JSON line per cell.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TICK = os.sysconf("SC_CLK_TCK")
SIZES = [1 << k for k in range(17)]


def cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return out


def writer(i: int) -> None:
    """In a forked child: name itself, write each size once, exit."""
    ctypes.CDLL(None).prctl(15, f"bm-{i}".encode(), 0, 0, 0)
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    out = socket.create_connection(lsock.getsockname())
    peer, _ = lsock.accept()
    drain = threading.Thread(target=lambda: [None for _ in iter(lambda: peer.recv(1 << 20), b"")])
    drain.start()
    for size in SIZES:
        out.sendall(b"x" * size)
    out.close()
    drain.join()


def fill(processes: int) -> None:
    for i in range(processes):
        pid = os.fork()
        if pid == 0:
            try:
                writer(i)
            finally:
                os._exit(0)
        os.waitpid(pid, 0)


def run(bpftrace: str, entries: int, seconds: float, interval: bool) -> dict:
    processes = -(-entries // len(SIZES))
    argv = [sys.executable, "-m", "tcpwdist", "--bpftrace", bpftrace, "-o", "json",
            "--max-keys", str(max(65536, 2 * entries))] + (["1"] if interval else [])
    # The reports go to a file, read at the end: a pipe nobody reads would
    # fill with interval reports and stop tcpwdist, then bpftrace.
    sink = tempfile.TemporaryFile()
    tw = subprocess.Popen(argv, cwd=ROOT, stdout=sink, stderr=subprocess.PIPE)
    assert tw.stderr is not None
    while b"Hit Ctrl-C" not in (line := tw.stderr.readline()):
        assert line, "tcpwdist ended before tracing"
    [bt] = children(tw.pid)
    t0 = time.monotonic()
    fill(processes)
    filled = time.monotonic() - t0
    time.sleep(1.5)  # the first full dump after the writes
    bt0, tw0, w0 = cpu(bt), cpu(tw.pid), time.monotonic()
    time.sleep(seconds)
    bt1, tw1, w1 = cpu(bt), cpu(tw.pid), time.monotonic()
    tw.send_signal(2)
    _, err = tw.communicate(timeout=300)
    sink.seek(0)
    out = sink.read()
    if tw.returncode != 0:
        sys.stderr.write(err.decode())
    # The map really held that many entries: count them in the report.
    seen = {(p["pid"], b["value"]) for line in out.splitlines() if line.strip()
            for p in json.loads(line)["processes"] if p["comm"].startswith("bm-")
            for b in p["buckets"] if b["count"]}
    wall = w1 - w0
    return {"entries": len(seen), "mode": "intervals" if interval else "snapshots",
            "fill_s": round(filled, 1), "wall_s": round(wall, 2),
            "bpftrace_cpu_share": round((bt1 - bt0) / wall, 4),
            "tcpwdist_cpu_share": round((tw1 - tw0) / wall, 4),
            "bpftrace_cpu_per_s": round((bt1 - bt0) / wall, 3),
            "tcpwdist_cpu_per_s": round((tw1 - tw0) / wall, 3)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--entries", default="1000,10000,60000")
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--bpftrace", default="bpftrace")
    ap.add_argument("--modes", default="snapshots,intervals")
    args = ap.parse_args()
    for n in (int(x) for x in args.entries.split(",")):
        for interval in [m == "intervals" for m in args.modes.split(",")]:
            print(json.dumps(run(args.bpftrace, n, args.seconds, interval)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

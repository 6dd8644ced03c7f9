#!/usr/bin/env python3
"""A TCP workload with known write sizes, for live tests and benchmarks.

    workload.py --comm NAME --writes 1000x23,1x7 [--procs N] [--ready FILE]

Each of N processes renames itself (prctl PR_SET_NAME, so bpftrace's comm
is NAME), connects to a loopback sink and makes each listed write with
one blocking send(2), checking that the kernel took it whole.  It prints
one JSON line per process: pid, comm, and the sizes sent.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import socket
import sys
import threading

PR_SET_NAME = 15


def set_comm(name: bytes) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NAME, ctypes.c_char_p(name), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NAME)")


def sink() -> tuple[str, int]:
    """A loopback server that reads and discards everything, in a thread."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(512)

    def serve(conn: socket.socket) -> None:
        with conn:
            while conn.recv(1 << 20):
                pass

    def accept() -> None:
        while True:
            conn, _ = srv.accept()
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return srv.getsockname()


def parse_writes(text: str) -> list[tuple[int, int]]:
    out = []
    for part in text.split(","):
        size, _, times = part.partition("x")
        out.append((int(size), int(times or 1)))
    return out


def write_all(addr: tuple[str, int], writes: list[tuple[int, int]]) -> None:
    with socket.create_connection(addr) as s:
        for size, times in writes:
            payload = b"w" * size
            for _ in range(times):
                sent = s.send(payload)
                if sent != size:
                    raise SystemExit(f"short send: {sent} of {size}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--comm", required=True)
    ap.add_argument("--writes", required=True)
    ap.add_argument("--procs", type=int, default=1)
    args = ap.parse_args()
    writes = parse_writes(args.writes)
    addr = sink()
    children = []
    for _ in range(args.procs):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            set_comm(args.comm.encode())
            write_all(addr, writes)
            os.write(w, b"x")
            os._exit(0)
        os.close(w)
        children.append((pid, r))
    for pid, r in children:
        done = os.read(r, 1) == b"x"
        _, status = os.waitpid(pid, 0)
        if not done or status != 0:
            return 1
        print(json.dumps({"pid": pid, "comm": args.comm, "writes": writes}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

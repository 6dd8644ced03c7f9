#!/usr/bin/env python3
"""A TCP workload with known write sizes, for live tests and benchmarks.

    workload.py --comm NAME --writes 1000x23,1x7 [--procs N] [--go FILE]
                [--ipv6] [--cgroup DIR]
    workload.py --comm NAME --nonblock 65536x40 [--go FILE]
    workload.py --comm NAME --writes 1048576x1 --sendfile
    workload.py --comm NAME --writes "100x3/6:2000x2/10x1"

Each of N processes renames itself (prctl PR_SET_NAME, so bpftrace's comm
is NAME), connects to a loopback sink and makes each listed write with
one blocking send(2), checking that the kernel took it whole.  It prints
one JSON line per process as soon as it is ready (pid, comm, sink port),
and with --go waits for FILE to exist before writing, so a test can
start tracing first.  --cgroup moves the writers into that cgroup v2.
--sendfile makes each write one sendfile(2) of a file of that size,
checking that the kernel sent it whole.  Writes split by "/" go to
connections of their own, in order (one prefixed "6:" to an IPv6 sink);
the ready line lists each connection's ends (laddr, lport, raddr, rport).

--nonblock: one process sends each listed size on a non-blocking socket
to a sink that reads nothing until the sends are done, so the kernel
takes some sends whole, some in part and refuses the rest (EAGAIN).  It
prints, after its ready line, one JSON line with every send's size asked
and result (bytes taken, or -11 for EAGAIN): the truth about what was
asked and what was accepted.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import socket
import sys
import tempfile
import threading
import time

PR_SET_NAME = 15


def set_comm(name: bytes) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NAME, ctypes.c_char_p(name), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NAME)")


def sink(ipv6: bool = False, hold: threading.Event | None = None) -> tuple:
    """A loopback server that reads and discards everything, in a thread
    (once ``hold`` is set, if given)."""
    srv = socket.socket(socket.AF_INET6 if ipv6 else socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("::1" if ipv6 else "127.0.0.1", 0))
    srv.listen(512)

    def serve(conn: socket.socket) -> None:
        if hold is not None:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            hold.wait()
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


def parse_connections(text: str) -> list[tuple[bool, list[tuple[int, int]]]]:
    """"100x3/6:2000x2" -> [(False, [(100, 3)]), (True, [(2000, 2)])]: (IPv6?, writes)."""
    return [(part.startswith("6:"), parse_writes(part.removeprefix("6:")))
            for part in text.split("/")]


def ends(s: socket.socket) -> dict:
    local, remote = s.getsockname(), s.getpeername()
    return {"laddr": local[0], "lport": local[1], "raddr": remote[0], "rport": remote[1]}


def write_all(s: socket.socket, writes: list[tuple[int, int]], sendfile: bool = False) -> None:
    with s:
        for size, times in writes:
            payload = b"w" * size
            if sendfile:
                with tempfile.TemporaryFile() as f:
                    f.write(payload)
                    f.flush()
                    for _ in range(times):
                        sent = os.sendfile(s.fileno(), f.fileno(), 0, size)
                        if sent != size:
                            raise SystemExit(f"short sendfile: {sent} of {size}")
                continue
            for _ in range(times):
                sent = s.send(payload)
                if sent != size:
                    raise SystemExit(f"short send: {sent} of {size}")


def nonblocking(args: argparse.Namespace) -> int:
    """Sends on a non-blocking socket into a sink that does not read yet."""
    hold = threading.Event()
    addr = sink(args.ipv6, hold)
    s = socket.socket(socket.AF_INET6 if args.ipv6 else socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
    s.connect(addr[:2])
    s.setblocking(False)
    set_comm(args.comm.encode())
    print(json.dumps({"pid": os.getpid(), "comm": args.comm, "port": addr[1]}), flush=True)
    if args.go:
        while not os.path.exists(args.go):
            time.sleep(0.01)
    tally = []
    for size, times in parse_writes(args.nonblock):
        payload = b"w" * size
        for _ in range(times):
            try:
                tally.append([size, s.send(payload)])
            except BlockingIOError as exc:
                tally.append([size, -exc.errno])
    hold.set()
    print(json.dumps({"sends": tally}), flush=True)
    s.close()
    return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--comm", required=True)
    ap.add_argument("--writes")
    ap.add_argument("--procs", type=int, default=1)
    ap.add_argument("--go", help="wait for this file to exist before writing")
    ap.add_argument("--ipv6", action="store_true")
    ap.add_argument("--cgroup", help="a cgroup v2 directory to move the writers into")
    ap.add_argument("--linger", type=float, default=0.0, help="seconds to live after writing")
    ap.add_argument("--nonblock", help="sizes to send on a non-blocking socket (see above)")
    ap.add_argument("--sendfile", action="store_true", help="each write is one sendfile(2)")
    args = ap.parse_args()
    if args.nonblock:
        return nonblocking(args)
    groups = parse_connections(args.writes)
    addr = sink(args.ipv6)
    addr6 = sink(True) if any(six for six, _ in groups) else None
    # Writers block on this pipe; the parent closes it on --go, releasing
    # them all at once (300 processes polling a file would eat the CPU).
    go_r, go_w = os.pipe()
    children = []
    for _ in range(args.procs):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            os.close(go_w)
            try:
                if args.cgroup:
                    with open(os.path.join(args.cgroup, "cgroup.procs"), "w") as f:
                        f.write(str(os.getpid()))
                set_comm(args.comm.encode())
                socks = [socket.create_connection((addr6 if six else addr)[:2])
                         for six, _ in groups]
                # One write(2) of less than PIPE_BUF: lines from 300 writers never mix.
                os.write(1, json.dumps({"pid": os.getpid(), "comm": args.comm,
                                        "port": addr[1], "writes": groups[0][1],
                                        "connections": [ends(s) for s in socks]}).encode()
                         + b"\n")
                os.read(go_r, 1)  # returns at EOF: the parent said go
                for s, (_, writes) in zip(socks, groups):
                    write_all(s, writes, args.sendfile)
                os.write(w, b"x")
                time.sleep(args.linger)
            finally:
                os._exit(0)
        os.close(w)
        children.append((pid, r))
    if args.go:
        deadline = time.monotonic() + 120
        while not os.path.exists(args.go) and time.monotonic() < deadline:
            time.sleep(0.01)
    os.close(go_w)
    ok = True
    for pid, r in children:
        ok = os.read(r, 1) == b"x" and ok
        _, status = os.waitpid(pid, 0)
        ok = ok and status == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Hold a process at its exit, as a process stuck in the kernel is held.

    holdexit.py PID [SECONDS]

Seizes PID with ptrace (PTRACE_O_TRACEEXIT), writes "held" on stdout,
and passes every signal on; when PID exits (even by SIGKILL) it stops
before its files are closed or its parent hears of it, and stays there
until this process gets SIGTERM or SECONDS (30) pass.  To its parent it
has not exited, its pty is still open: what a bpftrace stuck in the
kernel looks like to tcpwdist.  Needs the right to ptrace PID (root, or
an ancestor of it under Yama's scope 1).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time

PTRACE_CONT, PTRACE_DETACH, PTRACE_SEIZE = 7, 17, 0x4206
PTRACE_O_TRACEEXIT, PTRACE_EVENT_EXIT = 0x40, 6
WALL = 0x40000000  # wait for a tracee that is not our child


def main() -> int:
    pid = int(sys.argv[1])
    hold = float(sys.argv[2]) if len(sys.argv) > 2 else 30.0
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    released: list[int] = []
    signal.signal(signal.SIGTERM, lambda *_: released.append(1))
    if libc.ptrace(PTRACE_SEIZE, pid, None, ctypes.c_void_p(PTRACE_O_TRACEEXIT)) != 0:
        print(f"cannot seize {pid}: {os.strerror(ctypes.get_errno())}", file=sys.stderr)
        return 1
    print("held", flush=True)
    while True:
        _, status = os.waitpid(pid, WALL)
        if not os.WIFSTOPPED(status):
            return 0
        if status >> 16 == PTRACE_EVENT_EXIT:
            end = time.monotonic() + hold
            while not released and time.monotonic() < end:
                time.sleep(0.05)
            libc.ptrace(PTRACE_DETACH, pid, None, None)
            return 0
        sig = os.WSTOPSIG(status)
        libc.ptrace(PTRACE_CONT, pid, None, ctypes.c_void_p(0 if sig == signal.SIGTRAP else sig))


if __name__ == "__main__":
    sys.exit(main())

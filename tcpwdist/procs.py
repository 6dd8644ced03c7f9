"""Command lines of the processes seen while tracing (reads /proc).

tcpwdist.d's CMD is the command with its arguments; bpftrace's key has
only the 15-byte comm.  Reading /proc/PID/cmdline costs nothing per TCP
write: the recorder reads every process's command line once when tracing
starts, then, four times a second, lists /proc and reads only the pids it
has not seen, so a process that writes and exits mid-trace is still
named.  A new pid is read again on the next scan, which catches the
command line a shell or wrapper exec()ed into.  At the end the pids in
the report are read once more if still alive.  A pid it never saw alive
(it lived less than a scan) keeps its comm.
"""

from __future__ import annotations

import os
import time


def read_cmdline(pid: int, proc: str = "/proc") -> bytes | None:
    """The command line as one string of arguments joined by spaces, or
    None if the process is gone or is a kernel thread (empty cmdline)."""
    try:
        with open(f"{proc}/{pid}/cmdline", "rb") as f:
            raw = f.read(4096)
    except OSError:
        return None
    args = raw.rstrip(b"\0").split(b"\0")
    return b" ".join(args) if raw.strip(b"\0") else None


class CmdlineRecorder:
    def __init__(self, proc: str = "/proc", every: float = 0.25) -> None:
        self.proc = proc
        self.every = every
        self.cmdlines: dict[int, bytes | None] = {}
        self._fresh: list[int] = []  # first seen on the last scan
        self._next = 0.0

    def _pids(self) -> list[int]:
        try:
            return [int(n) for n in os.listdir(self.proc) if n.isdigit()]
        except OSError:
            return []

    def scan(self) -> None:
        """Read the command line of every pid not seen before, and again
        of those first seen last time (they may have exec()ed since)."""
        for pid in self._fresh:
            self.cmdlines[pid] = read_cmdline(pid, self.proc) or self.cmdlines[pid]
        self._fresh = []
        for pid in self._pids():
            if pid not in self.cmdlines:
                self.cmdlines[pid] = read_cmdline(pid, self.proc)
                self._fresh.append(pid)

    def tick(self) -> None:
        """Called often while tracing; scans at most once per ``every`` s."""
        now = time.monotonic()
        if now >= self._next:
            self._next = now + self.every
            self.scan()

    def finish(self, pids: list[int]) -> dict[int, bytes]:
        """Command lines for ``pids``: read now if alive, else as recorded."""
        out = {}
        for pid in pids:
            cmd = read_cmdline(pid, self.proc) or self.cmdlines.get(pid)
            if cmd:
                out[pid] = cmd
        return out

"""The test run's own processes, and nobody else's.

A shared host runs other people's bpftrace.  The suite may signal only
what it started: descendants of the pytest process, each identified by
pid *and* start time (a pid alone can be reused by a stranger between
two looks).  The pytest process makes itself a child subreaper, so a
process orphaned inside the test run (a bpftrace whose tcpwdist was
SIGKILLed, a double-forked helper) is re-parented to it and stays
visible as a descendant instead of escaping to init.
"""

from __future__ import annotations

import ctypes
import os
import signal
import time
from pathlib import Path
from typing import Iterator, NamedTuple

import pytest

PR_SET_CHILD_SUBREAPER = 36


class Proc(NamedTuple):
    pid: int
    start: int  # clock ticks after boot: with the pid, names one process for good


def become_subreaper() -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


def _stat(pid: int) -> tuple[int, str, int] | None:
    """(ppid, state, start time) of a pid, or None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), fields[0], int(fields[19])


def descendants(root: int | None = None) -> set[Proc]:
    """Live (not zombie) processes below ``root`` (default: this process)."""
    root = os.getpid() if root is None else root
    children: dict[int, list[tuple[int, str, int]]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st is not None:
                children.setdefault(st[0], []).append((int(entry), st[1], st[2]))
    found: set[Proc] = set()
    todo = [root]
    while todo:
        for pid, state, start in children.get(todo.pop(), []):
            todo.append(pid)
            if state != "Z":
                found.add(Proc(pid, start))
    return found


def describe(p: Proc) -> str:
    try:
        cmd = Path(f"/proc/{p.pid}/cmdline").read_bytes().replace(b"\0", b" ").strip()
    except OSError:
        cmd = b"?"
    return f"{p.pid} ({cmd.decode('utf-8', 'replace')[:80]})"


def kill_own(procs: set[Proc]) -> None:
    """SIGKILL each process if it is still the same one (pid and start time)."""
    for p in procs:
        st = _stat(p.pid)
        if st is not None and st[2] == p.start:
            try:
                os.kill(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def strays(before: set[Proc], grace: float = 3.0) -> set[Proc]:
    """Descendants started since ``before`` that are still alive after
    ``grace`` seconds (a process that is exiting gets that long)."""
    deadline = time.monotonic() + grace
    while (left := descendants() - before) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


@pytest.fixture(scope="session", autouse=True)
def subreaper() -> None:
    """Orphans of what the tests start come back to this process."""
    become_subreaper()


@pytest.fixture(autouse=True)
def no_process_left_behind() -> Iterator[None]:
    """Every test: no process it started may outlive it.  Only the test
    run's own descendants are looked at, and killed, by pid and start time:
    never a process chosen by its name."""
    before = descendants()
    yield
    left = strays(before)
    kill_own(left)
    assert not left, "processes left running: " + ", ".join(map(describe, sorted(left)))

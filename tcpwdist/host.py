"""Cheap facts about this host that decide which probe can work (reads /sys).

Nothing here runs bpftrace; each fact is a file that exists or not.  The
decision itself is pure: :func:`tcpwdist.program.plan_probes`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

TRACEFS_DIRS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
TRACEPOINT = "events/sock/sock_send_length"


@dataclass(frozen=True)
class Facts:
    tracefs: str | None  # where tracefs is mounted, if it is
    kprobes: bool | None  # None: cannot tell (tracefs not mounted, no PMU)
    tracepoint: bool | None  # sock:sock_send_length exists (None: cannot tell)
    btf: bool  # /sys/kernel/btf/vmlinux, needed by fentry


def gather(root: str = "/") -> Facts:
    def path(p: str) -> str:
        return os.path.join(root, p.lstrip("/"))

    tracefs = next((d for d in TRACEFS_DIRS if os.path.isdir(path(d + "/events"))), None)
    kprobe_pmu = os.path.exists(path("/sys/bus/event_source/devices/kprobe"))
    if kprobe_pmu:
        kprobes: bool | None = True
    elif tracefs is not None:
        kprobes = os.path.exists(path(tracefs + "/kprobe_events"))
    else:
        kprobes = None
    tracepoint = os.path.isdir(path(f"{tracefs}/{TRACEPOINT}")) if tracefs else None
    return Facts(tracefs, kprobes, tracepoint, os.path.exists(path("/sys/kernel/btf/vmlinux")))


def cgroup2_mounts(mountinfo: str = "/proc/self/mountinfo") -> list[str]:
    """Mount points of the cgroup v2 filesystem (field 9 is the fs type)."""
    mounts = []
    try:
        with open(mountinfo) as f:
            for line in f:
                left, _, right = line.partition(" - ")
                if right.split(" ", 1)[0] == "cgroup2":
                    mounts.append(left.split(" ")[4])
    except OSError:
        pass
    return mounts


def check_cgroup(path: str) -> str | None:
    """None if ``path`` is a cgroup v2 directory, else what is wrong with it."""
    real = os.path.realpath(path)
    mounts = cgroup2_mounts()
    if not mounts:
        return "this host has no cgroup v2 filesystem mounted"
    if not any(real == m or real.startswith(m.rstrip("/") + "/") for m in mounts):
        return f"{path} is not under a cgroup v2 mount ({', '.join(mounts)})"
    if not os.path.isdir(real):
        return f"{path} is not a directory"
    return None

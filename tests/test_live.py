"""Live: the real tcpwdist, as root, with the real bpftrace, against real
loopback TCP traffic from a workload whose comm and write sizes we know."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from conftest import ROOT
from tcpwdist import host

WORKLOAD = str(Path(__file__).parent / "workload.py")


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "live tests need root (bpftrace loads BPF programs)"
    if shutil.which("bpftrace") is None:
        return "live tests need bpftrace on PATH (apt-get install bpftrace)"
    if host.gather().tracefs is None and host.gather().kprobes is not True:
        return "live tests need tracefs mounted (mount -t tracefs nodev /sys/kernel/tracing)"
    return None


pytestmark = [pytest.mark.live,
              pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or "")]


def comm() -> str:
    return "tw-" + uuid.uuid4().hex[:8]


def start(*args: str) -> tuple[subprocess.Popen, str]:
    """Start tcpwdist; return once it says it is tracing, with what it said."""
    proc = subprocess.Popen([sys.executable, "-m", "tcpwdist", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines = []
    while True:
        line = proc.stderr.readline()
        lines.append(line)
        assert line, b"".join(lines).decode()
        if b"Hit Ctrl-C" in line:
            return proc, b"".join(lines).decode()


def workload(name: str, writes: str, procs: int = 1) -> list[int]:
    done = subprocess.run([sys.executable, WORKLOAD, "--comm", name, "--writes", writes,
                           "--procs", str(procs)], capture_output=True, timeout=120, check=True)
    return [json.loads(line)["pid"] for line in done.stdout.splitlines()]


def buckets_of(report: bytes, name: str) -> dict[int, dict[int, int]]:
    out: dict[int, dict[int, int]] = {}
    for line in report.decode().splitlines():
        for p in json.loads(line)["processes"]:
            if p["comm"] == name:
                per = out.setdefault(p["pid"], {})
                for b in p["buckets"]:
                    if b["count"]:
                        per[b["value"]] = per.get(b["value"], 0) + b["count"]
    return out


def test_ctrl_c_reports_exact_counts():
    name = comm()
    proc, said = start("-o", "json")
    [pid] = workload(name, "1000x23,1x7")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert buckets_of(out, name) == {pid: {512: 23, 1: 7}}
    # This kernel has no kprobes: tcpwdist must say so and use the tracepoint.
    if host.gather().kprobes is False:
        assert "not using kprobe: this kernel has no kprobes" in said
        assert "tracing with tracepoint:sock:sock_send_length" in said


def test_duration_reports_exact_counts_in_every_format():
    name = comm()
    proc = subprocess.Popen([sys.executable, "-m", "tcpwdist", "-d", "5", "-o", "json", "-w",
                             "/dev/null"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(2.5)  # attach takes well under a second here
    [pid] = workload(name, "4096x3,100x11")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert buckets_of(out, name) == {pid: {4096: 3, 64: 11}}


def test_write_raw_replay_gives_the_same_report(tmp_path):
    name = comm()
    raw = tmp_path / "raw.txt"
    proc, _ = start("-o", "json", "-w", str(raw))
    workload(name, "1x5,70000x2")
    proc.send_signal(signal.SIGINT)
    live, _ = proc.communicate(timeout=60)
    replay = subprocess.run([sys.executable, "-m", "tcpwdist", "-r", str(raw), "-o", "json"],
                            cwd=ROOT, capture_output=True, timeout=60)
    assert replay.returncode == 0
    # -r has no /proc to read: it shows the comm where the live run showed
    # the command line.  Everything else is the same.
    keep = lambda doc: [(p["pid"], p["comm"], p["buckets"]) for p in json.loads(doc)["processes"]]
    assert keep(live) == keep(replay.stdout) and buckets_of(live, name)


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def test_sigkill_leaves_no_bpftrace_behind():
    proc, _ = start()
    [bpftrace_pid] = _children(proc.pid)
    assert "bpftrace" in Path(f"/proc/{bpftrace_pid}/comm").read_text()
    proc.kill()
    proc.wait(timeout=10)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{bpftrace_pid}/stat").read_text().split(")")[1].split()[0]
        except FileNotFoundError:
            break
        if state == "Z":  # ended, waiting to be reaped by init
            break
        time.sleep(0.05)
    else:
        os.kill(bpftrace_pid, signal.SIGKILL)
        pytest.fail(f"bpftrace {bpftrace_pid} outlived tcpwdist's SIGKILL by 3 s")

"""Live: the real tcpwdist, as root, with the real bpftrace, against real
loopback TCP traffic from a workload whose comm and write sizes we know.

Workloads wait for a go-file before writing, so every test starts tracing
first and then counts exactly, with no sleeps to tune.
"""

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
from tcpwdist.errors import ExitCode

WORKLOAD = str(Path(__file__).parent / "workload.py")
FACTS = host.gather()


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "live tests need root (bpftrace loads BPF programs)"
    if shutil.which("bpftrace") is None:
        return "live tests need bpftrace on PATH (apt-get install bpftrace)"
    if FACTS.tracefs is None and FACTS.kprobes is not True:
        return "live tests need tracefs mounted (mount -t tracefs nodev /sys/kernel/tracing)"
    return None


pytestmark = [pytest.mark.live,
              pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or "")]


def comm() -> str:
    return "tw-" + uuid.uuid4().hex[:8]


class Workload:
    """Writer processes, ready (pids known) but waiting for ``go()``."""

    def __init__(self, tmp: Path, writes: str, procs: int = 1, *extra: str) -> None:
        self.comm = comm()
        self.gofile = tmp / f"go-{self.comm}"
        self.proc = subprocess.Popen(
            [sys.executable, WORKLOAD, "--comm", self.comm, "--writes", writes,
             "--procs", str(procs), "--go", str(self.gofile), *extra],
            stdout=subprocess.PIPE)
        ready = [json.loads(self.proc.stdout.readline()) for _ in range(procs)]
        self.pids = [r["pid"] for r in ready]
        self.port = ready[0]["port"]

    def go(self) -> None:
        self.gofile.touch()
        assert self.proc.wait(timeout=120) == 0


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


def stop(proc: subprocess.Popen) -> tuple[bytes, str]:
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return out, err.decode()


def traced(tmp: Path, *workloads: Workload, args: tuple[str, ...] = ()) -> tuple[bytes, str]:
    """Trace while the workloads write; the JSON report and stderr."""
    proc, said = start("-o", "json", *args)
    for w in workloads:
        w.go()
    out, err = stop(proc)
    return out, said + err


def buckets(report: bytes, name: str) -> dict[int, dict[int, int]]:
    """{pid: {bucket value: count}} of comm ``name``, summed over intervals."""
    out: dict[int, dict[int, int]] = {}
    for line in report.decode().splitlines():
        for p in json.loads(line)["processes"]:
            if p["comm"] == name:
                per = out.setdefault(p["pid"], {})
                for b in p["buckets"]:
                    if b["count"]:
                        per[b["value"]] = per.get(b["value"], 0) + b["count"]
    return out


def test_ctrl_c_reports_exact_counts(tmp_path):
    w = Workload(tmp_path, "1000x23,1x7")
    out, said = traced(tmp_path, w)
    assert buckets(out, w.comm) == {w.pids[0]: {512: 23, 1: 7}}
    if FACTS.kprobes is False:  # this kernel: say so, and use the tracepoint
        assert "not using kprobe: this kernel has no kprobes" in said
        assert "tracing with tracepoint:sock:sock_send_length" in said


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_report_exact_counts(tmp_path, sig):
    w = Workload(tmp_path, "1000x4")
    proc, _ = start("-o", "json")
    w.go()
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert buckets(out, w.comm) == {w.pids[0]: {512: 4}}


def test_duration_reports_exact_counts(tmp_path):
    w = Workload(tmp_path, "4096x3,100x11")
    proc = subprocess.Popen([sys.executable, "-m", "tcpwdist", "-d", "4", "-o", "json"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    line = b""
    while b"Hit Ctrl-C" not in line:
        line = proc.stderr.readline()
        assert line
    w.go()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert buckets(out, w.comm) == {w.pids[0]: {4096: 3, 64: 11}}


def test_explicit_tracepoint(tmp_path):
    w = Workload(tmp_path, "70000x2,0x1")
    out, said = traced(tmp_path, w, args=("--probe", "tracepoint"))
    assert buckets(out, w.comm) == {w.pids[0]: {65536: 2, 0: 1}}
    assert "not using" not in said


@pytest.mark.skipif(FACTS.kprobes is not False, reason="this kernel has kprobes")
def test_kprobe_on_a_kernel_without_kprobes_is_a_clean_error():
    done = subprocess.run([sys.executable, "-m", "tcpwdist", "--probe", "kprobe", "-d", "1"],
                          cwd=ROOT, capture_output=True, timeout=60)
    err = done.stderr.decode()
    assert done.returncode == ExitCode.NO_PROBE, err
    assert "tcpwdist: error: no probe could be attached" in err
    assert "Error attaching probe" in err and "Traceback" not in err


def test_pid_and_comm_filters(tmp_path):
    a, b = Workload(tmp_path, "10x3"), Workload(tmp_path, "10x4")
    out, _ = traced(tmp_path, a, b, args=("-p", str(a.pids[0])))
    assert buckets(out, a.comm) == {a.pids[0]: {8: 3}}
    assert json.loads(out)["processes"] == [p for p in json.loads(out)["processes"]
                                            if p["pid"] == a.pids[0]]
    a, b = Workload(tmp_path, "10x3"), Workload(tmp_path, "10x4")
    out, _ = traced(tmp_path, a, b, args=("-c", b.comm, "-c", "no-such-comm"))
    assert {p["comm"] for p in json.loads(out)["processes"]} == {b.comm}
    assert buckets(out, b.comm) == {b.pids[0]: {8: 4}}


def test_port_filter_ipv4_and_ipv6(tmp_path):
    a = Workload(tmp_path, "300x5", 1, "--ipv6")
    b = Workload(tmp_path, "300x6")
    out, _ = traced(tmp_path, a, b, args=("-P", str(a.port)))
    assert buckets(out, a.comm) == {a.pids[0]: {256: 5}} and not buckets(out, b.comm)
    a, b = Workload(tmp_path, "300x5", 1, "--ipv6"), Workload(tmp_path, "300x6")
    out, _ = traced(tmp_path, a, b, args=("-P", str(b.port)))
    assert buckets(out, b.comm) == {b.pids[0]: {256: 6}} and not buckets(out, a.comm)


@pytest.mark.skipif(not host.cgroup2_mounts(), reason="no cgroup v2 mount on this host")
def test_cgroup_filter(tmp_path):
    group = Path(host.cgroup2_mounts()[0]) / f"tcpwdist-test-{uuid.uuid4().hex[:6]}"
    group.mkdir()
    try:
        a = Workload(tmp_path, "5000x2", 1, "--cgroup", str(group))
        b = Workload(tmp_path, "5000x3")
        out, _ = traced(tmp_path, a, b, args=("--cgroup", str(group)))
        assert buckets(out, a.comm) == {a.pids[0]: {4096: 2}} and not buckets(out, b.comm)
    finally:
        group.rmdir()


def test_interval_reports_one_json_document_each(tmp_path):
    w = Workload(tmp_path, "2000x9")
    proc, _ = start("-o", "json", "0.5")
    w.go()
    time.sleep(1.2)  # at least two interval reports after the writes
    out, _ = stop(proc)
    docs = [json.loads(line) for line in out.decode().splitlines()]
    assert len(docs) >= 2
    assert [d["interval"] for d in docs] == list(range(1, len(docs) + 1))
    assert all(len(d["time"]) == 8 for d in docs)
    assert buckets(out, w.comm) == {w.pids[0]: {1024: 9}}  # per interval, not cumulative


def test_interval_count_ends_by_itself():
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "tcpwdist", "-o", "json", "0.5", "3"],
                          cwd=ROOT, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert [json.loads(x)["interval"] for x in done.stdout.splitlines()] == [1, 2, 3]
    assert time.monotonic() - t0 < 20


def test_300_processes_15_sizes_nothing_lost(tmp_path):
    sizes = ",".join(str(1 << i) for i in range(15))  # 1 .. 16384: 15 buckets each
    w = Workload(tmp_path, sizes, 320)
    out, err = traced(tmp_path, w, args=("-c", w.comm))
    got = buckets(out, w.comm)
    assert sorted(got) == sorted(w.pids)
    assert all(per == {1 << i: 1 for i in range(15)} for per in got.values())
    assert "map was full" not in err


def test_full_command_line(tmp_path):
    w = Workload(tmp_path, "64x1", 1, "--linger", "0.5")
    out, _ = traced(tmp_path, w)
    [p] = [p for p in json.loads(out)["processes"] if p["comm"] == w.comm]
    assert f"workload.py --comm {w.comm} --writes 64x1" in p["cmd"]


def test_write_raw_replay_gives_the_same_report(tmp_path):
    w = Workload(tmp_path, "1x5,70000x2")
    raw = tmp_path / "raw.txt"
    live, _ = traced(tmp_path, w, args=("-w", str(raw)))
    replay = subprocess.run([sys.executable, "-m", "tcpwdist", "-r", str(raw), "-o", "json"],
                            cwd=ROOT, capture_output=True, timeout=60)
    assert replay.returncode == 0
    # -r has no /proc to read: it shows the comm where the live run showed
    # the command line.  Everything else is the same.
    keep = lambda doc: [(p["pid"], p["comm"], p["buckets"]) for p in json.loads(doc)["processes"]]
    assert keep(live) == keep(replay.stdout)
    assert buckets(live, w.comm) == {w.pids[0]: {1: 5, 65536: 2}}


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"  # ended, waiting to be reaped by init


def test_sigkill_leaves_no_bpftrace_behind():
    proc, _ = start()
    [bpftrace_pid] = _children(proc.pid)
    assert "bpftrace" in Path(f"/proc/{bpftrace_pid}/comm").read_text()
    proc.kill()
    proc.wait(timeout=10)
    deadline = time.monotonic() + 3
    while not _gone(bpftrace_pid):
        if time.monotonic() > deadline:
            os.kill(bpftrace_pid, signal.SIGKILL)
            pytest.fail(f"bpftrace {bpftrace_pid} outlived tcpwdist's SIGKILL by 3 s")
        time.sleep(0.05)


def test_status_line_on_a_terminal(tmp_path):
    """stderr a terminal: a status line refreshed about once a second, taken
    from the running program, and cleared before the report."""
    import pexpect
    w = Workload(tmp_path, "64x12")
    child = pexpect.spawn(sys.executable, ["-m", "tcpwdist", "-o", "json"], cwd=str(ROOT),
                          timeout=60, dimensions=(24, 200))
    child.expect("Hit Ctrl-C")
    w.go()
    child.expect(r"tracing \d+ s: [\d,]+ writes from \d+ processes")
    child.expect(r"tracing \d+ s: [\d,]+ writes from \d+ processes")  # refreshed
    child.sendintr()
    child.expect(pexpect.EOF)
    out = child.before.decode()
    doc = json.loads(out[out.index('{"tcpwdist"'):].splitlines()[0])
    [p] = [p for p in doc["processes"] if p["comm"] == w.comm]
    assert p["writes"] == 12  # the status prints were not counted again


def test_interval_run_and_its_raw_replay_give_the_same_intervals(tmp_path):
    w = Workload(tmp_path, "2000x3,10x4")
    raw = tmp_path / "raw.txt"
    proc, _ = start("-o", "json", "-w", str(raw), "0.5")
    w.go()
    time.sleep(1.2)
    live, _ = stop(proc)
    replay = subprocess.run([sys.executable, "-m", "tcpwdist", "-r", str(raw), "-o", "json"],
                            cwd=ROOT, capture_output=True, timeout=60)
    assert replay.returncode == 0, replay.stderr
    shape = lambda out: [(d["interval"], [(p["pid"], p["comm"], p["buckets"]) for p in
                                          d["processes"]]) for d in map(json.loads,
                                                                       out.splitlines())]
    assert shape(live) == shape(replay.stdout)
    assert buckets(live, w.comm) == {w.pids[0]: {1024: 3, 8: 4}}

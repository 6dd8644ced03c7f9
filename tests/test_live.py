"""Live: the real tcpwdist, as root, with the real bpftrace, against real
loopback TCP traffic from a workload whose comm and write sizes we know.

Every test runs once per bpftrace in the matrix (livekit: the test id
names the version).  Workloads wait for a go-file before writing, so every
test starts tracing first and then counts exactly, with no sleeps to tune.
Tests marked ``guest`` are the focused suite .ci/run also runs inside
QEMU guests booted with other kernels (kprobes, fentry, Linux 6.1).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import jsonschema
import pytest

from conftest import ROOT, buckets
from livekit import (KERNEL, Tracer, Workload, require_live, start, stop, tcpwdist_argv,
                     traced, tracer_params)
from tcpwdist import host, program
from tcpwdist.errors import ExitCode

pytestmark = pytest.mark.live


@pytest.fixture(params=tracer_params())
def bt(request) -> Tracer:
    require_live()
    print(f"live with {request.param.text} at {request.param.path}")
    return request.param


SCHEMA = json.loads((ROOT / "tcpwdist" / "report.schema.json").read_text())


def docs_of(out: bytes) -> list[dict]:
    """The report's JSON documents, each valid against the shipped schema."""
    docs = [json.loads(line) for line in out.decode().splitlines()]
    for doc in docs:
        jsonschema.validate(doc, SCHEMA)
    return docs


def counts(out: bytes, w: Workload) -> dict[int, dict[int, int]]:
    """{pid: {bucket value: count}} of the workload's processes, summed over
    the report's documents (intervals)."""
    docs = docs_of(out)
    return {pid: per for (pid, _), per in buckets(docs, w.comm).items()}


@pytest.mark.guest
def test_ctrl_c_reports_exact_counts(bt, tmp_path):
    w = Workload(tmp_path, "1000x23,1x7")
    out, said = traced(bt, w, args=("-v",))
    assert counts(out, w) == {w.pids[0]: {512: 23, 1: 7}}
    [p] = [p for p in json.loads(out)["processes"] if p["comm"] == w.comm]
    assert p["small"] == {"under": 64, "writes": 7, "share": round(7 / 30, 4)}
    probe = bt.auto_probe  # auto's choice, and what it says about it
    assert f"tracing with {program.PROBE_MEANINGS[probe]}" in said
    assert json.loads(out)["probe"] == probe
    if KERNEL.kprobes is False:
        assert "not using kprobe: this kernel has no kprobes" in said
    # No bpftrace start spent on a probe the host's facts rule out: every
    # probe left out was left out on the facts, none after trying it.
    assert "bpftrace said" not in said, said


def test_full_map_reports_what_was_counted_and_how_much_was_not(bt, tmp_path):
    # 16 sizes, one write each, into a map of 10 (pid, comm, bucket) entries.
    w = Workload(tmp_path, ",".join(str(1 << i) for i in range(16)))
    out, said = traced(bt, w, args=("-c", w.comm, "--max-keys", "10"))
    assert counts(out, w) == {w.pids[0]: {1 << i: 1 for i in range(10)}}
    [doc] = docs_of(out)
    if bt.version >= (0, 23, 0):  # it says how many updates it dropped
        want = ("bpftrace's map was full: 6 writes were not counted; "
                "raise --max-keys (now 10)")
    else:  # 0.17 drops them in silence: a map as full as its limit is full
        want = ("bpftrace's map was full: writes of new (pid, comm, size) combinations "
                "were not counted; raise --max-keys (now 10)")
    assert doc["warnings"] == [want]
    assert f"tcpwdist: warning: {want}" in said


@pytest.mark.parametrize("sig", [pytest.param(signal.SIGTERM, marks=pytest.mark.guest),
                                 signal.SIGHUP])
def test_sigterm_and_sighup_report_exact_counts(bt, tmp_path, sig):
    w = Workload(tmp_path, "1000x4")
    proc, _ = start(bt, "-o", "json")
    w.go()
    out, _ = stop(proc, sig)
    assert counts(out, w) == {w.pids[0]: {512: 4}}


def test_duration_reports_exact_counts(bt, tmp_path):
    w = Workload(tmp_path, "4096x3,100x11")
    proc, said = start(bt, "-d", "4", "-o", "json")
    w.go()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert counts(out, w) == {w.pids[0]: {4096: 3, 64: 11}}
    # One line before tracing, and no Ctrl-C to press: -d ends the run.
    point = program.attach_point(bt.auto_probe, bt.version)
    assert said == f"Tracing TCP writes via {point} for 4 s...\n"


def _can_run(probe: str, bt: Tracer) -> bool:
    """Can ``probe`` trace on this kernel with this bpftrace?  The kernel's
    and bpftrace's own word, not tcpwdist's plan."""
    v, k = bt.version, KERNEL
    if probe == "kprobe":
        return bool(k.kprobes)
    if probe == "fentry":
        if v >= (0, 24, 0):
            return k.btf and bool(k.traceable)
        return k.btf and host.fentry_from_info(host.info_text(bt.path)) is True
    if probe == "rawtracepoint":
        return v >= (0, 21, 0) and k.btf and bool(k.tracepoint) and (
            v < (0, 24, 0) or bool(k.traceable))
    return bool(k.tracepoint) and (v < (0, 25, 0) or k.btf)


@pytest.mark.parametrize("probe", [pytest.param(p, marks=pytest.mark.guest)
                                   if p != "rawtracepoint" else p for p in program.PROBES])
def test_explicit_probe_counts_exactly_or_says_why_not(bt, tmp_path, probe):
    if _can_run(probe, bt):
        w = Workload(tmp_path, "70000x2,0x1,3x5")
        out, said = traced(bt, w, args=("--probe", probe, "-v"))
        assert counts(out, w) == {w.pids[0]: {65536: 2, 0: 1, 2: 5}}
        assert "not using" not in said
        assert f"tracing with {program.PROBE_MEANINGS[probe]}" in said
        return
    done = subprocess.run(tcpwdist_argv(*bt.args, "--probe", probe, "-d", "1"), cwd=ROOT,
                          capture_output=True, timeout=120)
    err = done.stderr.decode()
    errors = [ln for ln in err.splitlines() if ln.startswith("tcpwdist: error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    if probe == "rawtracepoint" and bt.version < program.RAWTRACEPOINT_SINCE:
        assert done.returncode == ExitCode.USAGE and "0.21" in errors[0], err
        return
    assert done.returncode == ExitCode.NO_PROBE, err
    assert "no probe could be attached" in errors[0]
    said = err.split(errors[0], 1)[1]  # bpftrace's reason, not its quote of the program
    assert "ERROR" in said and "~~~" not in said and "{ @[pid, comm]" not in said, err


@pytest.mark.guest
def test_pid_filter(bt, tmp_path):
    a, b = Workload(tmp_path, "10x3"), Workload(tmp_path, "10x4")
    out, _ = traced(bt, a, b, args=("-p", str(a.pids[0])))
    assert counts(out, a) == {a.pids[0]: {8: 3}}
    assert {p["pid"] for p in json.loads(out)["processes"]} == {a.pids[0]}
    assert json.loads(out)["filters"] == {"pid": [a.pids[0]], "comm": [], "port": [],
                                          "cgroup": None}


@pytest.mark.guest
def test_comm_filter(bt, tmp_path):
    a, b = Workload(tmp_path, "10x3"), Workload(tmp_path, "10x4")
    out, _ = traced(bt, a, b, args=("-c", b.comm, "-c", "no-such-comm"))
    assert {p["comm"] for p in json.loads(out)["processes"]} == {b.comm}
    assert counts(out, b) == {b.pids[0]: {8: 4}}
    assert json.loads(out)["filters"] == {"pid": [], "comm": [b.comm, "no-such-comm"],
                                          "port": [], "cgroup": None}


@pytest.mark.guest
def test_port_filter_ipv4_and_ipv6(bt, tmp_path):
    six = Workload(tmp_path, "300x5", 1, "--ipv6")
    four = Workload(tmp_path, "300x6")
    other = Workload(tmp_path, "300x7")
    out, _ = traced(bt, six, four, other, args=("-P", str(six.port), "-P", str(four.port)))
    assert counts(out, six) == {six.pids[0]: {256: 5}}
    assert counts(out, four) == {four.pids[0]: {256: 6}}
    assert not counts(out, other)


@pytest.mark.skipif(not host.cgroup2_mounts(), reason="no cgroup v2 mount on this host")
def test_cgroup_filter(bt, tmp_path):
    group = Path(host.cgroup2_mounts()[0]) / f"tcpwdist-test-{uuid.uuid4().hex[:6]}"
    group.mkdir()
    try:
        a = Workload(tmp_path, "5000x2", 1, "--cgroup", str(group))
        b = Workload(tmp_path, "5000x3")
        out, _ = traced(bt, a, b, args=("--cgroup", str(group)))
        assert counts(out, a) == {a.pids[0]: {4096: 2}} and not counts(out, b)
        assert json.loads(out)["filters"]["cgroup"] == str(group)
        # A child's processes are not the parent's: not traced, and it is said.
        (group / "child").mkdir()
        c = Workload(tmp_path, "5000x4", 1, "--cgroup", str(group / "child"))
        out, said = traced(bt, c, args=("--cgroup", str(group)))
        assert not counts(out, c)
        assert (f"tcpwdist: warning: --cgroup {group}: only the processes directly in it are "
                f"traced, not those of its 1 child cgroup, and it holds none itself: nothing "
                f"will be traced; name a child, e.g. {group / 'child'}") in said
    finally:
        if (group / "child").exists():
            (group / "child").rmdir()
        group.rmdir()


@pytest.mark.guest
def test_interval_reports_one_json_document_each(bt, tmp_path):
    w = Workload(tmp_path, "2000x9")
    proc, _ = start(bt, "-o", "json", "0.5")
    w.go()
    time.sleep(1.2)  # at least two interval reports after the writes
    out, _ = stop(proc)
    docs = [json.loads(line) for line in out.decode().splitlines()]
    assert len(docs) >= 2
    assert [d["interval"] for d in docs] == list(range(1, len(docs) + 1))
    # Sub-second intervals get sub-second stamps (bpftrace 0.16+'s strftime).
    assert all(re.fullmatch(r"\d\d:\d\d:\d\d\.\d{6}", d["time"]) for d in docs), docs
    assert counts(out, w) == {w.pids[0]: {1024: 9}}  # per interval, not cumulative


def test_interval_count_ends_by_itself(bt):
    t0 = time.monotonic()
    done = subprocess.run(tcpwdist_argv(*bt.args, "-o", "json", "0.5", "3"),
                          cwd=ROOT, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert [json.loads(x)["interval"] for x in done.stdout.splitlines()] == [1, 2, 3]
    assert time.monotonic() - t0 < 20


def test_300_processes_15_sizes_nothing_lost(bt, tmp_path):
    sizes = ",".join(str(1 << i) for i in range(15))  # 1 .. 16384: 15 buckets each
    w = Workload(tmp_path, sizes, 320)
    out, err = traced(bt, w, args=("-c", w.comm))
    got = counts(out, w)
    assert sorted(got) == sorted(w.pids)
    assert all(per == {1 << i: 1 for i in range(15)} for per in got.values())
    assert "map was full" not in err


def _kernel_at_least(major: int, minor: int) -> bool:
    found = re.match(r"(\d+)\.(\d+)", os.uname().release)
    assert found, os.uname().release
    return (int(found.group(1)), int(found.group(2))) >= (major, minor)


@pytest.mark.guest
def test_sendfile_is_seen_a_pipe_full_at_a_time_from_linux_6_5(bt, tmp_path):
    # Linux 6.5 made sendfile and splice call tcp_sendmsg (MSG_SPLICE_PAGES)
    # once per pipe-full, at most 64 KiB; before, they went by tcp_sendpage,
    # which no probe of tcpwdist's sees.  README and man page CAVEATS say so.
    # --spliced counts those writes apart, and the calls as the workload made them.
    w = Workload(tmp_path, "1048576x1,100000x1", 1, "--sendfile")
    out, _ = traced(bt, w, args=("-c", w.comm, "--spliced"))
    if _kernel_at_least(6, 5):
        assert counts(out, w) == {w.pids[0]: {65536: 16 + 1, 32768: 1}}
        [p] = [p for p in json.loads(out)["processes"] if p["comm"] == w.comm]
        assert p["spliced"] == 18 and p["splice_calls"]["calls"] == 2
        assert {b["value"]: b["count"] for b in p["splice_calls"]["buckets"] if b["count"]} \
            == {65536: 1, 1048576: 1}
    else:
        assert counts(out, w) == {}


def test_full_command_line(bt, tmp_path):
    w = Workload(tmp_path, "64x1", 1, "--linger", "0.5")
    out, _ = traced(bt, w)
    [p] = [p for p in json.loads(out)["processes"] if p["comm"] == w.comm]
    assert f"workload.py --comm {w.comm} --writes 64x1" in p["cmd"]
    assert p["cmd_source"] == "cmdline"


def test_write_raw_replay_gives_the_same_report(bt, tmp_path):
    w = Workload(tmp_path, "1x5,70000x2")
    raw = tmp_path / "raw.txt"
    live, _ = traced(bt, w, args=("-w", str(raw)))
    replay = subprocess.run([sys.executable, "-m", "tcpwdist", "-r", str(raw), "-o", "json"],
                            cwd=ROOT, capture_output=True, timeout=60)
    assert replay.returncode == 0
    # -r has no /proc to read: it shows the comm where the live run showed
    # the command line.  Everything else is the same.

    def keep(doc: bytes) -> list:
        return [(p["pid"], p["comm"], p["buckets"]) for p in json.loads(doc)["processes"]]

    assert keep(live) == keep(replay.stdout)
    assert counts(live, w) == {w.pids[0]: {1: 5, 65536: 2}}


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"  # ended, waiting to be reaped by init


def test_sigkill_leaves_no_bpftrace_behind(bt):
    proc, _ = start(bt)
    [bpftrace_pid] = _children(proc.pid)
    assert "bpftrace" in Path(f"/proc/{bpftrace_pid}/cmdline").read_text()
    proc.kill()
    proc.wait(timeout=10)
    deadline = time.monotonic() + 3
    while not _gone(bpftrace_pid):
        if time.monotonic() > deadline:
            os.kill(bpftrace_pid, signal.SIGKILL)
            pytest.fail(f"bpftrace {bpftrace_pid} outlived tcpwdist's SIGKILL by 3 s")
        time.sleep(0.05)


def test_bpftrace_stuck_in_the_kernel_is_said_and_its_dump_reported(bt, tmp_path):
    """The real bpftrace, held at its exit by ptrace (tests/holdexit.py) as
    a process stuck in the kernel is held: SIGKILL does not end it.
    tcpwdist reports the dump it printed, names its pid, exits 6, and does
    not wait for it."""
    proc, _ = start(bt, "-o", "json", "--stop-timeout", "1.5")
    [bpftrace_pid] = _children(proc.pid)
    holder = subprocess.Popen([sys.executable, str(ROOT / "tests" / "holdexit.py"),
                               str(bpftrace_pid), "120"], stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
        w = Workload(tmp_path, "100x3,3000x2")
        w.go()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
        state = Path(f"/proc/{bpftrace_pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        assert state == "t", "bpftrace was not held: the test proves nothing"
        assert proc.returncode == ExitCode.BPFTRACE_FAILED, err
        assert f"bpftrace (pid {bpftrace_pid}) has not exited 2 s after SIGKILL" in \
            err.decode().splitlines()[-1]
        assert counts(out, w) == {w.pids[0]: {64: 3, 2048: 2}}
    finally:
        holder.terminate()  # our holder lets bpftrace go
        holder.wait(timeout=30)
        deadline = time.monotonic() + 30
        while not _gone(bpftrace_pid) and time.monotonic() < deadline:
            time.sleep(0.05)


def test_interval_run_and_its_raw_replay_give_the_same_intervals(bt, tmp_path):
    w = Workload(tmp_path, "2000x3,10x4")
    raw = tmp_path / "raw.txt"
    proc, _ = start(bt, "-o", "json", "-w", str(raw), "0.5")
    w.go()
    time.sleep(1.2)
    live, _ = stop(proc)
    replay = subprocess.run([sys.executable, "-m", "tcpwdist", "-r", str(raw), "-o", "json"],
                            cwd=ROOT, capture_output=True, timeout=60)
    assert replay.returncode == 0, replay.stderr

    def shape(out: bytes) -> list:
        return [(d["interval"], [(p["pid"], p["comm"], p["buckets"]) for p in d["processes"]])
                for d in map(json.loads, out.splitlines())]

    assert shape(live) == shape(replay.stdout)
    assert counts(live, w) == {w.pids[0]: {1024: 3, 8: 4}}


def _log2(v: int) -> int:
    return v if v < 2 else 1 << (v.bit_length() - 1)


@pytest.mark.guest
def test_kprobe_counts_sizes_asked_the_tracepoint_sizes_accepted(bt, tmp_path, capsys):
    """A non-blocking writer whose sends are taken whole, in part, or
    refused (EAGAIN), with its own tally of every send()'s result as the
    truth: kprobe and fentry count every call at the size asked
    (tcp_sendmsg's size argument); the tracepoints count what
    tcp_sendmsg accepted (its return value), and skip the failures."""
    ran = []
    for probe in program.PROBES:
        if not _can_run(probe, bt):
            continue
        gofile = tmp_path / f"go-{probe}"
        name = f"nb-{uuid.uuid4().hex[:8]}"
        writer = subprocess.Popen([sys.executable, str(ROOT / "tests" / "workload.py"), "--comm",
                                   name, "--nonblock", "100x3,65536x30,1000x5",
                                   "--go", str(gofile)], stdout=subprocess.PIPE)
        assert writer.stdout is not None
        pid = json.loads(writer.stdout.readline())["pid"]
        proc, _ = start(bt, "-o", "json", "--probe", probe, "-c", name)
        gofile.touch()
        sends = json.loads(writer.stdout.readline())["sends"]
        assert writer.wait(timeout=60) == 0
        out, _ = stop(proc)
        got = {p: per for (p, _), per in buckets(docs_of(out), name).items()}
        asked: dict[int, int] = {}
        accepted: dict[int, int] = {}
        for size, result in sends:
            asked[_log2(size)] = asked.get(_log2(size), 0) + 1
            if result >= 0:
                accepted[_log2(result)] = accepted.get(_log2(result), 0) + 1
        assert any(r < 0 for _, r in sends) and any(0 <= r < s for s, r in sends), sends
        want = asked if probe in ("kprobe", "fentry") else accepted
        assert got == {pid: want}, (probe, sends)
        # The tracepoints see each send's result: the failed ones are
        # counted apart, exactly the writer's own tally of EAGAIN.
        [p] = [p for d in docs_of(out) for p in d["processes"] if p["comm"] == name]
        refused = sum(r < 0 for _, r in sends)
        seen = program.counts_failed(probe, bt.version)  # 0.23+: free, so counted
        assert p["failed"] == (refused if seen else None), probe
        ran.append(probe)
        with capsys.disabled():
            print(f"\n{bt.text}, {probe}: {sum(want.values())} writes counted of "
                  f"{len(sends)} send() calls ({sum(r < 0 for _, r in sends)} EAGAIN, "
                  f"{sum(0 <= r < s for s, r in sends)} partial)")
    assert ran, "no probe can run here"


@pytest.mark.parametrize("writes,interval", [(1_000_000, "1"), (300_000, "0.1")],
                         ids=["1e6-at-1s", "3e5-at-0.1s"])
def test_intervals_add_up_to_every_write(bt, tmp_path, writes, interval):
    """The map is never cleared: each interval is the difference of two
    cumulative dumps, so no write between a print and a clear is lost."""
    w = Workload(tmp_path, f"64x{writes}")
    proc, _ = start(bt, "-o", "json", "-c", w.comm, interval)
    w.go()
    time.sleep(2 * float(interval) + 0.5)  # the writes' last interval is out
    out, _ = stop(proc)
    docs = docs_of(out)
    assert counts(out, w) == {w.pids[0]: {64: writes}}
    assert [d["interval"] for d in docs] == list(range(1, len(docs) + 1))
    assert len(docs) >= 3
    if interval == "0.1":  # 300,000 sends take several intervals: the sum crosses them
        assert sum(d["processes"] != [] for d in docs) >= 2


def _bpftrace_of(proc: subprocess.Popen) -> int:
    [child] = _children(proc.pid)  # tcpwdist's one child: the bpftrace it started
    return child


def test_a_killed_bpftrace_leaves_the_last_snapshot(bt, tmp_path):
    w = Workload(tmp_path, "1000x23,1x7")
    proc, _ = start(bt, "-o", "json")  # no terminal: as under nohup, -o json > file
    w.go()
    time.sleep(2.5)  # a snapshot after the writes (they come once a second)
    os.kill(_bpftrace_of(proc), signal.SIGKILL)  # the OOM killer, say
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == ExitCode.BPFTRACE_FAILED, err
    [doc] = docs_of(out)
    assert counts(out, w) == {w.pids[0]: {512: 23, 1: 7}}
    assert doc["partial"] is True and any("partial report" in x for x in doc["warnings"])
    err = err.decode()
    assert "tcpwdist: warning: partial report" in err
    assert "tcpwdist: error: bpftrace ended while tracing (killed by signal 9)" in err


def test_someone_elses_sigterm_gives_the_whole_report(bt, tmp_path):
    # bpftrace prints its whole map on SIGTERM and exits 0: that dump is
    # the report, complete, with a note that tcpwdist did not stop it.
    w = Workload(tmp_path, "1000x23,1x7")
    proc, _ = start(bt, "-o", "json")
    w.go()
    os.kill(_bpftrace_of(proc), signal.SIGTERM)  # an admin's kill, say
    out, err = proc.communicate(timeout=60)
    err = err.decode()
    assert proc.returncode == ExitCode.OK, err
    [doc] = docs_of(out)
    assert counts(out, w) == {w.pids[0]: {512: 23, 1: 7}}
    assert "partial" not in doc
    assert "bpftrace ended before tcpwdist stopped it" in err


def test_second_ctrl_c_reports_the_last_snapshot(bt, tmp_path):
    w = Workload(tmp_path, "4096x5")
    proc, _ = start(bt, "-o", "json")
    w.go()
    time.sleep(2.5)
    bpftrace = _bpftrace_of(proc)
    os.kill(bpftrace, signal.SIGSTOP)  # a dump that takes its time
    try:
        proc.send_signal(signal.SIGINT)
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)  # the user gives up waiting
        out, err = proc.communicate(timeout=60)
    finally:
        if not _gone(bpftrace):
            os.kill(bpftrace, signal.SIGCONT)
    assert proc.returncode == ExitCode.BAD_DUMP, err
    [doc] = docs_of(out)
    assert doc["partial"] is True and counts(out, w) == {w.pids[0]: {4096: 5}}
    assert b"stopped waiting for bpftrace's report (second Ctrl-C)" in err


def test_progress_line_tells_the_true_number(bt, tmp_path):
    import pexpect
    w = Workload(tmp_path, "64x12,5000x3")
    child = pexpect.spawn(sys.executable, ["-m", "tcpwdist", *bt.args, "-o", "json", "-c",
                                           w.comm], cwd=str(ROOT), timeout=60,
                          dimensions=(24, 200))
    child.expect("Hit Ctrl-C")
    w.go()
    # Within a second or two of the writes: all 15 of them, from 1 process.
    child.expect(r"tracing \d+ s: 15 writes from 1 process \(Ctrl-C to end\)", timeout=10)
    child.sendintr()
    child.expect(pexpect.EOF)
    out = child.before.decode()
    doc = json.loads(out[out.index('{"tcpwdist"'):].splitlines()[0])
    assert [p["writes"] for p in doc["processes"]] == [15]  # the report, once
    assert out.count('{"tcpwdist"') == 1


@pytest.mark.parametrize("hostile", ["a]: \n\n@[1, sshd", "]: \n\n12:00:00"])
def test_a_process_named_to_fool_the_parser_changes_no_other_numbers(bt, tmp_path, hostile):
    # Any user may name a process so (prctl, 15 bytes): its writes stay its
    # own, nobody else's numbers change, and the report is whole.
    victim = Workload(tmp_path, "100x5")
    attacker = Workload(tmp_path, "10x3", name=hostile)
    out, said = traced(bt, victim, attacker)
    docs = docs_of(out)
    got = {(p["pid"], bytes.fromhex(p["comm_hex"])): p["writes"] for p in docs[0]["processes"]}
    assert got[(victim.pids[0], victim.comm.encode())] == 5
    assert got[(attacker.pids[0], hostile.encode())] == 3
    assert (1, b"sshd") not in got
    assert "not map output" not in said, said  # nothing skipped, no entry damaged


def by_connection(out: bytes, w: Workload) -> dict[int, dict[tuple, dict[int, int]]]:
    """{pid: {(laddr, lport, raddr, rport): {bucket value: count}}} of the
    workload's processes; each process's connections add up to it."""
    found: dict[int, dict[tuple, dict[int, int]]] = {}
    for doc in docs_of(out):
        for p in doc["processes"]:
            if p["pid"] not in w.pids:
                continue
            per = found.setdefault(p["pid"], {})
            for c in p["connections"]:
                hist = per.setdefault((c["laddr"], c["lport"], c["raddr"], c["rport"]), {})
                for b in c["buckets"]:
                    hist[b["value"]] = hist.get(b["value"], 0) + b["count"]
            assert sum(c["writes"] for c in p["connections"]) == p["writes"]
    return {pid: {k: {v: n for v, n in h.items() if n} for k, h in per.items()}
            for pid, per in found.items()}


def _ends(w: Workload, pid: int) -> list[tuple]:
    return [(c["laddr"], c["lport"], c["raddr"], c["rport"]) for c in w.connections[pid]]


@pytest.mark.guest
def test_connections_each_get_their_own_exact_histogram(bt, tmp_path):
    # Three connections (IPv4, IPv6, IPv4) of one process, and a process
    # whose comm looks like the end of a connection key, newline included;
    # with every probe that can run here (each reads the socket its way).
    probes = [p for p in program.PROBES if _can_run(p, bt)]
    print(f"--connections with {probes}")
    assert probes
    for probe in probes:
        w = Workload(tmp_path, "100x3/6:2000x2/10x5,100x1")
        odd = Workload(tmp_path, "50x2/6:5x1", name="c\n, 1, ::1, 2")
        # The bigger program can take over 30 s to load in a TCG guest (seen on 6.12).
        out, said = traced(bt, w, odd, args=("--connections", "--probe", probe,
                                             "--attach-timeout", "120"))
        a, b, c = _ends(w, w.pids[0])
        assert by_connection(out, w) == {w.pids[0]: {a: {64: 3}, b: {1024: 2},
                                                     c: {8: 5, 64: 1}}}, probe
        d, e = _ends(odd, odd.pids[0])
        assert by_connection(out, odd) == {odd.pids[0]: {d: {32: 2}, e: {4: 1}}}, probe
        assert counts(out, w) == {w.pids[0]: {64: 4, 1024: 2, 8: 5}}
        assert "not map output" not in said and "warning" not in said, said


def test_connections_keep_the_filters_and_fit_every_format(bt, tmp_path):
    w = Workload(tmp_path, "300x2/6:3000x4")
    proc, _ = start(bt, "--connections", "-P", str(w.port), "-o", "table")
    w.go()
    out, _ = stop(proc)
    (laddr, lport, raddr, rport), _ = _ends(w, w.pids[0])
    # Only the IPv4 connection is on the port: the process's rows, its
    # summary, then the connection's bucket and its summary.
    # (A PID shorter than its column is right-aligned: a line may start with spaces.)
    rows = [ln.split() for ln in out.decode().splitlines()
            if ln.split()[:1] == [str(w.pids[0])]]
    assert [r[-2:] for r in rows[:1]] == [["256", "2"]]
    assert rows[2] == [str(w.pids[0]), f"{laddr}:{lport}", f"{raddr}:{rport}", "256", "2"]
    assert rows[3][:4] == [str(w.pids[0]), f"{laddr}:{lport}", f"{raddr}:{rport}", "2"]
    assert len(rows) == 4


def test_a_full_connection_map_keeps_every_write_of_the_process(bt, tmp_path):
    # 12 connections, one write each: 12 (connection, bucket) entries for
    # a map of 10, while the process map needs 1.
    w = Workload(tmp_path, "/".join(["100x1"] * 12))
    out, said = traced(bt, w, args=("--connections", "-c", w.comm, "--max-keys", "10"))
    [doc] = docs_of(out)
    [p] = doc["processes"]
    assert (p["writes"], len(p["connections"])) == (12, 10)
    assert {(c["laddr"], c["lport"], c["raddr"], c["rport"]) for c in p["connections"]} < set(
        _ends(w, w.pids[0]))
    want = ("bpftrace's connection map was full: 2 writes are in their process's histogram "
            "but in no connection's; raise --max-keys (now 10)")
    assert doc["warnings"] == [want]
    assert f"tcpwdist: warning: {want}" in said

"""The benchmarks' quick modes, so CI keeps them working (no speed asserted:
speed is measured in bench/, and written down in BENCHMARKS.md)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT


def test_parse_benchmark_quick():
    done = subprocess.run([sys.executable, "bench/bench_parse.py", "--quick"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr  # 1 if tcpwdist and the baseline disagree
    assert "tcpwdist -r -o json: median" in done.stdout and "ratio:" in done.stdout


def _tree(pid: int) -> list[int]:
    """pid and its descendants, parents first."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    kids = [int(x) for x in path.read_text().split()] if path.exists() else []
    return [pid] + [d for k in kids for d in _tree(k)]


def _waiting(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")[:120]
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        call = Path(f"/proc/{pid}/syscall").read_text().split()[:2]
    except OSError:
        return f"{pid}: gone"
    return f"{pid} {state} syscall {' '.join(call)}: {argv.decode(errors='replace')}"


def test_stream_benchmark_quick():
    done = subprocess.run([sys.executable, "bench/bench_stream.py", "--quick"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr  # 1 if the report was not exact
    assert "report exact: True" in done.stdout and "peak RSS" in done.stdout


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("bpftrace") is None
                    or shutil.which("gcc") is None or shutil.which("strace") is None,
                    reason="the overhead benchmark needs root, bpftrace, gcc and strace")
def test_overhead_benchmark_quick(tmp_path):
    proc = subprocess.Popen([sys.executable, "bench/bench_overhead.py", "--quick"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=300)  # it takes about 10 s
    except subprocess.TimeoutExpired:
        # Seen twice in about ten runs of the suite, never alone: say where
        # each of its processes waits, so that the next one can be found.
        where = "\n".join(_waiting(pid) for pid in _tree(proc.pid))
        for pid in reversed(_tree(proc.pid)):
            os.kill(pid, signal.SIGKILL)  # ours: the benchmark and what it started
        proc.communicate()
        pytest.fail(f"the benchmark hung; its processes:\n{where}")
    assert proc.returncode == 0, err[-3000:]
    results = json.loads(out)
    assert set(results["rates"]) == {"untraced", "tcpwdist", "bpftrace", "empty", "strace"}
    assert all(r["64"]["1"]["median"] > 0 for r in results["rates"].values())
    assert results["bpf"]["tcpwdist"]["events"] > 0
    assert results["latency"]["1"]["tcpwdist"]["peak_rss_kb"]["median"] > 0
    assert results["latency"]["1"]["tcpwdist"]["report_s"]["median"] > 0

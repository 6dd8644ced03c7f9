"""The benchmarks' quick modes, so CI keeps them working (no speed asserted:
speed is measured in bench/, and written down in BENCHMARKS.md)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT


def test_parse_benchmark_quick():
    done = subprocess.run([sys.executable, "bench/bench_parse.py", "--quick"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr  # 1 if tcpwdist and the baseline disagree
    assert "tcpwdist -r -o json: median" in done.stdout and "ratio:" in done.stdout


def test_stream_benchmark_quick():
    done = subprocess.run([sys.executable, "bench/bench_stream.py", "--quick"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr  # 1 if the report was not exact
    assert "report exact: True" in done.stdout and "peak RSS" in done.stdout


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("bpftrace") is None
                    or shutil.which("gcc") is None or shutil.which("strace") is None,
                    reason="the overhead benchmark needs root, bpftrace, gcc and strace")
def test_overhead_benchmark_quick(tmp_path):
    done = subprocess.run([sys.executable, "bench/bench_overhead.py", "--quick"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout)
    assert set(results["rates"]) == {"untraced", "tcpwdist", "bpftrace", "empty", "strace"}
    assert all(r["64"]["1"]["median"] > 0 for r in results["rates"].values())
    assert results["bpf"]["tcpwdist"]["events"] > 0
    assert results["latency"]["1"]["tcpwdist"]["peak_rss_kb"]["median"] > 0
    assert results["latency"]["1"]["tcpwdist"]["report_s"]["median"] > 0

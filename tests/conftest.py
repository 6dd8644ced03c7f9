"""Shared test helpers: the real captures and their ground truth."""

from __future__ import annotations

import base64
import json
import os
import signal
import time
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).parent.parent

# Every real capture (not the stderr side files), found by glob: adding a
# capture with its truth file is adding a test case.
CAPTURES = sorted(p for p in FIXTURES.glob("0.*/*.txt") if not p.name.endswith(".stderr.txt"))


def truth_for(capture: Path) -> dict:
    scenario = capture.name.split(".")[0]
    return json.loads((capture.parent / f"{scenario}.truth.json").read_text())


def expected_buckets(truth: dict) -> dict[tuple[int, bytes], dict[int, int]]:
    """{(pid, comm bytes): {bucket lower bound: count}} for every workload pid."""
    return {(p["pid"], base64.b64decode(p["comm_b64"])):
            {b["lo"]: b["count"] for b in p["expected_hist"]}
            for p in truth["processes"]}


def capture_id(p: Path) -> str:
    return f"{p.parent.name}/{p.name}"


def _bpftrace_pids() -> set[int]:
    """Live (not zombie) bpftrace processes: the real one by its comm, the
    fake one (a Python script) by its command line."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            real = (entry / "comm").read_text().strip() == "bpftrace"
            if not real and b"tests/fake/bpftrace" not in (entry / "cmdline").read_bytes():
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            pids.add(int(entry.name))
    return pids


@pytest.fixture(autouse=True)
def no_bpftrace_left_behind():
    """Every test: no bpftrace it started may outlive it (by pid, not name)."""
    before = _bpftrace_pids()
    yield
    deadline = time.monotonic() + 3
    while (left := _bpftrace_pids() - before) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"bpftrace processes left running: {sorted(left)}"

"""-r streams: a dump is read block by block and window by window, and
what it finds is what one parse of the whole text finds; memory grows
with what the report holds, not with the input."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import given, strategies as st

from conftest import FIXTURES, ROOT
from test_dump_properties import SETTINGS, expected, hostile_processes, text_dump
from tcpwdist import dump, textdump

# Every capture and hand-written case there is, text and JSON.
INPUTS = sorted(p for p in FIXTURES.rglob("*.txt") if not p.name.endswith(".stderr.txt"))


def streamed(data: bytes, chunk: int, window: int, margin: int) -> dump.Dump:
    """``data`` read through dump.read in ``chunk``-byte reads, the text
    reader's windows made ``window`` and ``margin`` long."""
    snapshots: list[dump.Snapshot] = []
    blocks = [data[i:i + chunk] for i in range(0, len(data), chunk)]
    with mock.patch.object(textdump, "WINDOW", window), \
            mock.patch.object(textdump, "MARGIN", margin):
        parsed = dump.read(blocks, snapshots.append)
    return dataclasses.replace(parsed, snapshots=tuple(snapshots))


def whole(data: bytes) -> dump.Dump | str:
    try:
        return dump.parse(data)
    except dump.DumpError as exc:
        return str(exc)


def windowed(data: bytes, chunk: int, window: int, margin: int) -> dump.Dump | str:
    try:
        return streamed(data, chunk, window, margin)
    except dump.DumpError as exc:
        return str(exc)


@pytest.mark.parametrize("path", INPUTS, ids=lambda p: str(p.relative_to(FIXTURES)))
def test_small_blocks_and_windows_read_what_one_parse_reads(path):
    data = path.read_bytes()
    # 1 KB windows: every capture is read in several, each cut near its end.
    assert windowed(data, 61, 1024, 600) == whole(data)


def test_the_comparison_sees_a_window_cut_in_the_wrong_place():
    """Without its margin the window reader mis-reads a key cut by the
    window's end: the test above would see it."""
    procs = [(7, b"a]: \n\n@[1, ssh", {3: 5}), (8, b"b", {2: 1})]
    data = text_dump(procs, "0.17", False) * 200  # 200 dumps, past the first block
    want = whole(data)
    assert all(windowed(data, chunk, 1024, 600) == want for chunk in range(50, 60))
    assert any(windowed(data, chunk, 1024, 0) != want for chunk in range(50, 90))


@SETTINGS
@given(procs=hostile_processes, era=st.sampled_from(["0.9.2", "0.17", "0.23", "0.24"]),
       pty=st.booleans(), chunk=st.integers(1, 300), window=st.integers(1, 2000),
       repeat=st.integers(1, 6))
def test_hostile_comms_read_the_same_window_by_window(procs, era, pty, chunk, window, repeat):
    data = text_dump(procs, era, pty)
    got = streamed(data, chunk, window, 600)
    want = expected(procs)
    for snap in got.snapshots:
        assert {(h.pid, h.comm): h.buckets for h in dump.processes(snap)} == want
    assert got.snapshots


sys.path.insert(0, str(ROOT / "bench"))
import gendump  # noqa: E402


def peak_rss_reading(snapshots: int, keys: int = 200) -> tuple[float, dict[int, list[int]]]:
    """tcpwdist -r - reading a generated capture of ``snapshots`` once-a-
    second dumps from a pipe: its peak RSS (MiB) and what it reported,
    {pid: counts per bucket}."""
    gen = subprocess.Popen([sys.executable, str(ROOT / "bench" / "gendump.py"), "--capture",
                            str(keys), str(snapshots)], stdout=subprocess.PIPE)
    out = Path(os.environ.get("TMPDIR", "/tmp")) / f"tcpwdist-stream-{os.getpid()}.json"
    with open(out, "wb") as sink:
        reader = subprocess.Popen([sys.executable, "-m", "tcpwdist", "-r", "-", "-o", "json"],
                                  cwd=ROOT, stdin=gen.stdout, stdout=sink)
    assert gen.stdout is not None
    gen.stdout.close()
    _, status, usage = os.wait4(reader.pid, 0)
    reader.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait
    assert gen.wait(timeout=60) == 0 and reader.returncode == 0
    doc = json.loads(out.read_text())
    out.unlink()
    lows = {lo: i for i, lo in enumerate(gendump.CAPTURE_LOWS)}
    got = {}
    for p in doc["processes"]:
        counts = [0] * len(lows)
        for b in p["buckets"]:
            counts[lows[b["value"]]] = b["count"]
        got[p["pid"]] = counts
    return usage.ru_maxrss / 1024, got


def test_a_long_capture_reads_in_the_memory_of_one_snapshot():
    """A -w capture four times longer (6.6 MB, then 26 MB, from a pipe):
    the reader's peak memory stays where it was.  Before it streamed, the
    reader held the whole text, and the longer capture took 126 MB more."""
    short, got_short = peak_rss_reading(40)
    long, got_long = peak_rss_reading(160)
    assert got_short == {pid: gendump.final_counts(pid, 40) for pid in range(1000, 1200)}
    assert got_long == {pid: gendump.final_counts(pid, 160) for pid in range(1000, 1200)}
    assert long - short < 8, f"peak RSS {short:.1f} MiB, then {long:.1f} MiB"


def test_dev_zero_is_refused_at_its_first_block():
    """Endless input without a line end: the NUL bytes refuse it in the first
    block (before, -r /dev/zero read until MemoryError)."""
    done = subprocess.run([sys.executable, "-m", "tcpwdist", "-r", "/dev/zero"], cwd=ROOT,
                          capture_output=True, timeout=60)
    assert done.returncode == 7
    assert done.stderr.decode().splitlines() == [
        "tcpwdist: error: line 1: input holds NUL bytes: this is not bpftrace's text output"]


def test_a_line_that_never_ends_is_refused_past_the_longest_a_map_prints():
    endless = (b"a" * 1000 for _ in range(100))
    with mock.patch.object(dump, "LONGEST_LINE", 50_000), \
            pytest.raises(dump.DumpError, match="line 1 runs over"):
        dump.read(endless, lambda snap: None)

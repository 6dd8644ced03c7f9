"""Reports: golden files from the real captures (every version, transport
and format of one run gives the same report), terminal safety, widths."""

from __future__ import annotations

import csv
import io
import json
import re
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from conftest import CAPTURES, capture_id
from tcpwdist import dump, options, report, table
from tcpwdist.shown import cut_cmd, safe_text
from tcpwdist.dump import Bucket, ProcessHist

GOLDEN = Path(__file__).parent / "golden" / "reports"
# The interval pty captures were stopped at other moments than the pipe
# ones: their intervals split the same writes differently.
SAME_RUN = [c for c in CAPTURES if not (".interval-" in c.name and "pty" in c.name)]


def scenario(capture: Path) -> str:
    name = capture.name.split(".")[0]
    return "interval" if ".interval-" in capture.name else name


def render(tcpwdist, capture: Path, fmt: str) -> str:
    done = tcpwdist("-r", str(capture), "-o", fmt)
    assert done.code == 0, done.err
    return re.sub(r'"source":"[^"]*",', "", done.out)


@pytest.mark.parametrize("fmt", options.FORMATS)
@pytest.mark.parametrize("capture", [c for c in SAME_RUN
                                     if scenario(c) != "interval" or ".interval-" in c.name],
                         ids=capture_id)
def test_report_golden(tcpwdist, capture, fmt):
    assert render(tcpwdist, capture, fmt) == golden(capture, fmt).read_text()


def golden(capture: Path, fmt: str) -> Path:
    """One golden report per scenario where all of a run's captures agree
    (0.17, 0.23: one workload, stopped together); one per capture where
    they cannot (the 0.27.1 run had other writers going on, caught at
    slightly different moments by each capture)."""
    own = GOLDEN / capture.parent.name / f"{capture.name}.{fmt}"
    return own if own.parent.is_dir() else GOLDEN / f"{scenario(capture)}.{fmt}"


def hist(comm: bytes, *counts: tuple[int, int], pid: int = 1) -> ProcessHist:
    return ProcessHist(pid, comm, tuple(Bucket(lo, lo * 2 or 1, n) for lo, n in counts))


@pytest.mark.parametrize("raw,shown", [
    (b"plain", "plain"),
    (b"web content", "web content"),
    (b"\x1b[2Jevil", "\\x1b[2Jevil"),
    (b"tab\there", "tab\\there"),
    (b"new\nline", "new\\nline"),
    (b"back\\slash", "back\\\\slash"),
    (b"bad\xffbyte", "bad\\xffbyte"),
    ("h\u00e9llo".encode(), "h\u00e9llo"),
    ("rtl\u202eoverride".encode(), "rtl\\u202eoverride"),
    (b"bell\x07\x7f", "bell\\x07\\x7f"),
    ("c1\u009bcsi".encode(), "c1\\x9bcsi"),
])
def test_safe_text(raw, shown):
    assert safe_text(raw) == shown
    assert all(ch.isprintable() for ch in safe_text(raw))


def test_no_raw_control_bytes_reach_the_terminal():
    rows = [report.Row(hist(b"\x1b]0;pwned\x07\x1b[31m", (1, 2)))]
    for fmt in ("dist", "table"):
        text = report.render(fmt, rows)
        assert "\x1b" not in text and "\x07" not in text
    doc = json.loads(report.render("json", rows))
    assert bytes.fromhex(doc["processes"][0]["comm_hex"]) == b"\x1b]0;pwned\x07\x1b[31m"


def test_lines_fit_80_columns_and_long_cmds_are_cut_with_a_marker():
    cmd = b"/usr/bin/python3 -m http.server --bind 127.0.0.1 --directory /srv/www/very/long"
    rows = [report.Row(hist(b"python3", (1, 5), (1024, 99999999), pid=4194304), cmd,
                       bytes=123456789012),
            report.Row(hist(b"other", (1, 5)), cmd, host="a-long-host-name")]
    for fmt, stamp in (("dist", None), ("dist", "12:00:00"), ("table", None),
                       ("table", "12:00:00")):
        text = report.render(fmt, rows, stamp=stamp)
        assert max(len(line) for line in text.splitlines()) <= 80, text
        assert "..." in text and cmd.decode() not in text
    assert json.loads(report.render("json", rows))["processes"][0]["cmd"] == cmd.decode()


def test_dist_keeps_zero_rows_inside_the_range_and_orders_busiest_first():
    quiet = hist(b"quiet", (8, 1), pid=2)
    busy = ProcessHist(3, b"busy", (Bucket(2, 4, 5), Bucket(4, 8, 0), Bucket(8, 16, 5)))
    text = report.render_dist(report.order([report.Row(quiet), report.Row(busy)]))
    assert text.index("busy") < text.index("quiet")
    assert re.search(r"^ +4 \| +0$", text, re.M)
    assert re.search(r"^ +2 \|@{20} +5$", text, re.M)  # half the writes: half the bar


@pytest.mark.parametrize("cmd,width,shown", [
    ("/usr/bin/python3 -u -X importtime /srv/app/a/very/long/path/server.py --port 8080",
     60, ".../python3 -u -X importtime .../server.py --port 8080"),
    ("/usr/bin/python3 -u -X importtime /srv/app/a/very/long/path/server.py --port 8080",
     44, ".../python3 ... .../server.py --port 8080"),
    ("/usr/lib/jvm/java-17-openjdk-amd64/bin/java -Xmx2g -XX:+UseG1GC -jar /opt/app/svc.jar",
     40, ".../java ... .../svc.jar"),
    ("/usr/bin/python3 tests/workload.py --comm tw-1 --sizes 1x40,4x20,3392x1", 40,
     "/usr/bin/python3 tests/workload.py --..."),
    ("nginx: worker process", 20, "nginx: worker pro..."),
])
def test_a_cut_cmd_keeps_the_program_and_its_script(cmd, width, shown):
    assert cut_cmd(cmd, width) == shown
    assert cut_cmd(cmd, len(cmd)) == cmd


@settings(max_examples=300, deadline=None)
@given(words=st.lists(st.text(st.sampled_from("ab/.-py"), min_size=1, max_size=30),
                      min_size=1, max_size=8), width=st.integers(8, 100))
def test_a_cut_cmd_always_fits(words, width):
    cmd = " ".join(words)
    shown = cut_cmd(cmd, width)
    assert len(shown) <= width and (shown == cmd or len(cmd) > width)


def test_a_narrow_terminal_with_times_and_hosts_still_cuts_cmd_sanely():
    rows = [report.Row(hist(b"python3", (1, 5), pid=42), b"/usr/bin/python3 /srv/app.py " * 4,
                       host="a-long-host-name"),
            report.Row(hist(b"other", (1, 5), pid=43), b"other", host="b")]
    text = report.render_dist(rows, "19:00:19.159279", width=40)
    heading = text.splitlines()[0]
    assert heading.endswith("CMD: /usr/bin/python3 ..."), heading  # 20 columns of CMD


def test_wide_terminals_get_wide_lines():
    cmd = b"/usr/bin/python3 /srv/app/server.py " + b"--flag " * 30
    rows = [report.Row(hist(b"python3", (1, 5), pid=42), cmd)]
    for fmt in ("dist", "table"):
        wide = report.render(fmt, rows, width=200)
        assert max(len(line) for line in wide.splitlines()) == 200, wide
        assert max(len(line) for line in report.render(fmt, rows).splitlines()) <= 80


def test_a_merged_dist_keeps_the_zero_rows_between_its_members():
    rows = [report.Row(hist(b"web", (1, 3), pid=1)), report.Row(hist(b"web", (64, 2), pid=2))]
    [merged] = report.group(rows, "comm")
    text = report.render_dist([merged])
    values = [int(ln.split("|")[0]) for ln in text.splitlines() if "|" in ln]
    assert values == [1, 2, 4, 8, 16, 32, 64]
    assert re.search(r"^ +1 \|@{24} +3$", text, re.M)
    # A gap off the power-of-two sequence (a hand-made dump) is left alone.
    odd = ProcessHist(3, b"odd", (Bucket(1, 2, 1), Bucket(3, 5, 1)))
    assert [b.lo for b in report.with_zero_rows(odd.buckets)] == [1, 3]


def test_timestamp_is_shown_once_per_interval_in_dist():
    series = report.Series(options.Options(fmt="dist", timestamp=True), numbered=True)
    text = series.next([report.Row(hist(b"x", (1, 5), pid=9))], "12:00:01")
    assert text.count("12:00:01") == 1 and text.startswith("12:00:01\n")
    table = report.Series(options.Options(fmt="table", timestamp=True), numbered=True)
    assert table.next([report.Row(hist(b"x", (1, 5), pid=9))], "12:00:01").count(
        "12:00:01") == 2  # the heading, and the TIME column of the one row


def test_small_writes_are_counted_from_the_buckets_in_every_format():
    row = report.Row(hist(b"chatty", (1, 40), (4, 20), (16384, 3), pid=7))
    assert [report.small_writes(row.hist.buckets, n) for n in (1, 2, 64, 32768)] == [0, 40, 60, 63]
    assert "   <64: 60 (95%)" in report.render_dist([row])
    assert "   <8: 60 (95%)" in report.render_dist([row], small=8)
    assert re.search(r"^\s*7\s+chatty\s+63 .* 95%$", table.render_table([row]), re.M)
    [p] = json.loads(report.render_json([row]))["processes"]
    assert p["small"] == {"under": 64, "writes": 60, "share": 0.9524}
    first = next(csv.DictReader(io.StringIO(report.render_csv([row], small=2))))
    assert (first["small_under"], first["small_writes"]) == ("2", "40")


@pytest.mark.parametrize("n,edge", [(1, 1), (2, 2), (63, 32), (64, 64), (100, 64), (4096, 4096)])
def test_small_rounds_down_to_a_bucket_edge(n, edge):
    assert options.small_edge(n) == edge


@pytest.mark.parametrize("part,whole,shown", [(0, 5, "0%"), (1, 1000, "<1%"), (999, 1000, ">99%"),
                                              (5, 5, "100%"), (1, 3, "33%"), (0, 0, "-")])
def test_small_share_never_rounds_to_a_lie(part, whole, shown):
    assert report._share(part, whole) == shown


FAILED_DUMP = """\
@[100, busy]:
[1]                   50 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|

@failed[100, busy]: 7
@failed[200, stalled]: 3
"""


def test_failed_sends_are_reported_and_a_process_with_only_failures_too():
    [snap] = dump.parse(FAILED_DUMP).snapshots
    rows = report.rows_of(snap, "@")
    assert [(r.hist.pid, r.hist.writes, r.failed) for r in rows] == [(100, 50, 7), (200, 0, 3)]
    assert "   <64: 50 (100%)   failed: 7" in report.render_dist(rows)
    assert "   writes: 0   p50: -   p99: -   <64: 0 (-)   failed: 3" in report.render_dist(rows)
    assert [p["failed"] for p in json.loads(report.render_json(rows))["processes"]] == [7, 3]
    [merged] = report.group(rows, "host")
    assert merged.failed == 10
    # A dump without @failed: not counted (null), unless the program counted
    # them, which prints nothing of an empty map: none failed.
    [plain] = dump.parse(FAILED_DUMP.split("@failed")[0]).snapshots
    assert [r.failed for r in report.rows_of(plain, "@")] == [None]
    counted = report.Counting(failed=True)
    assert [r.failed for r in report.rows_of(plain, "@", counting=counted)] == [0]


SPLICED_DUMP = """\
@[100, nginx]:
[128, 256)             4 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|
[256, 512)             0 |                                                    |
[512, 1K)              0 |                                                    |
[1K, 2K)               0 |                                                    |
[2K, 4K)               0 |                                                    |
[4K, 8K)               0 |                                                    |
[8K, 16K)              0 |                                                    |
[16K, 32K)             0 |                                                    |
[32K, 64K)             1 |@@@@@@@@@@@@@                                       |
[64K, 128K)           17 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|

@spliced[100, nginx]: 18

@splicecalls[100, nginx]:
[64K, 128K)            1 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|
[128K, 256K)           0 |                                                    |
[256K, 512K)           0 |                                                    |
[512K, 1M)             0 |                                                    |
[1M, 2M)               1 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|

"""


def test_spliced_writes_and_their_calls_are_reported_in_every_format():
    [snap] = dump.parse(SPLICED_DUMP).snapshots
    [row] = report.rows_of(snap, "@")
    assert (row.hist.writes, row.spliced) == (22, 18)
    assert "   spliced: 18 (2 sendfile/splice calls)" in report.render_dist([row])
    [p] = json.loads(report.render_json([row]))["processes"]
    assert p["spliced"] == 18 and p["splice_calls"]["calls"] == 2
    assert [(b["value"], b["count"]) for b in p["splice_calls"]["buckets"] if b["count"]] == \
        [(65536, 1), (1048576, 1)]
    first = next(csv.DictReader(io.StringIO(report.render_csv([row]))))
    assert first["spliced"] == "18"
    assert re.search(r" 22 .* 18$", table.render_table([row]).splitlines()[-1])
    # Not asked for: null; asked for and none: 0.
    [plain] = dump.parse(SPLICED_DUMP.split("@spliced")[0]).snapshots
    assert [r.spliced for r in report.rows_of(plain, "@")] == [None]
    counted = report.Counting(spliced=True)
    assert [r.spliced for r in report.rows_of(plain, "@", counting=counted)] == [0]


def test_open_buckets_are_labelled():
    rows = [report.Row(ProcessHist(1, b"x", (Bucket(None, 0, 1), Bucket(100, None, 2))))]
    text = table.render_table(rows)
    assert "< 0" in text and ">= 100" in text
    [p] = json.loads(report.render_json(rows))["processes"]
    assert p["buckets"] == [{"value": None, "max": -1, "count": 1},
                            {"value": 100, "max": None, "count": 2}]


# Nothing from a traced process or an input file reaches a terminal or a
# spreadsheet raw: any comm, command line, host name or time, every format.
any_text = st.text(st.characters(codec="utf-8") | st.sampled_from(list("\x1b\x07\r\n\t=+-@")),
                   max_size=20)


@settings(max_examples=200, deadline=None)
@given(comm=st.binary(max_size=15), cmd=st.none() | st.binary(max_size=40),
       host=st.none() | any_text, stamp=st.none() | any_text)
def test_no_control_byte_reaches_a_text_report_and_no_csv_cell_is_a_formula(comm, cmd, host,
                                                                            stamp):
    hist = dump.ProcessHist(7, comm, (dump.Bucket(1, 2, 3),))
    rows = [report.Row(hist, cmd, host)]
    for fmt in ("dist", "table", "csv"):
        series = report.Series(options.Options(fmt=fmt, timestamp=True))
        text = series.next(rows, stamp)
        assert all(ch == "\n" or unicodedata.category(ch) not in ("Cc", "Cf") for ch in text), \
            (fmt, text)
        if fmt == "csv":
            for record in list(csv.reader(io.StringIO(text)))[1:]:
                assert all(cell[:1] not in ("=", "+", "-", "@") for cell in record), record

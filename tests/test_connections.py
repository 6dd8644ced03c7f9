"""--connections: the program's second map, its keys read from the right,
and every format's connection blocks, from real captures of bpftrace
0.17, 0.23 and 0.27 (tests/fixtures/captured/*-connections.*)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from conftest import FIXTURES
from tcpwdist import conns, dump, program, report, table
from tcpwdist.conns import Connection
from tcpwdist.dump import Bucket, ProcessHist

CAPTURED = FIXTURES / "captured"
CAPTURES = sorted(CAPTURED.glob("*-connections.*.txt"))


def truth_of(capture: Path) -> dict:
    return json.loads(capture.with_name(capture.name[:-4] + ".truth.json").read_text())


def comm_as_shown(comm: str, capture: Path) -> bytes:
    # bpftrace 0.24+ strips every space from a JSON key, comm included.
    spaceless = ".json" in capture.name and capture.name >= "0.24"
    return comm.encode().replace(b" ", b"") if spaceless else comm.encode()


def test_the_captures_are_all_there():
    assert [c.name.split("-")[0] for c in CAPTURES] == ["0.17.0", "0.17.0", "0.23.2", "0.23.2",
                                                        "0.27.1", "0.27.1"]


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda p: p.name)
def test_a_capture_reports_each_connection_exactly(tcpwdist, capture):
    done = tcpwdist("-r", str(capture), "-o", "json")
    assert done.code == 0, done.err
    [doc] = done.docs
    for want in truth_of(capture)["processes"]:
        [p] = [p for p in doc["processes"] if p["pid"] == want["pid"]]
        assert bytes.fromhex(p["comm_hex"]) == comm_as_shown(want["comm"], capture)
        got = {(c["laddr"], c["lport"], c["raddr"], c["rport"]):
               {b["value"]: b["count"] for b in c["buckets"] if b["count"]}
               for c in p["connections"]}
        assert got == {(c["laddr"], c["lport"], c["raddr"], c["rport"]):
                       {int(k): n for k, n in c["buckets"].items()}
                       for c in want["connections"]}
        assert sum(c["writes"] for c in p["connections"]) == p["writes"]
    # Every process on the host had its writes on some connection.
    assert all(sum(c["writes"] for c in p["connections"]) == p["writes"]
               for p in doc["processes"])
    assert doc["warnings"] == []


@pytest.mark.parametrize("key, sep, want", [
    ("1, a, b, 127.0.0.1, 80, 10.0.0.1, 443", ", ", (1, b"a, b", "127.0.0.1", 80, "10.0.0.1",
                                                     443)),
    ("7,x,::1,5,::ffff:10.1.2.3,6", ",", (7, b"x", "::1", 5, "::ffff:10.1.2.3", 6)),
    ("7, c\n, 1, ::1, 2, ::1, 40216, ::1, 44395", ", ", (7, b"c\n, 1, ::1, 2", "::1", 40216,
                                                         "::1", 44395)),
    ("1, a, 127.0.0.1, 80, evil\x1b[31m, 443", ", ", None),  # no address: no connection
    ("1, a, 127.0.0.1, 80, 10.0.0.1, 65536", ", ", None),
    ("1, a, 127.0.0.1, 80, 10.0.0.1", ", ", None),
    ("x, a, 127.0.0.1, 80, 10.0.0.1, 443", ", ", None),
    (None, ", ", None),
])
def test_a_key_is_read_from_the_right(key, sep, want):
    assert conns.split_key(key, sep) == want


def test_the_program_keeps_the_canonical_map_and_adds_one_per_connection():
    plain = program.generate(program.ProgramOptions("kprobe"), header=False)
    assert "@conn" not in plain and "ntop" not in plain
    text = program.generate(program.ProgramOptions("kprobe", connections=True), header=False)
    assert text.startswith("kprobe:tcp_sendmsg { @[pid, comm] = hist(arg2); "
                           "$sk = ((struct sock *)arg0); if ($sk->__sk_common.skc_family == 10)")
    assert text.count("@conn[pid, comm, ntop(") == 2
    assert "ntop(10, $sk->__sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8)" in text
    assert "ntop(2, $sk->__sk_common.skc_daddr)" in text
    # Interval reports print it beside @: every report has its connections.
    every = program.generate(program.ProgramOptions("tracepoint", interval=1.0,
                                                    connections=True), header=False)
    assert "interval:s:1 { print(@); print(@failed); print(@conn);" in every


def _row() -> report.Row:
    a = Connection("127.0.0.1", 40000, "127.0.0.1", 6379, (Bucket(4, 8, 5),))
    b = Connection("::1", 50000, "::1", 6379, (Bucket(1024, 2048, 2),))
    return report.Row(ProcessHist(10, b"redis", (Bucket(4, 8, 5), Bucket(1024, 2048, 2))),
                      connections=(a, b))


def test_dist_gives_each_connection_a_block_after_its_process():
    text = report.render_dist([_row()])
    blocks = text.split("\n\n")
    assert blocks[2] == ("  connection 127.0.0.1:40000 -> 127.0.0.1:6379\n"
                         "     writes: 5   p50: [4, 8)   p99: [4, 8)   <64: 5 (100%)")
    assert blocks[3].splitlines()[1:] == [f"{4:>16} |{'@' * 40} 5"]
    assert blocks[4].startswith("  connection [::1]:50000 -> [::1]:6379\n")


def test_table_csv_and_json_give_every_connection_its_buckets():
    row = _row()
    lines = table.render_table([row]).splitlines()
    assert ["10", "[::1]:50000", "[::1]:6379", "1024", "2"] in [ln.split() for ln in lines]
    rows = list(csv.DictReader(io.StringIO(report.render_csv([row]))))
    own = [r for r in rows if not r["laddr"]]
    per_conn = [r for r in rows if r["laddr"]]
    # Process rows and connection rows each add up to the process's writes.
    assert sum(int(r["count"]) for r in own) == sum(int(r["count"]) for r in per_conn) == 7
    assert (per_conn[1]["raddr"], per_conn[1]["rport"], per_conn[1]["writes"]) == ("::1", "6379",
                                                                                   "2")
    [p] = json.loads(report.render_json([row]))["processes"]
    assert [(c["lport"], c["writes"], c["small"]["writes"]) for c in p["connections"]] == [
        (40000, 5, 5), (50000, 2, 0)]


def test_grouping_by_comm_adds_up_a_connection_two_processes_share():
    a, b = _row(), _row()
    b = report.Row(ProcessHist(11, b"redis", a.hist.buckets), connections=a.connections[:1])
    [merged] = report.group([a, b], "comm")
    assert merged.connections is not None
    assert [(c.lport, c.writes) for c in merged.connections] == [(40000, 10), (50000, 2)]


def test_a_full_connection_map_is_a_warning_with_the_number_missing():
    # bpftrace 0.17 drops in silence: a map as full as its limit is full.
    row = "[64, 128)   {} |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|\n\n"
    text = ("Attaching 2 probes...\n\n\n@[5, w]: \n" + row.format(5)
            + "@conn[5, w, 127.0.0.1, 1, 127.0.0.1, 2]: \n" + row.format(1)
            + "@conn[5, w, 127.0.0.1, 3, 127.0.0.1, 2]: \n" + row.format(1))
    said = report.dump_notes(dump.parse(text), "@", max_keys=2)
    # The process map (1 entry of 2) holds every write: no warning of it.
    assert said == ["warning: bpftrace's connection map was full: 3 writes are in their "
                    "process's histogram but in no connection's; raise --max-keys (now 2)"]

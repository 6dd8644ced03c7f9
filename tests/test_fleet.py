"""Reports people act on: summaries, sorting, CSV, the JSON schema, reading
tcpwdist's own JSON back, and merging reports from several hosts."""

from __future__ import annotations

import csv
import io
import json

import jsonschema

from conftest import CAPTURES, ROOT, Run
from tcpwdist import report
from tcpwdist.dump import Bucket

SCHEMA = json.loads((ROOT / "tcpwdist" / "report.schema.json").read_text())
NASTY = [c for c in CAPTURES if c.name.startswith("nasty.")]
BASIC = ROOT / "tests/fixtures/0.17.0/basic.pipe.txt"


def docs(done: Run) -> list[dict]:
    """The run's JSON documents, each checked against the schema."""
    assert done.code == 0, done.err
    for doc in done.docs:
        jsonschema.validate(doc, SCHEMA)
    return done.docs


def test_golden_json_reports_validate():
    for path in (ROOT / "tests/golden/reports").glob("*.json"):
        for line in path.read_text().splitlines():
            jsonschema.validate(json.loads(line), SCHEMA)


def test_percentile_buckets():
    b = (Bucket(1, 2, 50), Bucket(2, 4, 49), Bucket(1024, 2048, 1))
    assert report.percentile(b, 0.5) == b[0]
    assert report.percentile(b, 0.99) == b[1]  # the 99th of 100 writes
    assert report.percentile(b + (Bucket(4096, 8192, 1),), 0.99) == b[2]
    assert report.percentile((), 0.5) is None


def test_summary_in_every_format(tcpwdist):
    [d] = docs(tcpwdist("-r", str(BASIC), "-o", "json"))
    p = next(p for p in d["processes"] if p["pid"] == 23478)
    assert (p["writes"], p["p50"]["value"], p["p99"]["value"]) == (25, 1, 4194304)
    dist = tcpwdist("-r", str(BASIC)).out
    assert "   writes: 25   p50: [1]   p99: [4M, 8M)   <64: 13 (52%)" in dist
    table = tcpwdist("-r", str(BASIC), "-o", "table").out
    assert any(line.split()[-5:] == ["25", "[1]", "[4M,", "8M)", "52%"]
               for line in table.splitlines()), table
    rows = list(csv.DictReader(io.StringIO(tcpwdist("-r", str(BASIC), "-o", "csv")
                                           .out)))
    mine = [r for r in rows if r["pid"] == "23478"]
    assert {(r["writes"], r["p50"], r["p99"]) for r in mine} == {("25", "[1]", "[4M, 8M)")}


def test_csv_rows_match_json(tcpwdist):
    [d] = docs(tcpwdist("-r", str(NASTY[0]), "-o", "json"))
    rows = list(csv.DictReader(io.StringIO(tcpwdist("-r", str(NASTY[0]), "-o", "csv")
                                           .out)))
    want = [(str(p["pid"]), p["comm"], str(b["value"]), str(b["count"]))
            for p in d["processes"] for b in p["buckets"]]
    assert [(r["pid"], r["comm"], r["value"], r["count"]) for r in rows] == want
    assert list(rows[0]) == report.CSV_COLUMNS


def test_sort_and_top(tcpwdist):
    [d] = docs(tcpwdist("-r", str(BASIC), "-o", "json", "--sort", "pid", "--top", "2"))
    assert [p["pid"] for p in d["processes"]] == [23473, 23476]
    [d] = docs(tcpwdist("-r", str(BASIC), "-o", "json", "--sort", "comm"))
    assert [p["comm"] for p in d["processes"]] == sorted(p["comm"] for p in d["processes"])
    [d] = docs(tcpwdist("-r", str(BASIC), "-o", "json"))
    writes = [p["writes"] for p in d["processes"]]
    assert writes == sorted(writes, reverse=True)


def test_own_json_reads_back_to_the_same_report(tcpwdist, tmp_path):
    for capture in (BASIC, NASTY[0], ROOT / "tests/fixtures/0.23.2/interval.interval-pipe.txt"):
        first = tcpwdist("-r", str(capture), "-o", "json")
        (tmp_path / "r.json").write_text(first.out)
        again = tcpwdist("-r", str(tmp_path / "r.json"), "-o", "json")

        def strip(done: Run) -> list[dict]:
            return [{k: v for k, v in x.items() if k != "source"} for x in docs(done)]

        assert strip(first) == strip(again)


def test_merge_hosts_adds_exactly(tcpwdist, tmp_path):
    # Two "hosts": the same capture's report, relabelled.
    [d] = docs(tcpwdist("-r", str(BASIC), "-o", "json"))
    for host in ("web-1", "web-2"):
        (tmp_path / f"{host}.json").write_text(json.dumps({**d, "host": host}) + "\n")
    files = [str(tmp_path / "web-1.json"), str(tmp_path / "web-2.json")]
    [by_pid] = docs(tcpwdist(*sum((["-r", f] for f in files), []), "-o", "json"))
    assert {p["host"] for p in by_pid["processes"]} == {"web-1", "web-2"}
    assert len(by_pid["processes"]) == 2 * len(d["processes"])
    [by_comm] = docs(tcpwdist(*sum((["-r", f] for f in files), []), "-o", "json",
                              "--group-by", "comm"))
    one = {p["comm"]: p for p in d["processes"]}
    for p in by_comm["processes"]:
        assert p["pid"] is None and p["members"] == 2
        assert p["writes"] == 2 * one[p["comm"]]["writes"]
        assert [b["count"] for b in p["buckets"]] == [2 * b["count"] for b in
                                                      one[p["comm"]]["buckets"]]
    [by_host] = docs(tcpwdist(*sum((["-r", f] for f in files), []), "-o", "json",
                              "--group-by", "host"))
    assert {p["host"]: p["writes"] for p in by_host["processes"]} == \
        {h: sum(p["writes"] for p in d["processes"]) for h in ("web-1", "web-2")}


def test_merge_raw_dumps_names_them_by_file(tcpwdist):
    done = tcpwdist("-r", str(NASTY[0]), "-r", str(NASTY[1]), "-o", "json")
    [d] = docs(done)
    assert {p["host"] for p in d["processes"]} == {str(NASTY[0]), str(NASTY[1])}
    assert d["sources"] == [str(NASTY[0]), str(NASTY[1])]


def test_group_by_comm_in_text_formats(tcpwdist):
    done = tcpwdist("-r", str(NASTY[0]), "-r", str(NASTY[1]), "--group-by", "comm")
    text = done.out
    assert " COMM: web content  (2 processes)" in text
    assert max(len(line) for line in text.splitlines()) <= 80


def test_the_typed_meta_is_what_the_schema_describes():
    per_report = {"tcpwdist", "processes", "time", "interval", "group_by"}  # the series adds
    described = set(SCHEMA["properties"]) - per_report
    assert set(report.META_FIELDS) == described
    full = report.Meta("live", None, "h", "6.1", "bpftrace v0.17.0", "rawtracepoint",
                       "accepted", "2026-12-01T10:00:00+00:00", 1.5, ("w",), True)
    jsonschema.validate({"tcpwdist": 1, **full.fields(), "processes": []}, SCHEMA)


def test_filters_read_back_add_to_those_of_the_input(tcpwdist, tmp_path):
    from tcpwdist import report
    from tcpwdist.dump import Bucket, ProcessHist
    rows = [report.Row(ProcessHist(pid, comm, (Bucket(1, 2, 1),)), cmd_source=src)
            for pid, comm, src in ((1, b"a", "cmdline"), (2, b"b", "comm"))]
    filters = report.filters_of(comms=["a", "b"], ports=[443])
    (tmp_path / "r.json").write_text(report.render_json(rows, {"filters": filters}))
    [doc] = tcpwdist("-r", str(tmp_path / "r.json"), "-o", "json", "-c", "a").docs
    assert doc["filters"] == {"pid": [], "comm": ["a"], "port": [443], "cgroup": None}
    assert [(p["pid"], p["cmd_source"]) for p in doc["processes"]] == [(1, "cmdline")]
    [doc] = tcpwdist("-r", str(tmp_path / "r.json"), "-o", "json", "-p", "2").docs
    assert doc["filters"] == {"pid": [2], "comm": ["a", "b"], "port": [443], "cgroup": None}
    assert [(p["pid"], p["cmd_source"]) for p in doc["processes"]] == [(2, "comm")]


def test_a_dump_names_the_comm_as_its_cmd_source(tcpwdist):
    [doc] = tcpwdist("-r", str(CAPTURES[0]), "-o", "json").docs
    assert doc["processes"] and {p["cmd_source"] for p in doc["processes"]} == {"comm"}
    assert doc["filters"] == {"pid": [], "comm": [], "port": [], "cgroup": None}

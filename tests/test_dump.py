"""The parser: real captures against their ground truth, every label and
key form, the quirks of each bpftrace era, damaged input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import CAPTURES, FIXTURES, capture_id, expected_buckets, folded, truth_for
from tcpwdist import dump, marks, report, scan, textdump
from tcpwdist.errors import DumpError


def summed(parsed: dump.Dump, name: str = "@") -> dict[tuple[int, bytes], dict[int, int]]:
    """Non-zero buckets per (pid, comm), summed over every interval."""
    out: dict[tuple[int, bytes], dict[int, int]] = {}
    for snap in parsed.snapshots:
        for p in dump.processes(snap, name):
            per = out.setdefault((p.pid, p.comm), {})
            for b in p.buckets:
                if b.count:
                    per[b.lo] = per.get(b.lo, 0) + b.count
    return out


@pytest.mark.parametrize("capture", CAPTURES, ids=capture_id)
def test_capture_parses_to_its_truth(capture):
    truth = truth_for(capture)
    parsed = dump.parse(capture.read_bytes())
    assert parsed.cut is None
    got = folded(summed(parsed))
    want = expected_buckets(truth, capture)
    # Every workload process exactly; other TCP writers on the host may appear too.
    assert {k: got.get(k) for k in want} == want
    assert all(pid in truth.get("noise_pids", []) or (pid, comm) in want or pid not in
               {p for p, _ in want} for pid, comm in got)


@pytest.mark.parametrize("capture", [c for c in CAPTURES if ".interval-" in c.name],
                         ids=capture_id)
def test_interval_captures_are_a_series(capture):
    parsed = dump.parse(capture.read_bytes())
    # The workload wrote every 0.3 s for about 4 s, printed every second.
    assert len(parsed.snapshots) >= 4
    for snap in parsed.snapshots:
        keys = [(p.pid, p.comm) for p in dump.processes(snap)]
        assert len(keys) == len(set(keys)), "a key appears twice in one interval"


def test_nasty_comms_are_exact_bytes():
    for version in ("0.17.0", "0.23.2"):
        for mode in ("pipe", "pty", "json-pipe", "json-pty"):
            path = next(c for c in CAPTURES if c.parent.name == version
                        and c.name == f"nasty.{mode}.txt")
            comms = {p.comm for p in dump.processes(dump.parse(path.read_bytes()).snapshots[0])}
            assert {b"web content", b"a,b", b"x]: y", b"[k]", b'"q\'', "héllo".encode(),
                    b"12345", b"this_name_is_to"} <= comms, (version, mode)


@pytest.mark.parametrize("label,bounds", [
    ("(..., 0)", (None, 0)),
    ("[0]", (0, 1)),
    ("[1]", (1, 2)),
    ("[2, 4)", (2, 4)),
    ("[512, 1K)", (512, 1024)),
    ("[1K, 2K)", (1024, 2048)),
    ("[3584, 4K)", (3584, 4096)),
    ("[4K, 5K)", (4096, 5120)),
    ("[1024K, 1280K)", (1024 << 10, 1280 << 10)),
    ("[4M, 5M)", (4 << 20, 5 << 20)),
    ("[2G, 4G)", (2 << 30, 4 << 30)),
    ("[1T, 2T)", (1 << 40, 2 << 40)),
    ("[4E, 8E)", (4 << 60, 8 << 60)),
    ("[100, ...)", (100, None)),
    ("[610000, 620000)", (610000, 620000)),
    ("(..., -10)", (None, -10)),
    ("[-10, 0)", (-10, 0)),
])
def test_labels(label, bounds):
    assert dump.parse_label(label) == bounds
    if bounds[0] is not None and bounds[1] is not None and label not in (
            "[3584, 4K)", "[1024K, 1280K)", "[610000, 620000)", "[-10, 0)"):
        assert dump.format_label(*bounds) == label


def _one(text: str, name: str = "@") -> list[dump.ProcessHist]:
    parsed = dump.parse(text)
    assert len(parsed.snapshots) == 1
    return dump.processes(parsed.snapshots[0], name)


ROW = "{:<16}{:>8} |{:<52}|\n"


def rows(*pairs: tuple[str, int]) -> str:
    top = max(c for _, c in pairs) or 1
    return "".join(ROW.format(lab, c, "@" * int(c / top * 52)) for lab, c in pairs)


def test_hand_header_space_both_eras():
    for colon in (": ", ":"):
        text = f"Attaching 1 probe...\n\n\n@[12, curl]{colon}\n" + rows(("[1]", 3)) + "\n"
        [p] = _one(text)
        assert (p.pid, p.comm, p.buckets) == (12, b"curl", (dump.Bucket(1, 2, 3),))


def test_hand_comm_with_newline_splits_the_header():
    text = "@[7, a\nb]: \n" + rows(("[8, 16)", 2)) + "\n"
    [p] = _one(text)
    assert p.comm == b"a\nb" and p.writes == 2


def test_hand_comm_with_bracket_colon_and_tab():
    text = "@[7, x]: \t]: \n" + rows(("[8, 16)", 2)) + "\n@[8, ]: ]: \n" + rows(("[1]", 1)) + "\n"
    got = {p.pid: p.comm for p in _one(text)}
    assert got == {7: b"x]: \t", 8: b"]: "}


def test_hand_other_maps_do_not_confuse_it():
    text = ("Attaching 2 probes...\n\n\n@: 5\n"
            "@[1, a]: \n" + rows(("[1]", 1)) + "\n"
            "@bytes[1, a]: 100\n@bytes[2, b c]: 7\n"
            "@st: count 2, average 6, total 13\n\n"
            "@st2: { .count = 2, .average = 6, .total = 13 }\n"
            "@lh[3, z]: \n" + rows(("(..., 0)", 1), ("[0, 10)", 2), ("[100, ...)", 1)) + "\n")
    parsed = dump.parse(text)
    snap = parsed.snapshots[0]
    assert [m.name for m in snap.maps] == ["@", "@bytes", "@lh", "@st", "@st2"]
    assert [(p.pid, p.comm) for p in dump.processes(snap)] == [(1, b"a")]
    [lh] = dump.processes(snap, "@lh")
    assert lh.buckets == (dump.Bucket(None, 0, 1), dump.Bucket(0, 10, 2),
                          dump.Bucket(100, None, 1))
    assert snap.get("@bytes").entries[1] == dump.ValueEntry("2, b c", "7")


def test_hand_map_choice():
    text = "@x[1, a]: \n" + rows(("[1]", 1)) + "\n@y[2, b]: \n" + rows(("[1]", 1)) + "\n"
    parsed = dump.parse(text)
    with pytest.raises(DumpError, match="several hist maps"):
        dump.pick_map(parsed.snapshots)
    assert dump.pick_map(parsed.snapshots, "@y") == "@y"
    with pytest.raises(DumpError, match="no hist map @z"):
        dump.pick_map(parsed.snapshots, "@z")
    with pytest.raises(DumpError, match="maps found: @c"):
        dump.pick_map(dump.parse("@c: 3\n").snapshots)


def test_hand_v09_blank_lines_and_pty_noise():
    text = ("Attaching 1 probe...\r\n^C\r\n\r\n\r\n@c: 2\r\n\r\n\r\n"
            "\x1b[33mWARNING: something\x1b[0m\r\n"
            "@h[1234, curl]: \r\n" + rows(("[2, 4)", 1)).replace("\n", "\r\n") + "\r\n\r\n\r\n")
    [p] = _one(text, "@h")
    assert (p.pid, p.comm, p.writes) == (1234, b"curl", 1)


def test_hand_runtime_warning_mid_output_is_skipped():
    text = ("Attaching 1 probe...\n"
            "stdin:1:51-76: WARNING: Map full; can't update element. Try increasing max_map_keys\n"
            "tracepoint:sock:sock_send_length { @[pid, comm] = hist(args.ret); }\n"
            "                                   ~~~~~~~~~~~~~~~~~~~~~~~~~\n"
            "\n\n@[1, a]:\n" + rows(("[1]", 1)) + "\n")
    parsed = dump.parse(text)
    assert parsed.map_full
    assert dump.processes(parsed.snapshots[0])[0].writes == 1


def test_hand_cut_mid_map_keeps_the_complete_entries():
    text = ("Attaching 1 probe...\n\n\n@[1, a]: \n" + rows(("[1]", 4)) + "\n"
            "@[2, b c]: \n" + rows(("[1]", 1), ("[2, 4)", 9)))
    # Cut mid-row: the entry is lost, and said to be.
    parsed = dump.parse(text[:len(text) - 5])
    assert [(p.pid, p.writes) for p in dump.processes(parsed.snapshots[0])] == [(1, 4)]
    assert parsed.cut == "@[2, b c]" and not parsed.complete
    # Cut where a row ended (a terminal copy without the last blank line):
    # read, with a note, but not "complete" (a live run's dump was not).
    parsed = dump.parse(text)
    assert [(p.pid, p.writes) for p in dump.processes(parsed.snapshots[0])] == [(1, 4), (2, 10)]
    assert parsed.cut is None and parsed.unterminated == "@[2, b c]" and not parsed.complete
    said = report.dump_notes(parsed, "@")
    assert any("has no blank line after it (as when copied from a terminal)" in n for n in said)
    # In a live run the same dump is a final dump that stopped short.
    [live] = [n for n in report.dump_notes(parsed, "@", live=True) if "@[2, b c]" in n]
    assert live.startswith("warning: partial report: bpftrace's final dump stopped after")


def test_hand_garbage_names_the_entry_and_the_line_that_broke_it():
    with pytest.raises(DumpError, match=r"line 4.*@\[1, a\].*'this is not a row'"):
        dump.parse("Attaching 1 probe...\n\n\n@[1, a]: \nthis is not a row\n")


def test_hand_empty_dump_is_recognised():
    parsed = dump.parse("Attaching 1 probe...\n\n\n\n")
    assert parsed.snapshots == () and parsed.recognised


def test_hand_time_marker_closes_intervals():
    # tcpwdist's interval program: print(@); clear(@); time() -- then the exit dump.
    text = ("Attaching 2 probes...\n@[1, a]: \n" + rows(("[1]", 1)) + "\n10:00:01\n"
            "\n10:00:02\n@[1, a]: \n" + rows(("[1]", 2)) + "\n10:00:03\n\n\n"
            "@[1, a]: \n" + rows(("[8, 16)", 4)) + "\n")
    parsed = dump.parse(text)
    assert [s.stamp for s in parsed.snapshots] == ["10:00:01", "10:00:02", "10:00:03", None]
    assert [sum(p.writes for p in dump.processes(s)) for s in parsed.snapshots] == [1, 0, 2, 4]


# JSON, era by era -----------------------------------------------------------

def _json(*records: dict, blank: bool = True) -> str:
    lines = [json.dumps(r) for r in records]
    if blank:
        lines.insert(1, "\n")
    return "\n".join(lines) + "\n"


def test_hand_json_024_spaces_stripped_and_big_ints():
    text = _json({"type": "attached_probes", "count": 1, "data": {"probes": 1}},
                 {"type": "hist", "data": {"@": {"1,webcontent": [
                     {"min": "9007199254740992", "max": "18014398509481983", "count": 2}]}}},
                 blank=False)
    parsed = dump.parse(text)
    [p] = dump.processes(parsed.snapshots[0])
    assert p.comm == b"webcontent"
    assert p.buckets == (dump.Bucket(1 << 53, 1 << 54, 2),)
    assert parsed.era == ">=0.24" and any("spaces" in n for n in parsed.notes)


def test_hand_json_2g_bug_before_020():
    text = _json({"type": "attached_probes", "data": {"probes": 1}},
                 {"type": "hist", "data": {"@": {"5,big": [
                     {"min": 1073741824, "max": 2147483647, "count": 0},
                     {"min": -2147483648, "max": 0, "count": 3}]}}})
    [p] = dump.processes(dump.parse(text).snapshots[0])
    assert p.buckets[-1] == dump.Bucket(2 << 30, 4 << 30, 3)


def test_hand_json_negative_and_lhist_open_buckets():
    text = _json({"type": "attached_probes", "data": {"probes": 1}},
                 {"type": "hist", "data": {"@": {"5,x": [
                     {"max": -1, "count": 1}, {"min": 0, "max": 0, "count": 2},
                     {"min": 100, "count": 4}]}}})
    [p] = dump.processes(dump.parse(text).snapshots[0])
    assert p.buckets == (dump.Bucket(None, 0, 1), dump.Bucket(0, 1, 2), dump.Bucket(100, None, 4))


def test_hand_json_cut_last_record():
    whole = _json({"type": "attached_probes", "data": {"probes": 1}},
                  {"type": "hist", "data": {"@": {"1,a": [{"min": 1, "max": 1, "count": 1}]}}},
                  {"type": "hist", "data": {"@x": {"2,b": [{"min": 1, "max": 1, "count": 1}]}}})
    parsed = dump.parse(whole[:-20])
    assert parsed.cut and "line" in parsed.cut
    assert dump.processes(parsed.snapshots[0])[0].pid == 1


def test_hand_status_prints_are_not_reports():
    # tcpwdist's status line: print(@) once a second, then its mark; then the exit dump.
    text = ("Attaching 2 probes...\n@[1, a]: \n" + rows(("[1]", 1)) + "\n"
            "tcpwdist-status 10:00:01\n@[1, a]: \n" + rows(("[1]", 3)) + "\n"
            "tcpwdist-status 10:00:02\n\n\n@[1, a]: \n" + rows(("[1]", 4)) + "\n")
    parsed = dump.parse(text)
    assert len(parsed.snapshots) == 1
    assert dump.processes(parsed.snapshots[0])[0].writes == 4
    js = ('{"type": "attached_probes", "data": {"probes": 2}}\n'
          '{"type": "hist", "data": {"@": {"1,a": [{"min": 1, "max": 1, "count": 1}]}}}\n'
          '{"type": "time", "data": "tcpwdist-status 10:00:01\\n"}\n'
          '{"type": "hist", "data": {"@": {"1,a": [{"min": 1, "max": 1, "count": 4}]}}}\n')
    parsed = dump.parse(js)
    assert [p.writes for s in parsed.snapshots for p in dump.processes(s)] == [4]


@pytest.mark.parametrize("kind", ["tcpwdist-snapshot", "tcpwdist-total"])
def test_hand_a_mark_inside_the_final_dump_ends_nothing(kind):
    """bpftrace 0.22+ prints the final dump entry by entry, and the interval
    probe may fire meanwhile: its mark lands inside that dump.  Before the
    END probe's tcpwdist-final mark, -r took the mark as the end of a
    periodic dump, and the processes printed before it were reported as
    of the last periodic dump (or, for a snapshot, not at all)."""
    text = ("\n\n@[1, a]: \n" + rows(("[1]", 1)) + "\n@[2, b]: \n" + rows(("[1]", 2)) + "\n"
            f"{kind} 10:00:01.000000\n"
            "tcpwdist-final 10:00:01.500000\n\n\n"
            "@[1, a]: \n" + rows(("[1]", 5)) + "\n"
            f"{kind} 10:00:02.000000\n"
            "@[2, b]: \n" + rows(("[1]", 7)) + "\n@[3, c]: \n" + rows(("[1]", 1)) + "\n")
    found = dump.reports(dump.parse(text).snapshots)
    assert found.partial is None
    last = {h.pid: h.writes for h in dump.processes(found.snapshots[-1])}
    if kind == "tcpwdist-total":  # the last interval: what the final dump adds
        assert last == {1: 4, 2: 5, 3: 1}
    else:
        assert len(found.snapshots) == 1 and last == {1: 5, 2: 7, 3: 1}


# Reconstructed dumps of the eras no real capture covers (tests/fixtures/hand/).

HAND = Path(__file__).parent / "fixtures" / "hand"
B = dump.Bucket


@pytest.mark.parametrize("name,map_name,want", [
    ("hand_v0.9.0.txt", "@h", {(1234, b"curl"): (B(2, 4, 1),)}),
    ("hand_v0.9.2.txt", "@h", {(1234, b"curl"): (B(2, 4, 1),)}),
    ("hand_v0.23.txt", "@", {(8002, b"python3"): (B(4, 8, 1),)}),
    ("hand_v0.24.txt", "@", {(8002, b"python3"): (B(4, 8, 1),)}),
    ("hand_v0.24.txt", "@lh", {(8002, b"python3"): (B(2, 3, 3), B(3, 4, 1))}),
    ("hand_v0.9.2.json.txt", "@", {(1, b"a b"): (B(4, 8, 1),)}),
    ("hand_v0.24.json.txt", "@", {(1, b"ab"): (B(4, 8, 1),)}),
    ("hand_v0.24.json.txt", "@x", {(2, b"c"): (B(None, 0, 1),),
                                   (3, b"de,f"): (B(512, 1024, 1), B(1024, 2048, 1))}),
    ("hand_lhist_and_hist_k_labels.txt", "@x",
     {(1, b"a"): (B(610000, 620000, 12345678), B(620000, None, 1))}),
    ("hand_lhist_and_hist_k_labels.txt", "@y",
     {(1, b"a"): (B(0, 512, 1), B(512, 1024, 1), B(1024, 1536, 0), B(1536, 2048, 1))}),
    ("hand_lhist_and_hist_k_labels.txt", "@z",
     {(1, b"a"): (B(3584, 4096, 1), B(4096, 5120, 2), B(1 << 20, 1280 << 10, 1),
                  B(4 << 20, 5 << 20, 1))}),
])
def test_hand_reconstructed_eras(name, map_name, want):
    parsed = dump.parse((HAND / name).read_bytes())
    assert parsed.cut is None and len(parsed.snapshots) == 1
    got = {(p.pid, p.comm): p.buckets for p in dump.processes(parsed.snapshots[0], map_name)}
    assert got == want


def test_hand_v024_other_maps_are_values():
    snap = dump.parse((HAND / "hand_v0.24.txt").read_bytes()).snapshots[0]
    assert snap.get("@st").entries == (
        dump.ValueEntry(None, "{ .count = 2, .average = 6, .total = 13 }"),)
    assert snap.get("@ticks").entries == (dump.ValueEntry(None, "3"),)


def test_hand_time_before_print_opens_intervals():
    # The common idiom of other programs: interval:s:1 { time(); print(@); clear(@); }
    text = ("Attaching 2 probes...\n10:00:01\n@[1, a]: \n" + rows(("[1]", 1)) + "\n"
            "10:00:02\n\n10:00:03\n@[1, a]: \n" + rows(("[1]", 2)) + "\n")
    parsed = dump.parse(text)
    assert [s.stamp for s in parsed.snapshots] == ["10:00:01", "10:00:02", "10:00:03"]
    assert [sum(p.writes for p in dump.processes(s)) for s in parsed.snapshots] == [1, 0, 2]


def test_hand_tcpwdist_interval_mark_closes_even_when_the_first_is_empty():
    text = ("Attaching 2 probes...\n\ntcpwdist-interval 10:00:01\n@[1, a]: \n"
            + rows(("[1]", 5)) + "\ntcpwdist-interval 10:00:02\n")
    parsed = dump.parse(text)
    assert [s.stamp for s in parsed.snapshots] == ["10:00:01", "10:00:02"]
    assert [sum(p.writes for p in dump.processes(s)) for s in parsed.snapshots] == [0, 5]


def test_row_alone():
    # A label of 16 characters or more touches the count.
    assert [tuple(x) for x in textdump.row.parse_string("[610000, 620000)12345678 |@@@@|\n")] \
        == [("[610000, 620000)", "12345678")]
    assert [tuple(x) for x in textdump.row.parse_string("(..., 0)               1 |@|")] \
        == [("(..., 0)", "1")]


# bpftrace 0.24-0.27 -----------------------------------------------------------

CAPTURED = Path(__file__).parent / "fixtures" / "captured"


@pytest.mark.parametrize("truth_file", sorted(CAPTURED.glob("*-fullmap.*.truth.json")),
                         ids=lambda p: p.name.replace(".truth.json", ""))
def test_a_full_map_is_the_report_of_what_was_counted_and_a_number(truth_file):
    truth = json.loads(truth_file.read_text())
    parsed = dump.parse((CAPTURED / truth["capture"]).read_bytes())
    [p] = [p for s in parsed.snapshots for p in dump.processes(s) if p.comm == b"fullmap"]
    assert (p.pid, {b.lo: b.count for b in p.buckets if b.count}) == \
        (truth["pid"], {int(k): v for k, v in truth["counted"].items()})
    # bpftrace 0.23+ prints one "Map full" block per dropped update, on the
    # stream it dumps to up to 0.23 and on stderr from 0.24 (not in a pipe).
    in_stream = "pty" in truth["capture"] or truth["capture"].startswith("0.23")
    assert parsed.dropped == (truth["dropped_updates"] if in_stream else 0)
    assert parsed.map_full is in_stream


def test_hand_hex_counts_that_cannot_be_told_from_decimal_are_refused():
    data = (HAND / "hand_v0.27_hex_counts_undecidable.json.txt").read_bytes()
    with pytest.raises(DumpError, match="in hex.*cannot be told from decimal") as info:
        dump.parse(data)
    assert "text output" in info.value.hint and info.value.line == 2
    # The same record from 0.23 (no "count" in attached_probes): decimal.
    older = dump.parse((HAND / "hand_v0.23_ffff_key_decimal_counts.json.txt").read_bytes())
    assert summed(older) == {(7, b"plain"): {4: 3}, (8, b"h\xc3\xa9"): {8: 5},
                             (9, b"late"): {16: 10}}


def test_hex_counts_proven_by_a_letter_are_decoded_exactly():
    # The real 0.27.1 capture: 23749's 10 writes of 4096-8191 bytes arrive
    # as "count": a, after the key of 23747 (h\xc3\xa9llo).
    for name in ("nasty.json-pipe.txt", "nasty.json-pty.txt"):
        parsed = dump.parse((FIXTURES / "0.27.1" / name).read_bytes())
        assert summed(parsed)[(23749, b'"q\'')][4096] == 10
        assert summed(parsed)[(23747, b"h\xc3\xa9llo")][1024] == 9


def test_hand_ctrl_c_echo_glued_to_a_header_is_removed():
    parsed = dump.parse((HAND / "hand_ctrl_c_glued_to_a_header.pty.txt").read_bytes())
    assert summed(parsed) == {(41, b"chatty"): {1: 12}}


def test_an_empty_maps_piped_dump_of_024_is_an_empty_dump():
    parsed = dump.parse((FIXTURES / "0.27.1" / "empty.pipe.txt").read_bytes())
    assert parsed.recognised and parsed.snapshots == ()
    assert not dump.parse(b"").recognised  # no output at all is not a dump


# The progress line's count of each snapshot (scan.SnapshotScan): not a
# parse, but it must agree with one.
SINGLE_DUMPS = [c for c in CAPTURES
                if "json" not in c.name and "interval" not in c.name and "empty" not in c.name]
SINGLE_DUMPS += sorted(p for p in (FIXTURES / "captured").glob("*-fullmap.*.txt")
                       if not p.name.endswith(".stderr.txt"))


def with_mark(raw: bytes, stamp: str = "12:00:01.000000") -> bytes:
    newline = b"\r\n" if b"\r\n" in raw else b"\n"
    return raw + f"{marks.SNAPSHOT} {stamp}".encode() + newline


@pytest.mark.parametrize("capture", SINGLE_DUMPS, ids=capture_id)
def test_snapshot_scan_counts_what_the_parser_reads(capture):
    raw = capture.read_bytes()
    parsed = dump.parse(raw)
    procs = dump.processes(parsed.snapshots[-1])
    want = (sum(p.writes for p in procs), len(procs), parsed.dropped, parsed.lost_events)
    counter = scan.SnapshotScan()
    assert tuple(counter(with_mark(raw))) == want
    # Again from its cache, and with two dumps in one take: the last is the
    # one counted, while every dropped update and lost event is said anew.
    again = counter(with_mark(raw, "12:00:00.000000") + with_mark(raw))
    assert tuple(again) == want[:2] + (2 * want[2], 2 * want[3])


def test_hand_snapshot_scan_counts_only_the_last_dump_and_every_warning():
    first = b"@[1, a]: \n[1]      3 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|\n\n"
    second = (b"@[1, a]: \n[1]      5 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|\n\n"
              b"@[2, b]: \n[2, 4)   7 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|\n\n")
    warning = b"Lost 4 events\n\n"
    counter = scan.SnapshotScan()
    assert counter(with_mark(first) + warning + with_mark(second)) == (12, 2, 0, 4)
    assert counter(with_mark(second)) == (12, 2, 0, 0)  # cached; the warning is not repeated
    assert counter(warning + with_mark(second)) == (12, 2, 0, 4)


def test_hand_snapshot_scan_follows_entries_that_change_leave_and_repeat():
    # Each dump counted as the one before plus and minus its changed
    # entries must count what a fresh scan of it counts: entries that
    # change, leave the map, come back, and two with the same text.
    def entry(pid, count):
        return (f"@[{pid}, w]: \n[4, 8)   {count} |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|"
                "\n\n").encode()
    dumps = [[entry(1, 3), entry(2, 5)],
             [entry(1, 4), entry(2, 5), entry(3, 1)],
             [entry(3, 1), entry(3, 1)],
             [],
             [entry(2, 5), entry(1, 4), entry(4, 9)]]
    counter = scan.SnapshotScan()
    for n, entries in enumerate(dumps):
        data = with_mark(b"".join(entries), f"12:00:0{n}.000000")
        writes = sum(int(e.split(b")")[1].split(b"|")[0]) for e in entries)
        assert counter(data) == scan.SnapshotScan()(data) == (writes, len(entries), 0, 0)


# --------------------------------------------------------------------------
# What people paste: other maps, banners, elisions, a missing last blank line.

FOREIGN = sorted(p for p in (FIXTURES / "captured").glob("*-foreign.*.txt"))


def foreign_truth(capture):
    truth = json.loads(capture.with_name(capture.name[:-len(".txt")] + ".truth.json").read_text())
    return {(p["pid"], p["comm"].encode()): {b["lo"]: b["count"] for b in p["expected_hist"]}
            for p in truth["processes"]}


@pytest.mark.parametrize("capture", FOREIGN, ids=lambda p: p.name)
def test_real_tool_style_dumps_report_every_process_exactly(capture):
    parsed = dump.parse(capture.read_bytes())
    assert dump.pick_map(parsed.snapshots) == "@"
    assert folded(summed(parsed)) == foreign_truth(capture)
    assert parsed.cut is None and parsed.damaged == ()
    if parsed.format == "text":
        # The BEGIN banner and the END heading, said once, the first quoted.
        [note] = [n for n in parsed.notes if n.startswith("skipped")]
        assert note.startswith("skipped 2 lines that are not map output, the first: line ")
        assert note.endswith("'Tracing TCP writes... Hit Ctrl-C to end.'")
        # The other maps were read, not skipped: kstack keys, [comm], [comm, pid], a sum.
        names = {m.name for m in parsed.snapshots[-1].maps}
        assert {"@", "@s", "@c", "@cp", "@bytes"} <= names


def rows_text(*rows):
    return "".join(f"{label:<16}{n:>8} |{'@' * (52 if n else 0):<52}|\n" for label, n in rows)


GOOD = "@[1, a]: \n" + rows_text(("[1]", 4)) + "\n"
OTHER = "@[2, b]: \n" + rows_text(("[2, 4)", 3), ("[4, 8)", 0), ("[8, 16)", 5)) + "\n"


def pids(parsed):
    return {(p.pid, p.writes) for p in dump.processes(parsed.snapshots[-1])}


@pytest.mark.parametrize("mark", ["[...]", "<output elided>", "......", "printf: 12 writes"])
def test_hand_a_line_among_the_rows_damages_that_entry_only(mark):
    broken = "@[3, c]: \n" + rows_text(("[1]", 1)) + mark + "\n" + rows_text(("[4, 8)", 2)) + "\n"
    parsed = dump.parse("Attaching 1 probe...\n\n\n" + GOOD + broken + OTHER)
    assert pids(parsed) == {(1, 4), (2, 8)}
    assert parsed.damaged and "@[3, c] (line 7" in parsed.damaged[0]
    assert parsed.cut is None


def test_hand_log_lines_among_the_rows_do_not_damage_it():
    noisy = ("@[3, c]: \n" + rows_text(("[1]", 1)) + "WARNING: something harmless\n"
             "Lost 7 events\n" + rows_text(("[4, 8)", 2)) + "\n")
    parsed = dump.parse("Attaching 1 probe...\n\n\n" + GOOD + noisy)
    assert pids(parsed) == {(1, 4), (3, 3)} and parsed.damaged == ()
    assert parsed.lost_events == 7


def test_hand_entries_without_their_blank_line_are_read_and_said():
    parsed = dump.parse("Attaching 1 probe...\n\n\n" + GOOD[:-1] + OTHER[:-1])
    assert pids(parsed) == {(1, 4), (2, 8)}
    assert parsed.unterminated == "@[2, b]" and parsed.cut is None
    assert any("1 map entries had no blank line after them" in n for n in parsed.notes)


@pytest.mark.parametrize("glued_to", ["map", "json"])
def test_hand_echoed_ctrl_c_glued_to_a_line_is_removed(glued_to):
    if glued_to == "map":
        text = "Attaching 1 probe...\n^C" + GOOD + OTHER
    else:
        text = ('{"type": "attached_probes", "data": {"probes": 1}}\n^C{"type": "hist", "data": '
                '{"@": {"1, a": [{"min": 1, "max": 1, "count": 4}]}}}\n')
    parsed = dump.parse(text)
    assert (1, 4) in pids(parsed) and parsed.notes == ()


def test_hand_stack_keys_of_any_depth_with_a_value_or_a_hist():
    frames = "".join(f"        func_{i}+{i}\n" for i in range(40))  # deeper than 16 lines
    text = ("Attaching 2 probes...\n\n\n@s[\n" + frames + "]: 18\n"
            "@h[\n" + frames + "]: \n" + rows_text(("[1]", 9)) + "\n" + GOOD)
    parsed = dump.parse(text)
    assert pids(parsed) == {(1, 4)} and parsed.notes == () and parsed.damaged == ()
    snap = parsed.snapshots[-1]
    assert snap.get("@s").entries[0].value == "18"
    assert snap.get("@h").entries[0].buckets[0].count == 9


def test_hand_no_map_at_all_names_what_it_skipped():
    with pytest.raises(DumpError, match=r"holds no bpftrace map output \(2 other lines; "
                                        r"the first: 'Tracing\.\.\.'\)") as err:
        dump.parse("Attaching 1 probe...\nTracing...\n[...]\n")
    assert err.value.line == 2


def test_hand_refusals_name_the_construct():
    with pytest.raises(DumpError, match="pretty-printed JSON"):
        dump.parse('{\n  "type": "hist",\n  "data": {}\n}\n')
    with pytest.raises(DumpError, match=r"hist labels of bpftrace before 0\.9: '\[0, 1\]"):
        dump.parse("Attaching 1 probe...\n\n\n@[1, a]: \n[0, 1]                 5 |@@@@|\n\n")
    # Several maps, none of them (pid, comm) hists: each is named.
    parsed = dump.parse("Attaching 1 probe...\n\n\n@c[bash]: 3\n@s: 12\n")
    with pytest.raises(DumpError, match=r"maps found: @c, @s"):
        dump.pick_map(parsed.snapshots)


@pytest.mark.parametrize("comm", [b"a]: \n\n@[1, sshd", b"]: \n\n12:00:00", b"x]: \n\n@[1, x"])
def test_hand_a_comm_cannot_end_its_key_early(comm):
    # Each is 15 bytes at most, as prctl allows: a process naming itself so
    # must not lend its writes to another PID, nor wipe out the others.
    assert len(comm) <= 15
    row = rows_text(("[1]", 7)).encode()
    text = (b"Attaching 1 probe...\n\n\n@[666, " + comm + b"]: \n" + row + b"\n"
            b"@[1, sshd]: \n" + rows_text(("[2, 4)", 2)).encode() + b"\n")
    parsed = dump.parse(text)
    got = {(p.pid, p.comm): p.writes for p in dump.processes(parsed.snapshots[-1])}
    assert got == {(666, comm): 7, (1, b"sshd"): 2}


def test_hand_glued_cumulative_dumps_give_each_keys_newest_state():
    # What is left after the interrupt when tcpwdist could not read for a
    # while (its stdout blocked): periodic dumps without their marks, then
    # the final one.  bpftrace sorts by count, so a process new in the
    # last dump may come first there, before any repeated key.
    older = "@[1, a]: \n" + rows_text(("[1]", 4)) + "\n@[2, b]: \n" + rows_text(("[1]", 5)) + "\n"
    final = ("@[3, new]: \n" + rows_text(("[1]", 1)) + "\n@[1, a]: \n" + rows_text(("[1]", 6))
             + "\n@[2, b]: \n" + rows_text(("[1]", 9)) + "\n")
    parsed = dump.parse("Attaching 1 probe...\n\n\n" + older + final)
    assert len(parsed.snapshots) == 2 and (3, 1) not in pids(parsed)  # split at "@[1, a]"
    merged = dump.latest_of_each_key(parsed.snapshots)
    assert {(p.pid, p.writes) for p in dump.processes(merged)} == {(1, 6), (2, 9), (3, 1)}

"""Property-based: dumps rendered the way each bpftrace era renders them,
from random keys, comms and counts, parse back to the same data; random
damage to real captures never raises anything but tcpwdist's own error."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import HealthCheck, assume, example, given, settings, strategies as st

from conftest import CAPTURES, FIXTURES
from tcpwdist import dump, ownjson, report
from tcpwdist.errors import DumpError

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def log2_bucket(index: int) -> tuple[int | None, int]:
    """bpftrace hist() bucket index -> (lo, hi): 0 negative, 1 zero, 2 one, ..."""
    if index == 0:
        return None, 0
    if index == 1:
        return 0, 1
    lo = 1 << (index - 2)
    return lo, lo * 2 if index > 2 else 2


def num(v: int) -> str:
    for suffix, unit in (("E", 1 << 60), ("P", 1 << 50), ("T", 1 << 40), ("G", 1 << 30),
                         ("M", 1 << 20), ("K", 1 << 10)):
        if v >= unit and v % unit == 0:
            return f"{v // unit}{suffix}"
    return str(v)


def label(lo: int | None, hi: int) -> str:
    if lo is None:
        return "(..., 0)"
    if hi == lo + 1:
        return f"[{lo}]"
    return f"[{num(lo)}, {num(hi)})"


# A process: pid, comm bytes, {bucket index: count}.
comms = st.binary(min_size=0, max_size=15).filter(lambda b: b"\0" not in b)
hists = st.dictionaries(st.integers(0, 40), st.integers(1, 10**6), min_size=1, max_size=8)
processes = st.lists(st.tuples(st.integers(1, 4194304), comms, hists), min_size=1, max_size=6,
                     unique_by=lambda p: p[0])


def text_dump(procs, era: str, pty: bool) -> bytes:
    """Render ``procs`` as bpftrace of ``era`` prints @[pid, comm] = hist()."""
    space = " " if era in ("0.9.0", "0.9.2", "0.17") else ""
    out = [] if era == "0.24" else [b"Attaching 1 probe...\n"]
    if pty:
        out.append(b"^C\n")
    out.append(b"\n\n")
    for pid, comm, buckets in sorted(procs, key=lambda p: sum(p[2].values())):
        out.append(b"@[%d, " % pid + comm + b"]:" + space.encode() + b"\n")
        first, last = min(buckets), max(buckets)
        top = max(buckets.values())
        for i in range(first, last + 1):
            c = buckets.get(i, 0)
            row = f"{label(*log2_bucket(i)):<16}{c:>8} |{'@' * int(c / top * 52):<52}|\n"
            out.append(row.encode())
        out.append(b"\n")
        if pty and pid % 3 == 0:  # a log line from the other stream, on a terminal
            out.append(b"\x1b[33mWARNING: something happened\x1b[0m\n")
    if era == "0.9.0":
        out.append(b"\n")
    data = b"".join(out)
    return data.replace(b"\n", b"\r\n") if pty else data


def expected(procs) -> dict[tuple[int, bytes], tuple[dump.Bucket, ...]]:
    out = {}
    for pid, comm, buckets in procs:
        first, last = min(buckets), max(buckets)
        out[(pid, comm)] = tuple(dump.Bucket(*log2_bucket(i), buckets.get(i, 0))
                                 for i in range(first, last + 1))
    return out


def parsed(data: bytes | str) -> dict[tuple[int, bytes], tuple[dump.Bucket, ...]]:
    result = dump.parse(data)
    assert result.cut is None
    assert len(result.snapshots) == 1
    return {(p.pid, p.comm): p.buckets for p in dump.processes(result.snapshots[0])}


@SETTINGS
@given(procs=processes, era=st.sampled_from(["0.9.0", "0.9.2", "0.17", "0.23", "0.24"]),
       pty=st.booleans())
def test_text_dumps_of_every_era_round_trip(procs, era, pty):
    assert parsed(text_dump(procs, era, pty)) == expected(procs)


# Comms made of the pieces of bpftrace's own syntax, as someone who wants
# to fool the reader would name a process: 15 bytes at most (prctl).
SYNTAX = [b"]: ", b"]:", b"\n", b"\n\n", b"@[", b"@", b"1, ", b", ", b"]", b"[", b"|",
          b"[1]", b" 5 |@|", b"12:00:00", b"tcpwdist-total ", b"x", b" ", b"\t", b"(..., 0)"]
hostile_comms = st.lists(st.sampled_from(SYNTAX), max_size=8).map(lambda p: b"".join(p)[:15])
hostile_processes = st.lists(st.tuples(st.integers(1, 4194304), hostile_comms, hists),
                             min_size=1, max_size=6, unique_by=lambda p: p[0])


@SETTINGS
@given(procs=hostile_processes, era=st.sampled_from(["0.9.2", "0.17", "0.23", "0.24"]),
       pty=st.booleans())
def test_comms_built_from_bpftrace_syntax_round_trip(procs, era, pty):
    assert parsed(text_dump(procs, era, pty)) == expected(procs)


def json_escape(comm: bytes) -> str:
    """bpftrace's key escaping up to 0.23: bytes >= 0x80 as \\uffffffXX."""
    out = []
    for b in comm:
        ch = chr(b)
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif b < 0x20:
            out.append(f"\\u{b:04x}")
        elif b >= 0x80:
            out.append(f"\\uffffff{b:02x}")
        else:
            out.append(ch)
    return "".join(out)


def json_dump(procs, era: str) -> str:
    data = {}
    for pid, comm, buckets in procs:
        key = f"{pid},{json_escape(comm)}"
        if era == "0.22":  # escaped a second time
            key = key.replace("\\", "\\\\").replace('"', '\\"')
        first, last = min(buckets), max(buckets)
        rows = []
        for i in range(first, last + 1):
            lo, hi = log2_bucket(i)
            rows.append(({"min": lo} if lo is not None else {})
                        | {"max": hi - 1, "count": buckets.get(i, 0)})
        data[key] = rows
    attach = {"type": "attached_probes", "data": {"probes": 1}}
    if era == "0.24":
        attach["count"] = 1
    body = json.dumps({"type": "hist", "data": {"@": data}})
    # The keys above are already escaped text: put them in without escaping again.
    for key in data:
        body = body.replace(json.dumps(key), f'"{key}"', 1)
    blank = "" if era == "0.24" else "\n\n"
    return json.dumps(attach) + "\n" + blank + body + "\n"


@SETTINGS
@given(procs=processes, era=st.sampled_from(["0.17", "0.22"]))
def test_json_dumps_round_trip(procs, era):
    # Where the eras cannot be told apart (see dump.py): up to 0.21 a comm
    # with a backslash, from 0.22 a comm with a control character.
    if era == "0.17":
        assume(all(b"\\" not in c for _, c, _ in procs))
    else:
        assume(all(all(b >= 0x20 for b in c) for _, c, _ in procs))
    assert parsed(json_dump(procs, era)) == expected(procs)


# 0.24+ JSON drops the spaces of a comm; only printable ASCII without quote
# or backslash round-trips there (see dump.py). Drawn directly, not filtered:
# filtering random bytes rejects nearly every example.
plain_comms = st.text(
    alphabet=[chr(b) for b in range(0x21, 0x7F) if chr(b) not in '"\\'], max_size=15,
).map(str.encode)
plain_processes = st.lists(st.tuples(st.integers(1, 4194304), plain_comms, hists),
                           min_size=1, max_size=6, unique_by=lambda p: p[0])


@SETTINGS
@given(procs=plain_processes)
def test_json_024_strips_spaces(procs):
    assert parsed(json_dump(procs, "0.24")) == expected(procs)


REAL = [c.read_bytes() for c in CAPTURES if "basic" in c.name or "nasty" in c.name]


@SETTINGS
@given(which=st.integers(0, len(REAL) - 1), data=st.data())
def test_mutated_captures_fail_only_with_our_error(which, data):
    raw = bytearray(REAL[which])
    for _ in range(data.draw(st.integers(1, 8))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        op = data.draw(st.sampled_from(["flip", "delete", "insert"]))
        if op == "flip":
            raw[pos] = data.draw(st.integers(0, 255))
        elif op == "delete":
            del raw[pos:pos + data.draw(st.integers(1, 200))]
        else:
            raw[pos:pos] = data.draw(st.binary(max_size=20))
    try:
        result = dump.parse(bytes(raw))
        for snap in result.snapshots:
            dump.processes(snap)
    except DumpError:
        pass


@SETTINGS
@given(which=st.integers(0, len(REAL) - 1), frac=st.floats(0, 1))
def test_truncated_captures_keep_every_complete_entry(which, frac):
    whole = dump.parse(REAL[which])
    cut_at = int(len(REAL[which]) * frac)
    try:
        part = dump.parse(REAL[which][:cut_at])
    except DumpError:
        return  # cut inside a JSON record's line that is not the last one, etc.
    full = {(p.pid, p.comm): p.buckets for s in whole.snapshots for p in dump.processes(s)}
    shorter = []
    for snap in part.snapshots:
        for p in dump.processes(snap):
            if full[(p.pid, p.comm)] != p.buckets:
                # Only the last entry, cut where a row ended, and said so.
                assert full[(p.pid, p.comm)][:len(p.buckets)] == p.buckets
                shorter.append(p)
    assert len(shorter) <= (1 if part.unterminated else 0)


# What people paste around a real dump: none of it may change a (pid, comm)
# histogram.  The tseries block and the stack key are bpftrace 0.27.1's
# and 0.17's own text (tests/fixtures/captured/*-foreign.*).
TSERIES = (FIXTURES / "captured" / "0.27.1-foreign.pipe.txt").read_text()
TSERIES = TSERIES[TSERIES.index("@t:\n"):].rstrip("\n") + "\n\n"
AROUND = [
    "Tracing TCP writes... Hit Ctrl-C to end.\n", "[...]\n", "<output elided>\n", "......\n",
    "\nSizes by process:\n", "12 writes so far\n", "@bytes: 12400\n", "@n: 3\n",
    "@s[\n    call_trace_sock_send_length.constprop.0+74\n    __sys_sendto+506\n]: 20\n",
    "@c[foreign]: \n[64, 128)              9 |" + "@" * 52 + "|\n\n",
    TSERIES, "Warning: could not attach probe kprobe:foo, skipping.\n",
    "cannot attach kprobe, Invalid argument\n", "BUG: something odd\n",
]
PLAIN = [c.read_text() for c in CAPTURES if c.name in ("basic.pipe.txt", "big.pipe.txt")]


def histograms(text: str) -> dict[tuple[int, bytes], tuple[dump.Bucket, ...]]:
    result = dump.parse(text)
    assert result.cut is None and result.damaged == ()
    return {(p.pid, p.comm): p.buckets for s in result.snapshots for p in dump.processes(s)}


@SETTINGS
@given(which=st.integers(0, len(PLAIN) - 1), data=st.data(),
       trim=st.booleans(), ctrl_c=st.booleans())
def test_what_is_pasted_around_a_real_dump_never_changes_it(which, data, trim, ctrl_c):
    text = PLAIN[which]
    want = histograms(text)
    # Between entries: at each blank line that a header follows.
    cuts = [i + 2 for i in range(len(text)) if text.startswith("\n\n@[", i)]
    pieces, last = [], 0
    for at in sorted(data.draw(st.lists(st.sampled_from(cuts), max_size=6, unique=True))):
        chunk = data.draw(st.lists(st.sampled_from(AROUND), min_size=1, max_size=3))
        pieces += [text[last:at], "".join(chunk)]
        last = at
    pieces.append(text[last:])
    pieces.append("".join(data.draw(st.lists(st.sampled_from(AROUND), max_size=3))))
    wrapped = "".join(pieces)
    if ctrl_c:
        first = wrapped.index("\n@[") + 1
        wrapped = wrapped[:first] + "^C" + wrapped[first:]
    if trim:
        wrapped = wrapped.rstrip("\n") + "\n"
    assert histograms(wrapped) == want


# Malformed JSON, bpftrace's or tcpwdist's own: read, or refused with
# tcpwdist's error (exit 7), never anything else.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12)
ATTACHED = '{"type": "attached_probes", "data": {"probes": 1}}\n'


@SETTINGS
@given(typ=st.sampled_from(["hist", "map", "stats", "lost_events", "time", "printf",
                            "helper_error", "tseries", "attached_probes"]),
       data=json_values, count=st.none() | json_values,
       key=st.text(max_size=12)
       | st.builds("{},{}".format, st.integers(0, 10**6), st.text(max_size=8)),
       buckets=st.lists(st.fixed_dictionaries({"count": json_values},
                                              optional={"min": json_values, "max": json_values})
                        | json_values, max_size=3))
@example(typ="hist", data=None, count=None, key="5,abc", buckets=[{"count": -3}])
@example(typ="hist", data=None, count=None, key="5,abc", buckets=[{"count": 3.5}])
@example(typ="hist", data=None, count=None, key="5,abc", buckets=[{"count": True}])
@example(typ="hist", data=None, count=None, key="5,abc", buckets=[{"count": 1, "min": "x"}])
@example(typ="lost_events", data=[1], count=None, key="", buckets=[])
def test_any_json_record_is_read_or_refused_with_our_error(typ, data, count, key, buckets):
    records = [{"type": typ, "data": data}, {"type": typ, "data": {"@": {key: buckets}}}]
    if count is not None:
        records[0]["count"] = count
    for record in records:
        try:
            result = dump.parse(ATTACHED + json.dumps(record) + "\n")
            for snap in result.snapshots:
                for p in dump.processes(snap):
                    assert all(type(b.count) is int and b.count >= 0 for b in p.buckets)
        except DumpError:
            pass


OWN = (Path(__file__).parent / "golden" / "reports" / "basic.json").read_text().splitlines()[0]


@SETTINGS
@given(path=st.lists(st.sampled_from(["processes", 0, "buckets", "pid", "comm", "comm_hex",
                                      "cmd", "count", "value", "max", "host", "duration",
                                      "members", "bytes", "time"]), min_size=1, max_size=5),
       value=json_values)
def test_own_json_with_any_field_wrong_is_read_or_refused(path, value):
    doc = json.loads(OWN)
    node = doc
    for step in path[:-1]:
        if isinstance(node, dict) and step in node:
            node = node[step]
        elif isinstance(node, list) and isinstance(step, int) and node:
            node = node[0]
    last = path[-1]
    if isinstance(node, dict):
        node[last if isinstance(last, str) else "pid"] = value
    elif isinstance(node, list) and node:
        node[0] = value
    try:
        for _, rows, _ in ownjson.read_own_json([json.dumps(doc).encode()], "f"):
            for fmt in ("dist", "table", "csv", "json"):
                report.render(fmt, rows)
    except DumpError:
        pass

"""Process histograms -> the report text (pure: returns strings, prints nothing).

Formats:

* ``dist``: tcpwdist.d's layout, one block per process (PID and CMD), a
  summary line (writes, the buckets holding the median and the 99th
  percentile write, bytes when known), then DTrace-style
  ``value  --- Distribution --- count`` rows, value being the bucket's
  lower bound in bytes, zero rows kept inside each process's range;
* ``table``: one row per non-empty bucket (PID / CMD / value / count), then
  one summary row per process (tabulate);
* ``csv``: one row per process and bucket, summary columns repeated;
* ``json``: one JSON document (one line) per report, described by
  ``report.schema.json``.

It also merges and groups rows (several hosts' reports, ``--group-by``).

Text formats never write a comm's raw bytes to the terminal: control
characters, bytes that are not UTF-8 and backslashes are shown escaped
(``\\x1b``, ``\\t``, ``\\\\``), so a hostile process name cannot move the
cursor or recolour the screen.  JSON and CSV keep comms exact (JSON's
``comm_hex`` has the bytes).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable, NamedTuple, Sequence

from tcpwdist import conns, dump
from tcpwdist.conns import Connection
from tcpwdist.dump import Bucket, ProcessHist, format_label
from tcpwdist.options import SMALL, WIDTH, Options
from tcpwdist.shown import cut, cut_cmd, safe_str, safe_text

JSON_SCHEMA_VERSION = 1
BAR_WIDTH = 40  # DTrace's quantize() bar
_WHO_WIDTH = len(" PID: 1234567 CMD: ")  # dist: what comes before CMD


@dataclass(frozen=True)
class Row:
    """One line of a report: a process (or a group of them) and its histogram."""

    hist: ProcessHist  # pid is None when grouped by comm or host
    cmd: bytes | None = None  # full command line, when it was recorded
    host: str | None = None
    bytes: int | None = None  # total bytes written, when the program summed them
    members: int = 1  # processes merged into this row (0: a [comm] key, not known)
    # Where CMD came from: "cmdline" (/proc/PID/cmdline, read while the
    # process lived) or "comm" (it had exited, or the row is a dump's or a
    # group's); None: as cmd says (cmdline if it is set).
    cmd_source: str | None = None
    failed: int | None = None  # sends that failed, where the probe saw them (None: not seen)
    spliced: int | None = None  # writes made inside sendfile/splice (--spliced; None: not asked)
    splice_calls: tuple[Bucket, ...] = ()  # those calls' sizes, as the application made them
    # --connections: a histogram per connection, busiest first (None: not asked).
    connections: tuple[Connection, ...] | None = None

    @property
    def splice_call_count(self) -> int:
        return sum(b.count for b in self.splice_calls)

    @property
    def cmd_from(self) -> str:
        return self.cmd_source or ("cmdline" if self.cmd is not None else "comm")

    @property
    def shown_cmd(self) -> str:
        return safe_text(self.cmd if self.cmd is not None else self.hist.comm)


# --------------------------------------------------------------------------
# Summaries, order, merging.


def percentile(buckets: Sequence[Bucket], q: float) -> Bucket | None:
    """The bucket holding the write at quantile ``q`` (0 < q <= 1)."""
    total = sum(b.count for b in buckets)
    if not total:
        return None
    rank = max(1, -(-int(q * total * 1000) // 1000))  # ceil(q * total), exactly
    seen = 0
    for b in buckets:
        seen += b.count
        if seen >= rank:
            return b
    return None  # pragma: no cover


def _sort_key(sort: str):
    if sort == "bytes":
        return lambda r: (r.bytes is None, -(r.bytes or 0), -r.hist.writes, r.hist.pid or 0)
    if sort == "pid":
        return lambda r: (r.host or "", r.hist.pid or 0, r.hist.comm)
    if sort == "comm":
        return lambda r: (r.hist.comm, r.host or "", r.hist.pid or 0)
    return lambda r: (-r.hist.writes, r.host or "", r.hist.pid or 0, r.hist.comm)


def order(rows: Iterable[Row], sort: str = "writes", top: int | None = None) -> list[Row]:
    """Busiest first by default; ties are broken so output is reproducible."""
    ranked = sorted(rows, key=_sort_key(sort))
    return ranked if top is None else ranked[:top]


def add_buckets(a: Sequence[Bucket], b: Sequence[Bucket]) -> tuple[Bucket, ...]:
    """Sum two histograms; buckets with the same edges add exactly."""
    counts: dict[tuple[int | None, int | None], int] = {}
    for bucket in (*a, *b):
        edge = (bucket.lo, bucket.hi)
        counts[edge] = counts.get(edge, 0) + bucket.count
    edges = sorted(counts, key=lambda e: (e[0] is not None, e[0] or 0, e[1] is None, e[1] or 0))
    return tuple(Bucket(lo, hi, counts[(lo, hi)]) for lo, hi in edges)


def group(rows: Iterable[Row], by: str = "pid") -> list[Row]:
    """Merge rows with the same (host, pid, comm), or the same comm, or host."""
    merged: dict[tuple, Row] = {}
    for r in rows:
        h = r.hist
        if by == "comm":
            key: tuple = (h.comm,)
            r = replace(r, hist=ProcessHist(None, h.comm, h.buckets), host=None, cmd=None,
                        cmd_source=None)
        elif by == "host":
            key = (r.host,)
            r = replace(r, hist=ProcessHist(None, b"", h.buckets), cmd=None, cmd_source=None)
        else:
            key = (r.host, h.pid, h.comm)
        old = merged.get(key)
        if old is None:
            merged[key] = r
            continue
        merged[key] = replace(old, hist=replace(old.hist, buckets=add_buckets(
            old.hist.buckets, r.hist.buckets)), bytes=_sum_known(old.bytes, r.bytes),
            failed=_sum_known(old.failed, r.failed), spliced=_sum_known(old.spliced, r.spliced),
            splice_calls=add_buckets(old.splice_calls, r.splice_calls),
            connections=None if old.connections is None or r.connections is None
            else conns.merge(old.connections, r.connections),
            members=old.members + r.members,
            cmd=old.cmd if old.cmd is not None else r.cmd,
            cmd_source=old.cmd_source if old.cmd is not None else r.cmd_source)
    return list(merged.values())


def _sum_known(a: int | None, b: int | None) -> int | None:
    """A total of two rows' counts; None (not counted) unless both have it."""
    return None if a is None or b is None else a + b


# --------------------------------------------------------------------------
# dist


def _value(b: Bucket) -> str:
    if b.lo is None:
        return f"< {b.hi}"
    if b.hi is None:
        return f">= {b.lo}"
    return str(b.lo)


def _label(b: Bucket | None) -> str:
    return "-" if b is None else format_label(b.lo, b.hi)


def _many_hosts(rows: Sequence[Row]) -> bool:
    return len({r.host for r in rows}) > 1


def _processes(n: int) -> str:
    return f"{n} process" if n == 1 else f"{n} processes"


def _who(row: Row, width: int, hosts: bool) -> str:
    """The heading of a row: PID and CMD, or the group it stands for;
    ``width`` is what CMD (or COMM) may take."""
    h = row.hist
    host = f"HOST: {row.host}  " if hosts and row.host else ""
    if h.pid is None and h.comm == b"":  # grouped by host
        return f" HOST: {row.host}  ({_processes(row.members)})"
    if h.pid is None and row.members == 0:  # a map keyed by [comm]
        return f" COMM: {cut(safe_text(h.comm), width)}"
    if h.pid is None:  # grouped by comm
        return f" COMM: {cut(safe_text(h.comm), width)}  ({_processes(row.members)})"
    # At least 20 columns of CMD, however narrow the terminal and long the host.
    return f" {host}PID: {h.pid:<7} CMD: {cut_cmd(row.shown_cmd, max(20, width - len(host)))}"


def small_writes(buckets: Sequence[Bucket], under: int) -> int:
    """Writes in the buckets wholly under ``under`` bytes (an edge)."""
    return sum(b.count for b in buckets if b.hi is not None and b.hi <= under)


def _share(part: int, whole: int) -> str:
    if not whole:
        return "-"
    if 0 < part < whole / 100:
        return "<1%"
    if part < whole < part * 100 / 99:  # not all: not 100%
        return ">99%"
    return f"{part / whole:.0%}"


def small_text(row: Row, under: int) -> str:
    """``60 (95%)``: the row's writes under ``under`` bytes, and their share."""
    n = small_writes(row.hist.buckets, under)
    return f"{n} ({_share(n, row.hist.writes)})"


def summary_line(row: Row, small: int = SMALL, width: int = WIDTH) -> str:
    """``   writes: N   p50: B   p99: B   <64: N (P%)`` and, where known,
    failed, spliced and bytes, on as many lines as ``width`` needs."""
    h = row.hist
    parts = [f"writes: {h.writes}", f"p50: {_label(percentile(h.buckets, 0.5))}",
             f"p99: {_label(percentile(h.buckets, 0.99))}", f"<{small}: {small_text(row, small)}"]
    if row.failed is not None:
        parts.append(f"failed: {row.failed}")
    if row.spliced is not None:
        calls = row.splice_call_count
        parts.append(f"spliced: {row.spliced} ({calls} sendfile/splice "
                     f"{'call' if calls == 1 else 'calls'})")
    if row.bytes is not None:
        parts.append(f"bytes: {row.bytes}")
    lines = [""]
    for part in parts:
        if lines[-1] and len(lines[-1]) + 3 + len(part) > width:
            lines.append("")
        lines[-1] += "   " + part
    return "\n".join(lines)


def _next_edge(hi: int) -> int:
    """The upper edge of the power-of-two bucket that starts at ``hi``."""
    return 1 if hi == 0 else 2 * hi


def with_zero_rows(buckets: Sequence[Bucket]) -> list[Bucket]:
    """The buckets with the empty power-of-two buckets between them filled
    in, as bpftrace prints a histogram: a merge of processes (--group-by,
    several hosts) has gaps where none of them wrote."""
    out: list[Bucket] = []
    for b in buckets:
        if out and out[-1].hi is not None and b.lo is not None:
            lo = out[-1].hi
            fill: list[Bucket] = []
            while lo < b.lo and len(fill) < 70:
                fill.append(Bucket(lo, _next_edge(lo), 0))
                lo = _next_edge(lo)
            if lo == b.lo:  # a gap in the power-of-two sequence: filled
                out += fill
        out.append(b)
    return out


def _dist_block(row: Row, stamp: str | None, hosts: bool, width: int, small: int) -> str:
    when = f"{stamp} " if stamp else ""
    lines = [when + _who(row, width - _WHO_WIDTH - len(when), hosts),
             summary_line(row, small, width), ""] + _hist_lines(row.hist.buckets)
    # --connections: then one sub-block per connection, indented, the same
    # summary and histogram for its writes alone.
    for c in row.connections or ():
        alone = Row(ProcessHist(row.hist.pid, row.hist.comm, c.buckets))
        lines += ["", f"  connection {c.local} -> {c.remote}",
                  "  " + summary_line(alone, small, width - 2).replace("\n", "\n  "), ""]
        lines += _hist_lines(c.buckets)
    return "\n".join(lines) + "\n"


def _hist_lines(buckets: Sequence[Bucket]) -> list[str]:
    total = sum(b.count for b in buckets) or 1
    lines = [f"{'value':>16}  {' Distribution '.center(BAR_WIDTH, '-')} count"]
    for b in with_zero_rows(buckets):
        bar = "@" * int(b.count * BAR_WIDTH / total + 0.5)
        lines.append(f"{_value(b):>16} |{bar:<{BAR_WIDTH}} {b.count}")
    return lines


def render_dist(rows: Sequence[Row], stamp: str | None = None, width: int = WIDTH,
                small: int = SMALL) -> str:
    hosts = _many_hosts(rows)
    return "\n".join(_dist_block(r, stamp, hosts, width, small) for r in rows)


# --------------------------------------------------------------------------
# csv


CSV_COLUMNS = ["host", "interval", "time", "pid", "comm", "cmd", "value", "max", "count",
               "writes", "p50", "p99", "bytes", "small_under", "small_writes", "failed",
               "spliced"]
# --connections: a process's rows are followed by its connections' rows,
# these four set (empty in the process's own rows).
CSV_CONNECTION_COLUMNS = ["laddr", "lport", "raddr", "rport"]


def _text(raw: bytes) -> str:
    """Bytes as JSON text (json.dumps escapes every control character)."""
    return raw.decode("utf-8", "replace")


def _cell(text: str) -> str:
    """A CSV text cell: escaped like every text report (no control byte
    reaches a terminal or a spreadsheet raw), and one that begins like a
    formula (= + - @) gets a leading ' so that spreadsheets show it as
    text (OWASP's advice on CSV injection)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


def render_csv(rows: Sequence[Row], header: bool = True, meta: dict | None = None,
               small: int = SMALL) -> str:
    """One row per process and bucket; ``interval`` and ``time`` (from
    ``meta``) tell the rows of a series apart.  With --connections, each
    process's rows are followed by one row per connection and bucket (its
    writes, p50, p99 and small writes are the connection's own)."""
    meta = meta or {}
    when = [meta.get("interval", ""), _cell(meta.get("time", ""))]
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    per_conn = any(r.connections is not None for r in rows)
    if header:
        w.writerow(CSV_COLUMNS + (CSV_CONNECTION_COLUMNS if per_conn else []))
    for r in rows:
        h = r.hist
        who = [_cell(r.host or ""), *when, "" if h.pid is None else h.pid,
               _cell(safe_text(h.comm)), _cell(r.shown_cmd)]
        extra = ["" if r.bytes is None else r.bytes, small, small_writes(h.buckets, small),
                 "" if r.failed is None else r.failed, "" if r.spliced is None else r.spliced]
        w.writerows(_csv_rows(who, h.buckets, extra, [""] * 4 if per_conn else []))
        for c in r.connections or ():
            w.writerows(_csv_rows(who, c.buckets, ["", small, small_writes(c.buckets, small),
                                                   "", ""], list(c.ends)))
    return out.getvalue()


def _csv_rows(who: list, buckets: Sequence[Bucket], extra: list, ends: list) -> list[list]:
    p50, p99 = percentile(buckets, 0.5), percentile(buckets, 0.99)
    writes = sum(b.count for b in buckets)
    return [[*who, "" if b.lo is None else b.lo, "" if b.hi is None else b.hi - 1, b.count,
             writes, _label(p50), _label(p99), *extra, *ends] for b in buckets]


# --------------------------------------------------------------------------
# json


def bucket_json(b: Bucket | None) -> dict | None:
    # "value" is the lower bound, "max" the inclusive upper bound, as in
    # bpftrace's own JSON; null marks an open end.
    if b is None:
        return None
    return {"value": b.lo, "max": None if b.hi is None else b.hi - 1, "count": b.count}


def _small_json(buckets: Sequence[Bucket], small: int) -> dict:
    few, writes = small_writes(buckets, small), sum(b.count for b in buckets)
    return {"under": small, "writes": few, "share": round(few / writes, 4) if writes else None}


def connection_json(c: Connection, small: int = SMALL) -> dict:
    return {"laddr": c.laddr, "lport": c.lport, "raddr": c.raddr, "rport": c.rport,
            "writes": c.writes, "p50": bucket_json(percentile(c.buckets, 0.5)),
            "p99": bucket_json(percentile(c.buckets, 0.99)), "small": _small_json(c.buckets, small),
            "buckets": [bucket_json(b) for b in c.buckets]}


def process_json(row: Row, small: int = SMALL) -> dict:
    h = row.hist
    doc = {
        "host": row.host,
        "pid": h.pid,
        "comm": _text(h.comm),
        "comm_hex": h.comm.hex(),
        "cmd": _text(row.cmd if row.cmd is not None else h.comm),
        "cmd_source": row.cmd_from,
        "writes": h.writes,
        "failed": row.failed,
        "spliced": row.spliced,
        "bytes": row.bytes,
        "p50": bucket_json(percentile(h.buckets, 0.5)),
        "p99": bucket_json(percentile(h.buckets, 0.99)),
        "small": _small_json(h.buckets, small),
        "buckets": [bucket_json(b) for b in h.buckets],
    }
    if row.spliced is not None:
        doc["splice_calls"] = {"calls": row.splice_call_count,
                               "buckets": [bucket_json(b) for b in row.splice_calls]}
    if row.connections is not None:
        doc["connections"] = [connection_json(c, small) for c in row.connections]
    if row.members > 1:
        doc["members"] = row.members
    return doc


def render_json(rows: Sequence[Row], meta: dict | None = None, small: int = SMALL) -> str:
    """One JSON document on one line (interval reports: one per line)."""
    doc: dict = {"tcpwdist": JSON_SCHEMA_VERSION}
    doc.update(meta or {})
    doc["processes"] = [process_json(r, small) for r in rows]
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")) + "\n"


# --------------------------------------------------------------------------
# From a parsed dump to rows, and what the dump says besides.


def _values(snap: dump.Snapshot, name: str) -> dict[tuple[int, bytes], int] | None:
    """A [pid, comm] keyed count or sum map's values; None if it is not there."""
    m = snap.get(name)
    if m is None:
        return None
    values = {}
    for e in m.entries:
        pc = dump.pid_comm(e.key, m.sep)
        if pc is not None and isinstance(e, dump.ValueEntry) and e.value.lstrip("-").isdigit():
            values[pc] = int(e.value)
    return values


class Counting(NamedTuple):
    """What the program counted besides the histograms (so that a map the
    dump lacks is none counted: bpftrace prints nothing of an empty map)."""

    failed: bool = False  # @failed[pid, comm] = count()
    spliced: bool = False  # --spliced: @spliced, @splicecalls
    connections: bool = False  # --connections: @conn


def rows_of(snap: dump.Snapshot, name: str, host: str | None = None,
            shape: str = dump.PID_COMM, counting: Counting = Counting()) -> list[Row]:
    """The rows of map ``name`` in one snapshot, each with its total bytes
    when the program also summed them (``@bytes[pid, comm] = sum(size)``),
    its failed sends, spliced writes and connections when it counted them
    (or the dump has them).  A process whose every send failed is a row
    without buckets.  A map keyed by [comm] gives one row per comm
    (members 0: how many processes it holds is not known)."""
    if shape == dump.COMM:
        return [Row(h, None, host, None, 0) for h in dump.processes(snap, name, shape)]
    totals = _values(snap, "@bytes") or {}
    failed = _counted(snap, "@failed", counting.failed)
    spliced = _counted(snap, "@spliced", counting.spliced)
    per_conn = conns.by_process(snap, counting.connections)
    calls = {(h.pid, h.comm): h.buckets for h in dump.processes(snap, "@splicecalls")}
    hists = dump.processes(snap, name, shape)
    seen = {(h.pid, h.comm) for h in hists}
    hists += [ProcessHist(pid, comm, ()) for pid, comm in (failed or {}) if (pid, comm) not in seen]

    def of(values: dict[tuple[int, bytes], int] | None, h: ProcessHist) -> int | None:
        return None if values is None or h.pid is None else values.get((h.pid, h.comm), 0)

    return [Row(h, None, host, totals.get((h.pid, h.comm)) if h.pid is not None else None,
                failed=of(failed, h), spliced=of(spliced, h),
                splice_calls=calls.get((h.pid, h.comm), ()),
                connections=None if per_conn is None or h.pid is None
                else per_conn.get((h.pid, h.comm), ()))
            for h in hists]


def _counted(snap: dump.Snapshot, name: str, counted: bool) -> dict[tuple[int, bytes], int] | None:
    """A count map's values; {} if the program counted it and the dump has
    none (bpftrace prints nothing of an empty map); None if not counted."""
    values = _values(snap, name)
    return {} if values is None and counted else values


def map_full_warning(max_keys: int | None, dropped: int = 0) -> str:
    how_many = f"{dropped} {'write was' if dropped == 1 else 'writes were'}" if dropped \
        else "writes of new (pid, comm, size) combinations were"
    raise_it = (f"raise --max-keys (now {max_keys})" if max_keys else
                "give bpftrace a bigger map (tcpwdist --max-keys, or BPFTRACE_MAX_MAP_KEYS)")
    return f"warning: bpftrace's map was full: {how_many} not counted; {raise_it}"


UNTERMINATED_LIVE = ("partial report: bpftrace's final dump stopped after {entry}, without "
                     "its closing blank line: what it would have printed next is missing")


def dump_notes(parsed: dump.Dump, name: str, max_keys: int | None = None,
               live: bool = False) -> list[str]:
    """What the user must hear about a dump, each "note: ..." or
    "warning: ...".  bpftrace 0.23+ says "Map full"; older versions drop
    updates in silence, so a map holding as many (key, bucket) entries as
    its limit (``max_keys``, known when tcpwdist ran it) is taken as full.
    A last entry without bpftrace's closing blank line is, in a dump
    someone copied, a terminal's doing; in a live run (``live``), a final
    dump that stopped short: entries after it may be missing."""
    said = [f"note: {n}" for n in parsed.notes]
    if parsed.unterminated and live:
        said.append(f"warning: {UNTERMINATED_LIVE.format(entry=parsed.unterminated)}")
    elif parsed.unterminated:
        said.append(f"note: the last entry, {parsed.unterminated}, has no blank line after it "
                    "(as when copied from a terminal): its rows are read as complete")
    said += [f"warning: {d}" for d in parsed.damaged]
    if parsed.lost_events:
        said.append(f"warning: bpftrace lost {parsed.lost_events} events")
    return said + _full_maps(parsed, name, max_keys)


def _full_maps(parsed: dump.Dump, name: str, max_keys: int | None) -> list[str]:
    """The warnings of full maps: the process map's, and --connections'
    map's apart.  That one has more keys and fills first; the process map
    holds every write then, and the connections miss what it has more."""
    said = []
    full = parsed.map_full
    missing = max((_sum_hist(s, name) - conns.writes(s) for s in parsed.snapshots
                   if s.get(conns.MAP) is not None), default=0)
    conn_full = _at_limit(parsed, lambda s: _entries(s, conns.MAP), max_keys) \
        or full and missing > 0
    if max_keys is not None:
        full = _at_limit(parsed, lambda s: _entries(s, name), max_keys) or full and not conn_full
    if full:
        said.append(map_full_warning(max_keys, 0 if conn_full else parsed.dropped))
    if conn_full:
        said.append(f"warning: bpftrace's connection map was full: {_writes(missing)} in "
                    "their process's histogram but in no connection's; "
                    + (f"raise --max-keys (now {max_keys})" if max_keys else
                       "give bpftrace a bigger map (tcpwdist --max-keys)"))
    return said


def _at_limit(parsed: dump.Dump, entries: Callable[[dump.Snapshot], int],
              max_keys: int | None) -> bool:
    """Did a map hold as many entries as its limit (bpftrace 0.17 drops
    updates in silence: that is how a full map shows)?"""
    return max_keys is not None and max(map(entries, parsed.snapshots), default=0) >= max_keys


def _entries(snap: dump.Snapshot, name: str) -> int:
    """The (key, bucket) entries of hist map ``name``: what fills it."""
    m = snap.get(name)
    return 0 if m is None else sum(1 for e in m.entries if isinstance(e, dump.HistEntry)
                                   for b in e.buckets if b.count)


def _sum_hist(snap: dump.Snapshot, name: str) -> int:
    return sum(h.writes for h in dump.processes(snap, name))


def _writes(n: int) -> str:
    return f"{n} write is" if n == 1 else f"{n} writes are"


# --------------------------------------------------------------------------
# A series of reports.


@dataclass(frozen=True)
class Meta:
    """What a JSON report says about how it was made (report.schema.json)."""

    source: str | None = None  # "live", a file read with -r, or "stdin"
    sources: tuple[str, ...] | None = None  # the -r inputs merged
    host: str | None = None
    kernel: str | None = None
    bpftrace: str | None = None
    probe: str | None = None
    size: str | None = None  # "asked" or "accepted": what the probe's write size is
    start: str | None = None
    duration: float | None = None  # seconds the report covers
    # What the report's reader must know (the map was full, events were
    # lost): always in JSON, empty when all is well.
    warnings: tuple[str, ...] = ()
    # True when bpftrace's final dump did not arrive whole and the report
    # is its last snapshot (how old: in warnings).
    partial: bool | None = None
    # The filters that made the report (pid, comm, port: each a list of
    # alternatives; cgroup; all of them required), see filters_of.
    filters: dict[str, Any] | None = None

    def merged(self, other: Meta) -> Meta:
        """This meta with the fields ``other`` has."""
        return replace(self, **{k: v for k, v in dataclasses.asdict(other).items()
                                if v is not None and v != ()})

    def fields(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items() if v is not None}


def filters_of(pids: Sequence[int] = (), comms: Sequence[str] = (), ports: Sequence[int] = (),
               cgroup: str | None = None, before: dict[str, Any] | None = None
               ) -> dict[str, Any]:
    """The JSON's "filters": a process is in the report if it matches one
    of each list given (an empty list: no filter).  ``before`` is what an
    input report read back was filtered by already: both apply, so a list
    in both keeps what is in both."""
    now: dict[str, Any] = {"pid": list(pids), "comm": list(comms), "port": list(ports),
                           "cgroup": cgroup}
    old = before or {}
    for key in ("pid", "comm", "port"):
        was = old.get(key) or []
        now[key] = [v for v in was if v in now[key]] if was and now[key] else was or now[key]
    now["cgroup"] = now["cgroup"] or old.get("cgroup")
    return now


def warnings_of(said: Iterable[str]) -> tuple[str, ...]:
    """The warnings among dump_notes' lines, without their "warning: "."""
    return tuple(s[len("warning: "):] for s in said if s.startswith("warning: "))


META_FIELDS = tuple(f.name for f in dataclasses.fields(Meta))


class Series:
    """The reports of one run, or one -r, in order: numbering, interval
    headings, the empty report, the CSV header once.  Pure: each call
    returns the next report's text."""

    def __init__(self, options: Options, meta: Meta = Meta(), numbered: bool = False) -> None:
        self.options = options
        self.meta = meta
        self.numbered = numbered  # a series of intervals, not one report
        self.count = 0  # reports made so far

    def next(self, rows: Iterable[Row], stamp: str | None = None, meta: Meta = Meta()) -> str:
        """The next report of ``rows``; ``stamp`` is the time its period ended."""
        self.count += 1
        o = self.options
        ordered = order(group(rows, o.group_by), o.sort, o.top)
        doc: dict[str, Any] = self.meta.merged(meta).fields()
        if o.fmt != "json":
            # Hosts and times may come from files (-r): shown escaped, as
            # comms are; the JSON keeps them exact.
            ordered = [replace(r, host=safe_str(r.host)) if r.host else r for r in ordered]
            stamp = safe_str(stamp) if stamp else stamp
        if stamp:
            doc["time"] = stamp
        if self.numbered:
            doc["interval"] = self.count
        if o.group_by != "pid":
            doc["group_by"] = o.group_by
        text = ""
        if self.numbered and o.fmt in ("dist", "table"):
            text += ("\n" if self.count > 1 else "") + f"{stamp or f'interval {self.count}'}\n"
        if not ordered and o.fmt in ("dist", "table"):
            return text + "(no TCP writes traced)\n"
        return text + render(o.fmt, ordered, doc, self._line_stamp(stamp),
                             header=self.count == 1, width=o.width, small=o.small)

    def _line_stamp(self, stamp: str | None) -> str | None:
        """-T's time for each line; an interval's dist heading is its
        time already, and gets no second one."""
        o = self.options
        return stamp if o.timestamp and not (self.numbered and o.fmt == "dist") else None


# --------------------------------------------------------------------------


def render(fmt: str, rows: Sequence[Row], meta: dict | None = None,
           stamp: str | None = None, header: bool = True, width: int = WIDTH,
           small: int = SMALL) -> str:
    """The report in ``fmt``, rows already ordered; ``stamp`` (-T) puts the
    time on every line where it fits (JSON carries it in ``meta``);
    ``header`` is the CSV header line (once per output); ``small`` the
    bucket edge the summaries count the writes under."""
    if fmt == "json":
        return render_json(rows, meta, small)
    if fmt == "csv":
        return render_csv(rows, header, meta, small)
    if fmt == "table":
        from tcpwdist.table import render_table  # it builds on this module
        return render_table(rows, stamp, width, small)
    return render_dist(rows, stamp, width, small)

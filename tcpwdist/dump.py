"""Read bpftrace map dumps: text (every version from 0.9) and JSON.

A text dump is what bpftrace prints when it exits (or on ``print(@)``)::

    Attaching 1 probe...


    @[23476, basic-edges]: 
    [0]                    1 |@@@@@@@@@@@@@@@@@@@@@@@@@@                          |
    [1]                    1 |@@@@@@@@@@@@@@@@@@@@@@@@@@                          |
    [2, 4)                 2 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|
    [4, 8)                 0 |                                                    |

    @ticks: 3

The text grammar (textdump.py) is pyparsing, built bottom-up from named pieces
(label, count, bar, row, header, entry, scalar line, noise line).  What it
must survive, version by version (see the project's reference notes):

* the header's trailing space (``@[k]: `` up to 0.22, ``@[k]:`` from 0.23);
* comm bytes printed raw: spaces, commas, ``]: ``, brackets, tabs, bytes
  that are not UTF-8, even a newline that splits the header over two lines;
* bucket labels ``(..., 0)``, ``[0]``, ``[2, 4)``, ``[1K, 2K)``,
  ``[3584, 4K)``, ``[100, ...)``, with K..E suffixes (powers of 1024);
* blank-line rules of every era, stray blank lines from empty maps;
* a pty's additions: CRLF, the echoed ``^C``, stderr lines (ERROR/WARNING,
  sometimes ANSI-coloured) interleaved with the dump;
* several successive ``print(@)`` dumps (interval output): a key seen again,
  or a ``HH:MM:SS`` line from ``time()``, starts the next interval.

JSON dumps (``bpftrace -f json``) are read by :mod:`tcpwdist.jsondump`
into the same data.

Comms are kept as the exact bytes the kernel holds: input is decoded as
UTF-8 with ``surrogateescape`` and keys are encoded back the same way.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field, replace
from typing import BinaryIO, Callable, Iterable, Iterator, NamedTuple, Union


from tcpwdist import marks
from tcpwdist.errors import DumpError

# --------------------------------------------------------------------------
# The data a dump holds.


class Bucket(NamedTuple):
    """One histogram bucket: values ``lo <= v < hi``.

    ``lo`` is None for the open-below bucket ``(..., hi)``; ``hi`` is None
    for the open-above lhist bucket ``[lo, ...)``.  (A NamedTuple, not a
    dataclass: a big dump makes 100,000 of them, and a tuple is built
    four times faster than a frozen dataclass.)
    """

    lo: int | None
    hi: int | None
    count: int  # type: ignore[assignment]  # the field shadows tuple.count, on purpose


@dataclass(frozen=True)
class HistEntry:
    key: str | None  # the key as printed (raw bytes as surrogate escapes); None: keyless
    buckets: tuple[Bucket, ...]

    @property
    def total(self) -> int:
        return sum(b.count for b in self.buckets)


@dataclass(frozen=True)
class ValueEntry:
    """One entry of a count/sum/avg/stats/... map, its value as printed."""

    key: str | None
    value: str


Entry = Union[HistEntry, ValueEntry]


@dataclass(frozen=True)
class MapDump:
    name: str  # "@", "@bytes", ...
    entries: tuple[Entry, ...]
    sep: str = ", "  # between key parts: ", " in text, "," in JSON

    @property
    def is_hist(self) -> bool:
        return bool(self.entries) and isinstance(self.entries[0], HistEntry)


@dataclass(frozen=True)
class Snapshot:
    """Every map of one dump (one interval of an interval series)."""

    maps: tuple[MapDump, ...]
    stamp: str | None = None  # "HH:MM:SS[.ffffff]" when a mark or time() line stamped it
    # The tcpwdist mark that closed it (marks.TOTAL, marks.SNAPSHOT,
    # marks.INTERVAL), or None: a plain dump, the final one of a run.
    kind: str | None = None

    def get(self, name: str) -> MapDump | None:
        for m in self.maps:
            if m.name == name:
                return m
        return None


@dataclass(frozen=True)
class Dump:
    snapshots: tuple[Snapshot, ...]
    format: str  # "text" or "json"
    recognised: bool  # an attach notice or record showed this is bpftrace's
    notes: tuple[str, ...] = ()  # things the user should hear about, once
    cut: str | None = None  # what was cut off when the dump ends mid-map
    map_full: bool = False  # bpftrace said "Map full": writes were dropped
    dropped: int = 0  # updates bpftrace said it dropped (0.23+: one "Map full" each)
    lost_events: int = 0
    # Entries a line among their rows broke, so not counted (one warning).
    damaged: tuple[str, ...] = ()
    # The last entry, when no blank line closed it: whole for -r, but for
    # a live run the final dump did not arrive whole.
    unterminated: str | None = None
    # The bpftrace era the JSON keys told us about, when they did.
    era: str | None = field(default=None)

    @property
    def final(self) -> Snapshot | None:
        """The last plain dump (no tcpwdist mark closed it): a run's final one."""
        return next((s for s in reversed(self.snapshots) if s.kind is None), None)

    @property
    def complete(self) -> bool:
        """bpftrace's final dump arrived whole."""
        return self.final is not None and not self.cut and self.unterminated is None


# --------------------------------------------------------------------------
# Bucket labels.

_SUFFIX = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40,
           "P": 1 << 50, "E": 1 << 60}
_NUM = r"-?\d+[KMGTPE]?"
_NUM_RE = re.compile(r"(-?\d+)([KMGTPE]?)")


def _num(text: str) -> int:
    m = _NUM_RE.fullmatch(text)
    assert m is not None, text
    return int(m.group(1)) * _SUFFIX[m.group(2)]


def parse_label(label: str) -> tuple[int | None, int | None]:
    """``"[1K, 2K)"`` -> ``(1024, 2048)``; bounds are lo-inclusive, hi-exclusive.
    (Not cached here: the text reader keeps the one cache of labels.)"""
    if label.startswith("(..., "):
        return None, _num(label[6:-1])
    inner = label[1:-1]
    if label.endswith("]"):  # "[5]": one value
        v = _num(inner)
        return v, v + 1
    lo, _, hi = inner.partition(", ")
    if hi == "...":
        return _num(lo), None
    return _num(lo), _num(hi)


def _fmt_num(v: int) -> str:
    for suffix in "EPTGMK":
        unit = _SUFFIX[suffix]
        if v and v % unit == 0:
            return f"{v // unit}{suffix}"
    return str(v)


def format_label(lo: int | None, hi: int | None) -> str:
    """The bpftrace-style label of a bucket (log2 spelling, K..E suffixes)."""
    if lo is None:
        return f"(..., {_fmt_num(hi or 0)})"
    if hi is None:
        return f"[{_fmt_num(lo)}, ...)"
    if hi == lo + 1:
        return f"[{lo}]"
    return f"[{_fmt_num(lo)}, {_fmt_num(hi)})"


# --------------------------------------------------------------------------
# Keys.

_PID_COMM_RE = {sep: re.compile(rf"(-?\d+){sep}(.*)", re.S) for sep in (", ", ",")}


def pid_comm(key: str | None, sep: str) -> tuple[int, bytes] | None:
    """Split a printed ``pid, comm`` key; None if the key has another shape.

    The pid comes first, so everything after the first separator is the
    comm, however many commas or spaces it holds: ``"1, a, b"`` -> ``(1, b"a, b")``.
    """
    if key is None:
        return None
    m = _PID_COMM_RE[sep].fullmatch(key)
    if m is None:
        return None
    return int(m.group(1)), m.group(2).encode("utf-8", "surrogateescape")


# A terminal's colour codes, as bpftrace's log lines may carry them.
_ANSI = r"(?:\x1b\[[0-9;]*m)*"
# How bpftrace's own log lines begin (on the other stream, merged on a
# pty; in text and JSON dumps alike): never map output, skipped silently.
LOG_WORDS = (r"ERROR|WARNING|Warning: |FATAL|NOTE|HINT|BUG: |\^C|Attaching \d+ probes?"
             r"|Attached \d+ probes?|Lost \d+ events|__BPFTRACE_NOTIFY_PROBES_ATTACHED"
             r"|No probes to attach|cannot attach |could not attach |create_probe_event|Kernel "
             r"|Additional Info - ")

_ECHO_RE = re.compile(r"^\^C", re.M)
_ATTACH_RE = re.compile(
    rf"^{_ANSI}(?:Attaching \d+ probes?\.\.\.|Attached \d+ probes?)[^\n]*\n?", re.M)
_JSON_RE = re.compile(r'^[ \t]*\{"type": ?"', re.M)
_PRETTY_JSON_RE = re.compile(r'^\{[ \t]*\n[ \t]+"type": ?"', re.M)
MAP_FULL = "Map full"  # what bpftrace 0.23+ says of each update it dropped
_LOST_RE = re.compile(rf"{_ANSI}Lost (\d+) events")


# --------------------------------------------------------------------------
# Reading.


class Builder:
    """Collects entries into snapshots; a repeated (map, key) starts a new
    one.  Each snapshot goes to ``sink`` as soon as it is whole: a reader
    that streams keeps none of them itself."""

    def __init__(self, sep: str, sink: Callable[[Snapshot], None]) -> None:
        self.sep = sep
        self.sink = sink
        self.flushed = 0  # snapshots handed to the sink
        self._maps: dict[str, list[Entry]] = {}
        self._seen: set[tuple[str, str | None]] = set()
        self._stamp: str | None = None
        self._time_opens: bool | None = None  # decided by the first bare time() line
        # After a FINAL mark: the final map, by key.  A mark inside it ends
        # nothing, and a key seen again is the same map printed later: the
        # map only grows, so the latest entry of each key wins.
        self._final: dict[str, dict[str | None, Entry]] | None = None

    def add(self, name: str, entry: Entry) -> None:
        if self._final is not None:
            self._final.setdefault(name, {})[entry.key] = entry
            return
        ident = (name, entry.key)
        if ident in self._seen:
            self.flush()
        self._seen.add(ident)
        self._maps.setdefault(name, []).append(entry)

    def add_map(self, name: str, entries: list[Entry]) -> None:
        """A JSON record: a whole map at once; seeing it again starts a new snapshot."""
        if self._final is not None:
            self._final.setdefault(name, {}).update((e.key, e) for e in entries)
            return
        if name in self._maps:
            self.flush()
        self._maps[name] = entries

    def mark(self, kind: str | None, stamp: str) -> None:
        """A mark line: tcpwdist's own, or a bare time() line (kind None)."""
        if self._final is not None:
            return  # inside the final dump
        if kind == marks.FINAL:
            # What is pending (a periodic dump the mark cut, if any) is
            # older than the final dump: it is merged into it.
            self._final = {n: {e.key: e for e in es} for n, es in self._maps.items()}
            self._maps, self._seen, self._stamp = {}, set(), stamp
        elif kind == marks.PROGRESS:
            # What came since the last snapshot was a progress print.
            self._maps, self._seen, self._stamp = {}, set(), None
        elif kind is not None:
            self._close(stamp, kind)
        else:
            self._time(stamp)

    def _close(self, stamp: str, kind: str = marks.INTERVAL) -> None:
        """A mark closes the dump before it (even an empty one), stamps it
        and says what it was."""
        self._stamp = stamp
        self.flush(keep_empty=True, kind=kind)

    def _time(self, stamp: str) -> None:
        """A bare time() line.  If it comes before any map, time() is
        printed before print(@): each one opens the next interval; else
        it closes the one before it, like tcpwdist's mark."""
        if self._time_opens is None:
            self._time_opens = not self._maps and not self.flushed
        if not self._time_opens:
            self._close(stamp)
            return
        if self._maps or self._stamp is not None:
            self.flush(keep_empty=True)
        self._stamp = stamp

    def flush(self, keep_empty: bool = False, kind: str | None = None) -> None:
        if self._final is not None:  # the end of the input
            self._maps = {n: list(es.values()) for n, es in self._final.items()}
            self._final = None
            keep_empty = True  # the final dump of an empty map is one too
        if self._maps or keep_empty:
            maps = tuple(MapDump(n, tuple(e), self.sep) for n, e in sorted(self._maps.items()))
            self.sink(Snapshot(maps, self._stamp, kind))
            self.flushed += 1
        self._maps, self._seen, self._stamp = {}, set(), None


def _line_of(text: str, loc: int) -> int:
    return text.count("\n", 0, loc) + 1


def _shown(text: str) -> str:
    """Input text as printable ASCII, for messages (no raw control bytes)."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace") \
        .encode("unicode_escape").decode("ascii")


# How much of the input is read at a time.  Blocks are cut after a line's
# end, so a line is never split (a JSON record is one line: a map of a
# million keys makes one of 100 MB).  A line longer than the longest a
# bpftrace map of --max-keys' limit can print is no bpftrace output.
READ_BLOCK = 1 << 20
LONGEST_LINE = 1 << 30


class Piece(NamedTuple):
    """A piece of the input, decoded: whole lines (the very last one of the
    input may lack its newline)."""

    text: str
    line: int  # the number of its first line in the input
    last: bool  # nothing follows


# The first bytes of the input, which tell its format (a JSON record, an
# attach notice, a terminal's line ends): the first block holds them all.
HEAD = 16384


def _line_blocks(chunks: Iterable[bytes]) -> Iterator[tuple[bytes, int]]:
    """The input's bytes in blocks that end where a line ends, each with
    its first line's number, the first at least HEAD bytes long (unless
    the input is shorter); NUL bytes refused (no bpftrace text holds one:
    this is how -r /dev/zero ends at once)."""
    held: list[bytes] = []  # a line not ended yet, or the head, not whole yet
    held_size = held_lines = 0
    line = 1
    for chunk in chunks:
        nul = chunk.find(b"\x00")
        if nul >= 0:
            raise DumpError("input holds NUL bytes: this is not bpftrace's text output",
                            line=line + held_lines + chunk.count(b"\n", 0, nul))
        end = chunk.rfind(b"\n") + 1
        if not end or (line == 1 and held_size + end < HEAD):
            held.append(chunk)
            held_size += len(chunk)
            held_lines += chunk.count(b"\n")
            if held_size > LONGEST_LINE:
                raise DumpError(f"line {line} runs over {LONGEST_LINE >> 20} MiB without "
                                "ending: this is not bpftrace output")
            continue
        block = b"".join(held + [chunk[:end]]) if held else chunk[:end]
        held, held_size = ([chunk[end:]], len(chunk) - end) if end < len(chunk) else ([], 0)
        held_lines = 0
        yield block, line
        line += block.count(b"\n")
    if held:
        yield b"".join(held), line


def lines_of(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The input's lines, one at a time (what tcpwdist's own JSON is read by)."""
    for block, _ in _line_blocks(chunks):
        yield from block.splitlines()


def pieces(chunks: Iterable[bytes]) -> Iterator[Piece]:
    """The input as decoded pieces of whole lines, a terminal's additions
    undone: CRLF line ends, the echoed ^C.  At least one piece, the last
    one marked."""
    crlf = None
    held: tuple[str, int] | None = None
    for block, line in _line_blocks(chunks):
        text = block.decode("utf-8", "surrogateescape")  # a newline is never inside a character
        if crlf is None:
            # A terminal's output (ONLCR): every line ends in CRLF.  A lone
            # CR stays: it may be a byte of a comm.
            crlf = text.count("\r\n") * 2 > text.count("\n")
        if crlf:
            text = text.replace("\r\n", "\n")
        # A terminal echoes Ctrl-C as "^C" where the cursor is; bpftrace
        # 0.24+ prints no blank line first, so the echo may be glued to a
        # map line or a JSON record.  It is never part of the dump.
        text = _ECHO_RE.sub("", text)
        if held is not None:
            yield Piece(*held, last=False)
        held = (text, line)
    yield Piece(*(held or ("", 1)), last=True)


def read(chunks: Iterable[bytes], sink: Callable[[Snapshot], None]) -> Dump:
    """Read bpftrace output (text or JSON, piped or from a pty) from a
    stream of bytes, handing each snapshot to ``sink`` as soon as it is
    whole.  Memory holds a few blocks of the input and what the sink keeps,
    however long the input is; the Dump returned holds no snapshots.

    Raises :class:`DumpError` for input that is not bpftrace output; a dump
    cut off mid-map reads as everything complete, with ``cut`` set.
    """
    stream = pieces(chunks)
    first = next(stream)
    # The format shows in the first lines: a JSON dump's records start with
    # {"type": ..., a text dump's never do.
    head = first.text[:HEAD]
    rest = itertools.chain([first], stream)
    if _JSON_RE.search(head):
        # The readers build on this module's data: imported here, not at
        # the top, so that the modules do not import each other.
        from tcpwdist.jsondump import read_json
        return read_json(rest, head, sink)
    pretty = _PRETTY_JSON_RE.search(head)
    if pretty is not None:
        raise DumpError("pretty-printed JSON: bpftrace -f json writes one record a line",
                        hint="give tcpwdist bpftrace's own output (or `jq -c .` of this file)",
                        line=_line_of(head, pretty.start()))
    from tcpwdist.textdump import read_text
    return read_text(rest, _ATTACH_RE.search(head), sink)


def parse(data: bytes | str) -> Dump:
    """Read bpftrace output held in memory (see :func:`read`); the Dump
    holds its snapshots."""
    raw = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
    snapshots: list[Snapshot] = []
    parsed = read([raw], snapshots.append)
    return replace(parsed, snapshots=tuple(snapshots))


def chunks_of(f: BinaryIO, digest: Callable[[bytes], object] | None = None) -> Iterator[bytes]:
    """A binary file's bytes, block by block (each given to ``digest`` too)."""
    while block := f.read(READ_BLOCK):
        if digest is not None:
            digest(block)
        yield block


def skipped_note(many: int, n: int, line: str, what: str) -> str:
    """The note for ``many`` lines a reader skipped as not ``what``, the
    first of them ``line``, line ``n``: quoted safely."""
    return (f"skipped {many} {'line' if many == 1 else 'lines'} that "
            f"{'is' if many == 1 else 'are'} not {what}, the first: "
            f"line {n} '{_shown(line.rstrip()[:60])}'")


def lost_count(line: str) -> int:
    """N of a "Lost N events" line (0 for any other line)."""
    m = _LOST_RE.match(line)
    return int(m.group(1)) if m else 0


# --------------------------------------------------------------------------
# From maps to what tcpwdist reports.


@dataclass(frozen=True)
class ProcessHist:
    pid: int | None  # None: a group of processes (report --group-by)
    comm: bytes
    buckets: tuple[Bucket, ...]

    @property
    def writes(self) -> int:
        return sum(b.count for b in self.buckets)


class _MapKinds(NamedTuple):
    names: set[str]  # every map
    hists: set[str]  # hists with a key: --map may name any of them
    pid_comm: set[str]  # hists keyed by (pid, comm): the ones picked without --map


def _add_kinds(kinds: _MapKinds, snap: Snapshot) -> None:
    for m in snap.maps:
        kinds.names.add(m.name)
        hists = [e for e in m.entries if isinstance(e, HistEntry)]
        if not m.entries or len(hists) < len(m.entries):
            continue
        if all(e.key is not None for e in hists):
            kinds.hists.add(m.name)
        if all(pid_comm(e.key, m.sep) for e in hists):
            kinds.pid_comm.add(m.name)


def map_kinds(snapshots: Iterable[Snapshot]) -> _MapKinds:
    kinds = _MapKinds(set(), set(), set())
    for snap in snapshots:
        _add_kinds(kinds, snap)
    return kinds


def pick_map(found: Iterable[Snapshot] | _MapKinds, name: str | None = None) -> str:
    """The name of the hist map the report is about: ``name`` if given
    (any keyed hist map), else ``@``, else the only (pid, comm) hist map.
    ``found``: the snapshots, or what map_kinds() or a ReportFeed saw of them."""
    kinds = found if isinstance(found, _MapKinds) else map_kinds(found)
    if name is not None:
        if name not in kinds.pid_comm | kinds.hists:
            found_names = ", ".join(sorted(kinds.hists)) or "none"
            raise DumpError(f"no hist map {name} in the input",
                            hint=f"hist maps found: {found_names}")
        return name
    if not kinds.pid_comm and kinds.names:
        raise DumpError("no hist map keyed by (pid, comm) in the input; maps found: "
                        + ", ".join(sorted(kinds.names)),
                        hint="tcpwdist reports @[pid, comm] = hist(size) maps")
    if "@" in kinds.pid_comm or not kinds.pid_comm:
        return "@"
    if len(kinds.pid_comm) == 1:
        return next(iter(kinds.pid_comm))
    raise DumpError("several hist maps keyed by (pid, comm): "
                    + ", ".join(sorted(kinds.pid_comm)), hint="choose one with --map NAME")


# How a hist map's keys name the process: tcpwdist's own [pid, comm], and
# what bpftrace's tools use (socksize.bt's [comm, pid], bitesize.bt's
# [comm]).  Only [pid, comm] is picked without --map.
PID_COMM, COMM_PID, COMM = "pid, comm", "comm, pid", "comm"
_PID_RE = re.compile(r"-?\d+")


def key_parts(key: str | None, sep: str, shape: str = PID_COMM) -> tuple[int | None, bytes] | None:
    """(pid, comm) of a printed key of ``shape``; pid None for [comm] keys."""
    if shape == PID_COMM or key is None:
        return pid_comm(key, sep)
    if shape == COMM_PID:
        comm, found, pid = key.rpartition(sep)
        if not found or not _PID_RE.fullmatch(pid):
            return None
        return int(pid), comm.encode("utf-8", "surrogateescape")
    return None, key.encode("utf-8", "surrogateescape")


def key_shape(snapshots: Iterable[Snapshot], name: str) -> str:
    """Which shape every hist key of map ``name`` has (COMM: any one key)."""
    entries = [(e, m.sep) for s in snapshots for m in s.maps if m.name == name
               for e in m.entries if isinstance(e, HistEntry)]
    for shape in (PID_COMM, COMM_PID):
        if all(key_parts(e.key, sep, shape) is not None for e, sep in entries):
            return shape
    return COMM


def processes(snapshot: Snapshot, name: str = "@", shape: str = PID_COMM) -> list[ProcessHist]:
    """The histograms of map ``name`` in one snapshot, one per process (or,
    for a map keyed by [comm], per comm)."""
    m = snapshot.get(name)
    if m is None:
        return []
    out = []
    for e in m.entries:
        pc = key_parts(e.key, m.sep, shape)
        if pc is not None and isinstance(e, HistEntry):
            out.append(ProcessHist(pc[0], pc[1], e.buckets))
    return out


# --------------------------------------------------------------------------
# Cumulative dumps (marks.py): what happened between two of them.


def _minus(now: Entry, before: Entry | None) -> Entry | None:
    """One entry less its earlier value; None if nothing happened."""
    if isinstance(now, HistEntry):
        was = {(b.lo, b.hi): b.count for b in before.buckets} \
            if isinstance(before, HistEntry) else {}
        buckets = [Bucket(b.lo, b.hi, b.count - was.get((b.lo, b.hi), 0)) for b in now.buckets]
        nonzero = [i for i, b in enumerate(buckets) if b.count]
        if not nonzero:
            return None
        # As bpftrace prints a histogram: empty buckets at the ends trimmed.
        return HistEntry(now.key, tuple(buckets[nonzero[0]:nonzero[-1] + 1]))
    if isinstance(before, ValueEntry) and now.value.lstrip("-").isdigit() \
            and before.value.lstrip("-").isdigit():
        diff = int(now.value) - int(before.value)
        return ValueEntry(now.key, str(diff)) if diff else None
    return now


def difference(now: Snapshot, before: Snapshot | None) -> Snapshot:
    """What the map gained between two cumulative dumps: each key's
    buckets less their counts in ``before`` (a key new since then whole;
    one that gained nothing left out).  Stamp and kind are ``now``'s."""
    if before is None:
        return now
    maps = []
    for m in now.maps:
        old = before.get(m.name)
        earlier = {e.key: e for e in old.entries} if old is not None else {}
        kept = [d for e in m.entries if (d := _minus(e, earlier.get(e.key))) is not None]
        if kept:
            maps.append(MapDump(m.name, tuple(kept), m.sep))
    return Snapshot(tuple(maps), now.stamp, now.kind)


def latest_of_each_key(snapshots: Iterable[Snapshot]) -> Snapshot:
    """One snapshot of cumulative dumps read as one stream: each key as the
    last dump that held it printed it.  Keys never leave a map that is
    never cleared, and counts only grow, so this is the newest state of
    every key, however the dumps were told apart (without their marks,
    two dumps glued together are split at the first repeated key: a key
    new in the second then lands in the first)."""
    maps: dict[str, dict[str | None, Entry]] = {}
    seps: dict[str, str] = {}
    stamp = None
    for snap in snapshots:
        stamp = snap.stamp or stamp
        for m in snap.maps:
            seps[m.name] = m.sep
            maps.setdefault(m.name, {}).update((e.key, e) for e in m.entries)
    return Snapshot(tuple(MapDump(name, tuple(entries.values()), seps[name])
                          for name, entries in sorted(maps.items())), stamp)


class Reports(NamedTuple):
    """The reports a stream of dumps holds, and whether it was complete."""

    snapshots: list[Snapshot]  # one per report, in order
    partial: Snapshot | None  # the last snapshot, when no final dump came after it


class ReportFeed:
    """reports(), one snapshot at a time, as a reader's sink: it keeps what
    the reports are made of (the reports so far, the last interval total,
    the last snapshot) and what kinds of maps went by, never the dumps.
    Once-a-second snapshots of a long capture cost one snapshot's memory."""

    def __init__(self) -> None:
        self.out: list[Snapshot] = []
        self.total: Snapshot | None = None  # the last interval total
        self.seen: Snapshot | None = None  # the last snapshot, until a final dump
        self.kinds = _MapKinds(set(), set(), set())
        self.count = 0  # snapshots fed

    def __call__(self, snap: Snapshot) -> None:
        self.count += 1
        _add_kinds(self.kinds, snap)
        if snap.kind == marks.TOTAL:
            self.out.append(difference(snap, self.total))
            self.total = snap
        elif snap.kind == marks.SNAPSHOT:
            self.seen = snap
        elif self.total is not None and snap.kind is None:
            last = difference(snap, self.total)
            if last.maps:
                self.out.append(last)
        else:
            self.out.append(snap)
            self.seen = None

    def result(self) -> Reports:
        return Reports(self.out, self.seen)

    def kept(self) -> list[Snapshot]:
        """The snapshots the reports are made of."""
        return self.out + ([self.seen] if self.seen is not None else [])


def reports(snapshots: Iterable[Snapshot]) -> Reports:
    """Turn a run's dumps into its reports.  Interval totals (marks.TOTAL)
    become what each interval added, and the final dump after them the last
    (partial) interval, if it added anything; once-a-second snapshots
    (marks.SNAPSHOT) are no reports unless no final dump followed them:
    then the last one is what was seen (``partial``).  Other dumps (plain,
    or cleared intervals of earlier versions) are reports as they are."""
    feed = ReportFeed()
    for snap in snapshots:
        feed(snap)
    return feed.result()

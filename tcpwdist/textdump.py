"""The text dump reader: the pyparsing grammar of what bpftrace prints
(see dump.py for what it must survive, era by era) and the reader's tally
of what it found besides the maps: lines skipped, entries damaged, a
last entry without its blank line.  It builds dump.py's data."""

from __future__ import annotations

import re
from typing import Callable, Iterable, Iterator, NamedTuple

import pyparsing as pp

from tcpwdist import marks
from tcpwdist.dump import (_ANSI, _NUM, LOG_WORDS, MAP_FULL, Bucket, Builder, Dump, HistEntry,
                           Piece, Snapshot, ValueEntry, _shown, lost_count, parse_label,
                           skipped_note)
from tcpwdist.errors import DumpError

LABEL_PATTERN = (rf"\(\.\.\., {_NUM}\)"          # (..., 0)      below the range
                 rf"|\[{_NUM}, {_NUM}\)"         # [2, 4) [1K, 2K)
                 rf"|\[{_NUM}, \.\.\.\)"         # [100, ...)    lhist overflow
                 rf"|\[{_NUM}\]")                # [0] [1]       one value
COUNT_PATTERN = r"\d+"
BAR_PATTERN = r"\|@* *\|"
EOL = r"(?:\n|\Z)"

# A row is the three pieces above on one line: label left-aligned in 16
# columns (a longer label pushes the count right, even against it), count
# right-aligned in 8, the bar.  `row` is one row alone; the grammar below
# reads them by the run (`rows`).
ROW_PATTERN = rf"({LABEL_PATTERN}) *({COUNT_PATTERN}) {BAR_PATTERN}[ \t]*"  # groups: label, count
row = pp.Regex(ROW_PATTERN + EOL, as_group_list=True).set_name("bucket row")

# The rows of one entry, as one token.  Rows are what a big dump is made
# of (100,000 of them for 5,000 processes): matching the run of rows with
# one regex, then splitting it with findall, took the parse of such a dump
# from 1.8 s with row[...] (one pyparsing match per row) to 1.4 s, and
# the rest of the work to 0.75 s (see BENCHMARKS.md).
_ROW_RE = re.compile(ROW_PATTERN)
rows = pp.Regex(rf"(?:{ROW_PATTERN}\n)*(?:{ROW_PATTERN}\Z)?").set_name("bucket rows")
rows.add_parse_action(lambda t: [[(m[0], m[1]) for m in _ROW_RE.findall(t[0])]])

# "@name[key]: " then end of line, followed by a row or a blank line.  The
# key is raw bytes, so it may hold "]: " (the last "]: " on the line ends
# it) or even newlines (it may then run over a few lines).
_NAME = r"@(?P<name>[A-Za-z_0-9]*)"
# One alternative per line count, fewest first: each is tried in full
# (the last line's end found by backtracking) before a longer key is.  A
# lazy {1,16}? would add lines before backtracking within the last one.
# A stack key (kstack, ustack: up to 127 frames, each on its own indented
# line, the key closed by "]" at a line's start) may run longer.
_STACK_KEY = r"[^\n]*(?:\n[ \t][^\n]*)+\n[^\n]*?"  # one way to match: no backtracking blow-up
# A key over several lines is a (pid, comm) key whose comm holds
# newlines: the kernel's comm is at most 15 bytes (TASK_COMM_LEN 16), so
# no line of it is longer, nor can it hold more than 15 newlines.  The
# bound keeps a key from swallowing the lines after a broken entry.  The
# last line may go on with --connections' four parts after the comm, the
# addresses as ntop prints them (an IPv6 one is at most 45 characters).
_COMM_MAX = 15
_ADDR, _PORT = r"[0-9A-Fa-f.:]{2,45}", r"\d{1,5}"
_LAST_LINE = rf"[^\n]{{0,{_COMM_MAX}}}(?:, {_ADDR}, {_PORT}, {_ADDR}, {_PORT})?"
_KEY_LINES = (r"(?:\[(?P<key>[^\n]*|"
              + "|".join(rf"[^\n]{{0,{_COMM_MAX + 9}}}(?:\n[^\n]{{0,{_COMM_MAX}}}){{{n - 1}}}"
                         rf"\n{_LAST_LINE}"
                         for n in range(1, _COMM_MAX + 1))
              + rf"|{_STACK_KEY})\])?")
_HEADER_PATTERN = rf"{_NAME}{_KEY_LINES}: ?[ \t]*\n"
# A hist entry in a map always has a row (bpftrace makes an entry when it
# counts a write), so a header that a row follows wins over one that a
# blank line follows, however few lines each key has: a comm such as
# "a]: \n\n@[1, sshd" cannot end its key early and lend its rows to PID 1.
hist_header = (pp.Regex(_HEADER_PATTERN + rf"(?={ROW_PATTERN}(?:\n|\Z))")
               | pp.Regex(_HEADER_PATTERN + r"(?=\n|\Z)")).set_name("hist header")

blank = pp.Regex(r"[ \t]*\n").set_name("blank line")
end_of_dump = pp.StringEnd().set_name("end of dump")

# A hist entry: header, rows, then the blank line bpftrace ends it with.
# Without that blank line the dump was cut off inside the entry.
# An unterminated last line that begins like a row or a header: the
# output was cut off mid-line.
cut_line = pp.Regex(r"[@\[(][^\n]*\Z").set_name("cut-off line")

# How an entry's rows end.  bpftrace ends each with a blank line; a dump
# copied from a terminal often lacks the last one ("unterminated": the
# rows are whole, read with a note); a line that begins like a row or a
# header with no end is a dump cut off mid-line; the next entry's header
# right after the rows is two entries without their blank line (read,
# with a note); any other line among the rows ("[...]" of an elision, a
# printf line) starts a tail that _parse_text sorts out: log lines are
# skipped, a foreign line damages the entry.
ENTRY_ENDINGS = {"complete", "unseparated", "unterminated", "cut"}
_TAIL_LINE = r"(?!@)[^\n]*\S[^\n]*(?:\n|\Z)"
entry_tail = pp.Regex(rf"(?:{_TAIL_LINE})+").set_name("lines among the rows")
entry_tail.add_parse_action(lambda t: _Tail(t[0]))
hist_entry = (
    hist_header + rows
    + (blank.copy().set_parse_action(pp.replace_with("complete"))
       | pp.FollowedBy(pp.Literal("@")).set_parse_action(pp.replace_with("unseparated"))
       | cut_line.copy().set_parse_action(pp.replace_with("cut"))
       | end_of_dump.copy().set_parse_action(pp.replace_with("unterminated"))
       | entry_tail)
).set_name("hist entry")

# A header whose next line is neither a row nor blank: an entry broken
# from its first row (the lines are sorted as an entry's tail).
_BROKEN_HEADER_PATTERN = rf"{_NAME}(?:\[(?P<key>[^\n]*)\])?: ?[ \t]*\n"
broken_entry = pp.Regex(_BROKEN_HEADER_PATTERN) + entry_tail

# count/sum/avg/stats/... maps: "@name[key]: value" on one line.
scalar_line = pp.Regex(
    rf"{_NAME}(?:\[(?P<key>[^\n]*|{_STACK_KEY})\])?: (?P<value>[^\n]+){EOL}(?![\[(])"
).set_name("map line")

# A tseries map (bpftrace 0.24+): a header, an axis, "hh:mm:ss" and a row
# per time slot, up to its blank line.  Recognised, not read.
tseries_block = pp.Regex(
    rf"{_NAME}(?:\[(?P<key>[^\n]*)\])?:[ \t]*\n[^\n]*\n[ \t]*hh:mm:ss[^\n]*\n"
    r"(?:[^\n]*\S[^\n]*(?:\n|\Z))*"
).set_name("tseries")

# Anything else on a line of its own: a program's printf (a BEGIN banner,
# an END heading), an elision mark of whoever pasted it, a diagnostic
# tcpwdist does not know.  Skipped and counted, never a map.
foreign_line = pp.Regex(r"(?![@\[(][^\n]*\Z)[^\n]*\S[^\n]*(?:\n|\Z)").set_name("foreign line")

# Lines that bpftrace or the terminal put around a dump: log lines on the
# other stream (merged on a pty, maybe ANSI-coloured), the echoed ^C, the
# attach notice, "Lost N events", the test hook's word.  A diagnostic with
# a source location comes with the source line and a ~~~ underline.
NOISE_PATTERN = (
    rf"{_ANSI}(?:{LOG_WORDS}"
    # A located diagnostic: then (0.23+) "Additional Info - helper: ...",
    # then the program's source line and its ~~~ underline.
    r"|[^\s:]+:\d+(?:[:-]\d+)*: (?:WARNING|ERROR|NOTE|HINT)[^\n]*\n"
    r"(?:Additional Info - [^\n]*\n)?(?:[^\n]*\n[ \t]*~+)?)"
    rf"[^\n]*{EOL}")
noise_line = pp.Regex(NOISE_PATTERN).set_name("log line")

# Interval series.  tcpwdist's own program prints a mark after each
# periodic print(@) (marks.py says which and what for).  Other programs
# print a bare time() line, by custom before print(@) ("time(); print(@);
# clear(@)"), sometimes after: the first one tells which (see _Builder.time).
mark_line = pp.Regex(marks.LINE_RE.pattern).set_name("tcpwdist mark")
time_line = pp.Regex(r"(?P<stamp>\d\d:\d\d:\d\d)[ \t]*\n").set_name("interval time")


# What the grammar hands the reader: one typed item per construct, built
# by the parse actions from the regexes' named groups (nothing re-matched).
class _Hist(NamedTuple):
    name: str
    key: str | None
    rows: list[tuple[str, str]]
    ending: str  # one of ENTRY_ENDINGS, or "tail" (lines among the rows: see tail)
    tail: str = ""


class _Tail(NamedTuple):
    text: str


class _Scalar(NamedTuple):
    name: str
    key: str | None
    value: str


class _Mark(NamedTuple):
    kind: str | None  # a marks kind, or None for a bare time() line
    stamp: str


class _Noise(NamedTuple):
    line: str


class _Cut(NamedTuple):
    line: str


class _Foreign(NamedTuple):
    line: str


class _Series(NamedTuple):
    name: str


class _At(NamedTuple):
    """An item, and where it starts in the text parsed."""

    at: int
    item: object


def _hist_item(t: pp.ParseResults) -> _Hist:
    header, found_rows, ending = t[0], t[1], t[2]
    m = _HEADER_RE.fullmatch(header)
    assert m is not None  # the grammar matched this very pattern
    if isinstance(ending, _Tail):
        return _Hist("@" + m["name"], m["key"], found_rows, "tail", ending.text)
    return _Hist("@" + m["name"], m["key"], found_rows, ending)


_HEADER_RE = re.compile(_HEADER_PATTERN)
_BROKEN_HEADER_RE = re.compile(_BROKEN_HEADER_PATTERN)


def _broken_item(t: pp.ParseResults) -> _Hist:
    m = _BROKEN_HEADER_RE.match(t[0])
    assert m is not None  # the grammar matched this very pattern
    return _Hist("@" + m["name"], m["key"], [], "tail", t[1].text)


# A hist entry is tried first: a line "@[1, ]: ]: " looks like a map line
# (value "]: "), but if a comm's newline continues its key and a row
# follows, it is a hist header.
dump_item = (
    hist_entry.copy().add_parse_action(_hist_item)
    | scalar_line.copy().add_parse_action(lambda t: _Scalar("@" + t["name"], t.get("key"),
                                                            t["value"]))
    | tseries_block.copy().add_parse_action(lambda t: _Series("@" + t["name"]))
    | broken_entry.copy().add_parse_action(_broken_item)
    | mark_line.copy().add_parse_action(lambda t: _Mark(t["kind"], t["stamp"]))
    | time_line.copy().add_parse_action(lambda t: _Mark(None, t["stamp"]))
    | noise_line.copy().add_parse_action(lambda t: _Noise(t[0]))
    | blank.suppress()
    | foreign_line.copy().add_parse_action(lambda t: _Foreign(t[0]))
).set_name("dump line")
# Each item with where it starts: the reader takes a long dump window by
# window, and a window is cut where an item starts (read_text).
dump_item.add_parse_action(lambda s, loc, t: [_At(loc, t[0])] if t else None)
text_dump = (dump_item[...]
             + pp.Opt(cut_line.copy().add_parse_action(lambda s, loc, t: _At(loc, _Cut(t[0]))))
             + end_of_dump)
text_dump.leave_whitespace(recursive=True)
text_dump.parse_with_tabs()  # a tab in a comm is a byte to keep, not 8 columns
text_dump.set_name("bpftrace text dump")


def _text_items(body: str, first_line: int) -> pp.ParseResults:
    try:
        return text_dump.parse_string(body, parse_all=True)
    except pp.ParseBaseException as exc:
        line, shown, what = exc.lineno, exc.line, "not bpftrace map output"
        lines = body.split("\n")
        if shown.startswith("@") and line < len(lines):
            # A map header is only one when a row or a blank line follows:
            # the line at fault is the next one.
            line, shown, what = line + 1, lines[line], "expected a histogram row"
        raise DumpError(f"{what}: '{_shown(shown[:60])}'",
                        hint="tcpwdist -r reads what bpftrace prints for @[pid, comm] = hist(...)",
                        line=first_line + line - 1) from None


class _Reading:
    """What a text dump held besides the maps: the reader's tally."""

    def __init__(self) -> None:
        self.window, self.first_line = "", 1  # the text being read, and its first line's number
        self.cut: str | None = None
        self.dropped = self.lost = 0
        self.skipped = 0  # foreign lines
        self.first_skipped: tuple[int, str] | None = None  # (line number, line)
        self.damaged: list[str] = []  # entries a foreign line broke
        self.damaged_lines: list[int] = []
        self.unterminated: str | None = None  # the last entry, without its blank line
        self.unseparated = 0

    def line_of(self, at: int) -> int:
        return self.first_line + self.window.count("\n", 0, at)

    def take(self, at: int, item: object, builder: Builder) -> int:
        """Put one parsed item, found at ``at`` of the window, where it
        goes; 1 if it was a map entry."""
        if isinstance(item, _Hist):
            buckets = self.hist(item, at)
            if buckets is None:
                return 0
            builder.add(item.name, HistEntry(item.key, buckets))
            return 1
        if isinstance(item, _Scalar):
            builder.add(item.name, ValueEntry(item.key, item.value))
            return 1
        if isinstance(item, _Series):
            return 1
        if isinstance(item, _Mark):
            builder.mark(item.kind, item.stamp)
        elif isinstance(item, _Noise):
            self.noise(item.line)
        elif isinstance(item, _Foreign):
            if item.line.lstrip().startswith('{"type":'):
                raise DumpError("a JSON record in a text dump: text and JSON output mixed in "
                                "one input", line=self.line_of(at),
                                hint="give each bpftrace run's output as its own -r input")
            self.skipped += 1
            if self.first_skipped is None:
                self.first_skipped = (self.line_of(at), item.line)
        elif isinstance(item, _Cut):
            self.cut = self.cut or f"the last line ({_shown(item.line[:40])})"
        return 0

    def noise(self, line: str) -> None:
        self.dropped += MAP_FULL in line
        self.lost += lost_count(line)

    def hist(self, item: _Hist, at: int) -> tuple[Bucket, ...] | None:
        """The buckets of a hist entry, or None if it cannot be counted."""
        found = list(item.rows)
        if item.ending == "cut":
            self.cut = _entry_name(item)
            return None
        if item.ending == "tail":
            tail = self._tail(item.tail, found)
            if tail == "cut":
                self.cut = _entry_name(item)
                return None
            if tail is not None:
                line = self.line_of(at)
                self.damaged.append(f"{_entry_name(item)} (line {line}, "
                                    f"broken by '{_shown(tail[:40])}')")
                self.damaged_lines.append(line)
                return None
        elif item.ending == "unterminated":
            self.unterminated = _entry_name(item)
        elif item.ending == "unseparated":
            self.unseparated += 1
        return tuple([_bucket(lab, int(n)) for lab, n in found])

    def _tail(self, tail: str, found: list[tuple[str, str]]) -> str | None:
        """Sort the lines among an entry's rows: rows are kept, log lines
        skipped; returns the first foreign line, "cut" if the last line is
        a row cut short, None if the entry stands."""
        pos = 0
        while pos < len(tail):
            row_m = _ROW_LINE_RE.match(tail, pos)
            if row_m is not None:
                found.append((row_m[1], row_m[2]))
                pos = row_m.end()
                continue
            noise_m = _NOISE_RE.match(tail, pos)
            if noise_m is not None:
                self.noise(noise_m[0])
                pos = noise_m.end()
                continue
            line = tail[pos:].split("\n", 1)[0]
            if pos + len(line) == len(tail) and line[:1] in "[(":
                return "cut"
            if _V08_ROW_RE.match(line):
                raise DumpError(f"hist labels of bpftrace before 0.9: '{_shown(line[:40])}'",
                                hint="tcpwdist -r reads the output of bpftrace 0.9 and later")
            return line
        return None

    def notes(self) -> list[str]:
        said = []
        if self.first_skipped is not None:
            said.append(skipped_note(self.skipped, *self.first_skipped, "map output"))
        if self.unseparated:
            said.append(f"{self.unseparated} map entries had no blank line after them "
                        "(bpftrace prints one): read as separate entries")
        return said  # (the unterminated last entry: report.dump_notes says it)


# A dump's labels are few (a hist has at most 66 of them), its rows many:
# each label is parsed once (this dict is the only cache of them), and
# the Bucket built by tuple.__new__ with its fields in order.  The
# 100,000 rows of the benchmark dump take about 0.1 s so, 0.16 s through an
# lru_cache on parse_label and Bucket(...).
_BOUNDS: dict[str, tuple[int | None, int | None]] = {}
_new_bucket = tuple.__new__


def _bucket(label: str, count: int) -> Bucket:
    bounds = _BOUNDS.get(label)
    if bounds is None:
        if len(_BOUNDS) > 4096:  # a dump of made-up labels must not grow it without end
            _BOUNDS.clear()
        bounds = _BOUNDS[label] = parse_label(label)
    return _new_bucket(Bucket, (bounds[0], bounds[1], count))


def _entry_name(item: _Hist) -> str:
    return item.name if item.key is None else f"{item.name}[{_shown(item.key)}]"


_ROW_LINE_RE = re.compile(rf"{ROW_PATTERN}(?:\n|\Z)")
# bpftrace 0.8 had no negative bucket and labelled the first row "[0, 1]".
_V08_ROW_RE = re.compile(rf"\[{_NUM}, {_NUM}\] +\d+ \|")
_NOISE_RE = re.compile(NOISE_PATTERN)


# How much text one parse takes at most (unless one item is longer), and
# how near a window's end an item may start and still be taken from it.
# Every construct is decided within a few hundred bytes of its start (a
# key of 16 lines and the row after it), a stack key within some 20 KB
# (127 frames); only a run of rows, of lines among them or of a tseries
# block goes on, and the last item of a window, which may, is always
# parsed again with what follows.  So reading window by window finds the
# very items one parse of the whole text would.  Measured (BENCHMARKS.md):
# 2 MB windows read a 100,000-row dump as fast as one parse (1 MB ones
# were 5% slower), and hold the reader near 55 MB however long the input.
WINDOW = 1 << 21
MARGIN = 1 << 16
_INK_RE = re.compile(r"\S")


class _Windows:
    """The dump's items, window by window, and whether it held any text."""

    def __init__(self, window: int, margin: int) -> None:
        self.window, self.margin = window, margin
        self.seen_text = self.seen_ink = False

    def __call__(self, stream: Iterable[Piece],
                 attach: re.Match[str] | None) -> Iterator[tuple[str, int, list[_At]]]:
        """(text, its first line's number, the items taken from it)."""
        buf, line, want = "", 1, self.window
        for piece in stream:
            text = piece.text
            self.seen_text = self.seen_text or bool(text)
            self.seen_ink = self.seen_ink or bool(_INK_RE.search(text))
            if piece.line == 1 and attach is not None:
                # Whatever comes before the attach notice (compile warnings
                # with their source lines, a shell prompt) is not the dump.
                line = 1 + text.count("\n", 0, attach.end())
                text = text[attach.end():]
            elif not buf:
                line = piece.line
            buf += text
            if not piece.last and len(buf) < want:
                continue
            items = list(_text_items(buf, line))
            if piece.last:
                yield buf, line, items
                return
            # Up to the first item near the window's end, and never the
            # last item: it may go on in the next piece.
            limit = len(buf) - self.margin
            taking = next((i for i, x in enumerate(items) if x.at >= limit), len(items) - 1)
            if taking <= 0 and items:  # one item fills the window: read on
                want *= 2
                continue
            yield buf, line, items[:taking]
            cut = items[taking].at if items else len(buf)
            line += buf.count("\n", 0, cut)
            buf, want = buf[cut:], self.window


def read_text(stream: Iterable[Piece], attach: re.Match[str] | None,
              sink: Callable[[Snapshot], None]) -> Dump:
    """Read a text dump piece by piece (dump.read), window by window."""
    builder = Builder(", ", sink)
    tally = _Reading()
    maps = 0
    windows = _Windows(WINDOW, MARGIN)
    for tally.window, tally.first_line, items in windows(stream, attach):
        maps += sum(tally.take(x.at, x.item, builder) for x in items)
    builder.flush()
    if not maps and tally.damaged:
        raise DumpError(f"no map entry could be read: {tally.damaged[0]}",
                        hint="a line among a histogram's rows breaks it (an elision? a printf?)",
                        line=tally.damaged_lines[0])
    if not maps and tally.first_skipped is not None:
        n, first = tally.first_skipped
        raise DumpError(f"holds no bpftrace map output ({tally.skipped} other lines; "
                        f"the first: '{_shown(first.rstrip()[:60])}')",
                        hint="tcpwdist -r reads what bpftrace prints for @[pid, comm] = hist(...)",
                        line=n)
    # bpftrace 0.24+ prints the attach notice on stderr: the piped dump of
    # an empty map is its two blank lines and nothing else.
    empty_dump = windows.seen_text and not windows.seen_ink
    damage: tuple[str, ...] = ()
    if tally.damaged:
        more = ", ..." if len(tally.damaged) > 3 else ""
        damage = (f"{len(tally.damaged)} map entries broken by lines that are not map output "
                  f"were not counted: {', '.join(tally.damaged[:3])}{more}",)
    return Dump((), "text", recognised=attach is not None or empty_dump,
                notes=tuple(tally.notes()), cut=tally.cut, map_full=tally.dropped > 0,
                dropped=tally.dropped, lost_events=tally.lost, damaged=damage,
                unterminated=tally.unterminated)

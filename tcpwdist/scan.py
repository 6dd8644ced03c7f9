"""Counting bpftrace's raw output without parsing it: cheap enough for
the whole map printed once a second on a big host (BENCHMARKS.md), and
exact for tcpwdist's own program.  The live run uses it between dumps;
reports always come from dump.py's parse."""

from __future__ import annotations

import re
from collections import Counter
from typing import Iterator, NamedTuple

from tcpwdist import marks
from tcpwdist.dump import MAP_FULL

_LOST_BYTES_RE = re.compile(rb"Lost (\d+) events")
_OTHER_HIST_RE = re.compile(rb"^@\w+\[[^\n]*:\s*\n(?:\[[^\n]*\n?)*", re.M)  # @splicecalls, @conn
_MARK_WORD = b"tcpwdist-"
assert all(kind.startswith(_MARK_WORD.decode()) for kind in marks.CUMULATIVE)
_MARK_LINE_RE = re.compile(rb"(?:" + b"|".join(m.encode() for m in marks.CUMULATIVE) + rb") ")
_MAP_FULL_BYTES = MAP_FULL.encode()


def _starts(data: bytes, word: bytes) -> Iterator[int]:
    """Where ``word`` occurs in ``data``, found by its first byte: a
    one-byte search runs at memchr's speed, ten times a word's (4 ms on
    a 60,000-entry dump, every second), and a capital letter is rare in
    a dump's text."""
    first = word[:1]
    at = data.find(first)
    while at >= 0:
        if data.startswith(word, at):
            yield at
        at = data.find(first, at + 1)


def lost_total(data: bytes) -> int:
    """The events bpftrace said it lost in ``data``."""
    total = 0
    for at in _starts(data, b"Lost "):
        said = _LOST_BYTES_RE.match(data, at)
        total += int(said.group(1)) if said else 0
    return total


def dropped_total(data: bytes) -> int:
    """The map updates bpftrace said it dropped in ``data``."""
    return sum(1 for _ in _starts(data, _MAP_FULL_BYTES))


class Counted(NamedTuple):
    """What a snapshot scan counted: the writes and processes of the last
    dump, and the dropped updates and lost events said anywhere."""
    writes: int
    processes: int
    dropped: int
    lost: int


class SnapshotScan:
    """Counts the last dump in the output through each snapshot mark,
    without parsing it (exact for tcpwdist's own program).

    The map is cumulative, so on a big map most entries print the same
    bytes second after second (60,000 entries, 5 MB a second:
    BENCHMARKS.md).  The first dump is counted whole; each after it as
    the one before, less its pieces (the text between blank lines: an
    entry) that are gone and plus those that are new.  A ``Map full`` or
    ``Lost`` line is a new event each time it is printed: those are
    counted in all the output, every time."""

    def __init__(self) -> None:
        self._pieces: Counter[bytes] | None = None  # the last dump counted, by piece
        self._counts = (0, 0)  # its writes and processes

    def __call__(self, data: bytes) -> Counted:
        body = _last_dump(data)
        pieces = Counter(body.split(b"\r\n\r\n" if b"\r\n" in body[:4096] else b"\n\n"))
        if self._pieces is None:
            writes, procs = _rows(body)
        else:
            writes, procs = self._counts
            for sign, changed in ((1, pieces - self._pieces), (-1, self._pieces - pieces)):
                for piece, times in changed.items():
                    w, p = _rows(piece)
                    writes += sign * times * w
                    procs += sign * times * p
        self._pieces, self._counts = pieces, (writes, procs)
        return Counted(writes, procs, dropped_total(data), lost_total(data))


def _last_dump(data: bytes) -> bytes:
    """The text through the last mark line and after the one before, if
    there is one (a mark line counts no writes: kept, it spares copying
    the whole dump)."""
    end = _mark_start(data, len(data))
    before = None if end is None else _mark_start(data, end)
    if before is None:
        return data
    return data[data.index(b"\n", before) + 1:]


def _mark_start(data: bytes, end: int) -> int | None:
    """Where the last cumulative mark line before ``end`` starts."""
    at = end
    while (at := data.rfind(_MARK_WORD, 0, at)) >= 0:
        if _MARK_LINE_RE.match(data, at) and (at == 0 or data[at - 1:at] == b"\n"):
            return at
    return None


# A bucket row's count, after its label's closing bracket: ")" or "]".
# Two patterns, each led by its literal, run about twice as fast as one
# with a class or an alternation (BENCHMARKS.md).
_ROW_COUNT_RES = (re.compile(rb"\) +(\d+) \|"), re.compile(rb"\] +(\d+) \|"))


def _rows(text: bytes) -> tuple[int, int]:
    """The writes and the entries of map @ in ``text``."""
    # Another hist map's rows (--spliced's @splicecalls, --connections'
    # @conn) are no writes of their own.
    if b"\n@s" in text or b"\n@c" in text or text.startswith((b"@s", b"@c")):
        text = _OTHER_HIST_RE.sub(b"", text)
    writes = sum(sum(map(int, r.findall(text))) for r in _ROW_COUNT_RES)
    return writes, text.count(b"\n@[") + text.startswith(b"@[")

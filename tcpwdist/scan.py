"""Counting bpftrace's raw output without parsing it: cheap enough for
the whole map printed once a second on a big host (BENCHMARKS.md), and
exact for tcpwdist's own program.  The live run uses it between dumps;
reports always come from dump.py's parse."""

from __future__ import annotations

import re
from typing import NamedTuple

from tcpwdist import marks
from tcpwdist.dump import MAP_FULL

_LOST_BYTES_RE = re.compile(rb"Lost (\d+) events")
# A bucket row's count (after its label's closing bracket), and a header
# of map @: enough to count, not to read.  (This pattern measured 63 ms
# on a 60,000-row dump, half what a line-anchored one took.)
_ROW_COUNT_RE = re.compile(rb"[\])] +(\d+) \|")
_HEADER_START_RE = re.compile(rb"^@\[", re.M)
_OTHER_HIST_RE = re.compile(rb"^@\w+\[[^\n]*:\s*\n(?:\[[^\n]*\n?)*", re.M)  # @splicecalls, @conn
_MARK_START_RE = re.compile(rb"^(?:" + b"|".join(m.encode() for m in marks.CUMULATIVE) + rb") .*$",
                            re.M)
_MAP_FULL_BYTES = MAP_FULL.encode()


def lost_total(data: bytes) -> int:
    """The events bpftrace said it lost in ``data``."""
    return sum(int(n) for n in _LOST_BYTES_RE.findall(data))


def dropped_total(data: bytes) -> int:
    """The map updates bpftrace said it dropped in ``data``."""
    return data.count(_MAP_FULL_BYTES)


class Counted(NamedTuple):
    """What a snapshot scan counted: the writes and processes of the last
    dump, and the dropped updates and lost events said anywhere."""
    writes: int
    processes: int
    dropped: int
    lost: int


class SnapshotScan:
    """Counts the output through each snapshot mark, without parsing it
    (exact for tcpwdist's own program), and counts a piece again only if
    its text changed since the output before: the map is cumulative, so
    on a big map most entries print the same bytes second after second
    (60,000 entries, 5 MB a second: BENCHMARKS.md).  A ``Map full`` or
    ``Lost`` line is a new event each time it is printed, so it counts
    each time, cached or not."""

    def __init__(self) -> None:
        self._known: dict[bytes, Counted] = {}  # a piece's text -> its counts

    def __call__(self, data: bytes) -> Counted:
        known: dict[bytes, Counted] = {}
        writes = procs = dropped = lost = 0
        ended: tuple[int, int] | None = None  # (writes, processes) of the last dump a mark ended
        for piece in data.split(b"\r\n\r\n" if b"\r\n" in data[:4096] else b"\n\n"):
            counted = self._known.get(piece) or known.get(piece)
            if counted is None:
                found = list(_MARK_START_RE.finditer(piece))
                if found:  # a dump ends here; what follows its mark starts the next
                    w, p = self._rows(piece[:found[0].start()])
                    ended = (writes + w, procs + p)
                    writes, procs = self._rows(piece[found[-1].end():])
                    dropped += dropped_total(piece)
                    lost += lost_total(piece)
                    continue
                counted = Counted(*self._rows(piece), dropped_total(piece), lost_total(piece))
            known[piece] = counted
            writes += counted.writes
            procs += counted.processes
            dropped += counted.dropped
            lost += counted.lost
        self._known = known
        return Counted(*(ended or (writes, procs)), dropped, lost)

    @staticmethod
    def _rows(text: bytes) -> tuple[int, int]:
        # Another hist map's rows (--spliced's @splicecalls, --connections'
        # @conn) are no writes of their own.
        if b"@s" in text or b"@c" in text:
            text = _OTHER_HIST_RE.sub(b"", text)
        return sum(map(int, _ROW_COUNT_RE.findall(text))), len(_HEADER_START_RE.findall(text))

"""The lines tcpwdist's own program prints to mark its output (pure).

The generated program prints a mark after each periodic ``print(@)``, so
that whoever reads the stream (the live run, ``-r`` of a ``-w`` file)
knows where one dump ends and what it was.  Each mark is spelled here
once; the program prints it with :func:`statement`, the reader finds it
with :func:`last_end` or :data:`LINE_RE`.

The map is never cleared: every periodic dump is the cumulative map, and
what happened in between is the difference of two dumps, taken in user
space (nothing is added per write, and no write that lands between a
print and a clear is lost, as it was when the program cleared the map).

``TOTAL``
    the cumulative map at the end of an interval (interval reports);
``SNAPSHOT``
    the cumulative map, once a second: the progress line's numbers, and
    the report of what was seen if bpftrace dies before its final dump.
``FINAL``
    printed by the END probe of a program with periodic dumps, before
    bpftrace prints the final dump (so on 0.17, 0.23.2 and 0.27.1,
    measured): bpftrace 0.22+ prints maps entry by entry, and the
    interval probe may still fire while the final dump is printed, its
    mark landing inside it.  After FINAL a reader takes no mark as the
    end of a dump: what follows is the final map, read as one.

Read, never written any more (``-w`` files of earlier versions):
``INTERVAL`` ended an interval's dump of a map cleared after it;
``PROGRESS`` ended a progress print that was no report.
"""

from __future__ import annotations

import re

TOTAL = "tcpwdist-total"
SNAPSHOT = "tcpwdist-snapshot"
FINAL = "tcpwdist-final"
INTERVAL = "tcpwdist-interval"
PROGRESS = "tcpwdist-status"
KINDS = (TOTAL, SNAPSHOT, FINAL, INTERVAL, PROGRESS)
CUMULATIVE = (TOTAL, SNAPSHOT)

STRFTIME_SINCE = (0, 16, 0)  # strftime() with %f (microseconds), in printf

# HH:MM:SS, and .ffffff where the program's bpftrace can print it.
STAMP = r"\d\d:\d\d:\d\d(?:\.\d{1,6})?"
#: A mark line in decoded text: groups "kind" and "stamp".
LINE_RE = re.compile(rf"(?P<kind>{'|'.join(KINDS)}) (?P<stamp>{STAMP})[ \t]*\r?(?:\n|\Z)")
_BYTES_RE = {kind: re.compile(rb"^" + kind.encode() + rb" " + STAMP.encode() + rb"[ \t]*\r?\n",
                              re.M) for kind in KINDS}


def statement(kind: str, version: tuple[int, int, int]) -> str:
    """The bpftrace statement that prints a ``kind`` mark line, stamped
    with the wall-clock time (to the microsecond where bpftrace can)."""
    if version >= STRFTIME_SINCE:
        return f'printf("{kind} %s\\n", strftime("%H:%M:%S.%f", nsecs));'
    return f'time("{kind} %H:%M:%S\\n");'


def without(data: bytes, *kinds: str) -> bytes:
    """``data`` with its ``kinds`` mark lines removed."""
    for kind in kinds:
        data = _BYTES_RE[kind].sub(b"", data)
    return data


def last_end(data: bytes | bytearray, kind: str, start: int = 0) -> int | None:
    """Where the last complete ``kind`` mark line in ``data[start:]`` ends,
    if any.  A reader that remembers how far it looked passes ``start``,
    so each byte is scanned about once, however big a dump grows."""
    word = kind.encode()
    at = len(data)
    while (at := data.rfind(word, start, at)) >= 0:
        m = _BYTES_RE[kind].match(data, at)  # "^": only at a line's start
        if m is not None:
            return m.end()
    return None

"""The lines tcpwdist's own program prints to mark its output (pure).

The generated program prints a mark after each periodic ``print(@)``, so
that whoever reads the stream (the live run, ``-r`` of a ``-w`` file)
knows where one dump ends and what it was for.  Each mark is spelled
here once; the program writes it with :func:`time_format`, the reader
finds it with :func:`last_end` or :data:`LINE_RE`.

``INTERVAL``
    ends an interval's dump (the program then clears the map);
``PROGRESS``
    ends a dump printed once a second for the progress line: not a
    report of its own.
"""

from __future__ import annotations

import re

INTERVAL = "tcpwdist-interval"
PROGRESS = "tcpwdist-status"  # the spelling captures of earlier versions carry
KINDS = (INTERVAL, PROGRESS)

_STAMP = r"\d\d:\d\d:\d\d"
#: A mark line in decoded text: groups "kind" and "stamp".
LINE_RE = re.compile(rf"(?P<kind>{INTERVAL}|{PROGRESS}) (?P<stamp>{_STAMP})[ \t]*\r?(?:\n|\Z)")
_BYTES_RE = {kind: re.compile(rb"^" + kind.encode() + rb" " + _STAMP.encode() + rb"[ \t]*\r?\n",
                              re.M) for kind in KINDS}


def time_format(kind: str) -> str:
    """The argument of the program's ``time()`` call that prints ``kind``."""
    return f"{kind} %H:%M:%S\\n"


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

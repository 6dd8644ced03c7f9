"""Process histograms -> the report text (pure: returns strings, prints nothing).

Three formats:

* ``dist``: tcpwdist.d's layout, one block per process (PID and CMD), then
  DTrace-style ``value  --- Distribution --- count`` rows, value being the
  bucket's lower bound in bytes, zero rows kept inside each process's range;
* ``table``: one row per non-empty bucket, PID / CMD / value / count
  (tabulate);
* ``json``: one JSON document (one line) per report.

Text formats never write a comm's raw bytes to the terminal: control
characters, bytes that are not UTF-8 and backslashes are shown escaped
(``\\x1b``, ``\\t``, ``\\\\``), so a hostile process name cannot move the
cursor or recolour the screen.  JSON keeps comms exact (see ``comm_hex``).
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass
from typing import Iterable, Sequence

from tabulate import tabulate

from tcpwdist.dump import Bucket, ProcessHist

FORMATS = ("dist", "table", "json")
JSON_SCHEMA_VERSION = 1
BAR_WIDTH = 40  # DTrace's quantize() bar
# Longer CMDs are cut, with "..." as the marker, so lines fit 80 columns.
CMD_WIDTH = 60  # dist: after " PID: 1234567 CMD: "
TABLE_CMD_WIDTH = 44  # table: beside PID, value and count


@dataclass(frozen=True)
class Row:
    """One process in a report: its histogram and the CMD to show."""

    hist: ProcessHist
    cmd: bytes | None = None  # full command line, when it was recorded

    @property
    def shown_cmd(self) -> str:
        return safe_text(self.cmd if self.cmd is not None else self.hist.comm)


_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}


def safe_text(raw: bytes) -> str:
    """Bytes -> text that is safe on a terminal, keeping printable UTF-8.

    Control and format characters (ESC, bidi overrides, ...) and bytes that
    are not UTF-8 become ``\\xNN``/``\\uNNNN`` escapes; a backslash doubles
    so the escapes stay unambiguous.
    """
    out = []
    for ch in raw.decode("utf-8", "surrogateescape"):
        code = ord(ch)
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif 0xDC80 <= code <= 0xDCFF:  # an undecodable byte
            out.append(f"\\x{code - 0xDC00:02x}")
        elif unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp", "Co", "Cn"):
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


def cut(text: str, width: int = CMD_WIDTH) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def order(rows: Iterable[Row]) -> list[Row]:
    """Busiest first; ties by PID, then comm, so output is reproducible."""
    return sorted(rows, key=lambda r: (-r.hist.writes, r.hist.pid, r.hist.comm))


# --------------------------------------------------------------------------
# dist


def _value(b: Bucket) -> str:
    if b.lo is None:
        return f"< {b.hi}"
    if b.hi is None:
        return f">= {b.lo}"
    return str(b.lo)


def _dist_block(row: Row, stamp: str | None) -> str:
    h = row.hist
    total = h.writes or 1
    when = f"{stamp} " if stamp else ""
    lines = [f"{when} PID: {h.pid:<7} CMD: {cut(row.shown_cmd, CMD_WIDTH - len(when))}", "",
             f"{'value':>16}  {' Distribution '.center(BAR_WIDTH, '-')} count"]
    for b in h.buckets:
        bar = "@" * int(b.count * BAR_WIDTH / total + 0.5)
        lines.append(f"{_value(b):>16} |{bar:<{BAR_WIDTH}} {b.count}")
    return "\n".join(lines) + "\n"


def render_dist(rows: Sequence[Row], stamp: str | None = None) -> str:
    return "\n".join(_dist_block(r, stamp) for r in order(rows))


# --------------------------------------------------------------------------
# table


def render_table(rows: Sequence[Row], stamp: str | None = None) -> str:
    width = TABLE_CMD_WIDTH - (10 if stamp else 0)
    body = [[r.hist.pid, cut(r.shown_cmd, width), _value(b), b.count]
            for r in order(rows) for b in r.hist.buckets if b.count]
    headers = ["PID", "CMD", "value", "count"]
    align = ["right", "left", "right", "right"]
    if stamp:
        body = [[stamp] + line for line in body]
        headers.insert(0, "TIME")
        align.insert(0, "left")
    return tabulate(body, headers=headers, tablefmt="simple", colalign=align,
                    disable_numparse=True) + "\n"


# --------------------------------------------------------------------------
# json


def _comm_text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def bucket_json(b: Bucket) -> dict:
    # "value" is the lower bound, "max" the inclusive upper bound, as in
    # bpftrace's own JSON; null marks an open end.
    return {"value": b.lo, "max": None if b.hi is None else b.hi - 1, "count": b.count}


def process_json(row: Row) -> dict:
    h = row.hist
    return {
        "pid": h.pid,
        "comm": _comm_text(h.comm),
        "comm_hex": h.comm.hex(),
        "cmd": _comm_text(row.cmd if row.cmd is not None else h.comm),
        "writes": h.writes,
        "buckets": [bucket_json(b) for b in h.buckets],
    }


def render_json(rows: Sequence[Row], meta: dict | None = None) -> str:
    """One JSON document on one line (interval reports: one per line)."""
    doc: dict = {"tcpwdist": JSON_SCHEMA_VERSION}
    doc.update(meta or {})
    doc["processes"] = [process_json(r) for r in order(rows)]
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")) + "\n"


def render(fmt: str, rows: Sequence[Row], meta: dict | None = None,
           stamp: str | None = None) -> str:
    """The report in ``fmt``; ``stamp`` (-T) puts the time on every line
    where it fits (JSON carries it in ``meta``)."""
    if fmt == "json":
        return render_json(rows, meta)
    if fmt == "table":
        return render_table(rows, stamp)
    return render_dist(rows, stamp)

"""The table report: the buckets of each process (PID / CMD / value /
count), then a summary row per process, made with tabulate; with
--connections the same two for each connection.  Pure, as report.py."""

from __future__ import annotations

from typing import Any, Sequence

from tabulate import tabulate

from tcpwdist.conns import Connection
from tcpwdist.dump import ProcessHist
from tcpwdist.report import (SMALL, WIDTH, Row, _label, _many_hosts, _processes, _share, _value,
                             percentile, small_writes)
from tcpwdist.shown import cut_cmd, safe_text


def _fit_table(heads: list[str], body: list[list], cmd_col: int, align: list[str],
               width: int, cmd_optional: bool = False) -> str:
    """tabulate, with the CMD column cut so that lines fit ``width``
    columns; left out if it is ``cmd_optional`` and too little of it would
    fit (the summary's rows are named by PID and HOST already)."""
    # tabulate pads a column to at least its header plus 2.
    others = sum(max([len(str(h)) + 2] + [len(str(r[i])) for r in body])
                 for i, h in enumerate(heads) if i != cmd_col)
    room = width - others - 2 * (len(heads) - 1)
    if cmd_optional and room < 8:
        heads, align = heads[:cmd_col] + heads[cmd_col + 1:], align[:cmd_col] + align[cmd_col + 1:]
        body = [r[:cmd_col] + r[cmd_col + 1:] for r in body]
    else:
        for r in body:
            r[cmd_col] = cut_cmd(r[cmd_col], max(8, room))
    return tabulate(body, headers=heads, tablefmt="simple", colalign=align,
                    disable_numparse=True) + "\n"


def render_table(rows: Sequence[Row], stamp: str | None = None, width: int = WIDTH,
                 small: int = SMALL) -> str:
    hosts = _many_hosts(rows)

    def who(r: Row) -> list:
        pid = "*" if r.hist.pid is None else r.hist.pid
        if r.hist.pid is None and r.hist.comm == b"":
            cmd = f"({_processes(r.members)})"
        else:
            cmd = r.shown_cmd if r.hist.pid is not None else safe_text(r.hist.comm)
        return ([stamp] if stamp else []) + ([r.host or "-"] if hosts else []) + [pid, cmd]

    heads = (["TIME"] if stamp else []) + (["HOST"] if hosts else []) + ["PID", "CMD"]
    cmd_col = len(heads) - 1
    align = ["left"] * (len(heads) - 2) + ["right", "left"]
    body = [who(r) + [_value(b), b.count] for r in rows for b in r.hist.buckets if b.count]
    text = _fit_table(heads + ["value", "count"], body, cmd_col, align + ["right", "right"],
                      width)
    # The summary has more columns: -T's time, already on every row above,
    # is left out where it would squeeze CMD.
    if stamp:
        heads, cmd_col, align, stamp = heads[1:], cmd_col - 1, align[1:], None
    sums = _summary_columns(rows, small)
    summary = [who(r) + [cell(r) for _, _, cell in sums] for r in rows]
    text += "\n" + _fit_table(heads + [h for h, _, _ in sums], summary, cmd_col,
                              align + [a for _, a, _ in sums], width, True)
    if any(r.connections is not None for r in rows):
        text += _connection_tables(rows, hosts, small)
    return text


def _connection_tables(rows: Sequence[Row], hosts: bool, small: int) -> str:
    """--connections: each connection's buckets, then its summary, named
    by PID and the two ends (addresses are never cut)."""
    def who(r: Row, c: Connection) -> list:
        pid = "*" if r.hist.pid is None else r.hist.pid
        return ([r.host or "-"] if hosts else []) + [pid, c.local, c.remote]

    named = [(who(r, c), Row(ProcessHist(r.hist.pid, r.hist.comm, c.buckets)))
             for r in rows for c in r.connections or ()]
    if not named:
        return "\n(no connection seen)\n"
    heads = (["HOST"] if hosts else []) + ["PID", "LOCAL", "REMOTE"]
    align = ["left"] * (len(heads) - 3) + ["right", "left", "left"]
    sums = _summary_columns([alone for _, alone in named], small)
    return (_simple(heads + ["value", "count"], align + ["right", "right"],
                    [who + [_value(b), b.count] for who, alone in named
                     for b in alone.hist.buckets if b.count])
            + _simple(heads + [h for h, _, _ in sums], align + [a for _, a, _ in sums],
                      [who + [cell(alone) for _, _, cell in sums] for who, alone in named]))


def _simple(heads: list[str], align: list[str], body: list[list]) -> str:
    return "\n" + tabulate(body, headers=heads, tablefmt="simple", colalign=align,
                           disable_numparse=True) + "\n"


def _summary_columns(rows: Sequence[Row], small: int) -> list[tuple[str, str, Any]]:
    """The table summary's columns after CMD: (heading, alignment, cell);
    failed and bytes only when some row has them."""
    cols: list[tuple[str, str, Any]] = [
        ("writes", "right", lambda r: r.hist.writes),
        ("p50", "left", lambda r: _label(percentile(r.hist.buckets, 0.5))),
        ("p99", "left", lambda r: _label(percentile(r.hist.buckets, 0.99))),
        (f"<{small}", "right",
         lambda r: _share(small_writes(r.hist.buckets, small), r.hist.writes))]
    if any(r.failed is not None for r in rows):
        cols.append(("failed", "right", lambda r: "-" if r.failed is None else r.failed))
    if any(r.spliced is not None for r in rows):
        cols.append(("spliced", "right", lambda r: "-" if r.spliced is None else r.spliced))
    if any(r.bytes is not None for r in rows):
        cols.append(("bytes", "right", lambda r: "-" if r.bytes is None else r.bytes))
    return cols

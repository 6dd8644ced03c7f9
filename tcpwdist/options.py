"""How reports look: the report options of the command line, and their
choices.  Apart from report.py so that the command line is parsed and
bpftrace started before report.py and what it builds on are imported
(start-up: BENCHMARKS.md)."""

from __future__ import annotations

from dataclasses import dataclass

FORMATS = ("dist", "table", "csv", "json")
SORTS = ("writes", "bytes", "pid", "comm")
GROUPS = ("pid", "comm", "host")
# Reports fit this many columns (a terminal's width when stdout is one):
# longer CMDs are cut, keeping the program and its script (cut_cmd).
WIDTH = 80
SMALL = 64  # --small: a summary says how many writes were under this many bytes


def small_edge(n: int) -> int:
    """The bucket edge --small N counts under: N itself when it is one (a
    power of two), else the edge below it (the bucket across N holds
    writes on both sides of it)."""
    return 1 << (n.bit_length() - 1)


@dataclass(frozen=True)
class Options:
    """How reports look: the report options of the command line."""

    fmt: str = "dist"
    sort: str = "writes"
    top: int | None = None
    group_by: str = "pid"
    timestamp: bool = False  # -T: the time on every line where it fits
    width: int = WIDTH  # columns of dist and table (the terminal's, when stdout is one)
    small: int = SMALL  # summaries count the writes under this many bytes (a bucket edge)

"""The -r run: captured bpftrace dumps and tcpwdist's own JSON reports,
read into one report series (or one merged report of several inputs)."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import sys
from dataclasses import dataclass, replace
from typing import BinaryIO, Iterator

from tcpwdist import dump, options, ownjson, report, tracing
from tcpwdist.console import Console
from tcpwdist.errors import DumpError, ExitCode, UsageError


@dataclass(frozen=True)
class Request:
    """What to read, and how to report it: -r's part of the command line."""

    paths: tuple[str, ...]
    map_name: str | None = None
    pids: tuple[int, ...] = ()  # -p: any of these
    comms: tuple[str, ...] = ()  # -c: any of these (both given: both must match)
    options: options.Options = options.Options()


def run(req: Request, console: Console) -> int:
    inputs = [_filtered(load(path, req.map_name), req.pids, req.comms)
              for path in _once(req.paths)]
    every = [r for inp in inputs for _, rows, _ in inp.reports for r in rows]
    if req.options.sort == "bytes" and every and all(r.bytes is None for r in every):
        raise UsageError("--sort bytes: the input has no byte counts (an @bytes map, "
                         "as tcpwdist --bytes writes)", hint="sort by writes, the default")
    heard = [_heard(inp, console) for inp in inputs]
    warnings = tuple(w for _, ws in heard for w in ws) + _same_hosts(inputs, console)
    if len(inputs) == 1:
        _report_one(inputs[0], req, warnings, console)
    else:
        _report_merged(inputs, req, warnings, console)
    return max(code for code, _ in heard)


@contextlib.contextmanager
def _opened(path: str, source: str) -> Iterator[BinaryIO]:
    """The input's bytes as a file, read errors (at open or on the way)
    one line each."""
    try:
        if path == "-":
            if sys.stdin is None:
                raise DumpError("cannot read stdin: it is closed",
                                hint="give a file with -r FILE, or pipe a dump in")
            yield sys.stdin.buffer
        else:
            with open(path, "rb") as f:
                yield f
    except OSError as exc:
        raise DumpError(f"cannot read {path}: {exc.strerror}",
                        hint="give a file holding bpftrace output") from None
    except MemoryError:
        raise DumpError(f"{source} holds more than fits in memory (its maps' keys are kept, "
                        "not its text)", hint="read it on a host with more memory") from None


@dataclass(frozen=True)
class Input:
    """One -r input, as reports: (meta, rows, time) per snapshot."""

    source: str
    reports: list[tuple[report.Meta, list[report.Row], str | None]]
    parsed: dump.Dump | None  # None for tcpwdist's own JSON
    name: str = "@"  # the map reported
    digest: str = ""  # of the input's bytes: the same input twice is said


def load(path: str, map_name: str | None) -> Input:
    """Read one input as it streams by: memory grows with what its
    reports hold (its keys), not with its length."""
    source = "stdin" if path == "-" else path
    digest = hashlib.sha256()
    with _opened(path, source) as f:
        chunks = dump.chunks_of(f, digest.update)
        first = next(chunks, b"")
        if ownjson.is_own_json(first):  # reports, a line each: read as they come
            reports = ownjson.read_own_json(
                dump.lines_of(itertools.chain([first], chunks)), source)
            return Input(source, reports, None, digest=digest.hexdigest())
        feed = dump.ReportFeed()
        parsed = dump.read(itertools.chain([first], chunks), feed)
    if not feed.count and not parsed.recognised:
        raise DumpError(f"{source} holds no bpftrace map output",
                        hint="give the output of bpftrace running tcpwdist's program")
    name = dump.pick_map(feed.kinds, map_name)
    shape = dump.key_shape(feed.kept(), name)
    found = feed.result()
    snaps = found.snapshots or ([found.partial] if found.partial is not None else [])
    partial = report.Meta(partial=True, warnings=(
        f"partial report: the dump ends without bpftrace's final dump; this is its last "
        f"snapshot, of {found.partial.stamp}",)) if not found.snapshots and found.partial else \
        report.Meta()
    reports = [(partial, report.rows_of(s, name, shape=shape), s.stamp) for s in snaps]
    if shape != dump.PID_COMM:
        parsed = replace(parsed, notes=parsed.notes + (
            f"{name} is keyed by [{shape}]" + (": one histogram per comm, no PID, no command "
                                               "line" if shape == dump.COMM else ""),))
    return Input(source, reports, parsed, name, digest.hexdigest())


def _heard(inp: Input, console: Console) -> tuple[int, tuple[str, ...]]:
    """Say what the input's dump says; its exit code (7 if it was cut) and
    the warnings its report carries."""
    if inp.parsed is None:
        return ExitCode.OK, ()
    said = report.dump_notes(inp.parsed, inp.name)
    for line in said:
        console.say_once(line)
    return tracing.cut_code(inp.parsed, console), report.warnings_of(said)


def _once(paths: tuple[str, ...]) -> tuple[str, ...]:
    """The -r inputs, refusing one given twice: it would be counted twice."""
    seen: dict[str, str] = {}
    for path in paths:
        same = "-" if path == "-" else os.path.realpath(path)
        if same in seen:
            raise UsageError(f"-r {path} is the same input as -r {seen[same]}: "
                             "its writes would be counted twice", hint="give each input once")
        seen[same] = path
    return paths


def _same_hosts(inputs: list[Input], console: Console) -> tuple[str, ...]:
    """Warnings for inputs that hold the same bytes or claim the same host:
    merged, their processes add up (twice, if they are one report)."""
    said = []
    by_digest: dict[str, str] = {}
    by_host: dict[str, str] = {}
    for inp in inputs:
        if inp.digest in by_digest:
            said.append(f"{inp.source} holds the same bytes as {by_digest[inp.digest]}: "
                        "its writes are counted twice")
        by_digest.setdefault(inp.digest, inp.source)
        for host_name in sorted({r.host for _, rows, _ in inp.reports for r in rows if r.host}):
            if by_host.get(host_name, inp.source) != inp.source:
                said.append(f"{inp.source} and {by_host[host_name]} both report host "
                            f"{host_name}: their processes are added together")
            by_host.setdefault(host_name, inp.source)
    for line in said:
        console.say(f"warning: {line}")
    return tuple(said)


def _filtered(inp: Input, pids: tuple[int, ...], comms: tuple[str, ...]) -> Input:
    """The input's reports with only the processes -p and -c name (each
    option a list of alternatives; both given, a row must match both)."""
    if not pids and not comms:
        return inp
    wanted = {c.encode("utf-8", "surrogateescape") for c in comms}
    reports = []
    for meta, rows, stamp in inp.reports:
        if pids and any(r.hist.pid is None for r in rows):
            raise UsageError(f"{inp.name} in {inp.source} has no PIDs in its keys: -p cannot "
                             "filter it", hint="filter it by command name with -c NAME")
        reports.append((meta, [r for r in rows if (not pids or r.hist.pid in pids)
                               and (not wanted or r.hist.comm in wanted)], stamp))
    return replace(inp, reports=reports)


def _report_one(one: Input, req: Request, warnings: tuple[str, ...],
                console: Console) -> None:
    """One input: its reports in order (an interval series stays one)."""
    options = req.options
    series = report.Series(options, report.Meta(source=one.source, warnings=warnings),
                           numbered=len(one.reports) > 1)
    for meta, rows, stamp in one.reports or [(report.Meta(), [], None)]:
        if options.group_by == "host":  # a bpftrace dump names no host: its file does
            rows = [r if r.host else replace(r, host=one.source) for r in rows]
        meta = replace(meta, filters=report.filters_of(req.pids, req.comms,
                                                       before=meta.filters))
        console.report(series.next(rows, stamp, meta))


def _report_merged(inputs: list[Input], req: Request, warnings: tuple[str, ...],
                   console: Console) -> None:
    """Several inputs (one per host, say): one report of everything.  Rows
    from a bpftrace dump carry no host: they are named by their file.  The
    inputs' own filters are kept where they all had the same."""
    merged = [r if r.host else replace(r, host=inp.source)
              for inp in inputs for _, rows, _ in inp.reports for r in rows]
    before = [m.filters for inp in inputs for m, _, _ in inp.reports]
    common = before[0] if before and all(f == before[0] for f in before) else None
    series = report.Series(req.options, report.Meta(
        sources=tuple(i.source for i in inputs), warnings=warnings,
        filters=report.filters_of(req.pids, req.comms, before=common)))
    console.report(series.next(merged))

"""tcpwdist's command line: the only module that prints, exits or handles signals."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import errno
import json
import os
import re
import signal
import socket
import sys
import time
import traceback
from dataclasses import dataclass, field, replace
from typing import BinaryIO, Callable, Sequence

from tcpwdist import __version__, dump, host, procs, program, report, trace
from tcpwdist.errors import (EXIT_CODE_MEANINGS, AttachTimeout, BpftraceFailed, DumpError, ExitCode, NoProbe,
                             PermissionDenied, TcpwdistError, UsageError)

PROG = "tcpwdist"
STATUS_TRACING = "Tracing TCP writes... Hit Ctrl-C to end."

USAGE = "tcpwdist [options] [interval [count]]"
DESCRIPTION = """\
Summarize TCP write sizes by process: a power-of-two histogram of the size
of each application write to TCP (tcp_sendmsg), per PID and command.
For Linux, uses bpftrace. Tracing needs root; -r reads a captured dump
without root, bpftrace or a kernel."""
EXAMPLES = """\
examples:
  tcpwdist                  # trace until Ctrl-C, then print the report
  tcpwdist -d 10            # trace for 10 seconds
  tcpwdist 5                # a report every 5 seconds, until Ctrl-C
  tcpwdist -T 1 10          # a report every second, 10 times, with times
  tcpwdist -p 181 -p 182    # only PIDs 181 and 182
  tcpwdist -c nginx         # only processes whose comm is nginx
  tcpwdist -P 443           # only connections on port 443 (local or remote)
  tcpwdist --cgroup /sys/fs/cgroup/system.slice/nginx.service
  tcpwdist -o json -d 5     # one JSON document, for scripts
  tcpwdist -w raw.txt       # also keep bpftrace's raw output in raw.txt
  tcpwdist -r raw.txt       # report on a captured dump (no root needed)
  tcpwdist -r web1.json -r web2.json --group-by comm   # merge hosts' reports
  bpftrace -e '...' | tcpwdist -r -     # read a dump from stdin
  tcpwdist --program        # print the bpftrace program, and exit
"""


def _exit_codes_epilog() -> str:
    lines = ["exit codes:"]
    lines += [f"  {int(code)}  {text}" for code, text in EXIT_CODE_MEANINGS.items()]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, usage=USAGE,
        description=DESCRIPTION,
        epilog=EXAMPLES + "\n" + _exit_codes_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("interval", nargs="?", type=_positive_float,
                   help="print a report every interval seconds (each covers that interval)")
    p.add_argument("count", nargs="?", type=_positive_int,
                   help="number of interval reports (default: until Ctrl-C)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("-r", "--read", metavar="FILE", action="append",
                     help="read a captured bpftrace dump (text or JSON; - for stdin) "
                          "or tcpwdist's own JSON instead of tracing; several -r merge "
                          "into one report (one per host, say)")
    src.add_argument("--program", action="store_true",
                     help="print the bpftrace program that would run, and exit")
    p.add_argument("-d", "--duration", metavar="SECONDS", type=_positive_float,
                   help="trace for this long, then report (default: until Ctrl-C)")
    p.add_argument("-o", "--output", choices=report.FORMATS, default="dist",
                   help="report format (default: dist)")
    p.add_argument("-s", "--sort", choices=report.SORTS, default="writes",
                   help="order of processes (default: writes, the busiest first)")
    p.add_argument("--top", metavar="N", type=_positive_int,
                   help="show only the first N processes")
    p.add_argument("--group-by", choices=report.GROUPS, default="pid",
                   help="one histogram per process (pid, the default), per command "
                        "name across processes and hosts (comm), or per host")
    p.add_argument("-T", "--timestamp", action="store_true",
                   help="show the time on every report line where it fits")
    p.add_argument("-p", "--pid", metavar="PID", type=int, action="append", default=[],
                   help="trace this PID only (repeatable)")
    p.add_argument("-c", "--comm", metavar="NAME", action="append", default=[],
                   help="trace this command name only (repeatable; at most 15 bytes)")
    p.add_argument("-P", "--port", metavar="PORT", type=int, action="append", default=[],
                   help="trace this TCP port only, local or remote (repeatable)")
    p.add_argument("--cgroup", metavar="PATH",
                   help="trace this cgroup v2 only (a directory under the cgroup2 mount)")
    p.add_argument("--bytes", action="store_true",
                   help="also count bytes per process (a second map: about twice "
                        "the BPF time per write)")
    p.add_argument("--probe", choices=("auto",) + program.PROBES, default="auto",
                   help="what to trace (default: auto, the first that works of "
                        + ", ".join(program.PROBES) + ")")
    p.add_argument("-w", "--write-raw", metavar="FILE",
                   help="write bpftrace's raw output to FILE as it arrives "
                        "(tcpwdist -r FILE gives the same report later)")
    p.add_argument("--map", metavar="NAME",
                   help="with -r: the hist map to report (default: @, or the only "
                        "map keyed by pid, comm)")
    p.add_argument("--bpftrace", metavar="PATH", default="bpftrace",
                   help="the bpftrace to run (default: bpftrace from PATH)")
    p.add_argument("--max-keys", metavar="N", type=_positive_int, default=65536,
                   help="bpftrace map size, in (pid, comm, bucket) entries "
                        "(default: 65536)")
    p.add_argument("--attach-timeout", metavar="SECONDS", type=_positive_float, default=30.0,
                   help="how long to wait for the probes to attach (default: 30)")
    p.add_argument("--stop-timeout", metavar="SECONDS", type=_positive_float, default=30.0,
                   help="how long to wait for bpftrace's report after the interrupt, "
                        "escalating to SIGTERM and SIGKILL (default: 30)")
    p.add_argument("--traceback", action="store_true",
                   help="on an error, show the Python traceback too (for bug reports)")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return p


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number: {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


# --------------------------------------------------------------------------
# Output that survives a closed pipe or a dropped terminal.


def status(message: str) -> None:
    """One status line on stderr (never stdout: the report must pipe)."""
    try:
        sys.stderr.write(f"{message}\n")
        sys.stderr.flush()
    except OSError:
        pass  # the terminal went away (SIGHUP): nothing to tell


class Output:
    """stdout for the report; remembers when nobody reads it any more."""

    closed = False

    def write(self, text: str) -> None:
        if self.closed or not text:
            return
        try:
            sys.stdout.write(text)
            sys.stdout.flush()
        except BrokenPipeError:
            # Quietly, like `cat | head`: point stdout at /dev/null so that
            # Python's exit-time flush does not complain about the pipe.
            self.closed = True
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except OSError as exc:
            if exc.errno not in (errno.EIO, errno.ENXIO):  # not a hung-up terminal
                raise
            self.closed = True


# --------------------------------------------------------------------------
# Signals: the first Ctrl-C/SIGTERM/SIGHUP ends tracing; a second Ctrl-C
# while the dump is being read stops waiting for it.


@dataclass
class Flags:
    stop: bool = False  # a signal asked tracing to end
    abort: bool = False  # a second Ctrl-C: stop waiting for the dump
    hangup: bool = False
    enough: bool = False  # the requested count of intervals is out


class SignalGuard:
    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.flags = Flags()
        self._old: dict[int, object] = {}

    def _handle(self, signum: int, frame: object) -> None:
        if self.flags.stop and signum == signal.SIGINT:
            self.flags.abort = True
        self.flags.stop = True
        if signum == signal.SIGHUP:
            self.flags.hangup = True

    def __enter__(self) -> Flags:
        for sig in self.SIGNALS:
            self._old[sig] = signal.signal(sig, self._handle)
        return self.flags

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)  # type: ignore[arg-type]


# --------------------------------------------------------------------------
# From parsed snapshots to report text.


def rows_of(snap: dump.Snapshot, name: str, host: str | None = None) -> list[report.Row]:
    """The report rows of one snapshot: map ``name``, with @bytes if present."""
    totals: dict[tuple[int, bytes], int] = {}
    sums = snap.get("@bytes")
    if sums is not None:
        for e in sums.entries:
            pc = dump.pid_comm(e.key, sums.sep)
            if pc is not None and isinstance(e, dump.ValueEntry) and e.value.lstrip("-").isdigit():
                totals[pc] = int(e.value)
    return [report.Row(h, None, host, totals.get((h.pid, h.comm)) if h.pid is not None else None)
            for h in dump.processes(snap, name)]


@dataclass
class Reporter:
    """Renders reports in order, numbering intervals, into ``out``."""

    args: argparse.Namespace
    out: Output
    meta: dict = field(default_factory=dict)
    cmdlines: Callable[[list[int]], dict[int, bytes]] = lambda pids: {}
    series: bool = False  # interval reports (several snapshots)
    index: int = 0
    name: str | None = None  # the map reported, once chosen
    missing_cmd: set[int] = field(default_factory=set)  # pids shown by comm
    max_keys: int | None = None  # live: the map's size, to tell when it filled
    full_said: bool = False
    host: str | None = None
    clock: float | None = None  # live: when the current report's period began

    def emit(self, parsed: dump.Dump, final_stamp: str | None = None,
             limit: int | None = None) -> None:
        self.notes(parsed)
        if self.name is None and parsed.snapshots:
            self.name = dump.pick_map(parsed.snapshots, self.args.map)
        self.series = self.series or len(parsed.snapshots) > 1
        for i, snap in enumerate(parsed.snapshots):
            if limit is not None and self.index >= limit:
                return
            last = i == len(parsed.snapshots) - 1
            self.snapshot(snap, snap.stamp or (final_stamp if last else None))

    def notes(self, parsed: dump.Dump) -> None:
        for note in parsed.notes:
            status(f"tcpwdist: note: {note}")
        if parsed.lost_events:
            status(f"tcpwdist: warning: bpftrace lost {parsed.lost_events} events")
        # bpftrace 0.23+ says "Map full"; older versions drop updates in
        # silence, so a map holding as many (key, bucket) entries as its
        # limit is taken as full.
        full = parsed.map_full
        if self.max_keys is not None and not full:
            used = max((sum(1 for h in dump.processes(s, self.name or "@")
                            for b in h.buckets if b.count) for s in parsed.snapshots), default=0)
            full = used >= self.max_keys
        if full and not self.full_said:
            self.full_said = True
            status("tcpwdist: warning: bpftrace's map was full: writes of new (pid, comm, "
                   "size) combinations were not counted; raise --max-keys "
                   f"(now {self.max_keys or 'the default'})")

    def snapshot(self, snap: dump.Snapshot, stamp: str | None) -> None:
        rows = rows_of(snap, self.name or "@", self.host)
        cmds = self.cmdlines(sorted({r.hist.pid for r in rows if r.hist.pid is not None}))
        self.missing_cmd.update(r.hist.pid for r in rows if r.hist.pid not in cmds)
        self.rows([replace(r, cmd=cmds.get(r.hist.pid)) for r in rows], stamp)

    def rows(self, rows: list[report.Row], stamp: str | None, meta: dict | None = None) -> None:
        """Render one report of ``rows``."""
        self.index += 1
        args = self.args
        rows = report.order(report.group(rows, args.group_by), args.sort, args.top)
        meta = {**self.meta, **(meta or {})}
        if self.clock is not None:
            now = time.monotonic()
            meta["duration"] = round(now - self.clock, 3)
            self.clock = now
        if stamp:
            meta["time"] = stamp
        if self.series:
            meta["interval"] = self.index
        if args.group_by != "pid":
            meta["group_by"] = args.group_by
        fmt = args.output
        text = ""
        if self.series and fmt in ("dist", "table"):
            heading = stamp or f"interval {self.index}"
            text += ("\n" if self.index > 1 else "") + f"{heading}\n"
        if not rows and fmt in ("dist", "table"):
            text += "(no TCP writes traced)\n"
        else:
            text += report.render(fmt, rows, meta, stamp if args.timestamp else None,
                                  header=self.index == 1)
        self.out.write(text)


def now_stamp() -> str:
    return time.strftime("%H:%M:%S")


# --------------------------------------------------------------------------
# Reading dumps (and tcpwdist's own JSON), one or several.


def read_input(path: str) -> bytes:
    try:
        if path == "-":
            return sys.stdin.buffer.read()
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise DumpError(f"cannot read {path}: {exc.strerror}",
                        hint="give a file holding bpftrace output") from None


_OWN_JSON_RE = re.compile(rb'^\s*\{"tcpwdist":')


@dataclass
class Input:
    """One -r input, as reports: (meta, rows, stamp) per snapshot."""

    source: str
    reports: list[tuple[dict, list[report.Row], str | None]]
    parsed: dump.Dump | None  # None for tcpwdist's own JSON


def load(path: str, args: argparse.Namespace) -> Input:
    source = "stdin" if path == "-" else path
    data = read_input(path)
    if _OWN_JSON_RE.match(data):
        reports = []
        for n, line in enumerate(data.splitlines(), 1):
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
                rows = report.rows_from_json(doc)
            except (ValueError, KeyError, TypeError, AttributeError):
                raise DumpError(f"{source}: not a tcpwdist JSON document", line=n) from None
            meta = {k: doc[k] for k in ("host", "kernel", "bpftrace", "probe", "start",
                                        "duration") if k in doc}
            reports.append((meta, rows, doc.get("time")))
        return Input(source, reports, None)
    parsed = dump.parse(data)
    if not parsed.snapshots and not parsed.recognised:
        raise DumpError(f"{source} holds no bpftrace map output",
                        hint="give the output of bpftrace running tcpwdist's program")
    name = dump.pick_map(parsed.snapshots, args.map)
    reports = [({}, rows_of(s, name), s.stamp) for s in parsed.snapshots]
    return Input(source, reports, parsed)


def run_read(args: argparse.Namespace, out: Output) -> int:
    if args.duration or args.write_raw or args.interval:
        raise UsageError("-d, -w and interval are for tracing; -r reads a dump")
    inputs = [load(path, args) for path in args.read]
    reporter = Reporter(args, out)
    code = ExitCode.OK
    if len(inputs) == 1:
        [one] = inputs
        reporter.meta = {"source": one.source}
        if one.parsed is not None:
            reporter.notes(one.parsed)
            code = _cut_status(one.parsed)
        reporter.series = len(one.reports) > 1
        for meta, rows, stamp in one.reports or [({}, [], None)]:
            reporter.rows(rows, stamp, meta)
        return code
    # Several inputs (one per host, say): one report of everything.  Rows
    # from a bpftrace dump carry no host: they are named by their file.
    merged: list[report.Row] = []
    for inp in inputs:
        if inp.parsed is not None:
            reporter.notes(inp.parsed)
            code = max(code, _cut_status(inp.parsed))
        for _, rows, _ in inp.reports:
            merged += [r if r.host else replace(r, host=inp.source) for r in rows]
    reporter.meta = {"sources": [i.source for i in inputs]}
    reporter.rows(merged, None)
    return code


def _cut_status(parsed: dump.Dump) -> int:
    if parsed.cut:
        status(f"tcpwdist: error: the dump was cut off inside {parsed.cut}; "
               "it is left out of the report")
        return ExitCode.BAD_DUMP
    return ExitCode.OK


# --------------------------------------------------------------------------
# Tracing.


def _version(bpftrace: str) -> tuple[program.Version, str]:
    text = trace.bpftrace_version(bpftrace)
    version = program.parse_version(text)
    if version is None:
        raise TcpwdistError(f"cannot tell the version from {text!r}")
    return version, text


def _fentry_supported(bpftrace: str) -> bool | None:
    # One "name: yes|no" per line up to 0.22; several per line from 0.23.
    m = re.search(r"\b(?:kfunc|fentry):\s*(yes|no)\b", trace.bpftrace_info(bpftrace))
    return None if m is None else m.group(1) == "yes"


def plan(args: argparse.Namespace, version: program.Version) -> tuple[list[str], list[str]]:
    if args.probe != "auto":
        return [args.probe], []
    facts = host.gather()
    fentry = None
    if facts.kprobes is False and facts.btf:
        fentry = _fentry_supported(args.bpftrace)  # only when it decides
    return program.plan_probes("auto", facts, fentry, version)


def options(args: argparse.Namespace, probe: str, version: program.Version) -> \
        program.ProgramOptions:
    if args.cgroup is not None:
        problem = host.check_cgroup(args.cgroup)
        if problem:
            raise UsageError(f"--cgroup: {problem}",
                             hint="give a cgroup v2 directory, e.g. /sys/fs/cgroup/system.slice")
    return program.ProgramOptions(probe=probe, version=version, pids=tuple(args.pid),
                                  comms=tuple(args.comm), ports=tuple(args.port),
                                  cgroup=args.cgroup, interval=args.interval,
                                  bytes=args.bytes, status=_status_wanted(args))


def _status_wanted(args: argparse.Namespace) -> bool:
    """The live status line: on a terminal only, and not with interval
    reports (which are their own progress)."""
    try:
        return args.interval is None and os.isatty(sys.stderr.fileno())
    except (OSError, ValueError):
        return False


def show_program(args: argparse.Namespace, out: Output) -> int:
    try:
        version, _ = _version(args.bpftrace)
    except TcpwdistError:
        version = program.NEWEST
        status("tcpwdist: note: bpftrace not found; showing the program in the newest "
               "bpftrace's spelling")
    probes, skipped = plan(args, version)
    for why in skipped:
        status(f"tcpwdist: not using {why}")
    if not probes:
        raise NoProbe("no probe can work on this host", details=tuple(skipped))
    # The status line's once-a-second print(@) is tcpwdist's business, not
    # part of the program a user would copy: --program leaves it out.
    opts = options(args, probes[0], version)
    out.write(program.generate(dataclasses.replace(opts, status=False)))
    return ExitCode.OK


def _mark_re(mark: str) -> re.Pattern[bytes]:
    return re.compile(rb"^" + mark.encode() + rb" \d\d:\d\d:\d\d\r?\n", re.M)


_INTERVAL_RE = _mark_re(program.INTERVAL_MARK)
_STATUS_RE = _mark_re(program.STATUS_MARK)


def _last_mark(pattern: re.Pattern[bytes], buf: bytearray) -> re.Match[bytes] | None:
    last = None
    for last in pattern.finditer(buf):
        pass
    return last


class IntervalFeed:
    """Reports each interval as soon as its time() line arrives; sets
    ``flags.enough`` once ``count`` intervals are out."""

    def __init__(self, session: trace.Session, reporter: Reporter, count: int | None,
                 flags: Flags) -> None:
        self.session = session
        self.reporter = reporter
        self.count = count
        self.flags = flags

    def tick(self) -> None:
        if self.flags.enough:
            return
        mark = _last_mark(_INTERVAL_RE, self.session.buffer)
        if mark is None:
            return
        parsed = dump.parse(self.session.consume(mark.end()))
        self.reporter.emit(parsed, limit=self.count)
        if self.count is not None and self.reporter.index >= self.count:
            self.flags.enough = True


class StatusFeed:
    """The one-line status on a terminal, refreshed by the program's
    once-a-second print(@): elapsed time, writes and processes so far."""

    def __init__(self, session: trace.Session) -> None:
        self.session = session
        self.start = time.monotonic()
        self.shown = False
        # What the consumed status prints said that the final report must
        # still hear about: bpftrace 0.23's "Map full", lost events.
        self.map_full = False
        self.lost_events = 0

    def tick(self) -> None:
        mark = _last_mark(_STATUS_RE, self.session.buffer)
        if mark is None:
            return
        segment = self.session.consume(mark.end())
        try:
            parsed = dump.parse(segment)
        except DumpError:
            return  # a status line is not worth an error
        self.map_full = self.map_full or parsed.map_full
        self.lost_events += parsed.lost_events
        hists = [p for s in parsed.snapshots for p in dump.processes(s)]
        writes = sum(h.writes for h in hists)
        line = (f"tracing {time.monotonic() - self.start:.0f} s: {writes:,} writes from "
                f"{len(hists)} processes (Ctrl-C to end)")
        self._show(line)

    def _show(self, line: str) -> None:
        try:
            sys.stderr.write("\r\x1b[K" + line)
            sys.stderr.flush()
            self.shown = True
        except OSError:
            pass

    def clear(self) -> None:
        if self.shown:
            self._show("")


def run_trace(args: argparse.Namespace, flags: Flags, out: Output) -> int:
    version, version_text = _version(args.bpftrace)
    if os.geteuid() != 0:
        raise PermissionDenied("tracing needs root (bpftrace loads BPF programs)",
                               hint="run it with sudo, or read a captured dump with -r FILE")
    if args.count and not args.interval:
        raise UsageError("count needs an interval: tcpwdist INTERVAL COUNT")
    probes, failures = plan(args, version)
    programs = [(probe, program.generate(options(args, probe, version))) for probe in probes]
    raw: BinaryIO | None = None
    if args.write_raw:
        try:
            raw = open(args.write_raw, "wb")
        except OSError as exc:
            raise UsageError(f"cannot write {args.write_raw}: {exc.strerror}") from None
    # Silence after an interrupt escalates within a third of --stop-timeout.
    timeouts = trace.Timeouts(attach=args.attach_timeout, stop=args.stop_timeout,
                              quiet=min(3.0, args.stop_timeout / 3))
    env = program.environment(version, args.max_keys)
    try:
        for probe, text in programs:
            session = trace.Session(args.bpftrace, ["-e", text], env, timeouts, raw,
                                    # A closed stdout (| head) ends tracing too.
                                    stop_requested=lambda: flags.stop or flags.enough
                                    or out.closed,
                                    abort_requested=lambda: flags.abort)
            with session:
                try:
                    session.wait_attached(version_has_notice=version >= (0, 14, 0))
                except (NoProbe, BpftraceFailed) as exc:
                    # auto falls back on any failure to start a probe (a newer
                    # bpftrace may reject one spelling): the next may work.
                    if isinstance(exc, AttachTimeout) or (
                            isinstance(exc, BpftraceFailed) and args.probe != "auto"):
                        raise
                    failures.append(f"{probe}: {exc.message}; bpftrace said: "
                                    + " | ".join(exc.details[-2:]))
                    continue
                for why in failures:
                    status(f"tcpwdist: not using {why}")
                status(f"tcpwdist: tracing with {program.PROBE_MEANINGS[probe]}")
                status(STATUS_TRACING)
                meta = {"source": "live", "host": socket.gethostname(),
                        "kernel": os.uname().release, "bpftrace": version_text,
                        "probe": probe,
                        "start": datetime.datetime.now().astimezone().isoformat(
                            timespec="seconds")}
                return _traced(args, flags, out, session, meta)
        raise NoProbe("no probe could be attached", hint="the reasons follow; "
                      "--probe tracepoint with tracefs mounted works on most kernels",
                      details=tuple(failures))
    finally:
        if raw is not None:
            raw.close()


def _traced(args: argparse.Namespace, flags: Flags, out: Output, session: trace.Session,
            meta: dict) -> int:
    """Trace with an attached session, stop it, and report."""
    recorder = procs.CmdlineRecorder()
    reporter = Reporter(args, out, meta, recorder.finish, series=args.interval is not None,
                        max_keys=args.max_keys, host=meta["host"], clock=time.monotonic())
    feed = IntervalFeed(session, reporter, args.count, flags) if args.interval else None
    live = StatusFeed(session) if _status_wanted(args) else None

    def tick() -> None:
        recorder.tick()
        if feed is not None:
            feed.tick()
        if live is not None:
            live.tick()

    deadline = time.monotonic() + args.duration if args.duration else None
    session.trace(deadline, tick)
    if live is not None:
        live.clear()
    ended_early = session.eof and not flags.stop
    session.stop()
    outcome = session.outcome()
    _check_outcome(outcome, ended_early)
    if feed is not None:
        feed.tick()  # intervals that arrived while stopping
    # What the feeds did not consume: the final dump (or the last partial interval).
    parsed = dump.parse(outcome.output)
    if live is not None:
        parsed = replace(parsed, map_full=parsed.map_full or live.map_full,
                         lost_events=parsed.lost_events + live.lost_events)
    if not flags.enough:
        if parsed.snapshots:
            reporter.emit(parsed, final_stamp=now_stamp())
        elif reporter.index == 0:
            # A whole run with no writes: still a report, in the chosen
            # format.  (An empty last partial interval after others is not
            # reported, as `-r` of the raw output could not show it either.)
            reporter.snapshot(dump.Snapshot(()), now_stamp())
    if reporter.missing_cmd:
        n = len(reporter.missing_cmd)
        status(f"tcpwdist: note: {n} {'process' if n == 1 else 'processes'} had exited (or "
               "are kernel threads) before the command line could be read: CMD shows the comm")
    if flags.hangup:
        status("tcpwdist: note: hangup received; tracing ended")
    code = _cut_status(parsed)
    if outcome.aborted:
        status("tcpwdist: error: stopped waiting for bpftrace's report (second Ctrl-C): "
               "the report holds what had arrived")
        return ExitCode.BAD_DUMP
    return code


def _check_outcome(outcome: trace.Outcome, ended_early: bool) -> None:
    for what in outcome.escalations:
        status(f"tcpwdist: warning: bpftrace did not stop on the interrupt: {what}")
    if outcome.aborted:
        return
    if ended_early or outcome.signal_status is not None or outcome.exit_status not in (0, None):
        how = (f"killed by signal {outcome.signal_status}" if outcome.signal_status
               else f"exit status {outcome.exit_status}")
        when = "while tracing" if ended_early else "after the interrupt"
        raise BpftraceFailed(f"bpftrace ended {when} ({how})",
                             details=trace.tail(outcome.output))


# --------------------------------------------------------------------------


def run(args: argparse.Namespace, out: Output) -> int:
    if args.program:
        return show_program(args, out)
    if args.read is not None:
        return run_read(args, out)
    with SignalGuard() as flags:
        return run_trace(args, flags, out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    out = Output()
    try:
        return int(run(args, out))
    except TcpwdistError as exc:
        status(f"{PROG}: error: {exc}")
        for line in exc.details:
            status(f"  {report.safe_text(line.encode('utf-8', 'surrogateescape'))}")
        if args.traceback:
            traceback.print_exc()
        return int(exc.exit_code)
    except KeyboardInterrupt:
        status(f"{PROG}: interrupted")
        return int(ExitCode.INTERRUPTED_EARLY)
    except Exception:  # a bug: say so, and how to report it
        if args.traceback:
            traceback.print_exc()
        else:
            exc_type, exc_value = sys.exc_info()[:2]
            status(f"{PROG}: internal error: {exc_type.__name__}: {exc_value} "
                   "(a bug; rerun with --traceback and report it)")
        return int(ExitCode.INTERNAL)

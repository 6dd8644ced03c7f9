"""The live run: facts, plan, attach (with fallback), trace, stop, report.

Data flows one way: the host's facts (host) decide the plan (program),
the plan's program runs under a pty (trace), what it prints is parsed
(dump) and rendered (report), and the console writes it.  Signals only
set flags here; every wait in trace polls them.
"""

from __future__ import annotations

import datetime
import os
import signal
import socket
import time
from dataclasses import dataclass, replace
from typing import BinaryIO, Callable

from tcpwdist import dump, host, marks, procs, program, report, scan, trace
from tcpwdist.console import Console
from tcpwdist.errors import (BpftraceFailed, ExitCode, NoProbe, PermissionDenied, TcpwdistError,
                             UsageError)

TRACING = "Tracing TCP writes"  # how the one line before tracing begins


@dataclass(frozen=True)
class Request:
    """What the command line asked the live run for."""

    program: program.ProgramOptions  # filters, interval, --bytes (probe: set per try)
    probe: str = "auto"
    bpftrace: str = "bpftrace"
    count: int | None = None  # interval reports to make, then stop
    duration: float | None = None
    write_raw: str | None = None
    max_keys: int = 65536
    attach_timeout: float = 30.0
    stop_timeout: float = 30.0
    report: report.Options = report.Options()
    verbose: bool = False  # say every probe not used and why, and what size means


def is_root() -> bool:
    return os.geteuid() == 0


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
# Reports as they arrive.


class Reporter:
    """Turns parsed dumps into reports on the console, in order."""

    def __init__(self, series: report.Series, console: Console, hostname: str,
                 cmdlines: Callable[[list[int]], dict[int, bytes]], max_keys: int,
                 counting: report.Counting = report.Counting()) -> None:
        self.series = series
        self.console = console
        self.hostname = hostname
        self.cmdlines = cmdlines
        self.max_keys = max_keys
        self.counting = counting  # what the program counts besides @ (@failed, ...)
        self.missing_cmd: set[int] = set()  # pids shown by their comm
        self._clock = time.monotonic()  # when the current report's period began

    @property
    def count(self) -> int:
        return self.series.count

    def notes(self, parsed: dump.Dump) -> tuple[str, ...]:
        """Say what a dump says (once each); the warnings its report carries."""
        said = report.dump_notes(parsed, "@", self.max_keys, live=True)
        for line in said:
            self.console.say_once(line)
        return report.warnings_of(said)

    def snapshot(self, snap: dump.Snapshot, stamp: str | None,
                 warnings: tuple[str, ...] = (), partial: bool | None = None) -> None:
        rows = report.rows_of(snap, "@", self.hostname, counting=self.counting)
        cmds = self.cmdlines(sorted({r.hist.pid for r in rows if r.hist.pid is not None}))
        self.missing_cmd.update(r.hist.pid for r in rows
                                if r.hist.pid is not None and r.hist.pid not in cmds)
        now = time.monotonic()
        period = report.Meta(duration=round(now - self._clock, 3), warnings=warnings,
                             partial=partial)
        self._clock = now
        text = self.series.next([replace(r, cmd=cmds.get(r.hist.pid or -1)) for r in rows],
                                stamp, period)
        self.console.report(text)


def now_stamp() -> str:
    return time.strftime("%H:%M:%S")


# --------------------------------------------------------------------------
# Feeds: the cumulative dumps the program prints periodically (marks.py),
# taken as they arrive.


class IntervalFeed:
    """Reports each interval as soon as its total arrives: what the map
    gained since the total before.  Sets ``flags.enough`` once ``count``
    intervals are out."""

    def __init__(self, session: trace.Session, reporter: Reporter, count: int | None,
                 flags: Flags) -> None:
        self.session = session
        self.reporter = reporter
        self.count = count
        self.flags = flags
        self.total: dump.Snapshot | None = None  # the last interval's total

    def tick(self) -> None:
        if self.flags.enough:
            return
        taken = self.session.take_through(marks.TOTAL)
        if taken is None:
            return
        parsed = dump.parse(taken)
        warnings = self.reporter.notes(parsed)
        for snap in parsed.snapshots:
            if snap.kind == marks.TOTAL and not self.flags.enough:
                self.reporter.snapshot(dump.difference(snap, self.total), snap.stamp, warnings)
                self.total = snap
                self.flags.enough = self.count is not None and self.reporter.count >= self.count

    def finish(self, final: dump.Dump, warnings: tuple[str, ...]) -> None:
        """The last, partial interval: what the final dump adds to the last
        total (not reported if nothing, as -r of the raw output could not
        show it either).  A run without intervals still gets a report."""
        if self.flags.enough:
            return
        if final.final is not None:
            last = dump.difference(final.final, self.total)
            if last.maps or self.reporter.count == 0:
                self.reporter.snapshot(last, now_stamp(), warnings)
        elif self.reporter.count == 0:
            self.reporter.snapshot(dump.Snapshot(()), now_stamp(), warnings)


class SnapshotFeed:
    """The once-a-second snapshots of a run without intervals: the last
    one is kept, unparsed (parsing a big map every second is what costs),
    for the report if bpftrace dies before its final dump; on a terminal
    a quick count of it refreshes the progress line."""

    def __init__(self, session: trace.Session, console: Console, progress: bool,
                 duration: float | None = None) -> None:
        self.session = session
        self.console = console
        self.progress = progress
        self.duration = duration  # -d: the progress line counts up to it
        self.start = time.monotonic()
        self.latest: bytes | None = None  # output through the last snapshot's mark
        self.latest_at = 0.0
        self._next_count = 0.0  # when the progress line may be counted again
        self._scan = scan.SnapshotScan()
        self._counted = False  # the progress line was counted once
        # What the snapshots said that the final report must still hear
        # about: bpftrace 0.23+'s "Map full" blocks, lost events.
        self.dropped = 0
        self.lost_events = 0

    def tick(self) -> None:
        taken = self.session.take_through(marks.SNAPSHOT)
        if taken is None:
            return
        self.latest, self.latest_at = taken, time.monotonic()
        if not (self.progress and self.latest_at >= self._next_count):
            self.dropped += scan.dropped_total(taken)
            self.lost_events += scan.lost_total(taken)
            return
        counted = self._scan(taken)
        self.dropped += counted.dropped
        self.lost_events += counted.lost
        # At most 2% of a core on the count: only what changed is counted
        # again, and should a big map change everywhere at once its line
        # is refreshed less often (60,000 entries all changing: every 10 s
        # or so).  The first count, where everything is new, is a one-off
        # and does not set the pace.  BENCHMARKS.md has the numbers.
        if self._counted:
            self._next_count = time.monotonic() + 50 * (time.monotonic() - self.latest_at)
        self._counted = True
        writes, procs = counted.writes, counted.processes
        took = f"{time.monotonic() - self.start:.0f} s"
        if self.duration is not None:
            took += f" of {self.duration:g}"
        self.console.progress(
            f"tracing {took}: {writes:,} writes from {procs:,} "
            f"{'process' if procs == 1 else 'processes'}"
            + ("" if self.duration is not None else " (Ctrl-C to end)"))

    def seen(self) -> dump.Snapshot | None:
        """The last snapshot that arrived, parsed."""
        if self.latest is None:
            return None
        return dump.reports(dump.parse(self.latest).snapshots).partial

    def heard(self, parsed: dump.Dump) -> dump.Dump:
        """The final dump with what the snapshots said added."""
        dropped = parsed.dropped + self.dropped
        return replace(parsed, map_full=parsed.map_full or dropped > 0, dropped=dropped,
                       lost_events=parsed.lost_events + self.lost_events)


# --------------------------------------------------------------------------
# The run.


def run(req: Request, console: Console) -> int:
    # Everything the user typed is checked before anything runs.
    program.validate(req.program)
    if req.program.cgroup is not None:
        req = replace(req, program=replace(req.program, cgroup=host.check_cgroup(
            req.program.cgroup)))
        said = host.cgroup_warning(req.program.cgroup or "")
        if said:
            console.say(f"warning: {said}")
    if not is_root():
        raise PermissionDenied("tracing needs root (bpftrace loads BPF programs)",
                               hint="run it with sudo, or read a captured dump with -r FILE")
    for pid in req.program.pids:
        if not os.path.exists(f"/proc/{pid}"):  # a typo, or a process that has exited
            console.say(f"warning: -p {pid}: no such process: only a process that gets "
                        "this PID later would be traced")
    facts = host.gather(req.bpftrace, req.probe)
    plan = program.plan(req.probe, facts.kernel, facts.bpftrace)
    programs = [(p, program.generate(replace(req.program, probe=p, snapshots=True,
                                             version=facts.bpftrace.version), header=False))
                for p in plan.probes]
    with _raw_file(req.write_raw) as raw, SignalGuard() as flags:
        probe, session, failures = _attach(req, facts, programs, plan, raw, flags, console)
        with session:
            if req.verbose:
                _say_choice(probe, failures, facts.bpftrace.version, console)
            console.say_plain(tracing_line(req, program.attach_point(
                probe, facts.bpftrace.version)))
            start = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
            o = req.program
            meta = report.Meta(source="live", host=socket.gethostname(),
                               kernel=facts.kernel.release, bpftrace=facts.bpftrace.text,
                               probe=probe, size=program.SIZE_MEANINGS[probe], start=start,
                               filters=report.filters_of(o.pids, o.comms, o.ports, o.cgroup))
            return _trace(req, flags, console, session, meta, report.Counting(
                program.counts_failed(probe, facts.bpftrace.version), o.spliced, o.connections))


def _say_choice(probe: str, failures: list[tuple[str, str]], version: program.Version,
                console: Console) -> None:
    """-v: the probes not used and why, the one used and what it counts."""
    for p, why in failures:
        console.say(f"not using {p}: {why}")
    console.say(f"tracing with {program.PROBE_MEANINGS[probe]}")
    if program.counts_failed(probe) and not program.counts_failed(probe, version):
        console.say("not counting failed sends: with bpftrace before 0.23 it costs each "
                    "write about 10% more BPF time (JSON failed: null)")


def tracing_line(req: Request, point: str) -> str:
    """The one line said before tracing (as BCC's tools and the
    DTraceToolkit say it): what is traced, and what ends it."""
    line = f"{TRACING} via {point}"
    if req.duration is not None:
        return f"{line} for {req.duration:g} s..."
    if req.count is not None and req.program.interval is not None:
        reports = "1 report" if req.count == 1 else f"{req.count} reports"
        return f"{line}: {reports}, {req.program.interval:g} s apart..."
    return f"{line}... Hit Ctrl-C to end."


def _progress_wanted(req: Request, console: Console) -> bool:
    """The progress line: on a terminal only, and not with interval reports
    (which are their own progress)."""
    return req.program.interval is None and console.progress_wanted()


class _raw_file:
    """-w's file, open for the run (a context manager; None without -w)."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.file: BinaryIO | None = None

    def __enter__(self) -> BinaryIO | None:
        if self.path:
            # As root, in a directory others can write: never follow a
            # symlink planted there, never overwrite a file (README, -w).
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            try:
                self.file = os.fdopen(os.open(self.path, flags, 0o644), "wb")
            except FileExistsError:
                raise UsageError(f"-w {self.path}: it exists, and -w never overwrites",
                                 hint="remove it first, or give a new file name") from None
            except OSError as exc:
                raise UsageError(f"cannot write {self.path}: {exc.strerror}") from None
        return self.file

    def __exit__(self, *exc: object) -> None:
        if self.file is not None:
            try:
                self.file.close()
            except OSError:
                pass  # what it could not take was said when it happened


def _attach(req: Request, facts: host.Facts, programs: list[tuple[str, str]],
            plan: program.Plan, raw: BinaryIO | None, flags: Flags,
            console: Console) -> tuple[str, trace.Session, list[tuple[str, str]]]:
    """Start the plan's programs in turn until one attaches."""
    failures = list(plan.skipped)
    # Silence after an interrupt escalates within a third of --stop-timeout.
    timeouts = trace.Timeouts(attach=req.attach_timeout, stop=req.stop_timeout,
                              quiet=min(3.0, req.stop_timeout / 3))
    env = program.environment(facts.bpftrace.version, req.max_keys)
    for probe, text in programs:
        session = trace.Session(req.bpftrace, ["-e", text], env, timeouts, raw,
                                # A closed stdout (| head) ends tracing too.
                                stop_requested=lambda: flags.stop or flags.enough
                                or console.closed,
                                abort_requested=lambda: flags.abort)
        try:
            session.wait_attached(version_has_notice=facts.bpftrace.version >= (0, 14, 0))
        except TcpwdistError as exc:
            session.kill()
            if session.stuck:
                console.say("warning: " + trace.stuck_message(session.child.pid))
            if not program.falls_back(req.probe, exc):
                raise
            failures.append((probe, f"{exc.message}; bpftrace said: "
                             + " | ".join(exc.details[-2:])))
            continue
        return probe, session, failures
    raise NoProbe("no probe could be attached", hint="the reasons follow; "
                  "--probe tracepoint with tracefs mounted works on most kernels",
                  details=tuple(f"{p}: {why}" for p, why in failures))


def _trace(req: Request, flags: Flags, console: Console, session: trace.Session,
           meta: report.Meta, counting: report.Counting) -> int:
    """Trace with an attached session, stop it, and report."""
    recorder = procs.CmdlineRecorder()
    series = report.Series(req.report, meta, numbered=req.program.interval is not None)
    reporter = Reporter(series, console, meta.host or "", recorder.finish, req.max_keys,
                        counting)
    interval = (IntervalFeed(session, reporter, req.count, flags)
                if req.program.interval is not None else None)
    snapshots = SnapshotFeed(session, console, _progress_wanted(req, console), req.duration)
    feed = interval or snapshots

    raw_said: list[str] = []

    def tick() -> None:
        recorder.tick()
        feed.tick()
        if session.raw_failed and not raw_said:
            raw_said.append(f"-w {req.write_raw} stopped at a write error "
                            f"({session.raw_failed}): the file is incomplete")
            console.say(f"warning: {raw_said[0]}; tracing goes on")

    deadline = time.monotonic() + req.duration if req.duration else None
    session.trace(deadline, tick)
    console.clear_progress()
    ended_early = session.eof and not flags.stop
    session.stop(ack=marks.FINAL.encode() + b" ")  # the program's END probe says it heard
    ended_at = time.monotonic()
    outcome = session.outcome()
    # What the feeds did not take: the final dump.  Its mark lines are the
    # interval probe firing while bpftrace printed it (0.22+ streams maps
    # entry by entry: seen to cut a 320-process dump in two), not ends of
    # dumps: taking them would report a part of the final dump.  A print
    # that ended just before the interrupt still stands apart (the final
    # dump repeats its keys), or adds to the last, partial interval.
    rest = dump.parse(marks.without(session.output, marks.TOTAL, marks.SNAPSHOT))
    if len(rest.snapshots) > 1:  # dumps that were not taken yet, then the final one
        rest = replace(rest, snapshots=(dump.latest_of_each_key(rest.snapshots),))
    parsed = snapshots.heard(rest)
    _escalations(outcome, parsed, console)
    tick()  # a write error in the last output read is said too
    warnings = reporter.notes(parsed) + tuple(raw_said)
    if interval is not None:
        interval.finish(parsed, warnings)
    else:
        _final_report(parsed, snapshots, reporter, warnings, ended_at, console)
    failure = _failure(outcome, ended_early, parsed)
    if ended_early and failure is None:
        console.say("note: bpftrace ended before tcpwdist stopped it (someone else stopped "
                    "it?); its final dump was complete and is reported")
    code = _closing_words(reporter, parsed, outcome, flags, console)
    if failure is not None:
        raise failure
    return code


def _escalations(outcome: trace.Outcome, parsed: dump.Dump, console: Console) -> None:
    """Say what it took to stop bpftrace.  A second interrupt after which
    the whole dump came (bpftrace 0.17 was seen to miss one in about 85)
    lost nothing: a note, not a warning."""
    if outcome.escalations == ["interrupt sent again"] and parsed.complete \
            and outcome.stuck is None:
        console.say("note: bpftrace missed the interrupt; a second one stopped it, and its "
                    "final dump arrived whole")
        return
    for what in outcome.escalations:
        console.say(f"warning: bpftrace did not stop on the interrupt: {what}")


def _final_report(parsed: dump.Dump, snapshots: SnapshotFeed, reporter: Reporter,
                  warnings: tuple[str, ...], ended_at: float, console: Console) -> None:
    """The report of a run without intervals: the final dump if bpftrace
    printed it whole; else the last snapshot, labelled partial; else what
    arrived of the final dump."""
    seen = None if parsed.complete else snapshots.seen()
    if seen is not None:
        age = ended_at - snapshots.latest_at
        why = (f"partial report: bpftrace's final dump did not arrive whole; this is what "
               f"was counted up to {seen.stamp} ({age:.1f} s before bpftrace ended)")
        if parsed.final is not None:
            # The entries of the final dump that did arrive are newer than
            # the snapshot's: each key as the later of the two printed it.
            seen = dump.latest_of_each_key([seen, parsed.final])
            why += ", with the entries of the final dump that arrived"
        console.say(f"warning: {why}")
        reporter.snapshot(seen, seen.stamp, warnings + (why,), partial=True)
    elif parsed.final is not None:  # partial if it stopped short (dump_notes said so)
        reporter.snapshot(parsed.final, now_stamp(), warnings,
                          partial=None if parsed.complete else True)
    else:
        # A whole run with no writes: still a report, in the chosen format.
        reporter.snapshot(dump.Snapshot(()), now_stamp(), warnings)


def _closing_words(reporter: Reporter, parsed: dump.Dump, outcome: trace.Outcome,
                   flags: Flags, console: Console) -> int:
    if reporter.missing_cmd:
        n = len(reporter.missing_cmd)
        console.say(f"note: {n} {'process' if n == 1 else 'processes'} exited (or "
                    f"{'is a kernel thread' if n == 1 else 'are kernel threads'}) before "
                    "the command line could be read: CMD shows the comm")
    if flags.hangup:
        console.say("note: hangup received; tracing ended")
    code = cut_code(parsed, console)
    if parsed.unterminated and not outcome.aborted:
        code = ExitCode.BAD_DUMP  # the final dump stopped short (said as a warning)
    if outcome.aborted:
        console.say("error: stopped waiting for bpftrace's report (second Ctrl-C): "
                    "the report holds what had arrived")
        return ExitCode.BAD_DUMP
    return code


def cut_code(parsed: dump.Dump, console: Console) -> int:
    """Exit code for a dump that may have been cut off, saying so if it was."""
    if parsed.cut:
        console.say(f"error: the dump was cut off inside {parsed.cut}; "
                    "it is left out of the report")
        return ExitCode.BAD_DUMP
    return ExitCode.OK


def _failure(outcome: trace.Outcome, ended_early: bool,
             parsed: dump.Dump) -> BpftraceFailed | None:
    """bpftrace's failure, if it failed: it died, was killed, or exited
    badly.  Ending early with a complete final dump and exit 0 (stopped by
    someone else's SIGTERM, say) is no failure.  A second Ctrl-C is the
    user's, said apart."""
    if outcome.stuck is not None:
        return BpftraceFailed(trace.stuck_message(outcome.stuck))
    if outcome.aborted:
        return None
    bad_end = outcome.signal_status is not None or outcome.exit_status not in (0, None)
    if not bad_end and (not ended_early or parsed.complete):
        return None
    how = (f"killed by signal {outcome.signal_status}" if outcome.signal_status
           else f"exit status {outcome.exit_status}")
    when = "while tracing" if ended_early else "after the interrupt"
    return BpftraceFailed(f"bpftrace ended {when} ({how})", details=trace.tail(outcome.output))

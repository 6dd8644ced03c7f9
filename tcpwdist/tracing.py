"""An attached bpftrace traced to its end and reported: the feeds that
take its periodic cumulative dumps as they arrive (marks.py), the stop,
the final report, and the exit code.  live.py starts it."""

from __future__ import annotations

import datetime
import socket
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Callable

from tcpwdist import dump, host, marks, procs, program, report, scan, trace
from tcpwdist.console import Console
from tcpwdist.errors import BpftraceFailed, ExitCode

if TYPE_CHECKING:
    from tcpwdist.live import Flags, Request


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
# The traced run, to its end.


def _progress_wanted(req: Request, console: Console) -> bool:
    """The progress line: on a terminal only, and not with interval reports
    (which are their own progress)."""
    return req.program.interval is None and console.progress_wanted()


def traced(req: Request, flags: Flags, console: Console, session: trace.Session,
           facts: host.Facts, probe: str) -> int:
    """Trace with a session attached with ``probe``, stop it, and report."""
    o = req.program
    meta = report.Meta(source="live", host=socket.gethostname(), kernel=facts.kernel.release,
                       bpftrace=facts.bpftrace.text, probe=probe,
                       size=program.SIZE_MEANINGS[probe],
                       start=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                       filters=report.filters_of(o.pids, o.comms, o.ports, o.cgroup))
    counting = report.Counting(program.counts_failed(probe, facts.bpftrace.version), o.spliced,
                               o.connections)
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

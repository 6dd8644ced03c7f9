"""tcpwdist's command line: the only module that prints, exits or handles signals."""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from typing import BinaryIO, Sequence

from tcpwdist import __version__, dump, host, procs, program, report, trace
from tcpwdist.errors import (EXIT_CODE_MEANINGS, BpftraceFailed, DumpError, ExitCode,
                             InterruptedEarly, NoProbe, PermissionDenied, TcpwdistError,
                             UsageError)

PROG = "tcpwdist"
STATUS_TRACING = "Tracing TCP writes... Hit Ctrl-C to end."

EXAMPLES = """\
examples:
  tcpwdist                  # trace until Ctrl-C, then print the report
  tcpwdist -d 10            # trace for 10 seconds
  tcpwdist -p 181 -p 182    # only PIDs 181 and 182
  tcpwdist -c nginx         # only processes whose comm is nginx
  tcpwdist -o json -d 5     # one JSON document, for scripts
  tcpwdist -w raw.txt       # also keep bpftrace's raw output in raw.txt
  tcpwdist -r raw.txt       # report on a captured dump (no root needed)
  bpftrace -e '...' | tcpwdist -r -     # read a dump from stdin
  tcpwdist --program        # print the bpftrace program, and exit
"""


def _exit_codes_epilog() -> str:
    lines = ["exit codes:"]
    lines += [f"  {int(code)}  {text}" for code, text in EXIT_CODE_MEANINGS.items()]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Summarize TCP write sizes by process: a power-of-two histogram of "
                    "the size of each application write to TCP (tcp_sendmsg), per PID "
                    "and command. For Linux, uses bpftrace. Needs root to trace; "
                    "-r reads a captured dump without root.",
        epilog=EXAMPLES + "\n" + _exit_codes_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument("-r", "--read", metavar="FILE",
                     help="read a captured bpftrace dump (text or JSON; - for stdin) "
                          "instead of tracing")
    src.add_argument("--program", action="store_true",
                     help="print the bpftrace program that would run, and exit")
    p.add_argument("-d", "--duration", metavar="SECONDS", type=_positive_float,
                   help="trace for this long, then report (default: until Ctrl-C)")
    p.add_argument("-o", "--output", choices=report.FORMATS, default="dist",
                   help="report format (default: dist)")
    p.add_argument("-p", "--pid", metavar="PID", type=int, action="append", default=[],
                   help="trace this PID only (repeatable)")
    p.add_argument("-c", "--comm", metavar="NAME", action="append", default=[],
                   help="trace this command name only (repeatable; at most 15 bytes)")
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
                   help="bpftrace map size: entries for (pid, comm, bucket) "
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
    if not value > 0 or value != value or value == float("inf"):
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


def emit(text: str) -> bool:
    """Write the report to stdout; False if nobody is reading any more."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
        return True
    except BrokenPipeError:
        # Quietly, like `cat | head`: point stdout at /dev/null so Python's
        # exit-time flush does not complain about the pipe once more.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return False
    except OSError as exc:
        if exc.errno in (errno.EIO, errno.ENXIO):  # terminal hung up
            return False
        raise


# --------------------------------------------------------------------------
# Signals: the first Ctrl-C/SIGTERM/SIGHUP ends tracing; a second Ctrl-C
# while the dump is being read stops waiting for it.


@dataclass
class Flags:
    stop: bool = False
    abort: bool = False
    hangup: bool = False
    signum: int | None = None


class SignalGuard:
    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.flags = Flags()
        self._old: dict[int, object] = {}

    def _handle(self, signum: int, frame: object) -> None:
        if self.flags.stop and signum == signal.SIGINT:
            self.flags.abort = True
        self.flags.stop = True
        self.flags.signum = signum
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
# The two ways to get a dump: read one, or trace.


def read_input(path: str) -> bytes:
    try:
        if path == "-":
            return sys.stdin.buffer.read()
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise DumpError(f"cannot read {path}: {exc.strerror}",
                        hint="give a file holding bpftrace output") from None


def _version_tuple(bpftrace: str) -> tuple[program.Version, str]:
    text = trace.bpftrace_version(bpftrace)
    version = program.parse_version(text)
    if version is None:
        raise TcpwdistError(f"cannot tell the version from {text!r}")
    return version, text


def _fentry_supported(bpftrace: str, facts: host.Facts) -> bool | None:
    if not facts.btf:
        return False
    info = trace.bpftrace_info(bpftrace)
    for line in info.splitlines():
        name, _, value = line.strip().partition(":")
        if name in ("kfunc", "fentry"):
            return value.strip() == "yes"
    return None


def plan(args: argparse.Namespace, version: program.Version) -> tuple[list[str], list[str]]:
    facts = host.gather()
    fentry = None
    if args.probe == "auto" and facts.kprobes is False:
        fentry = _fentry_supported(args.bpftrace, facts)  # only when it matters
    return program.plan_probes(args.probe, facts, fentry)


def options(args: argparse.Namespace, probe: str, version: program.Version) -> \
        program.ProgramOptions:
    return program.ProgramOptions(probe=probe, version=version, pids=tuple(args.pid),
                                  comms=tuple(args.comm))


def show_program(args: argparse.Namespace) -> int:
    try:
        version, _ = _version_tuple(args.bpftrace)
    except TcpwdistError:
        version = program.NEWEST
        status("tcpwdist: note: bpftrace not found; showing the program for the newest "
               "bpftrace spelling")
    probes, skipped = plan(args, version) if args.probe == "auto" else ([args.probe], [])
    for why in skipped:
        status(f"tcpwdist: not using {why}")
    if not probes:
        raise NoProbe("no probe can work on this host", details=tuple(skipped))
    emit(program.generate(options(args, probes[0], version)))
    return ExitCode.OK


@dataclass
class Live:
    """What a live run brings back besides bpftrace's output."""

    probe: str
    cmdlines: procs.CmdlineRecorder


def trace_live(args: argparse.Namespace, flags: Flags) -> tuple[bytes, Live]:
    """Run bpftrace until the end of tracing; return its output and context."""
    version, _ = _version_tuple(args.bpftrace)
    if os.geteuid() != 0:
        raise PermissionDenied("tracing needs root (bpftrace loads BPF programs)",
                               hint="run it with sudo, or read a captured dump with -r FILE")
    probes, skipped = plan(args, version)
    failures = list(skipped)
    raw: BinaryIO | None = None
    if args.write_raw:
        try:
            raw = open(args.write_raw, "wb")
        except OSError as exc:
            raise UsageError(f"cannot write {args.write_raw}: {exc.strerror}") from None
    timeouts = trace.Timeouts(attach=args.attach_timeout, stop=args.stop_timeout)
    env = program.environment(version, args.max_keys)
    try:
        for probe in probes:
            text = program.generate(options(args, probe, version))
            session = trace.Session(args.bpftrace, ["-e", text], env, timeouts, raw,
                                    stop_requested=lambda: flags.stop,
                                    abort_requested=lambda: flags.abort)
            with session:
                try:
                    session.wait_attached(version_has_notice=version >= (0, 14, 0))
                except NoProbe as exc:
                    failures.append(f"{probe}: {exc.message}; bpftrace said: "
                                    + " | ".join(exc.details[-2:]))
                    continue
                for why in failures:
                    status(f"tcpwdist: not using {why}")
                status(f"tcpwdist: tracing with {program.PROBE_MEANINGS[probe]}")
                status(STATUS_TRACING)
                recorder = procs.CmdlineRecorder()
                deadline = time.monotonic() + args.duration if args.duration else None
                session.trace(deadline, tick=recorder.tick)
                ended_early = session.eof
                session.stop()
                outcome = session.outcome()
            return _check_outcome(outcome, ended_early), Live(probe, recorder)
        raise NoProbe("no probe could be attached", hint="see the reasons above; "
                      "--probe tracepoint with tracefs mounted works on most kernels",
                      details=tuple(failures))
    finally:
        if raw is not None:
            raw.close()


def _check_outcome(outcome: trace.Outcome, ended_early: bool) -> bytes:
    for what in outcome.escalations:
        status(f"tcpwdist: warning: bpftrace did not stop on the interrupt: {what}")
    if outcome.aborted:
        status("tcpwdist: stopped waiting for bpftrace's report (second Ctrl-C): "
               "the report below holds what had arrived")
        return outcome.output
    if ended_early or outcome.signal_status is not None or outcome.exit_status not in (0, None):
        how = (f"killed by signal {outcome.signal_status}" if outcome.signal_status
               else f"exit status {outcome.exit_status}")
        when = "while tracing" if ended_early else "after the interrupt"
        raise BpftraceFailed(f"bpftrace ended {when} ({how})",
                             details=trace._tail(outcome.output))
    return outcome.output


# --------------------------------------------------------------------------
# From a dump to the report.


def report_from(data: bytes, args: argparse.Namespace, source: str,
                live: Live | None = None) -> tuple[str, bool]:
    """Parse ``data`` and render the report; returns (text, complete)."""
    parsed = dump.parse(data)
    for note in parsed.notes:
        status(f"tcpwdist: note: {note}")
    if parsed.lost_events:
        status(f"tcpwdist: warning: bpftrace lost {parsed.lost_events} events")
    if parsed.map_full:
        status("tcpwdist: warning: bpftrace's map was full: some writes were not counted "
               "(raise --max-keys)")
    if not parsed.snapshots and not parsed.recognised:
        raise DumpError(f"{source} holds no bpftrace map output",
                        hint="give the output of bpftrace running tcpwdist's program")
    name = dump.pick_map(parsed.snapshots, args.map)
    meta: dict = {"source": source}
    cmdlines: dict[int, bytes] = {}
    if live is not None:
        meta["probe"] = live.probe
        pids = sorted({p.pid for s in parsed.snapshots for p in dump.processes(s, name)})
        cmdlines = live.cmdlines.finish(pids)
        gone = len(pids) - len(cmdlines)
        if gone:
            status(f"tcpwdist: note: {gone} of {len(pids)} processes had exited (or are "
                   "kernel threads) before their command line could be read: "
                   "CMD shows their comm")
    chunks = []
    many = len(parsed.snapshots) > 1
    for i, snap in enumerate(parsed.snapshots or (dump.Snapshot(()),)):
        rows = [report.Row(h, cmdlines.get(h.pid)) for h in dump.processes(snap, name)]
        m = dict(meta)
        if many:
            m["interval"] = {"index": i + 1, "time": snap.stamp}
            if args.output != "json":
                chunks.append(f"--- interval {i + 1}" + (f" ({snap.stamp})" if snap.stamp else "")
                              + " ---\n")
        if not rows and args.output != "json":
            chunks.append("(no TCP writes traced)\n")
            continue
        chunks.append(report.render(args.output, rows, m))
    if many and args.output != "json":
        text = "\n".join(chunks)
    else:
        text = "".join(chunks)
    if parsed.cut:
        status(f"tcpwdist: error: the dump was cut off inside {parsed.cut}; "
               "it is left out of the report")
    return text, parsed.cut is None


# --------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    if args.program:
        return show_program(args)
    if args.read is not None:
        if args.duration or args.write_raw:
            raise UsageError("-d and -w are for tracing; -r reads a dump")
        text, complete = report_from(read_input(args.read), args,
                                     "stdin" if args.read == "-" else args.read)
        emit(text)
        return ExitCode.OK if complete else ExitCode.BAD_DUMP
    with SignalGuard() as flags:
        output, live = trace_live(args, flags)
        text, complete = report_from(output, args, "live", live)
        if flags.hangup:
            status("tcpwdist: note: hangup received; tracing ended")
        emit(text)
        if flags.abort:
            return ExitCode.BPFTRACE_FAILED
        return ExitCode.OK if complete else ExitCode.BAD_DUMP


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(run(args))
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

"""The live run: facts, plan, attach (with fallback); then
:mod:`tcpwdist.tracing` traces, stops and reports.

Data flows one way: the host's facts (host) decide the plan (program),
the plan's program runs under a pty (trace), what it prints is parsed
(dump) and rendered (report), and the console writes it.  Signals only
set flags here; every wait in trace polls them.  What only the traced
run needs is imported while bpftrace compiles its program, not before
(start-up: BENCHMARKS.md).
"""

from __future__ import annotations

import importlib
import os
import signal
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, BinaryIO

from tcpwdist import host, options, program
from tcpwdist.console import Console
from tcpwdist.errors import NoProbe, PermissionDenied, TcpwdistError, UsageError

if TYPE_CHECKING:
    from tcpwdist import trace

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
    report: options.Options = options.Options()
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
    asked = host.Asked(req.bpftrace, req.probe)
    try:
        # While bpftrace answers, the pty's side is imported (pexpect).
        importlib.import_module("tcpwdist.trace")
    except BaseException:
        asked.discard()
        raise
    facts = asked.facts()
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
            from tcpwdist import tracing  # imported already, in _attach
            return tracing.traced(req, flags, console, session, facts, probe)


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
    from tcpwdist import trace  # imported already, in run()
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
        # While bpftrace compiles and attaches (0.1-0.3 s here, far more
        # under emulation), what the traced run needs is imported: the
        # dump readers, the reports.  Importing takes a few tens of ms,
        # and the attach notice waits in the pipe until then.
        importlib.import_module("tcpwdist.tracing")
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

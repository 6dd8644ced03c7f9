"""Run bpftrace under a pty (pexpect) and bring back everything it printed.

The edge of tcpwdist that touches processes: spawn, wait for the probes
to attach, keep reading while tracing, interrupt, read the dump to EOF,
escalate if bpftrace will not stop.  It returns raw bytes; parsing is
``dump``'s job.  Every wait has a bound.

Why a pty: bpftrace runs in its own session with the pty as its
controlling terminal.  If tcpwdist dies, even by SIGKILL, the kernel
closes the pty master and sends SIGHUP to bpftrace, whose default action
ends it: no bpftrace is left behind with probes attached.

What it prints (stdout and stderr, in the order written, as a pty would
merge them) comes through a pipe instead: a pty moves at most a few KiB
a read and post-processes every line, which for the whole map printed
once a second is most of tcpwdist's CPU and a good part of bpftrace's
(BENCHMARKS.md); a pipe moves what it holds (up to 1 MiB here) a
read, untouched.  bpftrace's
stdout is line-buffered on a pipe as on a terminal (0.9.3+).
"""

from __future__ import annotations

import fcntl
import os
import re
import select
import signal
import time
from dataclasses import dataclass, field
from typing import BinaryIO, Callable

import pexpect

from tcpwdist import marks
from tcpwdist.errors import (AttachTimeout, BpftraceFailed, BpftraceMissing, InterruptedEarly,
                             NoProbe, PermissionDenied)
from tcpwdist.host import INSTALL_HINT

# What bpftrace prints once its probes are attached, in every version:
# "Attached N probes" (0.24+, after attaching), the test hook's word
# (0.14+, after attaching, requested through the environment), and
# "Attaching N probes..." (up to 0.23, printed *before* attaching, so
# trusted only for versions without the hook, after a settling pause).
ATTACHED_RE = re.compile(rb"Attached \d+ probes?|__BPFTRACE_NOTIFY_PROBES_ATTACHED")
ATTACHING_RE = re.compile(rb"Attaching \d+ probes?\.\.\.")
NOTIFY_ENV = "__BPFTRACE_NOTIFY_PROBES_ATTACHED"

# Lines that say a probe could not be attached (the caller may try another).
_ATTACH_FAILED_RE = re.compile(
    rb"Error attaching probe|Unable to attach probe|Attachment failed|"
    rb"could not read traceable functions|Invalid probe type|"
    rb"[Tt]racepoint not found|[Pp]robe does not exist|No probes to attach|"
    rb"does not support|kfunc.*not supported|fentry.*not supported|"
    rb"Could not resolve|Can not access field|Unknown struct|BTF is required|"
    rb"No matches for|Probe has no valid attach points")
_PERMISSION_RE = re.compile(
    rb"only supports running as the root user|Operation not permitted|Permission denied")


@dataclass
class Timeouts:
    attach: float = 30.0  # spawn to attach notice (compiling can take seconds)
    settle: float = 0.5  # after "Attaching..." when no post-attach notice exists
    quiet: float = 3.0  # after an interrupt: silence that counts as "not stopping"
    stop: float = 30.0  # after the interrupt: the most to wait for EOF in all


@dataclass
class Outcome:
    """What a run of bpftrace left: its output and how it ended."""

    output: bytes
    exit_status: int | None
    signal_status: int | None
    escalations: list[str] = field(default_factory=list)  # what it took to stop it
    aborted: bool = False  # the user asked us to stop waiting for the dump
    stuck: int | None = None  # its pid, if it had not exited when tcpwdist stopped waiting


def stuck_message(pid: int) -> str:
    return (f"bpftrace (pid {pid}) has not exited {Session.GRACE:g} s after SIGKILL: it is "
            f"stuck in the kernel, and ends when the kernel lets it go "
            f"(ps -o pid,stat,wchan -p {pid})")


# A diagnostic with a source location ("stdin:1:1-19: ERROR: ...") is
# followed by the program's source line and a ~~~ underline: the reason
# is on the first line, the rest only quotes the program.
_LOCATED_RE = re.compile(r"^\S+:\d+:\d+(?:-\d+)?: ")
# Printed by bpftrace 0.17-0.27 on hosts where it then runs normally.
_HARMLESS = ("RLIMIT_MEMLOCK",)


def tail(output: bytes, lines: int = 4) -> tuple[str, ...]:
    """The last lines bpftrace said, without echoes, source quotes and
    harmless warnings: what explains a failure."""
    text = output.replace(b"\r\n", b"\n").decode("utf-8", "replace")
    kept: list[str] = []
    quote_follows = False
    for line in text.splitlines():
        s = line.strip()
        if not s or s == "^C" or set(s) == {"~"} or any(h in s for h in _HARMLESS):
            continue
        if quote_follows:
            quote_follows = False
            continue
        quote_follows = bool(_LOCATED_RE.match(s))
        kept.append(s)
    return tuple(kept[-lines:])


# The most one read takes before the feeds look at it again.
_READ_MOST = 1 << 20
# The pipe's capacity (the kernel's default is 64 KiB): a second's map
# dump waits in it, not in a blocked bpftrace, while tcpwdist is busy.
_PIPE_SIZE = 1 << 20


def _output_pipe() -> tuple[int, int]:
    """A pipe for bpftrace's output: (read end, non-blocking; write end)."""
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    try:
        fcntl.fcntl(read_end, fcntl.F_SETPIPE_SZ, _PIPE_SIZE)
    except OSError:  # above /proc/sys/fs/pipe-max-size for a user: the default will do
        pass
    return read_end, write_end


def _onto(parent: int, write_end: int) -> Callable[[], None]:
    """What the child does before exec: stdout and stderr onto the pipe.
    pexpect has closed the child's copy of every other descriptor by
    then, so the pipe is opened again through the parent's."""
    def child() -> None:
        fd = os.open(f"/proc/{parent}/fd/{write_end}", os.O_WRONLY)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
    return child


class Session:
    """One bpftrace process under a pty.

    ``stop_requested`` is polled while waiting, so a signal handler that
    sets a flag ends any wait within ``poll`` seconds.
    """

    # How often waits look at the stop flags: a signal handler only sets a
    # flag, and select() resumes after it, so this bounds Ctrl-C's latency.
    poll = 0.02

    def __init__(self, bpftrace: str, args: list[str], env: dict[str, str],
                 timeouts: Timeouts, raw_log: BinaryIO | None = None,
                 stop_requested: Callable[[], bool] = lambda: False,
                 abort_requested: Callable[[], bool] = lambda: False) -> None:
        self.timeouts = timeouts
        self.stop_requested = stop_requested
        self.abort_requested = abort_requested
        self._buffer = bytearray()  # what bpftrace printed and no feed took yet
        self._scanned: dict[str, int] = {}  # how far take_through looked, per mark
        self.eof = False
        self.stuck = False  # SIGKILL sent, and it had not exited when the wait ended
        self.escalations: list[str] = []  # what it took to stop bpftrace
        self.aborted = False  # the user asked us to stop waiting for the dump
        full_env = dict(os.environ)
        full_env.update(env)
        full_env[NOTIFY_ENV] = "1"
        full_env.setdefault("BPFTRACE_COLOR", "never")
        self._fd, write_end = _output_pipe()
        try:
            self.child = pexpect.spawn(bpftrace, args, env=full_env, echo=False,
                                       timeout=None, dimensions=(24, 200),
                                       preexec_fn=_onto(os.getpid(), write_end))
        except (pexpect.ExceptionPexpect, OSError) as exc:
            os.close(self._fd)
            raise BpftraceMissing(f"cannot run {bpftrace}: {exc}".splitlines()[0],
                                  hint=INSTALL_HINT) from None
        finally:
            os.close(write_end)  # bpftrace holds it now: EOF is when bpftrace ends
        self.raw_log = raw_log
        self.raw_failed: str | None = None  # why writing raw_log stopped, if it did

    # -- reading ---------------------------------------------------------

    @property
    def output(self) -> bytes:
        """What bpftrace printed that was not taken yet."""
        return bytes(self._buffer)

    def take_through(self, kind: str) -> bytes | None:
        """The output up to and including the last complete ``kind`` mark
        line (marks.py), taken off the buffer; None if none arrived.  A
        feed deals with what it takes, so a long run's memory stays flat
        (-w's file, written as output arrives, keeps everything)."""
        end = marks.last_end(self._buffer, kind, self._scanned.get(kind, 0))
        if end is None:
            # Next time look again only where a mark may still complete.
            self._scanned[kind] = max(0, len(self._buffer) - 64)
            return None
        taken = bytes(memoryview(self._buffer)[:end])
        del self._buffer[:end]
        self._scanned.clear()
        return taken

    def _read(self, timeout: float) -> bytes:
        """Whatever arrives within ``timeout`` (b"" if nothing; sets eof).

        Read until the pipe is empty: a 60,000-entry map printed once a
        second is 5 MB (BENCHMARKS.md)."""
        if self.eof:
            return b""
        fd = self._fd
        if not select.select([fd], [], [], timeout)[0]:
            return b""
        chunks: list[bytes] = []
        size = 0
        while size < _READ_MOST:
            try:
                chunk = os.read(fd, _PIPE_SIZE)
            except BlockingIOError:  # the fd is non-blocking: all read
                break
            if not chunk:
                self.eof = True
                break
            chunks.append(chunk)
            size += len(chunk)
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self._buffer += data
        if self.raw_log is not None and data:
            try:
                self.raw_log.write(data)
                self.raw_log.flush()
            except OSError as exc:  # a full disk: the file stops, tracing goes on
                self.raw_failed = exc.strerror or str(exc)
                self.raw_log = None
        return data

    # -- phases ----------------------------------------------------------

    def wait_attached(self, version_has_notice: bool) -> None:
        """Return once the probes are attached; raise if bpftrace ends first."""
        deadline = time.monotonic() + self.timeouts.attach
        settle_at: float | None = None
        seen = b""
        while True:
            if self.stop_requested():
                self.kill()
                raise InterruptedEarly("interrupted before the probes were attached",
                                       hint="nothing was traced")
            now = time.monotonic()
            if now > deadline:
                self.kill()
                raise AttachTimeout(
                    f"bpftrace did not attach its probes within {self.timeouts.attach:g} s",
                    hint="a loaded host can need longer: raise --attach-timeout",
                    details=tail(self.output))
            seen += self._read(self.poll)
            if ATTACHED_RE.search(seen):
                return
            if not version_has_notice and ATTACHING_RE.search(seen):
                settle_at = settle_at or now + self.timeouts.settle
                if now >= settle_at and self.child.isalive():
                    return
            if self.eof:
                self._raise_early_exit()

    def _raise_early_exit(self) -> None:
        self.reap()
        out = self.output
        details = tail(out)
        status = self.describe_status()
        if _PERMISSION_RE.search(out):
            raise PermissionDenied(f"bpftrace was not allowed to trace ({status})",
                                   hint="run tcpwdist as root", details=details)
        if _ATTACH_FAILED_RE.search(out):
            raise NoProbe(f"the probe could not be attached ({status})", details=details)
        raise BpftraceFailed(f"bpftrace exited before attaching its probes ({status})",
                             details=details)

    def trace(self, deadline: float | None, tick: Callable[[], None] | None = None) -> None:
        """Keep reading until asked to stop, the deadline, or bpftrace's end;
        ``tick`` is called between reads (at least every ``poll`` s)."""
        while not self.stop_requested() and not self.eof:
            if deadline is not None and time.monotonic() >= deadline:
                return
            self._read(self.poll)
            if tick is not None:
                tick()

    def stop(self, ack: bytes | None = None) -> None:
        """Interrupt bpftrace and read its dump to EOF.

        bpftrace dumps its maps on SIGINT.  If it prints nothing for
        ``quiet`` seconds the interrupt is sent again (0.17 was seen to
        miss one in about 85), then SIGTERM (which also dumps, from 0.9.3),
        then SIGKILL.  Output still arriving keeps the wait going, up to
        ``stop`` seconds in all.  ``ack``: the line the program's END probe
        begins with; output that goes on for ``quiet`` seconds without it
        is bpftrace still tracing (its once-a-second prints are no
        silence), and the next step is taken then too.
        """
        if self.eof:  # it ended by itself: just collect its status
            self.reap()
            return
        steps = [("interrupt sent again", signal.SIGINT), ("SIGTERM sent", signal.SIGTERM),
                 ("SIGKILL sent", signal.SIGKILL)]
        self._signal(signal.SIGINT)
        start = last_data = step_at = time.monotonic()
        heard, tail = ack is None, b""
        while not self.eof:
            if self.abort_requested():
                self.aborted = True
                self.kill()
                return
            data = self._read(self.poll)
            now = time.monotonic()
            if data:
                last_data = now
                if not heard and ack is not None:
                    tail = tail[-len(ack):] + data  # enough to find it across two reads
                    heard = ack in tail
            unheard = not heard and now - step_at >= self.timeouts.quiet
            if not unheard and (data or (now - last_data < self.timeouts.quiet
                                         and now - start < self.timeouts.stop)):
                continue
            if not steps:
                break
            what, sig = steps.pop(0)
            self.escalations.append(what)
            self._signal(sig)
            last_data = step_at = now
        self.reap()

    # -- process control ---------------------------------------------------

    def _signal(self, sig: int) -> None:
        try:
            self.child.kill(sig)
        except OSError:
            pass  # already gone

    def kill(self) -> None:
        """End bpftrace now (no dump wanted) and reap it."""
        if not self.stuck and self.child.isalive():
            self._signal(signal.SIGKILL)
        self.reap()

    # How long bpftrace may take to exit once it is told to (EOF seen, or
    # SIGKILL sent).  A process SIGKILL does not end within this is stuck
    # in the kernel (allocating a huge map, a probe's teardown): no wait
    # ends that, so tcpwdist says so and leaves (Outcome.stuck).
    GRACE = 2.0

    def reap(self) -> None:
        """Collect bpftrace's exit status.  After EOF it is exiting: poll for
        that (pexpect's close() would sleep a fixed 0.1 s or more, which is
        most of tcpwdist's stop latency), then close, forcing if need be."""
        if self.stuck:
            return
        deadline = time.monotonic() + self.GRACE
        while self.child.isalive() and time.monotonic() < deadline:
            time.sleep(0.002)
        self.child.delayafterclose = 0
        self.child.delayafterterminate = 0.05
        try:
            self.child.close(force=True)
        except pexpect.ExceptionPexpect:
            self.stuck = True  # SIGKILL sent again by close(), and still there
            return
        self._close_pipe()

    def _close_pipe(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
            self.eof = True

    def describe_status(self) -> str:
        if self.child.signalstatus is not None:
            return f"killed by signal {self.child.signalstatus}"
        return f"exit status {self.child.exitstatus}"

    def outcome(self) -> Outcome:
        return Outcome(self.output, self.child.exitstatus, self.child.signalstatus,
                       list(self.escalations), self.aborted,
                       self.child.pid if self.stuck else None)

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: object) -> None:
        # Whatever happened, no bpftrace is left running (unless it is
        # stuck in the kernel, which the run has said).
        if not self.stuck and self.child.isalive():
            self.kill()

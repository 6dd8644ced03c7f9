"""One exception family, and the exit codes it maps to.

Every failure a user can cause or meet is a :class:`TcpwdistError` whose
``exit_code`` says which case it is, so that scripts and fleet runs can tell
them apart.  Only ``cli`` turns these into ``tcpwdist: error: ...`` lines.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """The documented exit codes; README, man page and --help list them."""

    OK = 0
    INTERNAL = 1  # a bug in tcpwdist itself (the one case with a traceback hint)
    USAGE = 2
    NO_BPFTRACE = 3
    PERMISSION = 4
    NO_PROBE = 5
    BPFTRACE_FAILED = 6
    BAD_DUMP = 7
    INTERRUPTED_EARLY = 8
    OUTPUT_FAILED = 9


#: One line per code, in the words --help, README and the man page use.
EXIT_CODE_MEANINGS: dict[ExitCode, str] = {
    ExitCode.OK: "success: the report was printed",
    ExitCode.INTERNAL: "internal error in tcpwdist (a bug: please report it)",
    ExitCode.USAGE: "usage error (bad option or value)",
    ExitCode.NO_BPFTRACE: "bpftrace not found or not runnable",
    ExitCode.PERMISSION: "permission denied (not root)",
    ExitCode.NO_PROBE: "no probe could attach (kernel support, tracefs)",
    ExitCode.BPFTRACE_FAILED:
        "bpftrace failed (died, hung, ignored the interrupt, stuck after SIGKILL)",
    ExitCode.BAD_DUMP: "dump unreadable, incomplete, or without a TCP write map",
    ExitCode.INTERRUPTED_EARLY: "interrupted before tracing began",
    ExitCode.OUTPUT_FAILED: "the report could not be written to stdout (disk full, I/O error)",
}


class TcpwdistError(Exception):
    """Base of every error tcpwdist reports to a user.

    ``message`` says what happened; ``hint`` (optional) says what to do.
    ``details`` are extra lines (for example the last lines bpftrace
    printed) shown under the error line.
    """

    exit_code: ExitCode = ExitCode.INTERNAL

    def __init__(self, message: str, hint: str = "", details: tuple[str, ...] = ()):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = details

    def __str__(self) -> str:
        return f"{self.message}; {self.hint}" if self.hint else self.message


class UsageError(TcpwdistError):
    exit_code = ExitCode.USAGE


class BpftraceMissing(TcpwdistError):
    exit_code = ExitCode.NO_BPFTRACE


class PermissionDenied(TcpwdistError):
    exit_code = ExitCode.PERMISSION


class NoProbe(TcpwdistError):
    exit_code = ExitCode.NO_PROBE


class BpftraceFailed(TcpwdistError):
    exit_code = ExitCode.BPFTRACE_FAILED


class AttachTimeout(BpftraceFailed):
    """bpftrace neither attached nor failed in time: not a probe problem."""


class DumpError(TcpwdistError):
    """The input is not bpftrace output tcpwdist understands."""

    exit_code = ExitCode.BAD_DUMP

    def __init__(self, message: str, hint: str = "", line: int | None = None):
        if line is not None:
            message = f"line {line}: {message}"
        super().__init__(message, hint)
        self.line = line


class InterruptedEarly(TcpwdistError):
    exit_code = ExitCode.INTERRUPTED_EARLY


class OutputFailed(TcpwdistError):
    """stdout would not take the report (not a closed pipe: that is quiet)."""

    exit_code = ExitCode.OUTPUT_FAILED

"""stdout and stderr: the report, tcpwdist's messages, the progress line.

stdout carries only the report, so that it pipes; everything else goes
to stderr, one ``tcpwdist: ...`` line each.  Both survive a reader that
went away: ``| head`` (a closed pipe) ends the report quietly, and a
terminal that hung up (SIGHUP, EIO) silences the messages.  The streams
are looked up at each write, so tests can capture them.
"""

from __future__ import annotations

import errno
import os
import sys

from tcpwdist.errors import OutputFailed

PROG = "tcpwdist"


def _write_all(text: str) -> None:
    """All of ``text`` to stdout.  Straight to its fd, looping on short
    writes: with PYTHONUNBUFFERED set, Python's text layer makes one
    write(2) and drops what a signal cut short (seen: a report cut at 64
    KiB, exit 0, when the interrupt came while a pipe was full)."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a file (a test's capture)
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    sys.stdout.flush()  # what anything else put there comes first
    data = memoryview(text.encode(sys.stdout.encoding or "utf-8", "replace"))
    while data:
        data = data[os.write(fd, data):]


_GONE = (errno.EIO, errno.ENXIO)  # the terminal hung up


def stream_is_terminal(stream: object) -> bool:
    try:
        return os.isatty(stream.fileno())  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return False


class Console:
    def __init__(self) -> None:
        self.closed = False  # nobody reads stdout any more
        self._said: set[str] = set()
        self._progress_shown = False

    # -- stdout ------------------------------------------------------------

    def report(self, text: str) -> None:
        """Write report text to stdout, now (interval reports stream)."""
        if self.closed or not text:
            return
        try:
            _write_all(text)
        except BrokenPipeError:
            # Quietly, like `cat | head`.
            self._drop_stdout()
        except OSError as exc:
            self._drop_stdout()
            if exc.errno not in _GONE:
                raise OutputFailed(f"cannot write the report to stdout: {exc.strerror}",
                                   hint="free some space, or send the report elsewhere") from None

    def _drop_stdout(self) -> None:
        """Point stdout at /dev/null, so that Python's exit-time flush does
        not complain of what it could not write."""
        self.closed = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        except (OSError, ValueError, AttributeError):
            pass

    # -- stderr ------------------------------------------------------------

    def _err(self, text: str) -> None:
        try:
            sys.stderr.write(text)
            sys.stderr.flush()
        except OSError:
            pass  # the terminal went away (SIGHUP): nobody to tell

    def say(self, line: str) -> None:
        """One line on stderr, as ``tcpwdist: LINE`` (the progress line,
        if shown, is cleared first)."""
        self.clear_progress()
        self._err(f"{PROG}: {line}\n")

    def say_plain(self, line: str) -> None:
        """One line on stderr as it is ("Tracing ... Hit Ctrl-C to end.")."""
        self.clear_progress()
        self._err(f"{line}\n")

    def say_once(self, line: str) -> None:
        """Like say(), but a line already said is not said again."""
        if line not in self._said:
            self._said.add(line)
            self.say(line)

    def detail(self, line: str) -> None:
        """An indented line under an error: what bpftrace said, say."""
        self._err(f"  {line}\n")

    # -- the progress line ---------------------------------------------------

    def progress(self, line: str) -> None:
        """Rewrite the one-line progress display (stderr, a terminal)."""
        self._err("\r\x1b[K" + line)
        self._progress_shown = True

    def clear_progress(self) -> None:
        if self._progress_shown:
            self._progress_shown = False
            self._err("\r\x1b[K")

    def progress_wanted(self) -> bool:
        return stream_is_terminal(sys.stderr)

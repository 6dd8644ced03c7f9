"""The command's entry point: tiny, so that a Ctrl-C while Python is still
importing tcpwdist (about 0.2 s) ends quietly, like one a moment later,
instead of with a traceback or death by SIGINT."""

import signal
import sys

INTERRUPTED_EARLY = 8  # errors.ExitCode.INTERRUPTED_EARLY, before errors is imported


def _interrupted() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C changes nothing now
    try:
        sys.stderr.write("tcpwdist: interrupted before tracing began\n")
    except OSError:
        pass
    return INTERRUPTED_EARLY


def main() -> int:
    # While tcpwdist imports, an interrupt is only noted; then Python's
    # usual handler is back (the live run installs its own).
    seen: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: seen.append(signum))
    try:
        from tcpwdist import cli
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if seen:
        return _interrupted()
    try:
        return cli.main()
    except KeyboardInterrupt:
        return _interrupted()

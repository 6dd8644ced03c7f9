"""tcpwdist's command line: the parser, dispatch, and errors mapped to
exit codes.  The live run is :mod:`tcpwdist.live`, the -r run
:mod:`tcpwdist.readrun`; stdout and stderr are :mod:`tcpwdist.console`'s."""

from __future__ import annotations

import argparse
import signal
import sys
from dataclasses import replace
from typing import Sequence

from tcpwdist import __version__, host, live, options, program, shown
from tcpwdist.console import PROG, Console, stream_is_terminal
from tcpwdist.errors import (EXIT_CODE_MEANINGS, BpftraceMissing, ExitCode, NoProbe, TcpwdistError,
                             UsageError)

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
  tcpwdist -c nginx --small 1024 -o table -d 10   # nginx's writes under 1 KiB
  tcpwdist -v -d 1          # which probes were not used, and why
  tcpwdist --spliced -c nginx   # which of nginx's writes came from sendfile
  tcpwdist --connections -c redis-server -d 10   # which client gets which sizes
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
    p.add_argument("-o", "--output", choices=options.FORMATS, default="dist",
                   help="report format (default: dist)")
    p.add_argument("-s", "--sort", choices=options.SORTS, default="writes",
                   help="order of processes (default: writes, the busiest first)")
    p.add_argument("--top", metavar="N", type=_positive_int,
                   help="show only the first N processes")
    p.add_argument("--small", metavar="N", type=_small, default=options.SMALL,
                   help="summaries give the share of writes under N bytes (default: "
                        f"{options.SMALL}; rounded down to a power of two, a bucket edge)")
    p.add_argument("--group-by", choices=options.GROUPS, default="pid",
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
    p.add_argument("--spliced", action="store_true",
                   help="also count the writes made by sendfile/splice, and those calls' "
                        "sizes (a map lookup per write: 20-40 ns, about 15%% more BPF "
                        "time)")
    p.add_argument("--connections", action="store_true",
                   help="also one histogram per connection (local and remote address "
                        "and port, IPv4 and IPv6): a second, bigger map update per "
                        "write, 270-340 ns, about 2.5x the BPF time")
    p.add_argument("--probe", choices=("auto",) + program.PROBES, default="auto",
                   help="what to trace (default: auto, the first that works of "
                        + ", ".join(program.PROBES) + ")")
    p.add_argument("-w", "--write-raw", metavar="FILE",
                   help="write bpftrace's raw output to a new FILE as it arrives "
                        "(never over an existing file or through a symlink; "
                        "tcpwdist -r FILE gives the same report later)")
    p.add_argument("--map", metavar="NAME",
                   help="with -r: the hist map to report (default: @, or the only "
                        "map keyed by pid, comm; also [comm, pid] or [comm] keys)")
    p.add_argument("--bpftrace", metavar="PATH", default="bpftrace",
                   help="the bpftrace to run (default: bpftrace from PATH)")
    p.add_argument("--max-keys", metavar="N", type=_map_size, default=65536,
                   help="bpftrace map size, in (pid, comm, bucket) entries, "
                        "for each map (--connections': (connection, bucket)) "
                        "(default: 65536; at most 4194304)")
    p.add_argument("--attach-timeout", metavar="SECONDS", type=_positive_float, default=30.0,
                   help="how long to wait for the probes to attach (default: 30)")
    p.add_argument("--stop-timeout", metavar="SECONDS", type=_positive_float, default=30.0,
                   help="how long to wait for bpftrace's report after the interrupt, "
                        "escalating to SIGTERM and SIGKILL (default: 30)")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="say which probes were not used and why, and what the "
                        "probe's write size means")
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


SMALL_LIMIT = 1 << 40  # no write is a terabyte


def _small(text: str) -> int:
    value = _positive_int(text)
    if value > SMALL_LIMIT:
        raise argparse.ArgumentTypeError(f"{value} bytes is more than any write ({SMALL_LIMIT})")
    return value


# bpftrace allocates the whole map when it loads the program, in kernel
# memory, and a load of tens of millions of entries can keep it busy in
# the kernel past every timeout: 4M entries (a few hundred MB) at most.
MAX_KEYS_LIMIT = 1 << 22


def _map_size(text: str) -> int:
    value = _positive_int(text)
    if value > MAX_KEYS_LIMIT:
        raise argparse.ArgumentTypeError(
            f"{value} is more than tcpwdist lets bpftrace allocate ({MAX_KEYS_LIMIT})")
    return value


# --------------------------------------------------------------------------
# From the namespace to the frozen values the modules take.


def program_options(args: argparse.Namespace) -> program.ProgramOptions:
    return program.ProgramOptions(pids=tuple(args.pid), comms=tuple(args.comm),
                                  ports=tuple(args.port), cgroup=args.cgroup,
                                  interval=args.interval, bytes=args.bytes,
                                  spliced=args.spliced, connections=args.connections)


def report_options(args: argparse.Namespace) -> options.Options:
    return options.Options(args.output, args.sort, args.top, args.group_by, args.timestamp,
                           report_width(), options.small_edge(args.small))


def report_width() -> int:
    """The terminal's width when stdout is one (COLUMNS first, as
    shutil reads it), else 80: a file or a pipe gets the same report
    wherever it is made."""
    if not stream_is_terminal(sys.stdout):
        return options.WIDTH
    import shutil  # here: start-up time (BENCHMARKS.md)
    return max(40, shutil.get_terminal_size((options.WIDTH, 24)).columns)


def live_request(args: argparse.Namespace) -> live.Request:
    return live.Request(program_options(args), args.probe, args.bpftrace, args.count,
                        args.duration, args.write_raw, args.max_keys, args.attach_timeout,
                        args.stop_timeout, report_options(args), args.verbose)


# --------------------------------------------------------------------------
# -r: reading dumps (and tcpwdist's own JSON), one or several.


def run_read(args: argparse.Namespace, console: Console) -> int:
    if args.duration or args.write_raw or args.interval:
        raise UsageError("-d, -w and interval are for tracing; -r reads a dump")
    tracing_only = [flag for flag, given in (
        ("-P", args.port), ("--cgroup", args.cgroup), ("--bytes", args.bytes),
        ("--spliced", args.spliced), ("--connections", args.connections),
        ("--probe", args.probe != "auto")) if given]
    if tracing_only:
        verb = "chooses" if len(tracing_only) == 1 else "choose"
        raise UsageError(f"{', '.join(tracing_only)} {verb} what bpftrace traces; "
                         "a dump cannot be filtered by them afterwards",
                         hint="with -r, -p PID and -c NAME filter the dump's processes")
    for comm in args.comm:
        program.validate_comm(comm)
    from tcpwdist import readrun  # only -r needs it (start-up time: BENCHMARKS.md)
    return readrun.run(readrun.Request(tuple(args.read), args.map, tuple(args.pid),
                                       tuple(args.comm), report_options(args)), console)


# --------------------------------------------------------------------------
# --program


def show_program(args: argparse.Namespace, console: Console) -> int:
    opts = program_options(args)
    program.validate(opts)
    if opts.cgroup is not None:
        opts = replace(opts, cgroup=host.check_cgroup(opts.cgroup))
    try:
        facts = host.gather(args.bpftrace, args.probe)
    except BpftraceMissing:
        facts = host.Facts(host.kernel(), host.Bpftrace(args.bpftrace))
        console.say("note: bpftrace not found; showing the program in the newest "
                    "bpftrace's spelling")
    plan = program.plan(args.probe, facts.kernel, facts.bpftrace)
    if args.verbose:
        for probe, why in plan.skipped:
            console.say(f"not using {probe}: {why}")
    if not plan.probes:
        raise NoProbe("no probe can work on this host",
                      details=tuple(f"{p}: {why}" for p, why in plan.skipped))
    console.report(program.generate(replace(opts, probe=plan.probes[0],
                                            version=facts.bpftrace.version)))
    return ExitCode.OK


# --------------------------------------------------------------------------


def run(args: argparse.Namespace, console: Console) -> int:
    edge = options.small_edge(args.small)
    if edge != args.small and not args.program:
        console.say(f"note: --small {args.small} is not a bucket edge: the summaries count the "
                    f"writes under {edge} bytes (the bucket [{edge}, {2 * edge}) holds sizes on "
                    f"both sides of {args.small})")
    if args.program:
        return show_program(args, console)
    if args.read is not None:
        return run_read(args, console)
    if args.sort == "bytes" and not args.bytes:
        raise UsageError("--sort bytes needs the byte counts: add --bytes (a second map)")
    return live.run(live_request(args), console)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console()
    try:
        return int(run(args, console))
    except TcpwdistError as exc:
        console.say(f"error: {exc}")
        for line in exc.details:
            console.detail(shown.safe_text(line.encode("utf-8", "surrogateescape")))
        if args.traceback:
            import traceback
            traceback.print_exc()
        return int(exc.exit_code)
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C changes nothing now
        console.say("interrupted")
        return int(ExitCode.INTERRUPTED_EARLY)
    except Exception as exc:  # a bug: say so, and how to report it
        if args.traceback:
            import traceback
            traceback.print_exc()
        else:
            console.say(f"internal error: {type(exc).__name__}: {exc} "
                        "(a bug; rerun with --traceback and report it)")
        return int(ExitCode.INTERNAL)

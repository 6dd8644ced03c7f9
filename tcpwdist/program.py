"""Options -> the bpftrace program tcpwdist runs (pure: no I/O).

The canonical program, tcpwdist.d's heir, is one line::

    kprobe:tcp_sendmsg { @[pid, comm] = hist(arg2); }

Every variant keeps its map exactly that shape, ``@[pid, comm] = hist(size)``,
so that one parser reads them all; only the probe, the expression for the
size and an optional predicate change.  Values from the user (pids, comm
names) are validated here, before they reach the program text, and a comm
is written as an escaped string literal, so no input can change the
program's shape.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from tcpwdist import marks
from tcpwdist.errors import AttachTimeout, BpftraceFailed, NoProbe, TcpwdistError, UsageError

if TYPE_CHECKING:
    from tcpwdist.host import Bpftrace, Kernel

Version = tuple[int, int, int]

#: The order ``--probe auto`` tries them in: the cheapest that measures
#: the size asked for first.
PROBES = ("kprobe", "fentry", "rawtracepoint", "tracepoint")
RAWTRACEPOINT_SINCE = (0, 21, 0)

#: What each probe measures, for --help, README and the man page.
PROBE_MEANINGS = {
    "kprobe": "kprobe:tcp_sendmsg, size = bytes the application asked to write (arg2), "
              "every call, failed ones included",
    "fentry": "fentry:tcp_sendmsg (kfunc before bpftrace 0.20), size = args.size, "
              "the same value; needs BTF and BPF trampolines",
    "rawtracepoint": "rawtracepoint:sock_send_length (bpftrace 0.21+: the tracepoint "
                     "without its perf-event path), size = bytes tcp_sendmsg accepted; "
                     "TCP only, failed sends counted apart (bpftrace 0.23+); needs BTF",
    "tracepoint": "tracepoint:sock:sock_send_length, size = bytes tcp_sendmsg accepted "
                  "(its return value); TCP only, failed sends counted apart (bpftrace 0.23+)",
}

#: What the size of a write is, per probe (the JSON report's "size").
#: Measured with a non-blocking writer (tests/test_live.py): a send()
#: refused with EAGAIN is a write of its full size to kprobe and fentry,
#: and not a write to the tracepoints; one taken in part counts what was
#: asked, or what was taken.
SIZE_MEANINGS = {"kprobe": "asked", "fentry": "asked", "rawtracepoint": "accepted",
                 "tracepoint": "accepted"}

HEADER = """\
#!/usr/bin/env bpftrace
/*
 * tcpwdist	Simple TCP write distribution by process.
 *		For Linux, uses bpftrace and eBPF.
 *
 * Which processes write to TCP, and in what sizes: a power-of-two
 * histogram of the size of every application write (tcp_sendmsg), keyed
 * by PID and command name.  These are application writes, not packets:
 * sizes far above the MTU are normal.
 *
 * USAGE: tcpwdist.bt	(as root; Ctrl-C prints the histograms)
 *	  or the tcpwdist command, which adds probe fallback, filters and
 *	  reports: tcpwdist --help
 *
 * It sees writes that reach tcp_sendmsg: not sendfile/splice pages
 * (tcp_sendpage on older kernels) nor TLS records written by kTLS
 * offload.  A kernel without kprobes needs another probe:
 * tcpwdist --probe tracepoint --program prints that program.
 *
 * Copyright 2026 the tcpwdist authors.
 * Licensed under the Apache License, Version 2.0 (the "License")
 *
 * The Linux heir of tcpwdist.d from the DTraceToolkit, by Brendan Gregg.
 *
 * 28-Nov-2026	tcpwdist authors	Created this.
 */

"""

NEWEST: Version = (99, 0, 0)
OLDEST: Version = (0, 0, 0)  # what is true of some version: wants_info(..., OLDEST)

# bpftrace's comm is 16 bytes with the NUL: a longer name can never match.
COMM_MAX = 15
PID_MAX = 4194304  # the kernel's PID_MAX_LIMIT


@dataclass(frozen=True)
class ProgramOptions:
    probe: str = "kprobe"
    version: Version = NEWEST  # the bpftrace that will run it
    pids: tuple[int, ...] = ()
    comms: tuple[str, ...] = ()
    ports: tuple[int, ...] = ()  # local or remote TCP port
    cgroup: str | None = None  # cgroup v2 directory
    interval: float | None = None  # seconds between print(@)s
    bytes: bool = False  # also sum the bytes: @bytes[pid, comm] = sum(size)
    # print(@) once a second (the live run): the progress line's numbers,
    # and what was seen if bpftrace dies before its final dump.
    snapshots: bool = False
    # Count the sends that failed, @failed[pid, comm] = count(), where the
    # probe sees tcp_sendmsg's return value (the tracepoints): the test of
    # it the predicate made moves into the body, one branch as before.
    failed: bool = True
    # --spliced: count the writes made inside sendfile(2)/splice(2), and
    # those calls' sizes (a per-thread flag the write probe looks up: a
    # map lookup per write, so opt-in; BENCHMARKS.md).
    spliced: bool = False
    # --connections: also one histogram per connection, @conn[pid, comm,
    # laddr, lport, raddr, rport] (a second, bigger map update per write:
    # opt-in; BENCHMARKS.md).  The process map stays as it is, so its
    # counts hold even when the bigger map fills.
    connections: bool = False


def parse_version(text: str) -> Version | None:
    """``"bpftrace v0.17.0"`` (or ``"v0.23.2-1"``) -> ``(0, 17, 0)``."""
    m = re.search(r"v?(\d+)\.(\d+)(?:\.(\d+))?", text)
    if m is None:
        return None
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


def validate_pid(value: int) -> int:
    if not 0 < value <= PID_MAX:
        raise UsageError(f"PID {value} is out of range", hint=f"a PID is 1 to {PID_MAX}")
    return value


def validate_comm(value: str) -> str:
    raw = value.encode("utf-8", "surrogateescape")
    if not raw:
        raise UsageError("an empty command name matches nothing", hint="give -c NAME")
    if len(raw) > COMM_MAX:
        raise UsageError(
            f"command name {value!r} is {len(raw)} bytes; the kernel keeps {COMM_MAX}",
            hint=f"use its first {COMM_MAX} bytes: "
                 f"-c {raw[:COMM_MAX].decode('utf-8', 'replace')!r}")
    if any(b < 0x20 or b == 0x7F for b in raw):
        raise UsageError(f"command name {value!r} holds control characters",
                         hint="control characters cannot be matched from the command line")
    return value


def validate_port(value: int) -> int:
    if not 0 < value < 65536:
        raise UsageError(f"port {value} is out of range", hint="a TCP port is 1 to 65535")
    return value


def validate_path(value: str) -> str:
    if not value.startswith("/") or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise UsageError(f"cgroup path {value!r} must be absolute, without control characters")
    return value


def validate_interval(value: float) -> float:
    if not 0.1 <= value <= 86400 or value != value:
        raise UsageError(f"interval {value:g} is out of range", hint="give 0.1 to 86400 seconds")
    return value


def string_literal(value: str) -> str:
    """A bpftrace string literal for ``value``: backslash and quote escaped."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True)
class _Probe:
    point: str  # attach point
    size: str  # expression for the write size
    sock: str  # expression for the struct sock *
    needs: tuple[str, ...] = ()  # predicates the probe itself needs
    ok: str | None = None  # the test that the send succeeded, where the probe sees it


def _probe(probe: str, version: Version) -> _Probe:
    if probe == "kprobe":
        return _Probe("kprobe:tcp_sendmsg", "arg2", "((struct sock *)arg0)")
    if probe == "fentry":
        # 0.17 aborts on "fentry:"; "kfunc:" is its name before 0.20.
        if version < (0, 20, 0):
            return _Probe("kfunc:tcp_sendmsg", "args->size", "args->sk")
        return _Probe("fentry:tcp_sendmsg", "args.size", "args.sk")
    if probe == "rawtracepoint":
        # The raw arguments of sock_send_length: (struct sock *sk, int ret, int flags).
        if version < RAWTRACEPOINT_SINCE:
            raise UsageError("--probe rawtracepoint needs bpftrace 0.21 or later",
                             hint="use --probe tracepoint")
        return _Probe("rawtracepoint:sock_send_length", "(int32)arg1", "((struct sock *)arg0)",
                      ("((struct sock *)arg0)->sk_protocol == 6",), "(int32)arg1 >= 0")
    if probe == "tracepoint":
        a = _args(version)
        return _Probe("tracepoint:sock:sock_send_length", f"{a}ret", f"((struct sock *){a}sk)",
                      (f"{a}protocol == 6",), f"{a}ret >= 0")
    raise UsageError(f"unknown probe {probe!r}", hint="choose one of " + ", ".join(PROBES))


# Counting the failed sends moves the predicate's success test into an
# if/else: free from bpftrace 0.23 (BPF ns per event, BENCHMARKS.md: 160
# vs 158 on 0.23.2, 156 vs 152 on 0.27.1), but 0.17 compiles it into
# about 24 ns more per write (270 vs 246): there it is left out.
FAILED_SINCE = (0, 23, 0)


def _args(version: Version) -> str:
    """How a tracepoint's arguments are reached: ``args`` is a pointer up
    to bpftrace 0.18 and a struct from 0.19."""
    return "args->" if version < (0, 19, 0) else "args."


def counts_failed(probe: str, version: Version = NEWEST) -> bool:
    """Does ``probe``'s program count the sends that failed?  Where it sees
    tcp_sendmsg's return value (the tracepoints), with a bpftrace for
    which that costs nothing measurable per write."""
    return probe in ("rawtracepoint", "tracepoint") and version >= FAILED_SINCE


def attach_point(probe: str, version: Version) -> str:
    """The probe as bpftrace names it (``kprobe:tcp_sendmsg``)."""
    return _probe(probe, version).point


def _port_test(sock: str, port: int) -> str:
    # skc_num is the local port in host order, skc_dport the remote one in
    # network order: swap the constant here, once, not per event.
    swapped = ((port & 0xFF) << 8) | (port >> 8)
    return (f"{sock}->__sk_common.skc_num == {port} || "
            f"{sock}->__sk_common.skc_dport == {swapped}")


def _any_of(terms: list[str]) -> str:
    return terms[0] if len(terms) == 1 else "(" + " || ".join(terms) + ")"


def validate(opts: ProgramOptions) -> None:
    """UsageError for any value that may not reach the program text."""
    for pid in opts.pids:
        validate_pid(pid)
    for comm in opts.comms:
        validate_comm(comm)
    for port in opts.ports:
        validate_port(port)
    if opts.cgroup is not None:
        validate_path(opts.cgroup)
    if opts.interval is not None:
        validate_interval(opts.interval)


def generate(opts: ProgramOptions = ProgramOptions(), header: bool = True) -> str:
    """The program text for ``opts``, with the header comment (what
    --program prints and scripts/tcpwdist.bt is) or without it (what the
    live run passes with -e: a short command line in ps, and bpftrace's
    messages name the program's real line).

    Filters become one predicate, cheapest test first (pid and cgroup are
    registers, comm a 16-byte compare, ports two loads through the sock).
    """
    probe = _probe(opts.probe, opts.version)
    preds = list(probe.needs)
    # counts_failed holds only for probes that see the result (an ok test).
    counts = opts.failed and counts_failed(opts.probe, opts.version)
    if probe.ok is not None and not counts:
        preds.append(probe.ok)
    preds += _process_filters(opts)
    if opts.ports:
        preds.append("(" + " || ".join(_port_test(probe.sock, validate_port(p))
                                       for p in opts.ports) + ")")
    predicate = f" /{' && '.join(preds)}/" if preds else ""
    return (f"{HEADER if header else ''}{_splice_probes(opts)}{probe.point}{predicate} "
            f"{{ {_action(probe, opts, counts)} }}\n"
            + _periodic(replace(opts, failed=counts)))


SPLICE_CALLS = ("sendfile64", "splice")


def _splice_probes(opts: ProgramOptions) -> str:
    """--spliced: a thread inside sendfile(2) or splice(2) is flagged
    (@splicing[tid] = 1); a write it makes sets the flag to 2, and the
    call's exit then records its size.  The flag is set to 0, not deleted:
    delete's spelling and warnings differ between bpftrace versions.  The
    port filter is the write probe's: a call is recorded only if a write
    it made was traced."""
    if not opts.spliced:
        return ""
    a = _args(opts.version)
    preds = _process_filters(opts)
    enter = ",".join(f"tracepoint:syscalls:sys_enter_{c}" for c in SPLICE_CALLS)
    text = enter + (f" /{' && '.join(preds)}/" if preds else "") + " { @splicing[tid] = 1; }\n"
    # One probe per exit: each reads its own tracepoint's ret.
    for c in SPLICE_CALLS:
        text += (f"tracepoint:syscalls:sys_exit_{c} /@splicing[tid]/ {{ if (@splicing[tid] == 2) "
                 f"{{ @splicecalls[pid, comm] = hist({a}ret); }} @splicing[tid] = 0; }}\n")
    return text


def _process_filters(opts: ProgramOptions) -> list[str]:
    """The predicates of -p, --cgroup and -c: what a probe without a
    socket can test."""
    preds = []
    if opts.pids:
        preds.append(_any_of([f"pid == {validate_pid(p)}" for p in opts.pids]))
    if opts.cgroup is not None:
        preds.append(f"cgroup == cgroupid({string_literal(validate_path(opts.cgroup))})")
    if opts.comms:
        preds.append(_any_of([f"comm == {string_literal(validate_comm(c))}" for c in opts.comms]))
    return preds


def _action(probe: _Probe, opts: ProgramOptions, counts_failed: bool) -> str:
    """The per-write statements.  The canonical map stays exactly as it
    is; --bytes adds a second one (a second map update per write: see
    BENCHMARKS.md for its cost); failed sends go to @failed; --spliced
    counts the writes made inside sendfile/splice; --connections keys a
    second histogram by the socket's addresses."""
    extra = f" @bytes[pid, comm] = sum({probe.size});" if opts.bytes else ""
    if opts.connections:
        extra += _connection(probe)
    if opts.spliced:
        extra += (" if (@splicing[tid]) { @spliced[pid, comm] = count(); "
                  "@splicing[tid] = 2; }")
    action = f"@[pid, comm] = hist({probe.size});{extra}"
    if counts_failed:
        action = f"if ({probe.ok}) {{ {action} }} else {{ @failed[pid, comm] = count(); }}"
    return action


CONNECTION_MAP = "@conn"
AF_INET, AF_INET6 = 2, 10


def _connection(probe: _Probe) -> str:
    """--connections: ``@conn[pid, comm, laddr, lport, raddr, rport] =
    hist(size)``, as tcplife reads a socket: the addresses through ntop()
    (bpftrace formats them in user space, when it prints), one key shape
    for IPv4 and IPv6, the remote port (network order in the socket)
    swapped here so that the dump reads right for anyone."""
    c = "$sk->__sk_common."
    rport = f"(({c}skc_dport >> 8) | (({c}skc_dport & 0xff) << 8))"

    def update(family: int, laddr: str, raddr: str) -> str:
        return (f"{CONNECTION_MAP}[pid, comm, ntop({family}, {c}{laddr}), {c}skc_num, "
                f"ntop({family}, {c}{raddr}), {rport}] = hist({probe.size});")

    v6 = update(AF_INET6, "skc_v6_rcv_saddr.in6_u.u6_addr8", "skc_v6_daddr.in6_u.u6_addr8")
    v4 = update(AF_INET, "skc_rcv_saddr", "skc_daddr")
    return f" $sk = {probe.sock}; if ({c}skc_family == {AF_INET6}) {{ {v6} }} else {{ {v4} }}"


def _periodic(opts: ProgramOptions) -> str:
    """Periodic dumps of the cumulative map, never cleared (marks.py):
    nothing runs per write, and a write between two prints is in the
    next one, not lost.  The mark after each tells the reader what it
    was; the END probe's, that what follows is the final dump, even a
    mark that lands inside it."""
    also = ((" print(@bytes);" if opts.bytes else "") + (" print(@failed);" if opts.failed else "")
            + (" print(@spliced); print(@splicecalls);" if opts.spliced else "")
            + (f" print({CONNECTION_MAP});" if opts.connections else ""))
    if opts.interval is not None:
        ms = round(validate_interval(opts.interval) * 1000)
        every, kind = (f"s:{ms // 1000}" if ms % 1000 == 0 else f"ms:{ms}"), marks.TOTAL
    elif opts.snapshots:
        every, kind = "s:1", marks.SNAPSHOT
    else:
        return ""
    return (f"interval:{every} {{ print(@);{also} {marks.statement(kind, opts.version)} }}\n"
            f"END {{ {marks.statement(marks.FINAL, opts.version)} }}\n")


def environment(version: Version, max_keys: int) -> dict[str, str]:
    """Environment for bpftrace: its map-size limit, under the name this
    version reads (a hist map takes one entry per (pid, comm, bucket))."""
    name = "BPFTRACE_MAP_KEYS_MAX" if version < (0, 20, 0) else "BPFTRACE_MAX_MAP_KEYS"
    return {name: str(max_keys)}


MOUNT_TRACEFS = "mount -t tracefs nodev /sys/kernel/tracing"
TRACEABLE_SINCE = (0, 24, 0)  # fentry and raw tracepoints resolved through tracefs
TRACEPOINT_BTF_SINCE = (0, 25, 0)  # tracepoint args need BTF


@dataclass(frozen=True)
class Plan:
    """The probes to try, in order, and those the facts ruled out, with why."""

    probes: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...] = ()


def wants_info(requested: str, kernel: Kernel, version: Version) -> bool:
    """Is ``bpftrace --info`` worth a bpftrace start?  Only when auto would
    otherwise try fentry on a guess: no kprobes, BTF present, and a
    bpftrace whose --info still tells (before 0.24)."""
    return (requested == "auto" and kernel.kprobes is False and kernel.btf
            and version < TRACEABLE_SINCE)


_NO_AFL = "tracefs's available_filter_functions cannot be read"


def _kprobe_out(k: Kernel, b: Bpftrace) -> str | None:
    if k.kprobes is False:
        return "this kernel has no kprobes (no kprobe PMU, no kprobe_events in tracefs)"
    return None


def _btf_out(probe: str, k: Kernel, b: Bpftrace) -> str | None:
    """fentry and the raw tracepoint: BTF, and from 0.24 a tracefs that lists
    the traceable functions."""
    if not k.btf:
        return "no kernel BTF (/sys/kernel/btf/vmlinux)"
    if b.version >= TRACEABLE_SINCE and k.traceable is False:
        return f"{_NO_AFL}, and bpftrace 0.24+ needs it to attach {probe}"
    return None


def _fentry_out(k: Kernel, b: Bpftrace) -> str | None:
    if b.fentry is False:
        return "bpftrace --info reports no kfunc/fentry support on this kernel"
    return _btf_out("fentry", k, b)


def _rawtracepoint_out(k: Kernel, b: Bpftrace) -> str | None:
    if b.version < RAWTRACEPOINT_SINCE:
        return "needs bpftrace 0.21 or later"
    return _btf_out("rawtracepoint", k, b) or _tracepoint_missing(k)


def _tracepoint_missing(k: Kernel) -> str | None:
    if k.tracepoint is False:
        return "this kernel has no sock:sock_send_length tracepoint (it came in 6.3)"
    return None


def _tracepoint_out(k: Kernel, b: Bpftrace) -> str | None:
    if k.tracefs is None:
        return f"tracefs is not mounted (fix: {MOUNT_TRACEFS})"
    if b.version >= TRACEPOINT_BTF_SINCE and not k.btf:
        return "no kernel BTF, which bpftrace 0.25+ needs for tracepoint arguments"
    return _tracepoint_missing(k)


#: Why the facts rule a probe out (None: it may work), one check per probe.
_RULED_OUT = {"kprobe": _kprobe_out, "fentry": _fentry_out,
              "rawtracepoint": _rawtracepoint_out, "tracepoint": _tracepoint_out}


def plan(requested: str, kernel: Kernel, bpftrace: Bpftrace) -> Plan:
    """Which probes to try.  An explicit probe is always tried (bpftrace's
    own error is the best explanation); auto skips what the facts rule out."""
    if requested != "auto":
        if requested not in PROBES:
            raise UsageError(f"unknown probe {requested!r}",
                             hint="choose auto or one of " + ", ".join(PROBES))
        return Plan((requested,))
    why = {p: _RULED_OUT[p](kernel, bpftrace) for p in PROBES}
    return Plan(tuple(p for p in PROBES if why[p] is None),
                tuple((p, w) for p, w in why.items() if w is not None))


def falls_back(requested: str, error: TcpwdistError) -> bool:
    """May the next probe be tried after ``error`` starting this one?  A
    probe that cannot attach, always; any other failure to start, with
    auto (a newer bpftrace may reject one spelling); never after a hang."""
    if isinstance(error, AttachTimeout):
        return False
    return isinstance(error, NoProbe) or (requested == "auto"
                                          and isinstance(error, BpftraceFailed))

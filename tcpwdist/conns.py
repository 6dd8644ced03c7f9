"""--connections: the histogram of each connection a process wrote to.

The program keeps a second map beside the process map (program.py)::

    @conn[pid, comm, laddr, lport, raddr, rport] = hist(size)

bpftrace prints its keys as ``1234, curl, 127.0.0.1, 40378, ::1, 8080``
(text: parts joined by ", ") or ``1234,curl,127.0.0.1,40378,::1,8080``
(JSON).  A comm may hold commas and spaces, an address never does: a key
is read from the right, four parts, and what is left is the (pid, comm)
key that dump.pid_comm reads.  The addresses are checked to be addresses
(ntop prints nothing else), so no text of a dump someone made up reaches
a report as one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from tcpwdist import dump
from tcpwdist.dump import Bucket

MAP = "@conn"


@dataclass(frozen=True)
class Connection:
    laddr: str
    lport: int
    raddr: str
    rport: int
    buckets: tuple[Bucket, ...]

    @property
    def writes(self) -> int:
        return sum(b.count for b in self.buckets)

    @property
    def ends(self) -> tuple[str, int, str, int]:
        return self.laddr, self.lport, self.raddr, self.rport

    @property
    def local(self) -> str:
        return endpoint(self.laddr, self.lport)

    @property
    def remote(self) -> str:
        return endpoint(self.raddr, self.rport)


def endpoint(addr: str, port: int) -> str:
    """``127.0.0.1:80``, ``[::1]:80``: how ss and URLs write them."""
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


ConnKey = tuple[int, bytes, str, int, str, int]


def _address(text: str) -> str | None:
    """The address as bpftrace's ntop printed it (inet_ntop's spelling:
    ``::ffff:10.1.2.3``, which Python would write ``::ffff:a01:203``),
    if it is one."""
    import ipaddress  # only a dump with connections needs it (start-up time)

    try:
        ipaddress.ip_address(text)
    except ValueError:
        return None
    return text


def _port(text: str) -> int | None:
    return int(text) if text.isdigit() and int(text) < 65536 else None


def split_key(key: str | None, sep: str) -> ConnKey | None:
    """(pid, comm, laddr, lport, raddr, rport) of a printed @conn key; None
    if the key has another shape."""
    if key is None:
        return None
    parts = key.rsplit(sep, 4)
    if len(parts) != 5:
        return None
    pc = dump.pid_comm(parts[0], sep)
    laddr, lport, raddr, rport = (_address(parts[1]), _port(parts[2]), _address(parts[3]),
                                  _port(parts[4]))
    if pc is None or laddr is None or lport is None or raddr is None or rport is None:
        return None
    return pc[0], pc[1], laddr, lport, raddr, rport


ByProcess = dict[tuple[int, bytes], tuple[Connection, ...]]


def by_process(snap: dump.Snapshot, counted: bool = False) -> ByProcess | None:
    """Each process's connections in one snapshot, busiest first; {} when
    the program kept them (``counted``) and the dump has no @conn (bpftrace
    prints nothing of an empty map), None when it did not."""
    m = snap.get(MAP)
    if m is None:
        return {} if counted else None
    found: dict[tuple[int, bytes], list[Connection]] = {}
    for e in m.entries:
        k = split_key(e.key, m.sep)
        if k is not None and isinstance(e, dump.HistEntry):
            found.setdefault((k[0], k[1]), []).append(Connection(*k[2:], e.buckets))
    return {pc: ordered(cs) for pc, cs in found.items()}


def ordered(conns: Iterable[Connection]) -> tuple[Connection, ...]:
    """Busiest first; ties by address, so that output is reproducible."""
    return tuple(sorted(conns, key=lambda c: (-c.writes, c.ends)))


def merge(a: Iterable[Connection], b: Iterable[Connection]) -> tuple[Connection, ...]:
    """The connections of two rows merged: the same four ends add up."""
    from tcpwdist.report import add_buckets  # report builds on this module

    out: dict[tuple[str, int, str, int], Connection] = {}
    for c in (*a, *b):
        old = out.get(c.ends)
        out[c.ends] = c if old is None else Connection(
            *c.ends, add_buckets(old.buckets, c.buckets))
    return ordered(out.values())


def entries(snap: dump.Snapshot) -> int:
    """The (key, bucket) entries of @conn: what fills its map."""
    m = snap.get(MAP)
    if m is None:
        return 0
    return sum(1 for e in m.entries if isinstance(e, dump.HistEntry)
               for b in e.buckets if b.count)


def writes(snap: dump.Snapshot) -> int:
    m = snap.get(MAP)
    return 0 if m is None else sum(e.total for e in m.entries if isinstance(e, dump.HistEntry))

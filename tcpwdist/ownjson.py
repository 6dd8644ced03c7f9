"""tcpwdist's own JSON reports, read back (-r of a report; merging hosts'
reports into one): each document's meta and rows, its types checked."""

from __future__ import annotations

import json
import re
from typing import Any, Iterable

from tcpwdist import conns
from tcpwdist.conns import Connection
from tcpwdist.dump import Bucket, ProcessHist
from tcpwdist.errors import DumpError
from tcpwdist.report import Meta, Row


def bucket_from_json(b: dict) -> Bucket:
    lo, top = b.get("value"), b.get("max")
    return Bucket(lo, None if top is None else top + 1, int(b["count"]))


def _typed(value: Any, kinds: tuple[type, ...], what: str) -> Any:
    """``value`` if it is of ``kinds`` (bool is no int here), else TypeError."""
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        raise TypeError(what)
    return value


_NONE = type(None)
# The fields read back, and the JSON types they may have.
_TypeMap = dict[str, tuple[type, ...]]
_META_TYPES: _TypeMap = {
    "host": (str, _NONE), "kernel": (str, _NONE), "bpftrace": (str, _NONE),
    "probe": (str, _NONE), "size": (str, _NONE), "start": (str, _NONE),
    "duration": (int, float, _NONE), "time": (str, _NONE), "filters": (dict, _NONE)}
_PROCESS_TYPES: _TypeMap = {
    "pid": (int, _NONE), "comm": (str,), "comm_hex": (str,), "cmd": (str, _NONE),
    "cmd_source": (str, _NONE), "failed": (int, _NONE), "spliced": (int, _NONE),
    "host": (str, _NONE), "bytes": (int, _NONE), "members": (int,), "buckets": (list,),
    "connections": (list, _NONE)}
_CONNECTION_TYPES: _TypeMap = {"laddr": (str,), "lport": (int,), "raddr": (str,), "rport": (int,),
                               "buckets": (list,)}
_BUCKET_TYPES: _TypeMap = {"value": (int, _NONE), "max": (int, _NONE), "count": (int,)}


def _check_types(doc: Any) -> None:
    """TypeError unless ``doc`` has the shape of tcpwdist's own JSON."""
    _typed(doc, (dict,), "document")
    for key, kinds in _META_TYPES.items():
        _typed(doc.get(key), kinds, key)
    for key, value in (doc.get("filters") or {}).items():
        _typed(value, (str, _NONE) if key == "cgroup" else (list,), "filters")
    for p in _typed(doc["processes"], (list,), "processes"):
        _typed(p, (dict,), "process")
        for key, kinds in _PROCESS_TYPES.items():
            if key in p:
                _typed(p[key], kinds, key)
        _check_buckets(p["buckets"])
        for c in p.get("connections") or ():
            _typed(c, (dict,), "connection")
            for key, kinds in _CONNECTION_TYPES.items():
                _typed(c[key], kinds, key)
            if conns.split_key(f"0,-,{c['laddr']},{c['lport']},{c['raddr']},{c['rport']}",
                               ",") is None:
                raise TypeError("connection")
            _check_buckets(c["buckets"])


def _check_buckets(buckets: list) -> None:
    for b in buckets:
        _typed(b, (dict,), "bucket")
        for key, kinds in _BUCKET_TYPES.items():
            if key in b:
                _typed(b[key], kinds, key)
        if b.get("count", 0) < 0:
            raise TypeError("count")


def rows_from_json(doc: dict) -> list[Row]:
    """Rows back from one of tcpwdist's own JSON documents."""
    _check_types(doc)
    rows = []
    for p in doc["processes"]:
        comm = bytes.fromhex(p["comm_hex"]) if "comm_hex" in p else p["comm"].encode()
        hist = ProcessHist(p.get("pid"), comm, tuple(bucket_from_json(b) for b in p["buckets"]))
        cmd = p.get("cmd")
        calls = (p.get("splice_calls") or {}).get("buckets", [])
        found = p.get("connections")
        rows.append(Row(hist, None if cmd is None or cmd == p.get("comm") else cmd.encode(),
                        p.get("host") or doc.get("host"), p.get("bytes"), p.get("members", 1),
                        cmd_source=p.get("cmd_source"), failed=p.get("failed"),
                        spliced=p.get("spliced"),
                        splice_calls=tuple(bucket_from_json(b) for b in calls),
                        connections=None if found is None else conns.ordered(
                            Connection(c["laddr"], c["lport"], c["raddr"], c["rport"],
                                       tuple(bucket_from_json(b) for b in c["buckets"]))
                            for c in found)))
    return rows


OWN_JSON_RE = re.compile(rb'^\s*\{"tcpwdist":')


def is_own_json(data: bytes) -> bool:
    return OWN_JSON_RE.match(data) is not None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not in tcpwdist's JSON")


OwnReport = tuple[Meta, list[Row], "str | None"]


def read_own_json(lines: Iterable[bytes], source: str) -> list[OwnReport]:
    """(meta, rows, time) of each document, one per line."""
    reports = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line, parse_constant=_no_constant)
            rows = rows_from_json(doc)
            meta = Meta(**{k: doc[k] for k in ("host", "kernel", "bpftrace", "probe", "size",
                                               "start", "duration", "filters") if k in doc})
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
            raise DumpError(f"{source}: not a tcpwdist JSON document", line=n) from None
        reports.append((meta, rows, doc.get("time")))
    return reports

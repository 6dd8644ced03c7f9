"""Read bpftrace's JSON dumps (``bpftrace -f json``, one record a line).

Records are read one by one with the standard library into the data of
:mod:`tcpwdist.dump`.  Each era's quirks are undone: bytes >= 0x80 written
``\\uffffffXX`` (every version), keys escaped twice (0.22-0.23), spaces
stripped from keys and big integers as strings (0.24+), the 2G bucket
bug (before 0.20), and 0.27.1's counts written in hex after such a key.
"""

from __future__ import annotations

import json
import re
from typing import NamedTuple

from tcpwdist import marks
from tcpwdist.dump import (_ANSI, LOG_WORDS, MAP_FULL, Bucket, Builder, Dump, Entry, HistEntry,
                           ValueEntry, _shown, lost_count, skipped_note)
from tcpwdist.errors import DumpError

# bpftrace's log lines, which a terminal mixes into a JSON dump, with a
# located diagnostic's location line and the ~~~ under its source line.
_LOG_RE = re.compile(rf"{_ANSI}(?:{LOG_WORDS}|stdin:|~)")
_FFFF_RE = re.compile(r"\uffff[fF]{2}([0-9a-fA-F]{2})")
_DOUBLE_ESCAPED_RE = re.compile(r'\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})')


def _json_key(raw: str, twice: bool) -> str:
    """A JSON map key as the text form would print it: undo 0.22-0.23's
    second escaping, and turn the ``\\uffffffXX`` spelling of bytes >= 0x80
    (up to 0.23) back into those bytes (as surrogate escapes)."""
    if twice:
        try:
            raw = json.loads(f'"{raw}"')
        except ValueError:
            pass  # not escaped after all: keep it as it is
    key = _FFFF_RE.sub(lambda m: chr(0xDC00 + int(m.group(1), 16)), raw)
    if _LONE_SURROGATE_RE.search(key):
        raise DumpError(f"a key holds a lone UTF-16 surrogate: {json.dumps(key)[:40]}",
                        hint="bpftrace writes such bytes as \\uffffffXX, never this")
    return key


# What stays a surrogate after the above is a byte 0x80-0xff (U+DC80 to
# U+DCFF, as surrogateescape decodes them); anything else is no byte.
_LONE_SURROGATE_RE = re.compile("[\ud800-\udc7f\udd00-\udfff]")


_INT32_MIN = -(1 << 31)


def _integer(value: object, what: str, least: int | None = None) -> int:
    """A JSON integer (0.24+ writes the big ones as strings), or DumpError."""
    if isinstance(value, str) and re.fullmatch(r"-?\d{1,20}", value):
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or \
            (least is not None and value < least):
        raise DumpError(f"a bucket's {what} is {json.dumps(value)[:20]}, "
                        f"not {'a count' if least == 0 else 'an integer'}")
    return value


def _json_bucket(b: dict) -> Bucket:
    lo = _integer(b["min"], '"min"') if "min" in b else None
    hi = _integer(b["max"], '"max"') + 1 if "max" in b else None
    if lo == _INT32_MIN and hi == 1:
        # bpftrace < 0.20 printed the [2G, 4G) bucket as min -2^31, max 0.
        lo, hi = 1 << 31, 1 << 32
    return Bucket(lo, hi, _integer(b["count"], '"count"', least=0))


def _no_constants(name: str) -> object:
    raise ValueError(f"{name} is not a number bpftrace writes")


def _unique(pairs: list[tuple[str, object]]) -> dict:
    """A JSON object, refusing a key given twice (json keeps the last)."""
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"the key {json.dumps(key)[:40]} appears twice in one object")
        out[key] = value
    return out


def _loads(line: str) -> object:
    """json.loads for bpftrace records: no NaN/Infinity, no duplicate keys.
    Raises json.JSONDecodeError for text that is not (or not all) JSON,
    ValueError for JSON that no bpftrace writes."""
    try:
        return json.loads(line, parse_constant=_no_constants, object_pairs_hook=_unique)
    except RecursionError:
        raise ValueError("JSON nested too deep for a bpftrace record") from None


class _Records(NamedTuple):
    """The JSON records of a dump, with what the lines around them said."""

    records: list[tuple[int, dict]]  # (line number, record)
    cut: str | None
    dropped: int  # "Map full" lines between the records
    lost: int
    skipped: list[tuple[int, str]]  # (line number, line) of lines that are neither


# bpftrace 0.27.1 (measured; maybe other 0.24+ versions) leaves its JSON
# writer in hex after escaping a byte >= 0x80 as \uffffffXX: in that hist
# record, every bucket "count" from that key on is hex, without a prefix
# ("count": a for 10); "min", "max" and other records stay decimal.
_FFFF_KEY = "\\uffffff"
_COUNT_RE = re.compile(r'("count": ?)([0-9a-f]+)\b')


def _undo_hex_counts(line: str, n: int, newer: bool) -> str:
    """The record with its hex counts made decimal, where that is certain.
    A hex digit a-f proves the writer was in hex.  Without one, counts of
    one digit read the same either way; longer ones from bpftrace 0.24+
    cannot be told apart, and are refused rather than guessed."""
    at = line.find(_FFFF_KEY)
    if at < 0 or '"type": "hist"' not in line[:40]:
        return line
    head, tail = line[:at], line[at:]
    counts = [m.group(2) for m in _COUNT_RE.finditer(tail)]
    if any(not c.isdigit() for c in counts):
        return head + _COUNT_RE.sub(lambda m: m.group(1) + str(int(m.group(2), 16)), tail)
    if newer and any(len(c) > 1 for c in counts):
        raise DumpError("bpftrace 0.27's JSON writes the counts after a key with a non-ASCII "
                        "byte in hex, and these cannot be told from decimal", line=n,
                        hint="capture the dump in text output (without -f json)")
    return line


def _json_records(text: str) -> _Records:
    records: list[tuple[int, dict]] = []
    newer = '"type": "attached_probes", "count"' in text[:16384]  # 0.24+
    cut: str | None = None
    dropped = 0
    lost = 0
    skipped: list[tuple[int, str]] = []
    lines = text.split("\n")
    for n, line in enumerate(lines, 1):
        s = line.strip()
        if not s.startswith("{"):  # blank lines, log lines, ^C
            dropped += MAP_FULL in s
            lost += lost_count(s)
            if s.startswith("@"):
                raise DumpError("a text map line in a JSON dump: text and JSON output mixed "
                                f"in one input ('{_shown(s[:40])}')", line=n,
                                hint="give each bpftrace run's output as its own -r input")
            if s and not _LOG_RE.match(s):
                skipped.append((n, s))
            continue
        try:
            rec = _loads(_undo_hex_counts(s, n, newer))
        except json.JSONDecodeError:
            if n == len(lines) or all(not x.strip() for x in lines[n:]):
                cut = f"the last record (line {n}, {len(s)} bytes)"
                continue
            raise DumpError("a line starts like JSON but is not valid JSON", line=n,
                            hint="is this file damaged? bpftrace -f json writes one record a line")
        except ValueError as exc:  # valid JSON, but not what bpftrace writes
            raise DumpError(f"not a bpftrace JSON record: {str(exc)[:80]}", line=n) from None
        if not isinstance(rec, dict) or "type" not in rec:
            raise DumpError("JSON record without a \"type\"", line=n)
        records.append((n, rec))
    return _Records(records, cut, dropped, lost, skipped)


def _json_era(records: list[tuple[int, dict]]) -> str | None:
    """Which era wrote the keys: 0.24+ adds "count" to attached_probes and
    strips spaces from keys; 0.22-0.23 escape key strings twice."""
    era = None
    for _, rec in records:
        if rec["type"] == "attached_probes":
            era = ">=0.24" if "count" in rec else "<=0.23"
    if era == ">=0.24":
        return era
    keys = (k for _, rec in records if rec["type"] in _MAP_TYPES
            and isinstance(rec.get("data"), dict)
            for m in rec["data"].values() if isinstance(m, dict) for k in m)
    return "0.22-0.23" if any(_DOUBLE_ESCAPED_RE.search(k) for k in keys) else era


_MAP_TYPES = ("hist", "map", "stats")


def _lost_events(rec: dict, n: int) -> int:
    """N of a lost_events record: "count" (0.24+) or data.events."""
    data = rec.get("data")
    value = rec.get("count", data.get("events", 0) if isinstance(data, dict) else None)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise DumpError("a lost_events record without a count of events", line=n)
    return value


def _json_time(builder: Builder, data: str) -> None:
    m = marks.LINE_RE.match(data)
    if m is not None:
        builder.mark(m["kind"], m["stamp"])
    else:
        builder.mark(None, data.strip())


def parse_json(text: str) -> Dump:
    found = _json_records(text)
    era = _json_era(found.records)
    twice = era == "0.22-0.23"
    builder = Builder(",")
    dropped, lost = found.dropped, found.lost
    for n, rec in found.records:
        typ, data = rec["type"], rec.get("data")
        if typ in _MAP_TYPES and isinstance(data, dict):
            for name, value in data.items():
                try:
                    builder.add_map(name, _json_entries(typ, value, twice))
                except DumpError as exc:
                    raise DumpError(f"map {name}: {exc.message}", line=n) from None
                except (KeyError, TypeError, ValueError, AttributeError):
                    raise DumpError(f"unexpected shape of map {name} in a {typ} record",
                                    line=n) from None
        elif typ == "time" and isinstance(data, str):
            _json_time(builder, data)
        elif typ == "lost_events":
            lost += _lost_events(rec, n)
        elif typ == "helper_error" and (MAP_FULL in str(rec.get("msg", ""))
                                        or rec.get("helper") == "map_update_elem"):
            dropped += 1
    builder.flush()
    return Dump(tuple(builder.snapshots), "json", recognised=bool(found.records),
                notes=_notes(found, era), cut=found.cut, map_full=dropped > 0, dropped=dropped,
                lost_events=lost, era=era)


def _notes(found: _Records, era: str | None) -> tuple[str, ...]:
    notes = []
    if found.skipped:
        n, line = found.skipped[0]
        notes.append(skipped_note(len(found.skipped), n, line, "a JSON record"))
    if era == ">=0.24":
        notes.append("bpftrace >= 0.24 strips spaces from JSON map keys: "
                     "comms that held spaces are shown without them")
    return tuple(notes)


def _json_entries(typ: str, value: object, twice: bool) -> list[Entry]:
    if typ == "hist":
        if isinstance(value, list):  # keyless: "@h": [buckets]
            return [HistEntry(None, tuple(_json_bucket(b) for b in value))]
        if not isinstance(value, dict):
            raise TypeError("a hist map is a list of buckets or an object of them")
        return [HistEntry(_json_key(k, twice), tuple(_json_bucket(b) for b in v))
                for k, v in value.items()]
    if isinstance(value, dict) and not (typ == "stats" and "count" in value):
        return [ValueEntry(_json_key(k, twice), json.dumps(v)) for k, v in value.items()]
    return [ValueEntry(None, json.dumps(value))]

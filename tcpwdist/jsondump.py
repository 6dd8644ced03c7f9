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
from typing import Callable, Iterable, Iterator

from tcpwdist import marks
from tcpwdist.dump import (_ANSI, LOG_WORDS, MAP_FULL, Bucket, Builder, Dump, Entry, HistEntry,
                           Piece, Snapshot, ValueEntry, _shown, lost_count, skipped_note)
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


class _Keys:
    """How the dump's keys are read back.  bpftrace 0.22-0.23 escaped a key
    holding ", \\ or a control byte twice: such a key still holds a JSON
    escape after the first decoding, and is decoded again.  Deciding key by
    key gives what deciding once for the whole dump would (a key without
    an escape left decodes to itself), so the reader need not see every
    key before the first; from 0.24 (attached_probes has "count") keys are
    escaped once."""

    def __init__(self, newer: bool) -> None:
        self.newer = newer
        self.twice = False  # a key was escaped twice: the dump is 0.22-0.23's

    def __call__(self, raw: str) -> str:
        twice = not self.newer and _DOUBLE_ESCAPED_RE.search(raw) is not None
        self.twice = self.twice or twice
        return _json_key(raw, twice)

    @property
    def era(self) -> str | None:
        return ">=0.24" if self.newer else "0.22-0.23" if self.twice else None


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


class _Tally:
    """What the lines around the records said."""

    def __init__(self) -> None:
        self.records = self.dropped = self.lost = self.skipped = 0
        self.first_skipped: tuple[int, str] | None = None  # (line number, line)
        self.bad: tuple[int, str] | None = None  # a line like JSON that is not: cut, if last

    def other(self, n: int, s: str) -> None:
        """A line that is no record: a blank line, a log line, the ^C."""
        self.dropped += MAP_FULL in s
        self.lost += lost_count(s)
        if s.startswith("@"):
            raise DumpError("a text map line in a JSON dump: text and JSON output mixed "
                            f"in one input ('{_shown(s[:40])}')", line=n,
                            hint="give each bpftrace run's output as its own -r input")
        if s and not _LOG_RE.match(s):
            self.skipped += 1
            if self.first_skipped is None:
                self.first_skipped = (n, s)

    def notes(self, era: str | None) -> tuple[str, ...]:
        notes = []
        if self.first_skipped is not None:
            notes.append(skipped_note(self.skipped, *self.first_skipped, "a JSON record"))
        if era == ">=0.24":
            notes.append("bpftrace >= 0.24 strips spaces from JSON map keys: "
                         "comms that held spaces are shown without them")
        return tuple(notes)


def _lines(stream: Iterable[Piece]) -> Iterator[tuple[int, str]]:
    for piece in stream:
        yield from enumerate(piece.text.split("\n"), piece.line)


def read_json(stream: Iterable[Piece], head: str, sink: Callable[[Snapshot], None]) -> Dump:
    """Read a JSON dump record by record (dump.read)."""
    keys = _Keys('"type": "attached_probes", "count"' in head)  # 0.24+
    tally = _Tally()
    builder = Builder(",", sink)
    for n, line in _lines(stream):
        s = line.strip()
        if tally.bad is not None and s:
            raise DumpError("a line starts like JSON but is not valid JSON", line=tally.bad[0],
                            hint="is this file damaged? bpftrace -f json writes one record a line")
        if not s.startswith("{"):  # blank lines, log lines, ^C
            tally.other(n, s)
            continue
        try:
            rec = _loads(_undo_hex_counts(s, n, keys.newer))
        except json.JSONDecodeError:
            tally.bad = (n, s)  # the dump's last line, cut short, unless a line follows
            continue
        except ValueError as exc:  # valid JSON, but not what bpftrace writes
            raise DumpError(f"not a bpftrace JSON record: {str(exc)[:80]}", line=n) from None
        if not isinstance(rec, dict) or "type" not in rec:
            raise DumpError("JSON record without a \"type\"", line=n)
        tally.records += 1
        _take(rec, n, builder, keys, tally)
    builder.flush()
    cut = None if tally.bad is None else \
        f"the last record (line {tally.bad[0]}, {len(tally.bad[1])} bytes)"
    return Dump((), "json", recognised=tally.records > 0, notes=tally.notes(keys.era), cut=cut,
                map_full=tally.dropped > 0, dropped=tally.dropped, lost_events=tally.lost,
                era=keys.era)


def _take(rec: dict, n: int, builder: Builder, keys: _Keys, tally: _Tally) -> None:
    """Put one record where it goes."""
    typ, data = rec["type"], rec.get("data")
    if typ in _MAP_TYPES and isinstance(data, dict):
        for name, value in data.items():
            try:
                builder.add_map(name, _json_entries(typ, value, keys))
            except DumpError as exc:
                raise DumpError(f"map {name}: {exc.message}", line=n) from None
            except (KeyError, TypeError, ValueError, AttributeError):
                raise DumpError(f"unexpected shape of map {name} in a {typ} record",
                                line=n) from None
    elif typ == "time" and isinstance(data, str):
        _json_time(builder, data)
    elif typ == "attached_probes":
        keys.newer = keys.newer or "count" in rec
    elif typ == "lost_events":
        tally.lost += _lost_events(rec, n)
    elif typ == "helper_error" and (MAP_FULL in str(rec.get("msg", ""))
                                    or rec.get("helper") == "map_update_elem"):
        tally.dropped += 1


def _json_entries(typ: str, value: object, key: Callable[[str], str]) -> list[Entry]:
    if typ == "hist":
        if isinstance(value, list):  # keyless: "@h": [buckets]
            return [HistEntry(None, tuple(_json_bucket(b) for b in value))]
        if not isinstance(value, dict):
            raise TypeError("a hist map is a list of buckets or an object of them")
        return [HistEntry(key(k), tuple(_json_bucket(b) for b in v))
                for k, v in value.items()]
    if isinstance(value, dict) and not (typ == "stats" and "count" in value):
        return [ValueEntry(key(k), json.dumps(v)) for k, v in value.items()]
    return [ValueEntry(None, json.dumps(value))]

"""The baseline for the parser benchmark: a plain regular-expression reader
of the same text dump, producing the same JSON report shape.

It knows only the common case (one-line headers, no damage, no eras): the
least a parser must do, so tcpwdist's time is compared with a floor.
"""

import json
import re
import sys

HEADER = re.compile(r"^@\[(-?\d+), (.*)\]: ?$")
ROW = re.compile(r"^(\(\.\.\., [^)]*\)|\[[^\]]*[\])])\s*(\d+) \|@* *\|$")
UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50,
         "E": 1 << 60}


def num(text):
    m = re.fullmatch(r"(-?\d+)([KMGTPE]?)", text)
    return int(m.group(1)) * UNITS[m.group(2)]


def bounds(label):
    if label.startswith("("):
        return None, 0
    inner = label[1:-1]
    if label.endswith("]"):
        v = num(inner)
        return v, v + 1
    lo, hi = inner.split(", ")
    return num(lo), None if hi == "..." else num(hi)


def main(path):
    procs = []
    cur = None
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            line = line.rstrip("\n")
            m = ROW.match(line)
            if m and cur is not None:
                lo, hi = bounds(m.group(1))
                cur["buckets"].append({"value": lo, "max": None if hi is None else hi - 1,
                                       "count": int(m.group(2))})
                continue
            m = HEADER.match(line)
            if m:
                cur = {"pid": int(m.group(1)), "comm": m.group(2), "buckets": []}
                procs.append(cur)
    for p in procs:
        p["writes"] = sum(b["count"] for b in p["buckets"])
    procs.sort(key=lambda p: (-p["writes"], p["pid"]))
    sys.stdout.write(json.dumps({"processes": procs}, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])

"""Write a synthetic bpftrace 0.17-style text dump with N bucket rows.

Rows are rendered exactly as bpftrace renders them (label in 16 columns,
count in 8, a 52-column bar), so the parser does the work it does on a
real dump of that size.  Usage: gendump.py ROWS > FILE
"""

import random
import sys


def label(i: int) -> str:
    def f(v: int) -> str:
        for s, u in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
            if v >= u and v % u == 0:
                return f"{v // u}{s}"
        return str(v)
    if i == 0:
        return "[0]"
    if i == 1:
        return "[1]"
    lo = 1 << (i - 1)
    return f"[{f(lo)}, {f(lo * 2)})"


def render(rows: int, seed: int = 1) -> str:
    rnd = random.Random(seed)
    out = ["Attaching 1 probe...\n", "\n", "\n"]
    pid = 1000
    left = rows
    while left > 0:
        n = min(left, 20)
        counts = [rnd.randint(0, 10_000) for _ in range(n)]
        top = max(counts) or 1
        out.append(f"@[{pid}, worker-{pid % 97}]: \n")
        for i, c in enumerate(counts):
            bar = "@" * int(c / top * 52)
            out.append(f"{label(i):<16}{c:>8} |{bar:<52}|\n")
        out.append("\n")
        pid += 1
        left -= n
    return "".join(out)


if __name__ == "__main__":
    sys.stdout.write(render(int(sys.argv[1])))

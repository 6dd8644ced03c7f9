"""Write a synthetic bpftrace 0.17-style text dump with N bucket rows,
or a long capture of tcpwdist's program (as `tcpwdist -w` writes it).

Rows are rendered exactly as bpftrace renders them (label in 16 columns,
count in 8, a 52-column bar), so the parser does the work it does on a
real dump of that size.

    gendump.py ROWS > FILE
    gendump.py --capture KEYS SNAPSHOTS > FILE

A capture is SNAPSHOTS once-a-second dumps of the cumulative map (KEYS
processes, every count growing), each closed by tcpwdist's snapshot
mark, then the final dump; each process's final histogram is
``final_counts(pid, SNAPSHOTS)``.
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


# The buckets of a capture's processes: [1] to [512, 1K), every third
# one counted (the empty ones between, as bpftrace prints them).
CAPTURE_LABELS = ("[1]", "[2, 4)", "[4, 8)", "[8, 16)", "[16, 32)", "[32, 64)", "[64, 128)",
                  "[128, 256)", "[256, 512)", "[512, 1K)")
CAPTURE_LOWS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


def final_counts(pid: int, snapshots: int) -> list[int]:
    """A capture's process ``pid``: its count per CAPTURE_LABELS bucket at
    the end (after ``snapshots`` snapshots)."""
    return [0 if i % 3 else (pid % 7 + 1) * (snapshots + 1) + i for i in range(len(CAPTURE_LABELS))]


def _capture_dump(keys: int, step: int, total: int) -> str:
    out = []
    for pid in range(1000, 1000 + keys):
        final = final_counts(pid, total)
        counts = [c * (step + 1) // (total + 1) for c in final]
        top = max(counts) or 1
        out.append(f"@[{pid}, worker-{pid % 97}]: \n")
        for lab, c in zip(CAPTURE_LABELS, counts):
            out.append(f"{lab:<16}{c:>8} |{'@' * int(c / top * 52):<52}|\n")
        out.append("\n")
    return "".join(out)


def capture(keys: int, snapshots: int):
    """The capture, piece by piece (one dump each): it is never held whole."""
    yield "Attaching 1 probe...\n\n\n"
    for step in range(snapshots):
        t = 36000 + step
        yield _capture_dump(keys, step, snapshots) + \
            f"tcpwdist-snapshot {t // 3600:02}:{t // 60 % 60:02}:{t % 60:02}.000000\n"
    yield "\n\n" + _capture_dump(keys, snapshots, snapshots)


if __name__ == "__main__":
    if sys.argv[1] == "--capture":
        for piece in capture(int(sys.argv[2]), int(sys.argv[3])):
            sys.stdout.write(piece)
    else:
        sys.stdout.write(render(int(sys.argv[1])))

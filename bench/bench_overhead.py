#!/usr/bin/env python3
"""What tracing costs: write rate under each tracer, BPF time per event,
start and stop latency, tcpwdist's own memory.  Needs root and bpftrace.

    python3 bench/bench_overhead.py [--quick] [--rounds N] [--seconds S]

(a) writes/s of bench/loadgen (C, loopback TCP, writer and reader pinned
    to separate cores, writer on each core in turn) untraced, under
    tcpwdist, under bpftrace running the same program by hand, under an
    empty program on the same probe, and under strace; each tracer is
    started once per round and the modes alternate round by round;
    medians with min-max.
(b) BPF run time per event, from bpf_stats (kernel.bpf_stats_enabled),
    read from the bpftrace process's program fdinfo.
(c) time from start to attached, and from the interrupt to the report,
    for tcpwdist and bare bpftrace, with maps of 1, 300 and 3000 entries.
(d) tcpwdist's own peak RSS (VmHWM), bpftrace not included.

--quick is the CI mode: one size, one round, short runs, no conclusions.
Results are printed and written to bench/results/overhead.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
ROOT = HERE.parent
WORKLOAD = ROOT / "tests" / "workload.py"
NOTIFY = "__BPFTRACE_NOTIFY_PROBES_ATTACHED"


def build_loadgen(tmp: Path) -> Path:
    exe = tmp / "loadgen"
    subprocess.run(["gcc", "-O2", "-o", str(exe), str(HERE / "loadgen.c")], check=True)
    return exe


def tcpwdist_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "tcpwdist", *args]


def program_text(extra: tuple[str, ...] = ()) -> str:
    """The program tcpwdist runs on this host (its probe choice), without
    the header comment: what bare bpftrace is given."""
    out = subprocess.run(tcpwdist_cmd("--program", *extra), capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout
    return out.split("*/", 1)[1].strip() + "\n"


def empty_program(program: str) -> str:
    return program.split(" ", 1)[0].split("/")[0].strip() + " { }\n"


class Tracer:
    """A tracer running in the background until stop()."""

    def __init__(self, mode: str, program: str, extra: tuple[str, ...] = ()) -> None:
        self.mode = mode
        self.t0 = time.monotonic()
        env = dict(os.environ, **{NOTIFY: "1"})
        if mode == "tcpwdist":
            self.proc = subprocess.Popen(tcpwdist_cmd("-o", "json", *extra), cwd=ROOT,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            marker = b"Hit Ctrl-C"
        else:
            text = program if mode == "bpftrace" else empty_program(program)
            self.proc = subprocess.Popen(["bpftrace", "-e", text], stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, env=env)
            marker = NOTIFY.encode()
        while True:
            line = self.proc.stderr.readline()
            if not line:
                raise SystemExit(f"{mode} ended before attaching")
            if marker in line:
                break
        self.attached = time.monotonic() - self.t0
        self.peak_rss = 0

    def poll_rss(self) -> None:
        try:
            status = Path(f"/proc/{self.proc.pid}/status").read_text()
        except OSError:
            return
        m = re.search(r"VmHWM:\s+(\d+) kB", status)
        if m:
            self.peak_rss = max(self.peak_rss, int(m.group(1)))

    def stop(self) -> tuple[float, float, bytes]:
        """Interrupt; seconds until the report is out on stdout (tcpwdist:
        its JSON line ends; bpftrace: its stdout closes, after the dump),
        and until the process is gone."""
        self.poll_rss()
        t = time.monotonic()
        self.proc.send_signal(signal.SIGINT)
        out = b""
        report = None
        while True:  # read stdout to EOF while polling memory
            chunk = os.read(self.proc.stdout.fileno(), 1 << 16)
            if not chunk:
                break
            out += chunk
            if report is None and self.mode == "tcpwdist" and out.endswith(b"\n"):
                report = time.monotonic() - t
            self.poll_rss()
        closed = time.monotonic() - t
        self.proc.wait()
        return report if report is not None else closed, time.monotonic() - t, out


def loadgen(exe: Path, size: int, seconds: float, wcpu: int, strace: bool = False) -> float:
    cmd = [str(exe), str(size), str(seconds), str(wcpu), str(1 - wcpu), "tw-bench"]
    if strace:
        cmd = ["strace", "-f", "-o", "/dev/null", "-e", "trace=write,sendto,sendmsg", *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return float(out.split()[0])


def stats(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "n": len(values)}


def rates(exe: Path, program: str, sizes: list[int], cpus: list[int], rounds: int,
          seconds: float, modes: list[str]) -> dict:
    """(a): {mode: {size: {cpu: stats}}}, modes alternating round by round."""
    raw: dict = {m: {s: {c: [] for c in cpus} for s in sizes} for m in modes}
    for r in range(rounds):
        for mode in modes:
            tracer = Tracer(mode, program) if mode in ("tcpwdist", "bpftrace", "empty") else None
            for size in sizes:
                for cpu in cpus:
                    raw[mode][size][cpu].append(
                        loadgen(exe, size, seconds, cpu, strace=mode == "strace"))
            if tracer is not None:
                tracer.stop()
        print(f"  round {r + 1}/{rounds} done", file=sys.stderr)
    return {m: {s: {c: stats(v) for c, v in per.items()} for s, per in sizes_.items()}
            for m, sizes_ in raw.items()}


def bpf_ns_per_event(exe: Path, program: str, seconds: float, extra: tuple = ()) -> dict:
    """(b): run_time_ns / run_cnt of each tracer's BPF program."""
    sysctl = Path("/proc/sys/kernel/bpf_stats_enabled")
    old = sysctl.read_text().strip()
    sysctl.write_text("1")
    result = {}
    try:
        for mode in ("tcpwdist", "bpftrace", "empty"):
            tracer = Tracer(mode, program, extra)
            pid = tracer.proc.pid
            if mode == "tcpwdist":  # its bpftrace child holds the program
                pid = int(Path(f"/proc/{pid}/task/{pid}/children").read_text().split()[0])
            loadgen(exe, 64, seconds, 1)
            runs = cnt = 0
            for fdinfo in Path(f"/proc/{pid}/fdinfo").iterdir():
                text = fdinfo.read_text()
                if "prog_type" in text and "run_time_ns" in text:
                    runs += int(re.search(r"run_time_ns:\s+(\d+)", text).group(1))
                    cnt += int(re.search(r"run_cnt:\s+(\d+)", text).group(1))
            tracer.stop()
            result[mode] = {"ns_per_event": runs / cnt if cnt else None, "events": cnt}
    finally:
        sysctl.write_text(old)
    return result


def latency(keys_list: list[int], rounds: int) -> dict:
    """(c) and (d): attach and stop times, tcpwdist's peak RSS."""
    sizes = ",".join(str(1 << i) for i in range(15))  # 15 buckets a process
    program = program_text()
    out: dict = {}
    for keys in keys_list:
        procs, writes = (1, "64") if keys == 1 else (keys // 15, sizes)
        for mode in ("tcpwdist", "bpftrace"):
            att, stop, gone, rss = [], [], [], []
            for _ in range(rounds):
                tracer = Tracer(mode, program)
                subprocess.run([sys.executable, str(WORKLOAD), "--comm", "tw-keys", "--writes",
                                writes, "--procs", str(procs)], check=True,
                               stdout=subprocess.DEVNULL)
                took, exited, report = tracer.stop()
                assert report, f"{mode} printed no report"
                att.append(tracer.attached)
                stop.append(took)
                gone.append(exited)
                rss.append(tracer.peak_rss)
            out.setdefault(str(keys), {})[mode] = {
                "attach_s": stats(att), "report_s": stats(stop), "exit_s": stats(gone),
                "peak_rss_kb": stats([float(r) for r in rss])}
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--sizes", default="1,64,1024,16384,65536")
    ap.add_argument("--skip", default="", help="parts to skip: a,b,c")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    cpus = [0, 1]
    keys_list = [1, 300, 3000]
    modes = ["untraced", "tcpwdist", "bpftrace", "empty", "strace"]
    if args.quick:
        sizes, cpus, args.rounds, args.seconds, keys_list = [64], [1], 1, 0.2, [1]
    results: dict = {"machine": {"nproc": os.cpu_count(), "kernel": os.uname().release},
                     "args": vars(args)}
    with tempfile.TemporaryDirectory() as tmp:
        exe = build_loadgen(Path(tmp))
        program = program_text()
        results["program"] = program
        skip = set(args.skip.split(","))
        if "a" not in skip:
            results["rates"] = rates(exe, program, sizes, cpus, args.rounds, args.seconds, modes)
        if "b" not in skip:
            results["bpf"] = bpf_ns_per_event(exe, program, max(args.seconds, 0.2))
        if "c" not in skip:
            results["latency"] = latency(keys_list, 1 if args.quick else 3)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "overhead.json").write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

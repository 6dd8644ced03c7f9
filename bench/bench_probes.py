#!/usr/bin/env python3
"""Which probe is cheapest?  Write rates and BPF ns per event for each
probe's program, and an empty program on each probe, side by side.

    python3 bench/bench_probes.py [--bpftrace "chroot /srv/trixie bpftrace"]
                                  [--version 0.23.2] [--rounds 8] [--seconds 1]
                                  [--raw] [--probes tracepoint,rawtracepoint]

Programs are tcpwdist's own (tcpwdist.program.generate) for the given
bpftrace version; --raw adds rawtracepoint:sock_send_length (bpftrace
0.21+), which skips the perf-event path of a classic tracepoint.  Each
probe that sees tcp_sendmsg's return value also runs as it was before
tcpwdist counted the failed sends ("-without-failed": the success test in
the predicate, no @failed), to show what that costs, and each probe with
--spliced ("-spliced") and with --connections ("-connections").  Rounds alternate
the programs; medians with min-max.  Needs root.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))
from tcpwdist import program  # noqa: E402

NOTIFY = "__BPFTRACE_NOTIFY_PROBES_ATTACHED"
RAW = ("rawtracepoint:sock_send_length /((struct sock *)arg0)->sk_protocol == 6 && "
       "(int32)arg1 >= 0/ { @[pid, comm] = hist((int32)arg1); }\n")


def programs(version: program.Version, probes: list[str], raw: bool) -> dict[str, str]:
    out = {}
    for probe in probes:
        text = program.generate(program.ProgramOptions(probe, version))
        out[probe] = text[len(program.HEADER):]
        out[f"{probe}-spliced"] = program.generate(
            program.ProgramOptions(probe, version, spliced=True), header=False)
        out[f"{probe}-connections"] = program.generate(
            program.ProgramOptions(probe, version, connections=True), header=False)
        if program.counts_failed(probe, version):
            out[f"{probe}-without-failed"] = program.generate(
                program.ProgramOptions(probe, version, failed=False), header=False)
        out[f"empty-{probe}"] = text[len(program.HEADER):].split(" ", 1)[0].split("/")[0] + " { }\n"
    if raw:
        out["rawtracepoint"] = RAW
        out["empty-rawtracepoint"] = "rawtracepoint:sock_send_length { }\n"
    return out


def run_one(bpftrace: list[str], text: str, loadgen: Path, seconds: float) -> dict:
    env = dict(os.environ, **{NOTIFY: "1"})
    # The attach hook prints on stderr up to 0.22 and on stdout from 0.23.
    proc = subprocess.Popen([*bpftrace, "-e", text], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=env)
    while NOTIFY.encode() not in (line := proc.stdout.readline()):
        if not line:
            raise SystemExit(f"did not attach: {text}")
    result = {}
    for cpu in (0, 1):
        out = subprocess.run([str(loadgen), "64", str(seconds), str(cpu), str(1 - cpu),
                              "tw-bench"], capture_output=True, text=True, check=True).stdout
        result[cpu] = float(out.split()[0])
    runs = cnt = 0
    pid = proc.pid
    if bpftrace[0] == "chroot":
        pid = int(Path(f"/proc/{pid}/task/{pid}/children").read_text().split()[0]) \
            if Path(f"/proc/{pid}/task/{pid}/children").read_text().split() else pid
    for fdinfo in Path(f"/proc/{pid}/fdinfo").iterdir():
        try:
            info = fdinfo.read_text()
        except OSError:
            continue
        if "run_time_ns" in info:
            runs += int(re.search(r"run_time_ns:\s+(\d+)", info).group(1))
            cnt += int(re.search(r"run_cnt:\s+(\d+)", info).group(1))
    result["ns"] = runs / cnt if cnt else None
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    return result


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bpftrace", default="bpftrace")
    ap.add_argument("--version", default=None)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--probes", default="tracepoint")
    ap.add_argument("--raw", action="store_true")
    args = ap.parse_args()
    bpftrace = shlex.split(args.bpftrace)
    version = program.parse_version(args.version or subprocess.run(
        [*bpftrace, "--version"], capture_output=True, text=True).stdout)
    progs = programs(version, args.probes.split(","), args.raw)
    sysctl = Path("/proc/sys/kernel/bpf_stats_enabled")
    old = sysctl.read_text().strip()
    sysctl.write_text("1")
    samples: dict = {name: {"0": [], "1": [], "ns": []} for name in progs}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            exe = Path(tmp) / "loadgen"
            subprocess.run(["gcc", "-O2", "-o", str(exe), str(HERE / "loadgen.c")], check=True)
            for r in range(args.rounds):
                for name, text in progs.items():
                    res = run_one(bpftrace, text, exe, args.seconds)
                    samples[name]["0"].append(res[0])
                    samples[name]["1"].append(res[1])
                    if res["ns"] is not None:
                        samples[name]["ns"].append(res["ns"])
                for cpu in (0, 1):
                    out = subprocess.run([str(exe), "64", str(args.seconds), str(cpu),
                                          str(1 - cpu)], capture_output=True, text=True).stdout
                    samples.setdefault("untraced", {"0": [], "1": [], "ns": []})[str(cpu)] \
                        .append(float(out.split()[0]))
                print(f"round {r + 1}/{args.rounds}", file=sys.stderr)
    finally:
        sysctl.write_text(old)
    summary = {name: {k: {"median": statistics.median(v), "min": min(v), "max": max(v)}
                      for k, v in per.items() if v} for name, per in samples.items()}
    print(json.dumps({"version": ".".join(map(str, version)), "programs": progs,
                      "results": summary}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

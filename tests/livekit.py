"""What the live tests share: which bpftraces to run, whether they can,
the workload they trace, and tcpwdist started and stopped for real.

``TCPWDIST_LIVE_BPFTRACE`` names the bpftraces, comma-separated (paths
for ``--bpftrace``; default: the ``bpftrace`` on PATH).  CI names the
host's and one wrapper per Debian chroot (.ci/run), so every live test
runs once per bpftrace version, the version in its id.  Without root or
bpftrace the live tests skip with the reason; with ``CI`` set they fail
instead: in CI they run, never skip.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import ROOT
from tcpwdist import host, live, program
from tcpwdist.errors import TcpwdistError

WORKLOAD = str(Path(__file__).parent / "workload.py")
KERNEL = host.kernel()
IN_CI = bool(os.environ.get("CI"))


@dataclass(frozen=True)
class Tracer:
    """One bpftrace the live tests run tcpwdist with."""

    path: str
    version: program.Version
    text: str

    @property
    def args(self) -> tuple[str, ...]:
        return ("--bpftrace", self.path)

    @property
    def auto_probe(self) -> str:
        """What --probe auto must choose with this bpftrace on this kernel."""
        if KERNEL.kprobes:
            return "kprobe"
        raw_ok = KERNEL.btf and KERNEL.tracepoint and (
            (0, 21, 0) <= self.version < (0, 24, 0) or KERNEL.traceable)
        return "rawtracepoint" if raw_ok else "tracepoint"


def _paths() -> list[str]:
    return [p for p in os.environ.get("TCPWDIST_LIVE_BPFTRACE", "bpftrace").split(",") if p]


def _tracers() -> tuple[list[Tracer], list[str]]:
    found, problems = [], []
    for path in _paths():
        if os.sep not in path and shutil.which(path) is None:
            problems.append(f"{path} is not on PATH (apt-get install bpftrace)")
            continue
        try:
            text = host.version_text(path)
        except TcpwdistError as exc:
            problems.append(str(exc))
            continue
        version = program.parse_version(text) or program.NEWEST
        found.append(Tracer(path, version, text))
    return found, problems


TRACERS, _PROBLEMS = _tracers()


def skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "live tests need root (bpftrace loads BPF programs)"
    if _PROBLEMS:
        return "; ".join(_PROBLEMS)
    if KERNEL.tracefs is None and KERNEL.kprobes is not True:
        return "live tests need tracefs mounted (mount -t tracefs nodev /sys/kernel/tracing)"
    return None


def require_live() -> None:
    """Skip (or, in CI, fail) when live tests cannot run here."""
    reason = skip_reason()
    if reason is not None:
        if IN_CI:
            pytest.fail(f"live tests must run in CI: {reason}")
        pytest.skip(reason)


def tracer_params() -> list:
    """pytest params, one per bpftrace, with ids like bpftrace-0.23.2."""
    return [pytest.param(t, id="bpftrace-{}.{}.{}".format(*t.version)) for t in TRACERS] or \
        [pytest.param(None, id="no-bpftrace")]


def comm() -> str:
    return "tw-" + uuid.uuid4().hex[:8]


class Workload:
    """Writer processes, ready (pids known) but waiting for ``go()``."""

    def __init__(self, tmp: Path, writes: str, procs: int = 1, *extra: str,
                 name: str | None = None) -> None:
        self.comm = comm() if name is None else name  # name: a comm of the test's choosing
        self.gofile = tmp / f"go-{uuid.uuid4().hex[:8]}"
        self.proc = subprocess.Popen(
            [sys.executable, WORKLOAD, "--comm", self.comm, "--writes", writes,
             "--procs", str(procs), "--go", str(self.gofile), *extra],
            stdout=subprocess.PIPE)
        assert self.proc.stdout is not None
        ready = [json.loads(self.proc.stdout.readline()) for _ in range(procs)]
        self.pids = [r["pid"] for r in ready]
        self.port = ready[0]["port"]
        self.connections = {r["pid"]: r["connections"] for r in ready}  # each one's ends

    def go(self) -> None:
        self.gofile.touch()
        assert self.proc.wait(timeout=120) == 0


def tcpwdist_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "tcpwdist", *args]


def start(tracer: Tracer, *args: str) -> tuple[subprocess.Popen, str]:
    """Start tcpwdist; return once it says it is tracing, with what it said."""
    proc = subprocess.Popen(tcpwdist_argv(*tracer.args, *args), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    lines = []
    while True:
        line = proc.stderr.readline()
        lines.append(line)
        assert line, b"".join(lines).decode()
        if line.startswith(live.TRACING.encode()):
            return proc, b"".join(lines).decode()


def stop(proc: subprocess.Popen, sig: int = signal.SIGINT) -> tuple[bytes, str]:
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return out, err.decode()


def traced(tracer: Tracer, *workloads: Workload, args: tuple[str, ...] = ()) -> tuple[bytes, str]:
    """Trace while the workloads write; the JSON report and stderr."""
    proc, said = start(tracer, "-o", "json", *args)
    for w in workloads:
        w.go()
    out, err = stop(proc)
    return out, said + err

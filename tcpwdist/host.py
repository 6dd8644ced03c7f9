"""Every fact about this host and its bpftrace, gathered once (the edge).

The kernel's facts are files that exist, or not, under /sys; the
bpftrace's are its ``--version`` and, only when the probe decision needs
it, its ``--info``.  Nothing here decides anything: the decision is
:func:`tcpwdist.program.plan`, a pure function of these facts.
"""

from __future__ import annotations

import errno
import os
import re
import subprocess
from dataclasses import dataclass

from tcpwdist.errors import BpftraceMissing, UsageError
from tcpwdist.program import NEWEST, OLDEST, Version, parse_version, wants_info

TRACEFS_DIRS = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
TRACEPOINT = "events/sock/sock_send_length"
INSTALL_HINT = "install bpftrace (apt-get install bpftrace) or name one with --bpftrace PATH"
# A cold start of bpftrace (a loaded host, an emulated guest) was seen to
# take 10-17 s just to print its version.
VERSION_TIMEOUT = 30.0


@dataclass(frozen=True)
class Kernel:
    """The kernel's facts; the defaults describe one that has everything."""

    release: str = ""
    tracefs: str | None = "/sys/kernel/tracing"  # where tracefs is mounted, if it is
    kprobes: bool | None = True  # None: cannot tell (tracefs not mounted, no PMU)
    tracepoint: bool | None = True  # sock:sock_send_length exists (None: cannot tell)
    btf: bool = True  # /sys/kernel/btf/vmlinux: fentry and the raw tracepoint need it
    # tracefs's available_filter_functions can be read: bpftrace 0.24+
    # resolves fentry and raw tracepoint attach points through it.
    traceable: bool | None = True


@dataclass(frozen=True)
class Bpftrace:
    path: str = "bpftrace"
    version: Version = NEWEST
    text: str = "bpftrace (version unknown)"  # what --version printed
    fentry: bool | None = None  # --info's kfunc/fentry line (None: not asked, or not told)


@dataclass(frozen=True)
class Facts:
    kernel: Kernel
    bpftrace: Bpftrace


def kernel(root: str = "/") -> Kernel:
    def path(p: str) -> str:
        return os.path.join(root, p.lstrip("/"))

    tracefs = next((d for d in TRACEFS_DIRS if os.path.isdir(path(d + "/events"))), None)
    kprobes: bool | None
    if os.path.exists(path("/sys/bus/event_source/devices/kprobe")):
        kprobes = True
    elif tracefs is not None:
        kprobes = os.path.exists(path(tracefs + "/kprobe_events"))
    else:
        kprobes = None
    tracepoint = os.path.isdir(path(f"{tracefs}/{TRACEPOINT}")) if tracefs else None
    return Kernel(os.uname().release, tracefs, kprobes, tracepoint,
                  os.path.exists(path("/sys/kernel/btf/vmlinux")),
                  _readable(path(f"{tracefs}/available_filter_functions")) if tracefs else None)


def _readable(path: str) -> bool | None:
    try:
        with open(path, "rb") as f:
            f.read(1)
        return True
    except OSError as exc:
        # Locked down (EPERM even for root) or absent: a fact.  Anything
        # else (not root yet, say): cannot tell.
        return False if exc.errno in (errno.EPERM, errno.ENOENT) else None


class Query:
    """``bpftrace FLAG``, started at once and answered later, so that two
    queries run side by side (start-up: BENCHMARKS.md).  One-shot queries
    need no pty: a plain pipe, bounded in time."""

    def __init__(self, bpftrace: str, flag: str) -> None:
        self.bpftrace, self.flag = bpftrace, flag
        try:
            self.proc: subprocess.Popen[bytes] | None = subprocess.Popen(
                [bpftrace, flag], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE)
            self.error: OSError | None = None
        except OSError as exc:
            self.proc, self.error = None, exc

    def answer(self, timeout: float = VERSION_TIMEOUT) -> tuple[int, bytes]:
        """Its exit status and output (stdout, then stderr); raises what
        starting it raised, or subprocess.TimeoutExpired (it is ended)."""
        if self.proc is None:
            assert self.error is not None
            raise self.error
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.discard()
            raise
        return self.proc.returncode, out + err

    def discard(self) -> None:
        """Not wanted after all: end it (it is this process's child) and
        reap it (SIGKILL ends a bpftrace that is starting at once)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            pass  # stuck in the kernel: it is reaped when it ends (or by init)


def version_text(bpftrace: str, timeout: float = VERSION_TIMEOUT,
                 query: Query | None = None) -> str:
    """``bpftrace --version``'s output; BpftraceMissing if it cannot run."""
    try:
        status, output = (query or Query(bpftrace, "--version")).answer(timeout)
    except FileNotFoundError:
        raise BpftraceMissing(f"{bpftrace} not found", hint=INSTALL_HINT) from None
    except PermissionError:
        raise BpftraceMissing(f"{bpftrace} is not executable", hint=INSTALL_HINT) from None
    except subprocess.TimeoutExpired:
        raise BpftraceMissing(f"{bpftrace} --version did not answer within {timeout:g} s",
                              hint="is the host overloaded? try again") from None
    except OSError as exc:
        raise BpftraceMissing(f"cannot run {bpftrace}: {exc.strerror}", hint=INSTALL_HINT) \
            from None
    text = output.decode("utf-8", "replace").strip()
    if status != 0 or "bpftrace" not in text.lower():
        raise BpftraceMissing(f"{bpftrace} --version failed: {text[:200]!r}", hint=INSTALL_HINT)
    return text


def fentry_from_info(info: str) -> bool | None:
    """--info's kfunc/fentry line: one "name: yes|no" per line up to 0.22,
    several per line in 0.23, none from 0.24 (None: not told)."""
    m = re.search(r"\b(?:kfunc|fentry):\s*(yes|no)\b", info)
    return None if m is None else m.group(1) == "yes"


def info_text(bpftrace: str, timeout: float = VERSION_TIMEOUT,
              query: Query | None = None) -> str:
    """``bpftrace --info`` (root only; 0.17 prints it on stderr, later
    versions on stdout); '' if it fails."""
    try:
        status, output = (query or Query(bpftrace, "--info")).answer(timeout)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return output.decode("utf-8", "replace") if status == 0 else ""


class Asked:
    """The facts that plan ``requested`` (a probe or auto), asked for at
    once and read by :meth:`facts`: bpftrace answers while Python goes
    on (start-up: BENCHMARKS.md).  --info is asked only when the decision
    may need it (program.wants_info), beside --version, not after it;
    once the version says it is not needed (0.24+ no longer tells), it
    is ended unread."""

    def __init__(self, bpftrace: str, requested: str = "auto") -> None:
        self.bpftrace, self.requested = bpftrace, requested
        self.kernel = kernel()
        self._info: Query | None = (Query(bpftrace, "--info")
                                    if wants_info(requested, self.kernel, OLDEST) else None)
        self._version: Query | None = Query(bpftrace, "--version")

    def facts(self) -> Facts:
        fentry = None
        try:
            text = version_text(self.bpftrace, query=self._version)
            self._version = None
            version = parse_version(text)
            if version is None:
                raise BpftraceMissing(f"cannot tell the version of {self.bpftrace} from "
                                      f"{text[:80]!r}", hint=INSTALL_HINT)
            if self._info is not None and wants_info(self.requested, self.kernel, version):
                fentry = fentry_from_info(info_text(self.bpftrace, query=self._info))
                self._info = None
        finally:
            self.discard()
        return Facts(self.kernel, Bpftrace(self.bpftrace, version, text, fentry))

    def discard(self) -> None:
        """End what was not read (nothing, once facts() has returned)."""
        for query in (self._info, self._version):
            if query is not None:
                query.discard()
        self._info = self._version = None


def gather(bpftrace: str, requested: str = "auto") -> Facts:
    """The facts that plan ``requested``, asked and read (Asked)."""
    return Asked(bpftrace, requested).facts()


def cgroup2_mounts(mountinfo: str = "/proc/self/mountinfo") -> list[str]:
    """Mount points of the cgroup v2 filesystem (field 9 is the fs type)."""
    mounts = []
    try:
        with open(mountinfo) as f:
            for line in f:
                left, _, right = line.partition(" - ")
                if right.split(" ", 1)[0] == "cgroup2":
                    mounts.append(left.split(" ")[4])
    except OSError:
        pass
    return mounts


def check_cgroup(path: str) -> str:
    """The cgroup v2 directory ``path`` names, symlinks resolved (what is
    checked is what is traced: bpftrace's cgroupid() does not resolve
    them); UsageError unless it is one."""
    real = os.path.realpath(path)
    mounts = cgroup2_mounts()
    problem = None
    if not mounts:
        problem = "this host has no cgroup v2 filesystem mounted"
    elif not os.path.exists(real):
        problem = f"{path} does not exist"
    elif not any(real == m or real.startswith(m.rstrip("/") + "/") for m in mounts):
        problem = f"{path} is not under a cgroup v2 mount ({', '.join(mounts)})"
    elif not os.path.isdir(real):
        problem = f"{path} is not a directory"
    if problem:
        raise UsageError(f"--cgroup: {problem}",
                         hint="give a cgroup v2 directory, e.g. "
                              "/sys/fs/cgroup/system.slice/ssh.service (systemctl status "
                              "SERVICE names its cgroup)")
    return real


def cgroup_warning(real: str) -> str | None:
    """What --cgroup ``real`` will not trace, if anything: bpftrace's
    ``cgroup`` is the cgroup a process is directly in, so the processes
    of its child cgroups are not traced (there is no ancestor test in
    bpftrace's language).  None for a cgroup without children."""
    try:
        children = sorted(e.name for e in os.scandir(real) if e.is_dir(follow_symlinks=False))
        with open(os.path.join(real, "cgroup.procs"), "rb") as f:
            own = len(f.read().split())
    except OSError:
        return None
    if not children:
        return None
    what = (f"--cgroup {real}: only the processes directly in it are traced, not those "
            f"of its {len(children)} child {'cgroup' if len(children) == 1 else 'cgroups'}")
    if own:
        return f"{what} (it holds {own} itself)"
    return (f"{what}, and it holds none itself: nothing will be traced; name a child, "
            f"e.g. {os.path.join(real, children[0])}")

"""Facts about the host and its bpftrace: files under a fake root, and the
fake bpftrace's --version and --info."""

from __future__ import annotations

from pathlib import Path

import pytest

from tcpwdist import host
from tcpwdist.errors import BpftraceMissing, UsageError

FAKE = str(Path(__file__).parent / "fake" / "bpftrace")


def make(root: Path, *paths: str) -> None:
    for p in paths:
        (root / p.lstrip("/")).mkdir(parents=True, exist_ok=True)


def test_kernel_facts_from_files(tmp_path):
    make(tmp_path, "/sys/kernel/tracing/events/sock/sock_send_length", "/sys/kernel/btf")
    (tmp_path / "sys/kernel/btf/vmlinux").write_bytes(b"")
    k = host.kernel(str(tmp_path))
    assert (k.tracefs, k.kprobes, k.tracepoint, k.btf) == ("/sys/kernel/tracing", False, True,
                                                           True)
    assert k.traceable is False  # no available_filter_functions
    (tmp_path / "sys/kernel/tracing/available_filter_functions").write_text("tcp_sendmsg\n")
    (tmp_path / "sys/kernel/tracing/kprobe_events").write_text("")
    k = host.kernel(str(tmp_path))
    assert k.traceable is True and k.kprobes is True


def test_nothing_mounted_is_cannot_tell(tmp_path):
    k = host.kernel(str(tmp_path))
    assert (k.tracefs, k.kprobes, k.tracepoint, k.btf, k.traceable) == (None, None, None,
                                                                        False, None)


def test_version_and_info():
    assert host.version_text(FAKE) == "bpftrace v0.17.0"
    assert host.fentry_from_info(host.info_text(FAKE)) is False


@pytest.mark.parametrize("info,told", [
    ("Probe types\n  kprobe: yes\n  kfunc: no\n", False),  # one per line, up to 0.22
    ("  kprobe: yes   fentry: yes   uprobe: yes\n", True),  # several per line, 0.23
    ("Probe types\n  kprobe_multi: no   uprobe_multi: yes\n", None),  # 0.24+: not told
])
def test_fentry_line_of_every_era(info, told):
    assert host.fentry_from_info(info) is told


def test_missing_bpftrace_is_a_clean_error(tmp_path):
    with pytest.raises(BpftraceMissing, match="not found"):
        host.version_text("/nonexistent/bpftrace")
    script = tmp_path / "bpftrace"
    script.write_text("#!/bin/sh\necho hello\n")
    with pytest.raises(BpftraceMissing, match="not executable"):
        host.version_text(str(script))
    script.chmod(0o755)
    with pytest.raises(BpftraceMissing, match="--version failed"):
        host.version_text(str(script))


class RecordedQuery(host.Query):
    """host.Query, noting what was started and what was ended unread."""
    started: list[str] = []
    discarded: list[str] = []

    def __init__(self, bpftrace, flag):
        super().__init__(bpftrace, flag)
        self.started.append(flag)

    def discard(self):
        self.discarded.append(self.flag)
        super().discard()


@pytest.fixture
def queries(monkeypatch):
    RecordedQuery.started, RecordedQuery.discarded = [], []
    monkeypatch.setattr(host, "Query", RecordedQuery)
    return RecordedQuery


def test_gather_asks_info_only_when_it_decides(monkeypatch, queries):
    monkeypatch.setattr(host, "kernel", lambda: host.Kernel(kprobes=True))
    assert host.gather(FAKE).bpftrace.fentry is None
    assert queries.started == ["--version"]
    # No kprobes: auto may try fentry, so --info runs beside --version.
    monkeypatch.setattr(host, "kernel", lambda: host.Kernel(kprobes=False))
    facts = host.gather(FAKE)
    assert queries.started == ["--version", "--info", "--version"]
    assert facts.bpftrace.fentry is False and facts.bpftrace.version == (0, 17, 0)
    assert queries.discarded == []


def test_gather_ends_info_unread_once_the_version_says_it_tells_nothing(monkeypatch, queries):
    # 0.24+ has no fentry line in --info: it was started in case, and is ended.
    monkeypatch.setattr(host, "kernel", lambda: host.Kernel(kprobes=False))
    monkeypatch.setenv("FAKE_VERSION", "0.27.1")
    facts = host.gather(FAKE)
    assert facts.bpftrace.fentry is None and facts.bpftrace.version == (0, 27, 1)
    assert queries.started == ["--info", "--version"] and queries.discarded == ["--info"]


def test_cgroup_outside_cgroup2_is_a_usage_error():
    with pytest.raises(UsageError, match="--cgroup"):
        host.check_cgroup("/proc")


def test_cgroup_is_traced_as_it_was_checked_symlinks_resolved(monkeypatch, tmp_path, tcpwdist):
    # bpftrace's cgroupid() does not resolve a symlink: given one, it
    # traced nothing, silently.  What is checked is what is traced.
    group = tmp_path / "cg2" / "web.service"
    group.mkdir(parents=True)
    (tmp_path / "link").symlink_to(group)
    monkeypatch.setattr(host, "cgroup2_mounts", lambda: [str(tmp_path / "cg2")])
    assert host.check_cgroup(str(tmp_path / "link")) == str(group)
    done = tcpwdist("--program", "--probe", "tracepoint", "--cgroup", str(tmp_path / "link"),
                    "--bpftrace", str(Path(__file__).parent / "fake" / "bpftrace"))
    assert f'cgroupid("{group}")' in done.out and "link" not in done.out
    with pytest.raises(UsageError, match="does not exist"):
        host.check_cgroup(str(tmp_path / "cg2" / "nope"))


def test_a_cgroup_with_children_is_said_to_trace_only_its_own(tmp_path):
    assert host.cgroup_warning(str(tmp_path)) is None  # no cgroup.procs: nothing to say
    (tmp_path / "cgroup.procs").write_text("")
    assert host.cgroup_warning(str(tmp_path)) is None  # a leaf
    (tmp_path / "a.service").mkdir()
    (tmp_path / "b.service").mkdir()
    assert host.cgroup_warning(str(tmp_path)) == (
        f"--cgroup {tmp_path}: only the processes directly in it are traced, not those of its "
        f"2 child cgroups, and it holds none itself: nothing will be traced; name a child, "
        f"e.g. {tmp_path / 'a.service'}")
    (tmp_path / "cgroup.procs").write_text("12\n34\n")
    assert host.cgroup_warning(str(tmp_path)).endswith("child cgroups (it holds 2 itself)")

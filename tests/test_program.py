"""The generated bpftrace program: the canonical one-liner, each probe in
each bpftrace era's spelling, filters, and no way for input to change its
shape."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from conftest import ROOT
from tcpwdist import program
from tcpwdist.errors import AttachTimeout, BpftraceFailed, NoProbe, UsageError
from tcpwdist.host import Bpftrace, Kernel

GOLDEN = Path(__file__).parent / "golden" / "programs"
ERAS = {"0.17": (0, 17, 0), "0.19": (0, 19, 0), "0.20": (0, 20, 0), "0.24": (0, 24, 0)}
FILTERS = dict(pids=(181, 182), comms=("nginx", 'a"b\\c'), ports=(443,),
               cgroup="/sys/fs/cgroup/web", interval=5)


def body(opts: program.ProgramOptions) -> str:
    text = program.generate(opts)
    assert text.startswith(program.HEADER)
    return text[len(program.HEADER):]


def test_default_is_the_canonical_one_liner_and_the_shipped_script():
    assert body(program.ProgramOptions()) == \
        "kprobe:tcp_sendmsg { @[pid, comm] = hist(arg2); }\n"
    assert (ROOT / "scripts" / "tcpwdist.bt").read_text() == program.generate()


@pytest.mark.parametrize("probe", program.PROBES)
@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize("filtered", [False, True], ids=["plain", "filters"])
def test_program_golden(probe, era, filtered):
    opts = program.ProgramOptions(probe, ERAS[era], **(FILTERS if filtered else {}))
    if probe == "rawtracepoint" and ERAS[era] < program.RAWTRACEPOINT_SINCE:
        with pytest.raises(UsageError, match="0.21"):
            program.generate(opts)
        return
    name = f"{probe}-v{era}{'-filters' if filtered else ''}.bt"
    assert body(opts) == (GOLDEN / name).read_text()


def test_era_spellings():
    tp17 = body(program.ProgramOptions("tracepoint", (0, 18, 9)))
    assert "args->ret" in tp17 and "args." not in tp17
    assert "args.ret" in body(program.ProgramOptions("tracepoint", (0, 19, 0)))
    assert body(program.ProgramOptions("fentry", (0, 19, 9))).startswith("kfunc:")
    assert body(program.ProgramOptions("fentry", (0, 20, 0))).startswith("fentry:")
    assert program.environment((0, 19, 0), 5) == {"BPFTRACE_MAP_KEYS_MAX": "5"}
    assert program.environment((0, 20, 0), 5) == {"BPFTRACE_MAX_MAP_KEYS": "5"}


def test_ports_are_swapped_once_in_python():
    text = body(program.ProgramOptions("kprobe", ports=(8080,)))
    assert "skc_num == 8080" in text and f"skc_dport == {0x901f}" in text


def test_sub_second_interval_uses_ms():
    assert "interval:ms:250 " in body(program.ProgramOptions(interval=0.25))


@pytest.mark.parametrize("opts,words", [
    (dict(pids=(0,)), "PID 0"),
    (dict(pids=(4194305,)), "out of range"),
    (dict(comms=("sixteen_bytes_xx",)), "16 bytes"),
    (dict(comms=("",)), "empty"),
    (dict(comms=("a\nb",)), "control"),
    (dict(comms=("a\x1b[2J",)), "control"),
    (dict(ports=(0,)), "port 0"),
    (dict(ports=(65536,)), "port 65536"),
    (dict(cgroup="relative/path"), "absolute"),
    (dict(cgroup="/a\nb"), "control"),
    (dict(interval=0.01), "interval"),
])
def test_invalid_input_is_rejected(opts, words):
    with pytest.raises(UsageError, match=re.escape(words)):
        program.generate(program.ProgramOptions("tracepoint", **opts))


STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def shape(text: str) -> str:
    """The program with every string literal's content removed."""
    return STRING.sub('""', text)


comm_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x2FF,
                                  blacklist_characters="\x7f"), min_size=1, max_size=7)


@settings(max_examples=300, deadline=None)
@given(comms=st.lists(comm_text, min_size=1, max_size=3),
       cgroup=st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20))
def test_no_input_changes_the_program_shape(comms, cgroup):
    opts = program.ProgramOptions("tracepoint", comms=tuple(comms), cgroup="/" + cgroup)
    safe = program.ProgramOptions("tracepoint", comms=("x",) * len(comms), cgroup="/x")
    assert shape(program.generate(opts)) == shape(program.generate(safe))


def plan(requested: str = "auto", version=(0, 17, 0), fentry=None, **kernel) -> program.Plan:
    return program.plan(requested, Kernel(**kernel), Bpftrace(version=version, fentry=fentry))


def test_plan_on_a_kernel_without_kprobes():
    # This project's own CI host: no kprobes, BTF, tracefs with the tracepoint.
    here = dict(kprobes=False, traceable=False)
    p = plan(fentry=False, **here)
    assert p.probes == ("tracepoint",)
    assert dict(p.skipped) == {
        "kprobe": "this kernel has no kprobes (no kprobe PMU, no kprobe_events in tracefs)",
        "fentry": "bpftrace --info reports no kfunc/fentry support on this kernel",
        "rawtracepoint": "needs bpftrace 0.21 or later"}
    p = plan(version=(0, 23, 2), fentry=False, **here)
    assert p.probes == ("rawtracepoint", "tracepoint")
    # 0.24+: --info no longer tells of fentry, and both fentry and the raw
    # tracepoint need available_filter_functions, which is EPERM here.
    p = plan(version=(0, 27, 1), **here)
    assert p.probes == ("tracepoint",)
    assert "available_filter_functions" in dict(p.skipped)["fentry"]
    assert "available_filter_functions" in dict(p.skipped)["rawtracepoint"]


def test_plan_on_other_kernels():
    assert plan(version=(0, 23, 2)).probes == program.PROBES  # everything: all may work
    p = plan(tracefs=None, kprobes=None, tracepoint=None, btf=False)
    assert p.probes == ("kprobe",)
    assert any("mount -t tracefs nodev /sys/kernel/tracing" in w for _, w in p.skipped)
    # Linux 6.1: kprobes, no sock_send_length tracepoint (it came in 6.3).
    assert plan(version=(0, 23, 2), tracepoint=False).probes == ("kprobe", "fentry")
    assert plan(version=(0, 25, 0), btf=False).probes == ("kprobe",)
    assert plan("fentry", tracefs=None, btf=False).probes == ("fentry",)  # asked: tried
    with pytest.raises(UsageError):
        plan("uprobe")


def test_info_is_asked_only_when_it_decides():
    assert program.wants_info("auto", Kernel(kprobes=False), (0, 23, 2))
    assert not program.wants_info("auto", Kernel(kprobes=False), (0, 24, 0))  # it says nothing
    assert not program.wants_info("auto", Kernel(), (0, 17, 0))  # kprobe comes first
    assert not program.wants_info("tracepoint", Kernel(kprobes=False), (0, 17, 0))
    assert not program.wants_info("auto", Kernel(kprobes=False, btf=False), (0, 17, 0))


@pytest.mark.parametrize("error,auto,explicit", [
    (NoProbe("x"), True, True),
    (BpftraceFailed("compile error"), True, False),
    (AttachTimeout("hang"), False, False),
    (UsageError("x"), False, False),
])
def test_one_fallback_rule(error, auto, explicit):
    assert program.falls_back("auto", error) is auto
    assert program.falls_back("kprobe", error) is explicit


needs_bpftrace = pytest.mark.skipif(
    shutil.which("bpftrace") is None or __import__("os").geteuid() != 0,
    reason="compiling needs the installed bpftrace, as root")


@needs_bpftrace
@pytest.mark.parametrize("probe", ["kprobe", "tracepoint"])
def test_installed_bpftrace_compiles_every_variant(probe, tmp_path):
    """A dry run (-d) compiles without attaching: kprobe compiles even here."""
    version = program.parse_version(subprocess.run(["bpftrace", "--version"],
                                                   capture_output=True, text=True).stdout)
    hostile = '"}END{exit()}\\'  # 15 bytes that would end the program if not escaped
    opts = program.ProgramOptions(probe, version, (1,), (hostile, "x y"), (443,), None, 1.0)
    path = tmp_path / "p.bt"
    path.write_text(program.generate(opts))
    done = subprocess.run(["bpftrace", "-d", str(path)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert 'comm == "\\"}END{exit()}\\\\"' in path.read_text()


@pytest.mark.parametrize("probe", program.PROBES)
def test_failed_sends_are_counted_where_the_probe_sees_them(probe):
    text = body(program.ProgramOptions(probe, (0, 23, 0), snapshots=True))
    if not program.counts_failed(probe):  # kprobe, fentry: no return value, no @failed
        assert "@failed" not in text
        return
    per_write = text.splitlines()[0]
    ok = "(int32)arg1 >= 0" if probe == "rawtracepoint" else "args.ret >= 0"
    # The success test the predicate made is the body's one branch now.
    assert ok not in per_write.split("{", 1)[0]
    assert per_write.endswith(f"{{ if ({ok}) {{ @[pid, comm] = hist({ok[:-5]}); }} "
                              "else { @failed[pid, comm] = count(); } }")
    assert "print(@failed);" in text
    opted_out = body(program.ProgramOptions(probe, (0, 23, 0), failed=False))
    assert f"&& {ok}/ {{ @[pid, comm] = hist({ok[:-5]}); }}" in opted_out
    if probe == "tracepoint":  # 0.17 compiles the if/else into ~24 ns a write: not there
        assert "@failed" not in body(program.ProgramOptions(probe, (0, 17, 0)))


def test_spliced_flags_the_thread_in_sendfile_and_splice_and_is_opt_in():
    assert "@splicing" not in body(program.ProgramOptions("tracepoint"))
    text = body(program.ProgramOptions("kprobe", (0, 17, 0), spliced=True, comms=("nginx",),
                                       ports=(443,), snapshots=True))
    enter, exit_sendfile, exit_splice, per_write = text.splitlines()[:4]
    assert enter == ('tracepoint:syscalls:sys_enter_sendfile64,tracepoint:syscalls:'
                     'sys_enter_splice /comm == "nginx"/ { @splicing[tid] = 1; }')
    assert exit_sendfile == ("tracepoint:syscalls:sys_exit_sendfile64 /@splicing[tid]/ { if "
                             "(@splicing[tid] == 2) { @splicecalls[pid, comm] = "
                             "hist(args->ret); } @splicing[tid] = 0; }")
    assert exit_splice.startswith("tracepoint:syscalls:sys_exit_splice /@splicing[tid]/")
    # The port filter stays the write probe's: a call counts if a write it made did.
    assert "skc_num == 443" in per_write and "skc_num" not in enter
    assert per_write.endswith("{ @[pid, comm] = hist(arg2); if (@splicing[tid]) "
                              "{ @spliced[pid, comm] = count(); @splicing[tid] = 2; } }")
    assert "print(@spliced); print(@splicecalls);" in text


def test_snapshots_run_once_a_second_not_per_write_and_nothing_is_cleared():
    text = body(program.ProgramOptions("tracepoint", snapshots=True))
    per_write, snapshot, final = text.splitlines()
    assert per_write == body(program.ProgramOptions("tracepoint")).strip()
    assert snapshot == ('interval:s:1 { print(@); print(@failed); printf("tcpwdist-snapshot '
                        '%s\\n", strftime("%H:%M:%S.%f", nsecs)); }')
    # Printed before the final dump: a mark after it is inside that dump.
    assert final == 'END { printf("tcpwdist-final %s\\n", strftime("%H:%M:%S.%f", nsecs)); }'
    # An interval run's totals are its snapshots; bpftrace before 0.16 has
    # no strftime %f: whole seconds.
    old = body(program.ProgramOptions("tracepoint", (0, 15, 0), snapshots=True, interval=2))
    assert old.splitlines()[1] == 'interval:s:2 { print(@); time("tcpwdist-total %H:%M:%S\\n"); }'
    assert "clear(" not in old and "clear(" not in body(
        program.ProgramOptions(interval=0.5, bytes=True))

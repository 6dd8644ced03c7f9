"""The command line as users and scripts meet it: reports from every real
capture, errors and exit codes, signals, pipes, against a fake bpftrace."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import (CAPTURES, ROOT, Run, buckets, capture_id, expected_buckets, folded,
                      truth_for)
from tcpwdist import cli, host, live, program
from tcpwdist.errors import ExitCode

FAKE = str(Path(__file__).parent / "fake" / "bpftrace")


def assert_one_error_line(done: Run, code: ExitCode, *words: str) -> None:
    assert done.code == code, done.err
    assert len(done.errors()) == 1, done.err
    assert "Traceback" not in done.err
    for w in words:
        assert w in done.errors()[0], done.errors()[0]


@pytest.mark.parametrize("capture", CAPTURES, ids=capture_id)
def test_every_capture_reports_its_truth_as_json(tcpwdist, capture):
    done = tcpwdist("-r", str(capture), "-o", "json")
    assert done.code == 0, done.err
    want = expected_buckets(truth_for(capture), capture)
    got = folded(buckets(done.docs))  # summed over intervals, hist(x, k) folded to log2
    assert {k: got.get(k) for k in want} == want


def test_stdin_and_file_give_the_same_report(tcpwdist):
    capture = next(c for c in CAPTURES if c.name == "basic.pty.txt")
    by_file = tcpwdist("-r", str(capture))
    by_stdin = tcpwdist("-r", "-", stdin=capture.read_bytes())
    assert by_file.out == by_stdin.out and by_file.out.count(" PID: ") == 4


def test_errors_are_one_line_with_exit_codes(tcpwdist, tmp_path):
    assert_one_error_line(tcpwdist("-r", str(tmp_path / "nope")), ExitCode.BAD_DUMP,
                          "cannot read", "No such file")
    (tmp_path / "garbage").write_bytes(b"Attaching 1 probe...\n\n\nhello \x1b[31m\n")
    assert_one_error_line(tcpwdist("-r", str(tmp_path / "garbage")), ExitCode.BAD_DUMP,
                          "line 4", "\\x1b")
    (tmp_path / "counts").write_bytes(b"Attaching 1 probe...\n\n\n@c: 5\n")
    assert_one_error_line(tcpwdist("-r", str(tmp_path / "counts")), ExitCode.BAD_DUMP,
                          "no hist map keyed by (pid, comm)")
    (tmp_path / "binary").write_bytes(bytes(range(256)))
    assert_one_error_line(tcpwdist("-r", str(tmp_path / "binary")), ExitCode.BAD_DUMP, "NUL")
    assert_one_error_line(tcpwdist("--bpftrace", "/nonexistent/bpftrace", "-d", "1"),
                          ExitCode.NO_BPFTRACE, "not found", "apt-get install bpftrace")
    assert_one_error_line(tcpwdist("-p", "0", "--program"), ExitCode.USAGE, "PID 0")
    assert_one_error_line(tcpwdist("-d", "1", root=False), ExitCode.PERMISSION, "needs root")


def test_values_are_checked_before_root_is(tcpwdist):
    assert_one_error_line(tcpwdist("-p", "0", "-d", "1", root=False), ExitCode.USAGE, "PID 0")


@pytest.mark.parametrize("argv", [["-d", "-1"], ["-o", "xml"], ["-r", "x", "--program"]])
def test_usage_errors_exit_2(tcpwdist, argv):
    with pytest.raises(SystemExit) as exited:  # argparse's own exit
        tcpwdist(*argv)
    assert exited.value.code == ExitCode.USAGE


def test_tracing_options_with_r_exit_2(tcpwdist):
    assert_one_error_line(tcpwdist("-r", "x", "-d", "2"), ExitCode.USAGE, "-r reads a dump")


def test_cut_dump_reports_what_is_complete(tcpwdist, tmp_path):
    capture = next(c for c in CAPTURES if c.name == "basic.pipe.txt" and "0.17" in str(c))
    data = capture.read_bytes()
    cut = data[: data.index(b"@[23478")+300]
    (tmp_path / "cut").write_bytes(cut)
    done = tcpwdist("-r", str(tmp_path / "cut"), "-o", "json")
    assert done.code == ExitCode.BAD_DUMP
    pids = {p["pid"] for p in done.docs[0]["processes"]}
    assert 23478 not in pids and 23476 in pids
    assert "cut off inside @[23478, basic-repeat]" in done.err


def test_empty_capture_is_an_empty_report(tcpwdist):
    capture = next(c for c in CAPTURES if c.name == "empty.pty.txt")
    done = tcpwdist("-r", str(capture), "-o", "json")
    assert done.code == 0 and done.docs[0]["processes"] == []


@pytest.mark.parametrize("unbuffered", ["1", None])
def test_closed_pipe_is_quiet(unbuffered):
    capture = next(c for c in CAPTURES if c.name == "nasty.pipe.txt")
    env = dict(os.environ)
    env.pop("PYTHONUNBUFFERED", None)
    if unbuffered:
        env["PYTHONUNBUFFERED"] = unbuffered
    shell = f"{sys.executable} -m tcpwdist -r {capture} | head -1"
    done = subprocess.run(["bash", "-c", f"{shell}; echo \"rc=${{PIPESTATUS[0]}}\" >&2"],
                          capture_output=True, env=env, cwd=ROOT, timeout=60)
    assert done.stdout.count(b"\n") == 1
    assert done.stderr.decode().strip() == "rc=0", done.stderr


def test_help_has_examples_and_exit_codes(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert "examples:" in out and "tcpwdist -d 10" in out
    for code in ExitCode:
        assert f"  {int(code)}  " in out


# Tracing flows, with the fake bpftrace -------------------------------------
# In-process where a run ends by itself; in a subprocess where a signal or a
# pipe is the point.  The fake needs no root: the root check is answered yes.

AS_ROOT = ("import sys; from tcpwdist import cli, live; live.is_root = lambda: True; "
           "sys.exit(cli.main())")


def start(*args: str, **env: str) -> subprocess.Popen:
    full = dict(os.environ, **env)
    return subprocess.Popen([sys.executable, "-c", AS_ROOT, "--bpftrace", FAKE, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full, cwd=ROOT)


def wait_for_tracing(proc: subprocess.Popen) -> None:
    line = b""
    while not line.startswith(live.TRACING.encode()):
        line = proc.stderr.readline()
        assert line, "tcpwdist ended before tracing"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_signal_ends_tracing_and_prints_the_report(sig):
    proc = start("-o", "json", FAKE_MODE="ok")
    wait_for_tracing(proc)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    [p] = json.loads(out)["processes"]
    assert (p["pid"], p["comm"], p["writes"]) == (4242, "fake-writer", 30)


def test_duration_ends_tracing(tcpwdist):
    t0 = time.monotonic()
    done = tcpwdist("--bpftrace", FAKE, "-d", "0.5", "-o", "table", env={"FAKE_MODE": "ok"})
    assert done.code == 0
    assert done.out.split("\n")[2].split() == ["4242", "fake-writer", "1", "7"]
    assert time.monotonic() - t0 < 10


@pytest.mark.parametrize("mode,args,code,words", [
    ("attach-fail", ["--probe", "kprobe"], ExitCode.NO_PROBE, ["no probe could be attached"]),
    ("not-root", [], ExitCode.PERMISSION, ["not allowed"]),
    ("die", [], ExitCode.BPFTRACE_FAILED, ["while tracing", "exit status 1"]),
    ("crash", [], ExitCode.BPFTRACE_FAILED, ["signal 11"]),
    ("hang", ["--attach-timeout", "0.5"], ExitCode.BPFTRACE_FAILED, ["did not attach"]),
    ("garbage", [], ExitCode.BAD_DUMP, ["holds no bpftrace map output"]),
])
def test_bpftrace_faults(tcpwdist, mode, args, code, words):
    done = tcpwdist("--bpftrace", FAKE, "-d", "0.5", *args, env={"FAKE_MODE": mode})
    assert_one_error_line(done, code, *words)


def test_interrupt_before_attach_exits_8():
    proc = start(FAKE_MODE="hang")
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == ExitCode.INTERRUPTED_EARLY, err


def test_write_raw_replays_to_the_same_report(tcpwdist, tmp_path):
    raw = tmp_path / "raw.txt"
    live = tcpwdist("--bpftrace", FAKE, "-d", "0.3", "-o", "json", "-w", str(raw),
                    env={"FAKE_MODE": "ok"})
    replay = tcpwdist("-r", str(raw), "-o", "json")
    # The live run knows its host and /proc; the replay only bpftrace's output.

    def keep(run: Run) -> list:
        return [(p["pid"], p["comm"], p["buckets"], p["writes"], p["p50"], p["p99"])
                for p in run.docs[0]["processes"]]

    assert keep(live) == keep(replay) and keep(live)


def _help(capsys) -> str:
    os.environ["COLUMNS"] = "80"
    try:
        with pytest.raises(SystemExit):
            cli.main(["--help"])
    finally:
        del os.environ["COLUMNS"]
    return capsys.readouterr().out


def test_readme_shows_the_real_help(capsys):
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- help -->\n```\n", 1)[1].split("```\n<!-- /help -->", 1)[0]
    assert block == _help(capsys)


def test_readme_exit_code_table_matches():
    from tcpwdist.errors import EXIT_CODE_MEANINGS
    readme = (ROOT / "README.md").read_text()
    for code, text in EXIT_CODE_MEANINGS.items():
        assert f"| {int(code)} | {text} |" in readme


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    command = readme.split("<!-- test-command -->\n", 1)[1].split("\n", 1)[0]
    assert command.startswith("python3 -m pytest")
    assert "<!-- test-command -->" in (ROOT / ".ci" / "run").read_text()


def test_second_ctrl_c_reports_what_arrived():
    proc = start("-o", "json", "--stop-timeout", "60", FAKE_MODE="stall-dump")
    wait_for_tracing(proc)
    proc.send_signal(signal.SIGINT)
    time.sleep(1.0)  # the dump has started and stalled
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == ExitCode.BAD_DUMP, err
    assert [p["pid"] for p in json.loads(out)["processes"]] == [4242]
    assert b"stopped waiting for bpftrace's report (second Ctrl-C)" in err
    assert b"cut off inside @[4343, cut-writer]" in err


def test_bpftrace_that_ignores_interrupts_is_escalated_and_said_so(tcpwdist, tmp_path):
    raw = tmp_path / "raw.txt"
    t0 = time.monotonic()
    done = tcpwdist("--bpftrace", FAKE, "-d", "0.3", "--stop-timeout", "1.5", "-w", str(raw),
                    env={"FAKE_MODE": "deaf"})
    assert time.monotonic() - t0 < 15
    assert "interrupt sent again" in done.err and "SIGTERM sent" in done.err
    assert "SIGKILL sent" in done.err
    assert_one_error_line(done, ExitCode.BPFTRACE_FAILED, "after the interrupt",
                          "killed by signal 9")
    assert b"Attaching 1 probe..." in raw.read_bytes()  # what arrived is kept


def test_closed_stdout_ends_interval_tracing():
    shell = (f"{sys.executable} -c '{AS_ROOT}' --bpftrace {FAKE} -o json 0.2 | head -c 1 "
             ">/dev/null; echo \"rc=${PIPESTATUS[0]}\" >&2")
    done = subprocess.run(["bash", "-c", shell], capture_output=True, cwd=ROOT, timeout=60,
                          env=dict(os.environ, FAKE_MODE="ok"))
    assert b"rc=0" in done.stderr and b"Traceback" not in done.stderr


@pytest.mark.parametrize("mode,reason,by_name", [
    ("kprobe-fails", "the probe could not be attached", ExitCode.NO_PROBE),
    # A newer bpftrace could reject one probe's spelling at compile time.
    ("kprobe-compile-error", "bpftrace exited before attaching its probes",
     ExitCode.BPFTRACE_FAILED),
])
def test_auto_falls_back_when_kprobe_fails(tcpwdist, monkeypatch, mode, reason, by_name):
    # A kernel that looks as if it had kprobes, where kprobe still fails.
    monkeypatch.setattr(host, "kernel", lambda: host.Kernel(btf=False))
    done = tcpwdist("--bpftrace", FAKE, "-d", "0.3", "-o", "json", "-v", env={"FAKE_MODE": mode})
    assert done.code == 0, done.err
    assert f"not using kprobe: {reason}" in done.err
    assert "not using fentry: no kernel BTF" in done.err
    assert "tracing with tracepoint:sock:sock_send_length" in done.err
    assert done.docs[0]["processes"][0]["writes"] == 30
    # Asked for by name, the same failure ends the run.
    done = tcpwdist("--bpftrace", FAKE, "-d", "0.3", "--probe", "kprobe")
    assert done.code == by_name


def test_small_off_an_edge_is_rounded_down_and_said(tcpwdist):
    capture = str(CAPTURES[0])
    done = tcpwdist("-r", capture, "-o", "json", "--small", "100")
    assert done.code == 0
    assert ("tcpwdist: note: --small 100 is not a bucket edge: the summaries count the writes "
            "under 64 bytes (the bucket [64, 128) holds sizes on both sides of 100)") in done.err
    assert {p["small"]["under"] for d in done.docs for p in d["processes"]} == {64}
    assert "not a bucket edge" not in tcpwdist("-r", capture, "--small", "128").err
    for bad in ("0", "-3", "x", str((1 << 40) + 1)):
        with pytest.raises(SystemExit) as exited:
            cli.build_parser().parse_args(["--small", bad])
        assert exited.value.code == 2


def test_until_ctrl_c_the_line_says_how_to_end():
    req = live.Request(cli.program_options(cli.build_parser().parse_args([])))
    assert live.tracing_line(req, "kprobe:tcp_sendmsg") == \
        "Tracing TCP writes via kprobe:tcp_sendmsg... Hit Ctrl-C to end."


@pytest.mark.parametrize("args,line", [
    (("-d", "0.3"), "Tracing TCP writes via tracepoint:sock:sock_send_length for 0.3 s..."),
    (("0.1", "2"), "Tracing TCP writes via tracepoint:sock:sock_send_length: 2 reports, "
                   "0.1 s apart..."),
])
def test_one_stderr_line_before_tracing_unless_verbose(tcpwdist, monkeypatch, args, line):
    monkeypatch.setattr(host, "kernel", lambda: host.Kernel(btf=False, kprobes=False))

    def before_tracing(done: Run) -> list[str]:
        said = done.err.splitlines()
        assert done.code == 0 and line in said, done.err
        return said[:said.index(line) + 1]

    done = tcpwdist("--bpftrace", FAKE, "-o", "json", *args, env={"FAKE_MODE": "ok"})
    assert before_tracing(done) == [line]
    done = tcpwdist("--bpftrace", FAKE, "-o", "json", "-v", *args, env={"FAKE_MODE": "ok"})
    assert before_tracing(done) == [
        "tcpwdist: not using kprobe: this kernel has no kprobes (no kprobe PMU, no "
        "kprobe_events in tracefs)",
        "tcpwdist: not using fentry: no kernel BTF (/sys/kernel/btf/vmlinux)",
        "tcpwdist: not using rawtracepoint: needs bpftrace 0.21 or later",
        "tcpwdist: tracing with " + program.PROBE_MEANINGS["tracepoint"],
        "tcpwdist: not counting failed sends: with bpftrace before 0.23 it costs each write "
        "about 10% more BPF time (JSON failed: null)", line]


def test_reports_on_a_terminal_take_its_width(tmp_path):
    import pexpect
    from tcpwdist import report
    from tcpwdist.dump import Bucket, ProcessHist
    cmd = b"/usr/bin/python3 /srv/app/server.py " + b"--flag " * 40
    row = report.Row(ProcessHist(42, b"python3", (Bucket(1, 2, 5),)), cmd, host="h")
    (tmp_path / "r.json").write_text(report.render_json([row], {"host": "h"}))
    argv = ["-m", "tcpwdist", "-r", str(tmp_path / "r.json")]
    for cols in (200, 120):
        child = pexpect.spawn(sys.executable, argv, cwd=str(ROOT), dimensions=(24, cols),
                              env=dict(os.environ, COLUMNS=""), timeout=60)
        child.expect(pexpect.EOF)
        lines = child.before.decode().splitlines()
        assert max(len(ln) for ln in lines) == cols, lines
    piped = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True)
    assert max(len(ln) for ln in piped.stdout.splitlines()) == 80


# The glue between the dump and the report ----------------------------------

GLUE_DUMP = """\
@[100, small]:
[1]                   50 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|

@[200, big]:
[64K, 128K)            2 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|

@bytes[100, small]: 50
@bytes[200, big]: 131072
"""


def fake_dump(tmp_path: Path, text: str) -> dict[str, str]:
    (tmp_path / "dump.txt").write_text(text)
    return {"FAKE_MODE": "ok", "FAKE_DUMP": str(tmp_path / "dump.txt")}


def test_bytes_are_joined_to_their_process(tcpwdist, tmp_path):
    done = tcpwdist("--bpftrace", FAKE, "--bytes", "-d", "0.3", "-o", "json",
                    env=fake_dump(tmp_path, GLUE_DUMP))
    assert done.code == 0, done.err
    assert {p["pid"]: p["bytes"] for p in done.docs[0]["processes"]} == {100: 50, 200: 131072}
    dist = tcpwdist("--bpftrace", FAKE, "--bytes", "-d", "0.3").out
    assert "   writes: 2   p50: [64K, 128K)   p99: [64K, 128K)   <64: 0 (0%)   bytes: 131072" \
        in dist
    # With a bpftrace that counts failed sends, wider than 80 columns: the
    # summary goes on in a second line.
    dist = tcpwdist("--bpftrace", FAKE, "--bytes", "-d", "0.3",
                    env={"FAKE_VERSION": "0.23.2", **fake_dump(tmp_path, GLUE_DUMP)}).out
    assert "   writes: 2   p50: [64K, 128K)   p99: [64K, 128K)   <64: 0 (0%)   failed: 0\n" \
        "   bytes: 131072\n" in dist


def test_sort_bytes_puts_the_most_bytes_first(tcpwdist, tmp_path):
    env = fake_dump(tmp_path, GLUE_DUMP)
    by_writes = tcpwdist("--bpftrace", FAKE, "--bytes", "-d", "0.3", "-o", "json", env=env)
    assert [p["pid"] for p in by_writes.docs[0]["processes"]] == [100, 200]
    by_bytes = tcpwdist("--bpftrace", FAKE, "--bytes", "-d", "0.3", "-o", "json",
                        "--sort", "bytes")
    assert [p["pid"] for p in by_bytes.docs[0]["processes"]] == [200, 100]
    # Without byte counts there is nothing to sort by: said, not ignored.
    assert_one_error_line(tcpwdist("--bpftrace", FAKE, "-d", "0.3", "--sort", "bytes"),
                          ExitCode.USAGE, "--sort bytes needs the byte counts")
    assert_one_error_line(tcpwdist("-r", str(FOREIGN_PTY), "--sort", "bytes"),
                          ExitCode.USAGE, "the input has no byte counts")


def test_group_by_host_names_a_dump_by_its_file(tcpwdist):
    done = tcpwdist("-r", str(FOREIGN_PTY), "--group-by", "host")
    assert done.out.startswith(f" HOST: {FOREIGN_PTY}  (4 processes)\n")
    assert "None" not in done.out


def test_a_map_as_full_as_its_limit_is_said_to_be_full(tcpwdist, tmp_path):
    # Two (pid, comm, bucket) entries in use: full at --max-keys 2, not at 3.
    env = fake_dump(tmp_path, GLUE_DUMP)
    full = tcpwdist("--bpftrace", FAKE, "--max-keys", "2", "-d", "0.3", "-o", "json", env=env)
    assert "map was full" in full.err and "now 2" in full.err
    assert buckets(full.docs) == {(100, b"small"): {1: 50}, (200, b"big"): {65536: 2}}
    roomy = tcpwdist("--bpftrace", FAKE, "--max-keys", "3", "-d", "0.3", "-o", "json")
    assert roomy.code == 0 and "map was full" not in roomy.err


def test_lost_events_are_said(tcpwdist, tmp_path):
    env = fake_dump(tmp_path, "Lost 17 events\n" + GLUE_DUMP)
    done = tcpwdist("--bpftrace", FAKE, "-d", "0.3", "-o", "json", env=env)
    assert "tcpwdist: warning: bpftrace lost 17 events" in done.err
    (tmp_path / "raw.txt").write_text("Attaching 1 probe...\n\n\nLost 3 events\n" + GLUE_DUMP)
    assert "bpftrace lost 3 events" in tcpwdist("-r", str(tmp_path / "raw.txt")).err


def test_bpftrace_gets_the_program_without_its_header_comment(tcpwdist, tmp_path):
    # A short command line in ps; --program still prints the whole thing.
    record = tmp_path / "argv.json"
    done = tcpwdist("--bpftrace", FAKE, "-d", "0.3", "-c", "nginx",
                    env={"FAKE_MODE": "ok", "FAKE_RECORD": str(record)})
    assert done.code == 0, done.err
    argv = json.loads(record.read_text())["argv"]
    program_text = argv[argv.index("-e") + 1]
    assert program_text.startswith("tracepoint:sock:sock_send_length /") or \
        program_text.startswith("kprobe:tcp_sendmsg /"), program_text
    assert "/*" not in program_text and len(program_text.splitlines()) <= 3
    shown = tcpwdist("--bpftrace", FAKE, "--program", "-c", "nginx").out
    assert shown.startswith("#!/usr/bin/env bpftrace\n/*") and shown.endswith(
        program_text.splitlines()[0] + "\n")


# -r of what people paste: tool-style dumps (tests/fixtures/captured/*-foreign.*)
FOREIGN = Path(__file__).parent / "fixtures" / "captured"
FOREIGN_PTY = FOREIGN / "0.27.1-foreign.pty.txt"


def foreign_pids(capture: Path) -> list[int]:
    truth = json.loads(capture.with_name(capture.name[:-len(".txt")] + ".truth.json").read_text())
    return [p["pid"] for p in truth["processes"]]


def test_read_skips_a_tools_banner_and_says_so_once(tcpwdist):
    done = tcpwdist("-r", str(FOREIGN_PTY), "-o", "json")
    assert done.code == 0, done.err
    assert buckets(done.docs) == {(pid, b"foreign"): {64: 1, 2048: 1}
                                  for pid in foreign_pids(FOREIGN_PTY)}
    assert done.err.count("skipped 2 lines that are not map output") == 1
    assert "line 5 'Tracing TCP writes... Hit Ctrl-C to end.'" in done.err


def test_pid_and_comm_filter_a_dump(tcpwdist):
    first, _, third, fourth = foreign_pids(FOREIGN_PTY)
    done = tcpwdist("-r", str(FOREIGN_PTY), "-o", "json", "-p", str(first), "-p", str(third))
    assert set(buckets(done.docs)) == {(first, b"foreign"), (third, b"foreign")}
    # Both options: a process must match both.
    done = tcpwdist("-r", str(FOREIGN_PTY), "-o", "json", "-p", str(fourth), "-c", "foreign")
    assert set(buckets(done.docs)) == {(fourth, b"foreign")}
    done = tcpwdist("-r", str(FOREIGN_PTY), "-o", "json", "-p", str(fourth), "-c", "other")
    assert buckets(done.docs) == {}


@pytest.mark.parametrize("flag", [["-P", "80"], ["--cgroup", "/sys/fs/cgroup"], ["--bytes"],
                                  ["--probe", "kprobe"]])
def test_what_only_tracing_can_filter_is_a_usage_error_with_a_dump(tcpwdist, flag):
    assert_one_error_line(tcpwdist("-r", str(FOREIGN_PTY), *flag), ExitCode.USAGE,
                          flag[0], "a dump cannot be filtered by")


def test_map_keyed_by_comm_or_comm_pid_is_read_when_named(tcpwdist):
    done = tcpwdist("-r", str(FOREIGN_PTY), "-o", "json", "--map", "@cp")
    assert buckets(done.docs) == {(pid, b"foreign"): {64: 1, 2048: 1}
                                  for pid in foreign_pids(FOREIGN_PTY)}
    assert "@cp is keyed by [comm, pid]" in done.err
    done = tcpwdist("-r", str(FOREIGN_PTY), "-o", "json", "--map", "@c")
    assert buckets(done.docs) == {(None, b"foreign"): {64: 4, 2048: 4}}
    assert "@c is keyed by [comm]: one histogram per comm" in done.err
    assert "members" not in done.docs[0]["processes"][0]
    dist = tcpwdist("-r", str(FOREIGN_PTY), "--map", "@c")
    assert " COMM: foreign\n" in dist.out and "processes)" not in dist.out
    assert_one_error_line(tcpwdist("-r", str(FOREIGN_PTY), "--map", "@c", "-p", "1"),
                          ExitCode.USAGE, "has no PIDs in its keys")


def test_the_same_input_twice_is_refused_and_the_same_bytes_or_host_said(tcpwdist, tmp_path):
    capture = str(FOREIGN_PTY)
    assert_one_error_line(tcpwdist("-r", capture, "-r", capture), ExitCode.USAGE,
                          "is the same input as", "counted twice")
    copy = tmp_path / "copy.txt"
    copy.write_bytes(FOREIGN_PTY.read_bytes())
    done = tcpwdist("-r", capture, "-r", str(copy), "-o", "json")
    assert done.code == 0
    assert "holds the same bytes as" in done.err
    assert any("holds the same bytes" in w for w in done.docs[0]["warnings"])
    # Two of tcpwdist's own reports that claim one host.
    own = tcpwdist("-r", capture, "-o", "json").out
    doc = json.loads(own)
    doc["host"] = "web1"
    (tmp_path / "a.json").write_text(json.dumps(doc) + "\n")
    doc["warnings"] = ["another run"]
    (tmp_path / "b.json").write_text(json.dumps(doc) + "\n")
    done = tcpwdist("-r", str(tmp_path / "a.json"), "-r", str(tmp_path / "b.json"), "-o", "json")
    assert "both report host web1: their processes are added together" in done.err


@pytest.mark.parametrize("mixed", ["text-in-json", "json-in-text"])
def test_text_and_json_mixed_in_one_input_is_refused(tcpwdist, tmp_path, mixed):
    text = FOREIGN_PTY.read_bytes()
    json_dump = (FOREIGN / "0.27.1-foreign.json-pipe.txt").read_bytes()
    data = json_dump + text if mixed == "text-in-json" else text + b"\n" * 2 + json_dump
    (tmp_path / "mixed").write_bytes(data)
    assert_one_error_line(tcpwdist("-r", str(tmp_path / "mixed")), ExitCode.BAD_DUMP,
                          "text and JSON output mixed")


# -w as root in a directory others can write (/tmp): nothing planted there
# is followed or overwritten, and a full disk stops the file, not the trace.
@pytest.mark.parametrize("planted", ["symlink", "file", "dangling symlink"])
def test_write_raw_never_follows_a_symlink_nor_overwrites(tcpwdist, tmp_path, planted):
    victim = tmp_path / "root-owned"
    victim.write_bytes(b"precious\n")
    path = tmp_path / "raw.txt"
    if planted == "symlink":
        path.symlink_to(victim)
    elif planted == "dangling symlink":
        path.symlink_to(tmp_path / "nothing-yet")
    else:
        path.write_bytes(b"someone's file\n")
    done = tcpwdist("--bpftrace", FAKE, "-d", "0.3", "-w", str(path), env={"FAKE_MODE": "ok"})
    assert_one_error_line(done, ExitCode.USAGE, "-w never overwrites")
    assert victim.read_bytes() == b"precious\n"
    assert not (tmp_path / "nothing-yet").exists()
    assert planted != "file" or path.read_bytes() == b"someone's file\n"


def test_a_full_disk_stops_the_raw_file_not_the_trace(tmp_path):
    import resource

    def small_files() -> None:  # files stop at 3000 bytes: EFBIG, as a full disk would
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (3000, 3000))

    raw = tmp_path / "raw.txt"
    done = subprocess.run([sys.executable, "-c", AS_ROOT, "--bpftrace", FAKE, "-d", "0.8",
                           "-w", str(raw), "-o", "json"], capture_output=True, cwd=ROOT,
                          timeout=60, preexec_fn=small_files,
                          env=dict(os.environ, FAKE_MODE="ok", FAKE_PERIOD="0.05"))
    err = done.stderr.decode()
    assert done.returncode == 0, err
    assert "warning: -w " in err and "stopped at a write error (File too large)" in err
    doc = json.loads(done.stdout)
    assert (4242, 30) in {(p["pid"], p["writes"]) for p in doc["processes"]}  # the fake's dump
    assert any("the file is incomplete" in w for w in doc["warnings"])
    assert 0 < raw.stat().st_size <= 3000


def test_a_stdout_that_takes_nothing_is_its_own_exit_code():
    done = subprocess.run(f"{sys.executable} -m tcpwdist -r {CAPTURES[0]} > /dev/full",
                          shell=True, capture_output=True, cwd=ROOT, timeout=60)
    err = done.stderr.decode()
    assert done.returncode == ExitCode.OUTPUT_FAILED, err
    assert err.count("\n") == 1 and "cannot write the report to stdout: No space left" in err


def test_max_keys_is_bounded_before_bpftrace_allocates_it(tcpwdist, capsys):
    with pytest.raises(SystemExit) as exited:  # argparse's own exit
        tcpwdist("--bpftrace", FAKE, "--max-keys", "20000000", "-d", "1")
    assert exited.value.code == ExitCode.USAGE
    assert "more than tcpwdist lets bpftrace allocate (4194304)" in capsys.readouterr().err
    done = tcpwdist("--bpftrace", FAKE, "--max-keys", "4194304", "--program")
    assert done.code == 0, done.err


@pytest.mark.parametrize("times", [1, 2])
def test_ctrl_c_while_python_imports_tcpwdist_is_quiet_and_exit_8(times):
    # The interrupt lands, deterministically, while tcpwdist.cli is imported.
    script = f"""
import os, signal, sys, time
class Interrupt:
    def find_spec(self, name, path, target=None):
        if name == "tcpwdist.cli":
            for _ in range({times}):
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.05)
        return None
sys.meta_path.insert(0, Interrupt())
sys.argv = ["tcpwdist", "-r", {str(CAPTURES[0])!r}]
from tcpwdist import entry
sys.exit(entry.main())
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, cwd=ROOT,
                          timeout=60)
    assert done.returncode == ExitCode.INTERRUPTED_EARLY, done.stderr
    assert done.stderr == b"tcpwdist: interrupted before tracing began\n"
    assert done.stdout == b""


@pytest.mark.parametrize("unbuffered", ["1", None])
def test_an_interrupt_while_stdout_is_full_loses_no_report_bytes(tmp_path, unbuffered):
    # Interval reports of a big map fill the pipe; nobody reads it yet; the
    # interrupt lands while tcpwdist is blocked writing.  With
    # PYTHONUNBUFFERED set, Python's text layer dropped the rest of that
    # write (a report cut at 64 KiB, exit 0).
    sys.path.insert(0, str(ROOT / "bench"))
    import gendump
    text = gendump.render(10000)
    (tmp_path / "map.txt").write_text(text[text.index("\n\n\n") + 3:])
    env = dict(os.environ, FAKE_MODE="ok", FAKE_SNAPSHOT_DUMP=str(tmp_path / "map.txt"),
               FAKE_PERIOD="0.3")
    env.pop("PYTHONUNBUFFERED", None)
    if unbuffered:
        env["PYTHONUNBUFFERED"] = unbuffered
    proc = subprocess.Popen([sys.executable, "-c", AS_ROOT, "--bpftrace", FAKE, "-o", "json",
                             "0.3"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    # A report of ~480 KB: the pipe (64 KiB) fills, and tcpwdist blocks
    # writing to it.  Waited for, not slept for: on a loaded machine the
    # first report may take longer than any fixed sleep.
    deadline = time.monotonic() + 60
    while Path(f"/proc/{proc.pid}/syscall").read_text().split()[:2] != ["1", "0x1"]:
        # blocked in write(1, ...) (x86-64's syscall 1)
        assert time.monotonic() < deadline, "tcpwdist never blocked on the full pipe"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    docs = [json.loads(line) for line in out.splitlines()]  # every line whole
    assert docs and len(docs[0]["processes"]) == 500


def _state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None


def test_bpftrace_stuck_in_the_kernel_is_left_with_the_report_and_said(tcpwdist, tmp_path):
    """A bpftrace that SIGKILL does not end (held at its exit, as one stuck
    in the kernel is held): tcpwdist waits a bounded time, prints the
    report of the dump it got, names the pid, exits 6, and does not wait
    for it (before, it left silently with exit 0)."""
    holder = tmp_path / "holder"
    done = tcpwdist("--bpftrace", FAKE, "-d", "0.3", "--stop-timeout", "1.5", "-o", "json",
                    env={"FAKE_MODE": "stuck-exit", "FAKE_HOLDER": str(holder),
                         "FAKE_HOLD": "60"})
    holder_pid, pid = map(int, holder.read_text().split())
    try:
        assert _state(pid) == "t"  # still held at its exit: tcpwdist did not wait for it
        assert_one_error_line(done, ExitCode.BPFTRACE_FAILED,
                              f"bpftrace (pid {pid}) has not exited 2 s after SIGKILL",
                              "stuck in the kernel")
        assert "SIGKILL sent" in done.err
        [proc] = json.loads(done.out)["processes"]
        assert (proc["pid"], proc["writes"]) == (4242, 30)
    finally:
        os.kill(holder_pid, signal.SIGTERM)  # our own holder lets it go
        deadline = time.monotonic() + 10
        while _state(pid) not in (None, "Z") and time.monotonic() < deadline:
            time.sleep(0.05)


def test_an_interval_capture_cut_by_its_final_dump_counts_each_write_once(tcpwdist):
    """bpftrace 0.27.1, 0.1 s intervals, 400 processes: the interrupt came
    while a periodic dump was printed (no mark after it), then the END
    probe's tcpwdist-final, then the final dump.  Each process made 5
    writes; before the final mark's rule, 40 of them were counted twice."""
    capture = ROOT / "tests" / "fixtures" / "captured" / "0.27.1-interval-400.pty.txt"
    truth = json.loads(capture.with_name("0.27.1-interval-400.pty.truth.json").read_text())
    done = tcpwdist("-r", str(capture), "-o", "json")
    assert done.code == 0, done.err
    got: dict[int, dict[int, int]] = {}
    for doc in done.docs:
        for p in doc["processes"]:
            per = got.setdefault(p["pid"], {})
            for b in p["buckets"]:
                per[b["value"]] = per.get(b["value"], 0) + b["count"]
    assert {pid: {v: n for v, n in got[pid].items() if n} for pid in truth["pids"]} == \
        {pid: {64: 3, 512: 2} for pid in truth["pids"]}
    assert len(got) == len(truth["pids"]) == 400


def test_a_final_dump_that_stops_short_is_partial_and_exit_7(tcpwdist, tmp_path):
    """bpftrace ends every entry of its final dump with a blank line; a live
    run whose final dump stops after an entry's rows, without it (seen
    once with 0.27.1 and 320 processes: 260 printed), has lost what would
    have come next.  Before, that was a note about terminal copies, exit 0."""
    body = ("@[4242, fake-writer]: \n[1]                    7 |@@@@@@@@@@@@@@@@@@@@@|\n\n"
            "@[4243, other]: \n[1]                    2 |@@@@@@|\n")
    (tmp_path / "dump.txt").write_text(body)
    done = tcpwdist("--bpftrace", FAKE, "-d", "0.3", "-o", "json",
                    env={"FAKE_MODE": "ok", "FAKE_DUMP": str(tmp_path / "dump.txt")})
    assert done.code == ExitCode.BAD_DUMP, done.err
    [doc] = done.docs
    assert doc["partial"] is True and [p["pid"] for p in doc["processes"]] == [4242, 4243]
    assert any("final dump stopped after @[4243, other]" in w for w in doc["warnings"])
    assert "as when copied from a terminal" not in done.err


def test_a_pid_with_no_process_is_warned_of_and_traced(tcpwdist):
    """-p of a PID no process has (a typo, say) used to trace in silence."""
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    free = next(p for p in range(pid_max - 1, 1, -1) if not Path(f"/proc/{p}").exists())
    done = tcpwdist("--bpftrace", FAKE, "-d", "0.3", "-p", str(free), "-p", str(os.getpid()),
                    env={"FAKE_MODE": "ok"})
    assert done.code == 0, done.err
    said = [line for line in done.err.splitlines() if "no such process" in line]
    assert said == [f"tcpwdist: warning: -p {free}: no such process: only a process that gets "
                    "this PID later would be traced"]


def test_a_missed_interrupt_that_lost_nothing_is_a_note(tcpwdist):
    """bpftrace 0.17 misses about one interrupt in 85; when the second one
    brings the whole dump, nothing was lost: a note, not a warning."""
    done = tcpwdist("--bpftrace", FAKE, "-d", "0.3", "--stop-timeout", "1.5", "-o", "json",
                    env={"FAKE_MODE": "ignore-int"})
    assert done.code == 0, done.err
    assert [p["writes"] for p in done.docs[0]["processes"]] == [30]
    assert "tcpwdist: note: bpftrace missed the interrupt; a second one stopped it, and its " \
        "final dump arrived whole" in done.err.splitlines()
    assert "warning" not in done.err


def test_a_run_that_saw_no_write_is_complete_not_partial(tcpwdist, tmp_path):
    """No TCP write at all: every snapshot and the final dump are empty.
    The END probe's mark shows the final dump came (empty), so it is the
    report; before, the empty final dump was taken for a lost one, and
    the report was "partial", from the last (empty) snapshot."""
    (tmp_path / "empty.txt").write_text("")
    done = tcpwdist("--bpftrace", FAKE, "-d", "0.6", "-o", "json",
                    env={"FAKE_MODE": "ok", "FAKE_DUMP": str(tmp_path / "empty.txt"),
                         "FAKE_SNAPSHOT_DUMP": str(tmp_path / "empty.txt")})
    assert done.code == 0, done.err
    [doc] = done.docs
    assert doc["processes"] == [] and "partial" not in doc and doc["warnings"] == []
    assert "warning" not in done.err

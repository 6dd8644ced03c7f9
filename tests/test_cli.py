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

from conftest import CAPTURES, ROOT, capture_id, expected_buckets, truth_for
from tcpwdist import cli, host
from tcpwdist.errors import ExitCode

FAKE = str(Path(__file__).parent / "fake" / "bpftrace")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="tracing (even with the fake "
                                "bpftrace) checks for root; run the tests as root")


def tcpwdist(*args: str, env: dict | None = None, input: bytes | None = None,
             timeout: float = 60) -> subprocess.CompletedProcess:
    full = dict(os.environ)
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "tcpwdist", *args], capture_output=True,
                          input=input, env=full, cwd=ROOT, timeout=timeout)


def assert_one_error_line(done: subprocess.CompletedProcess, code: ExitCode, *words: str):
    err = done.stderr.decode()
    assert done.returncode == code, err
    errors = [ln for ln in err.splitlines() if ln.startswith("tcpwdist: error: ")]
    assert len(errors) == 1, err
    assert "Traceback" not in err
    for w in words:
        assert w in errors[0], errors[0]


@pytest.mark.parametrize("capture", CAPTURES, ids=capture_id)
def test_every_capture_reports_its_truth_as_json(capture):
    done = tcpwdist("-r", str(capture), "-o", "json")
    assert done.returncode == 0, done.stderr
    got: dict = {}
    for line in done.stdout.decode().splitlines():  # one document per interval
        for p in json.loads(line)["processes"]:
            per = got.setdefault((p["pid"], bytes.fromhex(p["comm_hex"])), {})
            for b in p["buckets"]:
                if b["count"]:
                    per[b["value"]] = per.get(b["value"], 0) + b["count"]
    want = expected_buckets(truth_for(capture))
    assert {k: got.get(k) for k in want} == want


def test_stdin_and_file_give_the_same_report():
    capture = next(c for c in CAPTURES if c.name == "basic.pty.txt")
    by_file = tcpwdist("-r", str(capture))
    by_stdin = tcpwdist("-r", "-", input=capture.read_bytes())
    assert by_file.stdout == by_stdin.stdout and by_file.stdout.count(b" PID: ") == 4


def test_errors_are_one_line_with_exit_codes(tmp_path):
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


def test_usage_errors_exit_2():
    for argv in (["-d", "-1"], ["-o", "xml"], ["-r", "x", "--program"], ["-r", "x", "-d", "2"]):
        done = tcpwdist(*argv)
        assert done.returncode == ExitCode.USAGE, argv
        assert b"Traceback" not in done.stderr


def test_cut_dump_reports_what_is_complete(tmp_path):
    capture = next(c for c in CAPTURES if c.name == "basic.pipe.txt" and "0.17" in str(c))
    data = capture.read_bytes()
    cut = data[: data.index(b"@[23478")+300]
    (tmp_path / "cut").write_bytes(cut)
    done = tcpwdist("-r", str(tmp_path / "cut"), "-o", "json")
    assert done.returncode == ExitCode.BAD_DUMP
    pids = {p["pid"] for p in json.loads(done.stdout)["processes"]}
    assert 23478 not in pids and 23476 in pids
    assert b"cut off inside @[23478, basic-repeat]" in done.stderr


def test_empty_capture_is_an_empty_report():
    capture = next(c for c in CAPTURES if c.name == "empty.pty.txt")
    done = tcpwdist("-r", str(capture), "-o", "json")
    assert done.returncode == 0 and json.loads(done.stdout)["processes"] == []


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


def test_help_has_examples_and_exit_codes():
    out = tcpwdist("--help").stdout.decode()
    assert "examples:" in out and "tcpwdist -d 10" in out
    for code in ExitCode:
        assert f"  {int(code)}  " in out



# Tracing flows, with the fake bpftrace -------------------------------------

def start(*args: str, **env: str) -> subprocess.Popen:
    full = dict(os.environ, **env)
    return subprocess.Popen([sys.executable, "-m", "tcpwdist", "--bpftrace", FAKE, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full, cwd=ROOT)


def wait_for_tracing(proc: subprocess.Popen) -> None:
    line = b""
    while b"Hit Ctrl-C" not in line:
        line = proc.stderr.readline()
        assert line, "tcpwdist ended before tracing"


@needs_root
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_signal_ends_tracing_and_prints_the_report(sig):
    proc = start("-o", "json", FAKE_MODE="ok")
    wait_for_tracing(proc)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    [p] = json.loads(out)["processes"]
    assert (p["pid"], p["comm"], p["writes"]) == (4242, "fake-writer", 30)


@needs_root
def test_duration_ends_tracing():
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "tcpwdist", "--bpftrace", FAKE, "-d", "0.5",
                           "-o", "table"], capture_output=True, cwd=ROOT, timeout=30,
                          env=dict(os.environ, FAKE_MODE="ok"))
    assert done.returncode == 0
    assert done.stdout.decode().split("\n")[2].split() == ["4242", "fake-writer", "1", "7"]
    assert time.monotonic() - t0 < 10


@needs_root
@pytest.mark.parametrize("mode,args,code,words", [
    ("attach-fail", ["--probe", "kprobe"], ExitCode.NO_PROBE, ["no probe could be attached"]),
    ("not-root", [], ExitCode.PERMISSION, ["not allowed"]),
    ("die", [], ExitCode.BPFTRACE_FAILED, ["while tracing", "exit status 1"]),
    ("crash", [], ExitCode.BPFTRACE_FAILED, ["signal 11"]),
    ("hang", ["--attach-timeout", "0.5"], ExitCode.BPFTRACE_FAILED, ["did not attach"]),
    ("garbage", [], ExitCode.BAD_DUMP, ["not bpftrace map output"]),
])
def test_bpftrace_faults(mode, args, code, words):
    done = subprocess.run([sys.executable, "-m", "tcpwdist", "--bpftrace", FAKE, "-d", "0.5",
                           *args], capture_output=True, cwd=ROOT, timeout=60,
                          env=dict(os.environ, FAKE_MODE=mode))
    assert_one_error_line(done, code, *words)


@needs_root
def test_interrupt_before_attach_exits_8():
    proc = start(FAKE_MODE="hang")
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == ExitCode.INTERRUPTED_EARLY, err


@needs_root
def test_write_raw_replays_to_the_same_report(tmp_path):
    raw = tmp_path / "raw.txt"
    live = subprocess.run([sys.executable, "-m", "tcpwdist", "--bpftrace", FAKE, "-d", "0.3",
                           "-o", "json", "-w", str(raw)], capture_output=True, cwd=ROOT,
                          timeout=30, env=dict(os.environ, FAKE_MODE="ok"))
    replay = tcpwdist("-r", str(raw), "-o", "json")
    # The live run knows its host and /proc; the replay only bpftrace's output.
    keep = lambda doc: [(p["pid"], p["comm"], p["buckets"], p["writes"], p["p50"], p["p99"])
                        for p in json.loads(doc)["processes"]]
    assert keep(live.stdout) == keep(replay.stdout) and keep(live.stdout)


def _help() -> str:
    return tcpwdist("--help", env={"COLUMNS": "80"}).stdout.decode()


def test_readme_shows_the_real_help():
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- help -->\n```\n", 1)[1].split("```\n<!-- /help -->", 1)[0]
    assert block == _help()


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


@needs_root
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


@needs_root
def test_bpftrace_that_ignores_interrupts_is_escalated_and_said_so(tmp_path):
    raw = tmp_path / "raw.txt"
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "tcpwdist", "--bpftrace", FAKE, "-d", "0.3",
                           "--stop-timeout", "1.5", "-w", str(raw)], capture_output=True,
                          cwd=ROOT, timeout=60, env=dict(os.environ, FAKE_MODE="deaf"))
    err = done.stderr.decode()
    assert time.monotonic() - t0 < 15
    assert "interrupt sent again" in err and "SIGTERM sent" in err and "SIGKILL sent" in err
    assert_one_error_line(done, ExitCode.BPFTRACE_FAILED, "after the interrupt",
                          "killed by signal 9")
    assert b"Attaching 1 probe..." in raw.read_bytes()  # what arrived is kept


@needs_root
def test_closed_stdout_ends_interval_tracing():
    shell = (f"{sys.executable} -m tcpwdist --bpftrace {FAKE} -o json 0.2 | head -c 1 >/dev/null;"
             " echo \"rc=${PIPESTATUS[0]}\" >&2")
    done = subprocess.run(["bash", "-c", shell], capture_output=True, cwd=ROOT, timeout=60,
                          env=dict(os.environ, FAKE_MODE="ok"))
    assert b"rc=0" in done.stderr and b"Traceback" not in done.stderr


@needs_root
@pytest.mark.parametrize("mode,reason,by_name", [
    ("kprobe-fails", "the probe could not be attached", ExitCode.NO_PROBE),
    # A newer bpftrace could reject one probe's spelling at compile time.
    ("kprobe-compile-error", "bpftrace exited before attaching its probes",
     ExitCode.BPFTRACE_FAILED),
])
def test_auto_falls_back_when_kprobe_fails(monkeypatch, capsys, mode, reason, by_name):
    # A kernel that looks as if it had kprobes, where kprobe still fails.
    monkeypatch.setattr(host, "gather", lambda: host.Facts("/sys/kernel/tracing", True, True,
                                                           False))
    monkeypatch.setenv("FAKE_MODE", mode)
    code = cli.main(["--bpftrace", FAKE, "-d", "0.3", "-o", "json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert f"not using kprobe: {reason}" in err
    assert "not using fentry: no kernel BTF" in err
    assert "tracing with tracepoint:sock:sock_send_length" in err
    assert json.loads(out)["processes"][0]["writes"] == 30
    # Asked for by name, the same failure ends the run.
    code = cli.main(["--bpftrace", FAKE, "-d", "0.3", "--probe", "kprobe"])
    assert code == by_name
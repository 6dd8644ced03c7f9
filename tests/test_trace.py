"""The runner's control flow against a fake bpftrace that misbehaves on demand."""

from __future__ import annotations

import io
import signal
import time
from pathlib import Path

import pytest

from tcpwdist import marks, trace
from tcpwdist.errors import (BpftraceFailed, BpftraceMissing, InterruptedEarly, NoProbe,
                             PermissionDenied)

FAKE = str(Path(__file__).parent / "fake" / "bpftrace")
FAST = trace.Timeouts(attach=5, settle=0.2, quiet=0.5, stop=5)


def session(mode: str, raw=None, stop=lambda: False, abort=lambda: False, **env):
    env = {"FAKE_MODE": mode, **env}
    return trace.Session(FAKE, ["-e", "tracepoint:x { }"], env, FAST, raw,
                         stop_requested=stop, abort_requested=abort)


def test_attach_trace_interrupt_dump():
    raw = io.BytesIO()
    with session("ok", raw) as s:
        s.wait_attached(version_has_notice=True)
        s.trace(deadline=time.monotonic() + 0.3)
        s.stop()
        out = s.outcome()
    assert out.exit_status == 0 and out.escalations == []
    assert b"@[4242, fake-writer]: " in out.output
    assert raw.getvalue() == out.output  # -w gets every byte, as it arrives


def test_old_version_without_notice_settles_after_attaching_line():
    with session("ok", FAKE_VERSION="0.12.0") as s:
        t0 = time.monotonic()
        s.wait_attached(version_has_notice=False)
        assert time.monotonic() - t0 >= FAST.settle
        s.stop()
        assert b"fake-writer" in s.outcome().output


@pytest.mark.parametrize("mode,error", [
    ("attach-fail", NoProbe),
    ("not-root", PermissionDenied),
    ("compile-error", BpftraceFailed),
])
def test_exit_before_attach_is_classified(mode, error):
    with pytest.raises(error) as info:
        with session(mode) as s:
            s.wait_attached(version_has_notice=True)
    assert info.value.details, "the last lines bpftrace printed are kept"


def test_hang_before_attach_is_bounded():
    t0 = time.monotonic()
    with pytest.raises(BpftraceFailed, match="did not attach"):
        with trace.Session(FAKE, ["-e", "x"], {"FAKE_MODE": "hang"},
                           trace.Timeouts(attach=0.5)) as s:
            s.wait_attached(version_has_notice=True)
    assert time.monotonic() - t0 < 3
    assert not s.child.isalive()


def test_interrupt_before_attach():
    with pytest.raises(InterruptedEarly):
        with session("hang", stop=lambda: True) as s:
            s.wait_attached(version_has_notice=True)
    assert not s.child.isalive()


def test_missed_interrupt_is_sent_again():
    with session("ignore-int") as s:
        s.wait_attached(version_has_notice=True)
        s.stop()
        out = s.outcome()
    assert out.escalations == ["interrupt sent again"]
    assert b"fake-writer" in out.output and out.exit_status == 0


def test_deaf_bpftrace_is_killed_and_said_so():
    with session("deaf") as s:
        s.wait_attached(version_has_notice=True)
        t0 = time.monotonic()
        s.stop()
        out = s.outcome()
    assert out.escalations == ["interrupt sent again", "SIGTERM sent", "SIGKILL sent"]
    assert out.signal_status == signal.SIGKILL
    assert time.monotonic() - t0 < 5


def test_slow_dump_is_waited_for_while_it_flows():
    with session("slow-dump") as s:  # 0.05 s a line, 0.5 s quiet limit
        s.wait_attached(version_has_notice=True)
        s.stop()
        out = s.outcome()
    assert out.escalations == [] and out.output.rstrip().endswith(b"|")


def test_death_while_tracing_is_seen():
    with session("die") as s:
        s.wait_attached(version_has_notice=True)
        s.trace(deadline=time.monotonic() + 5)
        assert s.eof
        s.stop()
        assert s.outcome().exit_status == 1


def test_second_interrupt_abandons_the_dump():
    with session("deaf", abort=lambda: True) as s:
        s.wait_attached(version_has_notice=True)
        s.stop()
    assert s.outcome().aborted and not s.child.isalive()


def test_missing_bpftrace():
    with pytest.raises(BpftraceMissing):
        trace.Session("/nonexistent/bpftrace", [], {}, FAST)


def test_environment_reaches_bpftrace(tmp_path):
    record = tmp_path / "rec.json"
    with session("ok", FAKE_RECORD=str(record), BPFTRACE_MAP_KEYS_MAX="123") as s:
        s.wait_attached(version_has_notice=True)
        s.stop()
    import json
    seen = json.loads(record.read_text())
    assert seen["env"]["BPFTRACE_MAP_KEYS_MAX"] == "123"
    assert seen["env"][trace.NOTIFY_ENV] == "1"
    assert seen["argv"] == ["-e", "tracepoint:x { }"]


def test_take_through_a_mark_trims_the_output_but_not_the_raw_file():
    raw = io.BytesIO()
    # The fake prints its dump and an interval mark every 0.2 s.
    s = trace.Session(FAKE, ["-e", 'interval:ms:200 { print(@); printf("tcpwdist-total %s\\n", '
                                   'strftime("%H:%M:%S.%f", nsecs)); }'],
                      {"FAKE_MODE": "ok"}, FAST, raw)
    with s:
        s.wait_attached(version_has_notice=True)
        assert s.take_through(marks.TOTAL) is None  # no mark yet
        deadline = time.monotonic() + 5
        taken = None
        while taken is None and time.monotonic() < deadline:
            s.trace(time.monotonic() + 0.1)
            taken = s.take_through(marks.TOTAL)
        assert taken is not None and taken.rstrip().split(b"\n")[-1].startswith(
            b"tcpwdist-total ")
        assert b"tcpwdist-total" not in s.output  # nothing after the last mark is lost
        s.stop()
        out = s.outcome()
    assert raw.getvalue().startswith(taken) and raw.getvalue().endswith(out.output)
    assert taken.count(b"@[4242, fake-writer]") >= 1


def test_the_tail_of_a_failure_leaves_out_the_harmless_rlimit_error_and_the_quotes():
    # bpftrace 0.17's words on this host when kprobe:tcp_sendmsg cannot attach.
    out = (b'ERROR: Unknown error -1: couldn\'t set RLIMIT_MEMLOCK for bpftrace. If your program '
           b'is not loading, you can try "ulimit -l 8192" to fix the problem\r\n'
           b"stdin:1:1-19: ERROR: kprobe tcp_sendmsg: no such probe\r\n"
           b"kprobe:tcp_sendmsg { @[pid, comm] = hist(arg2); }\r\n"
           b"~~~~~~~~~~~~~~~~~~\r\n")
    assert trace.tail(out) == ("stdin:1:1-19: ERROR: kprobe tcp_sendmsg: no such probe",)

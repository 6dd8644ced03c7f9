"""The suite signals only what it started: proved with a real pytest run
inside this one, beside a stranger's process named bpftrace."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import procguard

TESTS = Path(__file__).parent


def named_bpftrace(tmp: Path) -> list[str]:
    """argv of a harmless process whose comm is "bpftrace" (sleep, renamed)."""
    exe = tmp / "bin" / "bpftrace"
    exe.parent.mkdir(exist_ok=True)
    shutil.copy(shutil.which("sleep") or "/bin/sleep", exe)
    return [str(exe), "300"]


def test_a_strangers_bpftrace_survives_a_suite_that_leaks_its_own(tmp_path):
    argv = named_bpftrace(tmp_path)
    stranger = subprocess.Popen(argv)  # not a descendant of the inner run
    inner = tmp_path / "inner"
    inner.mkdir()
    (inner / "conftest.py").write_text(textwrap.dedent(f"""\
        import sys
        sys.path.insert(0, {str(TESTS)!r})
        from procguard import no_process_left_behind, subreaper  # noqa: F401
        """))
    leak_pid = tmp_path / "leak.pid"
    (inner / "test_leak.py").write_text(textwrap.dedent(f"""\
        import subprocess
        def test_leaks_a_bpftrace():
            p = subprocess.Popen({argv!r})
            open({str(leak_pid)!r}, "w").write(str(p.pid))
        """))
    try:
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                               "--rootdir", str(inner), str(inner)],
                              capture_output=True, text=True, timeout=120, cwd=inner)
        leaked = int(leak_pid.read_text())
        # The inner run caught its own leak, by pid, and failed the test.
        assert done.returncode == 1, done.stdout + done.stderr
        assert f"processes left running: {leaked} (" in done.stdout
        deadline = time.monotonic() + 5
        while (st := procguard._stat(leaked)) is not None and st[1] != "Z":
            assert time.monotonic() < deadline, "the inner run did not kill its own leak"
            time.sleep(0.05)
        # The stranger, also named bpftrace, was not touched.
        assert stranger.poll() is None
        assert Path(f"/proc/{stranger.pid}/comm").read_text().strip() == "bpftrace"
    finally:
        stranger.kill()
        stranger.wait()


def test_descendants_follow_orphans_back_to_the_subreaper(tmp_path):
    # A double fork: the grandchild's parent exits, so it is re-parented
    # to this (subreaper) process, and is still ours to find.
    out = subprocess.run(["sh", "-c", "sleep 300 >/dev/null 2>&1 & echo $!"], capture_output=True,
                         text=True, timeout=10)
    orphan = int(out.stdout)
    try:
        assert orphan in {p.pid for p in procguard.descendants()}
    finally:
        procguard.kill_own({p for p in procguard.descendants() if p.pid == orphan})

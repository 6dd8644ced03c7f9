"""README.md's first command, verbatim, on a pristine Debian.

``TCPWDIST_PRISTINE`` names fresh debootstrap chroots (comma-separated;
.ci/pristine makes them, .ci/run names Debian 12's and 13's): no Python,
no pip, no man.  In each, the source tree is copied to /root/tcpwdist and
the command copied from README.md is run there as root; then `man -w
tcpwdist` must find the page, and the installed tcpwdist must count a
workload's writes exactly.  Without the variable the test skips (in CI it
fails): it needs root, the network to the Debian archive, and minutes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT, buckets
from livekit import IN_CI, Workload
from tcpwdist import live

CHROOTS = [p for p in os.environ.get("TCPWDIST_PRISTINE", "").split(",") if p]
# A root login's PATH on Debian (and sudo's secure_path, less the games).
ROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def readme_install_command() -> str:
    """The first command README.md shows: the first ```sh block."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"^```sh\n(.*?)^```$", text, re.M | re.S)
    assert block is not None
    [command] = block.group(1).strip().splitlines()
    return command


def in_chroot(chroot: Path, command: str) -> list[str]:
    return ["chroot", str(chroot), "env", "-i", f"PATH={ROOT_PATH}", "HOME=/root",
            "LANG=C.UTF-8", "sh", "-c", command]


def test_the_readme_command_is_the_install_script_then_a_trace():
    assert readme_install_command() == "sh scripts/install.sh && tcpwdist -d 10"


@pytest.fixture(params=CHROOTS or [None], ids=lambda p: Path(p).name if p else "no-chroot")
def pristine(request) -> Path:
    if request.param is None:
        reason = ("set TCPWDIST_PRISTINE to fresh debootstrap chroots (.ci/pristine makes "
                  "them; .ci/run does)")
        if IN_CI:
            pytest.fail(f"the install test must run in CI: {reason}")
        pytest.skip(reason)
    chroot = Path(request.param)
    assert not (chroot / "usr/bin/python3").exists(), "not pristine: it has a Python"
    return chroot


def test_readme_command_installs_and_traces_on_a_pristine_debian(pristine, tmp_path):
    tree = pristine / "root" / "tcpwdist"
    shutil.copytree(ROOT, tree, ignore=shutil.ignore_patterns(
        ".git", "*.egg-info", "__pycache__", ".mypy_cache", "build"))
    done = subprocess.run(in_chroot(pristine, f"cd /root/tcpwdist && "
                                              f"{readme_install_command()}"),
                          capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert re.search(r"^Tracing TCP writes via \S+ for 10 s\.\.\.$", done.stderr, re.M), \
        done.stderr
    # On root's PATH (and so sudo's), the man page where man finds it.
    # (Debian's /usr/local/man is a link to /usr/local/share/man.)
    which = subprocess.run(in_chroot(pristine, 'command -v tcpwdist; '
                                               'realpath "$(man -w tcpwdist)"'),
                           capture_output=True, text=True, timeout=60)
    assert which.stdout.split() == ["/usr/local/bin/tcpwdist",
                                    "/usr/local/share/man/man8/tcpwdist.8"], which
    # The installed tcpwdist counts exactly.
    w = Workload(tmp_path, "100x6,3000x2")
    proc = subprocess.Popen(in_chroot(pristine, f"exec tcpwdist -o json -c {w.comm}"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    said = []
    while not (line := proc.stderr.readline()).startswith(live.TRACING.encode()):
        said.append(line)
        assert line, b"".join(said).decode()
    w.go()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    docs = [json.loads(x) for x in out.decode().splitlines()]
    assert {pid: per for (pid, _), per in buckets(docs, w.comm).items()} == \
        {w.pids[0]: {64: 6, 2048: 2}}

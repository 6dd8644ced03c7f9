"""The Ansible example, run for real against localhost (connection: local):
it traces, fetches and merges, and the merged report holds the workload's
exact counts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import ROOT
from livekit import Workload, require_live

PLAYBOOK = ROOT / "examples" / "fleet.yml"

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(shutil.which("ansible-playbook") is None,
                       reason="ansible-playbook not installed (pip install ansible-core)"),
]


def test_playbook_merges_exact_counts(tmp_path):
    require_live()
    w = Workload(tmp_path, "1000x23,1x7")
    raw = tmp_path / "raw.txt"
    outdir = tmp_path / "reports"
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_HOST_KEY_CHECKING="0",
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"),
               PATH=f"{Path(os.sys.executable).parent}:{os.environ['PATH']}")
    play = subprocess.Popen(
        ["ansible-playbook", "-i", "localhost,", "-c", "local", str(PLAYBOOK),
         "-e", "hosts=localhost", "-e", "duration=6", "-e", f"outdir={outdir}",
         "-e", "use_become=false", "-e", f"raw={raw}",
         "-e", f"ansible_python_interpreter={os.sys.executable}"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    # tcpwdist -w writes bpftrace's output as it arrives: once the attach
    # notice is in the file, the workload may write.
    deadline = time.monotonic() + 60
    while b"__BPFTRACE_NOTIFY_PROBES_ATTACHED" not in (raw.read_bytes() if raw.exists() else b""):
        assert play.poll() is None, play.stdout.read().decode()
        assert time.monotonic() < deadline, "tcpwdist did not attach under ansible"
        time.sleep(0.05)
    w.go()
    log, _ = play.communicate(timeout=120)
    assert play.returncode == 0, log.decode()[-3000:]
    assert (outdir / "localhost.json").exists()
    merged = json.loads((outdir / "merged.json").read_text())
    assert merged["group_by"] == "comm"
    [p] = [p for p in merged["processes"] if p["comm"] == w.comm]
    assert {b["value"]: b["count"] for b in p["buckets"] if b["count"]} == {512: 23, 1: 7}

"""Shared test helpers: the real captures and their ground truth."""

from __future__ import annotations

import base64
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import pytest

from procguard import no_process_left_behind, subreaper  # noqa: F401 (autouse fixtures)

FIXTURES = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).parent.parent

# Every real capture (not the stderr side files), found by glob: adding a
# capture with its truth file is adding a test case.
CAPTURES = sorted(p for p in FIXTURES.glob("0.*/*.txt") if not p.name.endswith(".stderr.txt")
                  and (p.parent / f"{p.name.split('.')[0]}.truth.json").exists())


def truth_for(capture: Path) -> dict:
    scenario = capture.name.split(".")[0]
    return json.loads((capture.parent / f"{scenario}.truth.json").read_text())


def expected_buckets(truth: dict, capture: Path | None = None) -> dict[tuple[int, bytes],
                                                                       dict[int, int]]:
    """{(pid, comm bytes): {bucket lower bound: count}} for every workload
    pid, the comm as ``capture`` can show it: bpftrace 0.24+ strips the
    spaces from JSON keys, for good."""
    stripped = capture is not None and ".json" in capture.name and \
        capture.parent.name >= "0.24"
    return {(p["pid"], base64.b64decode(p["comm_b64"]).replace(b" ", b"") if stripped
             else base64.b64decode(p["comm_b64"])):
            {b["lo"]: b["count"] for b in p["expected_hist"]}
            for p in truth["processes"]}


def log2_bucket(lo: int) -> int:
    """The log2 bucket (the truth files' rule) holding the value ``lo``: the
    finer buckets of hist(x, k) nest inside these."""
    return lo if lo < 2 else 1 << (lo.bit_length() - 1)


def folded(got: dict[tuple[int, bytes], dict[int, int]]) -> dict[tuple[int, bytes],
                                                                 dict[int, int]]:
    out: dict[tuple[int, bytes], dict[int, int]] = {}
    for key, per in got.items():
        mine = out.setdefault(key, {})
        for lo, n in per.items():
            mine[log2_bucket(lo)] = mine.get(log2_bucket(lo), 0) + n
    return out


def capture_id(p: Path) -> str:
    return f"{p.parent.name}/{p.name}"


# --------------------------------------------------------------------------
# Running tcpwdist, and reading what it reported.


@dataclass
class Run:
    """What one tcpwdist run printed, and its exit code."""

    code: int
    out: str
    err: str

    @property
    def docs(self) -> list[dict]:
        """The JSON documents of stdout (-o json: one per line)."""
        return [json.loads(line) for line in self.out.splitlines() if line.strip()]

    def errors(self) -> list[str]:
        return [ln for ln in self.err.splitlines() if ln.startswith("tcpwdist: error: ")]


@pytest.fixture
def tcpwdist(capsys, monkeypatch) -> Callable[..., Run]:
    """tcpwdist in this process: ``cli.main(argv)`` with stdout and stderr
    captured, an optional stdin, extra environment, and the root check
    answered as asked (the fake bpftrace needs no root)."""
    from tcpwdist import cli, live

    def run(*argv: str, stdin: bytes | None = None, env: dict[str, str] | None = None,
            root: bool = True) -> Run:
        monkeypatch.setattr(live, "is_root", lambda: root)
        for name, value in (env or {}).items():
            monkeypatch.setenv(name, value)
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
        capsys.readouterr()
        code = cli.main(list(argv))
        out, err = capsys.readouterr()
        return Run(code, out, err)

    return run


Buckets = dict[tuple[int, bytes], dict[int, int]]


def buckets(docs: Iterable[dict], comm: str | None = None) -> Buckets:
    """{(pid, comm bytes): {bucket value: count}} of tcpwdist JSON reports,
    non-zero buckets only, summed over the documents (intervals, hosts);
    only processes whose comm is ``comm``, if given."""
    out: Buckets = {}
    for doc in docs:
        for p in doc["processes"]:
            if comm is not None and p["comm"] != comm:
                continue
            per = out.setdefault((p["pid"], bytes.fromhex(p["comm_hex"])), {})
            for b in p["buckets"]:
                if b["count"]:
                    per[b["value"]] = per.get(b["value"], 0) + b["count"]
    return out

"""Shared test helpers: the real captures and their ground truth."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from procguard import no_process_left_behind, subreaper  # noqa: F401 (autouse fixtures)

FIXTURES = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).parent.parent

# Every real capture (not the stderr side files), found by glob: adding a
# capture with its truth file is adding a test case.
CAPTURES = sorted(p for p in FIXTURES.glob("0.*/*.txt") if not p.name.endswith(".stderr.txt"))


def truth_for(capture: Path) -> dict:
    scenario = capture.name.split(".")[0]
    return json.loads((capture.parent / f"{scenario}.truth.json").read_text())


def expected_buckets(truth: dict) -> dict[tuple[int, bytes], dict[int, int]]:
    """{(pid, comm bytes): {bucket lower bound: count}} for every workload pid."""
    return {(p["pid"], base64.b64decode(p["comm_b64"])):
            {b["lo"]: b["count"] for b in p["expected_hist"]}
            for p in truth["processes"]}


def capture_id(p: Path) -> str:
    return f"{p.parent.name}/{p.name}"

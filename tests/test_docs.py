"""README, man page and example file tell the same story as the code:
checked against the real --help, option list, exit codes and outputs."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT
from tcpwdist import cli, live, program
from tcpwdist.errors import EXIT_CODE_MEANINGS

MAN = (ROOT / "man" / "man8" / "tcpwdist.8").read_text()
EXAMPLE = (ROOT / "scripts" / "tcpwdist_example.txt").read_text()


def real_options() -> set[str]:
    return {s for a in cli.build_parser()._actions for s in a.option_strings}


def man_options() -> set[str]:
    section = MAN.split(".SH OPTIONS", 1)[1].split("\n.SH ", 1)[0]
    found = re.findall(r"\\fB(\\-\\-?[a-zA-Z\\-]+|\\-[a-zA-Z])\\fR", section)
    return {f.replace("\\-", "-") for f in found}


def test_man_page_documents_every_option_and_no_other():
    assert man_options() == real_options()


def test_man_page_exit_codes():
    table = MAN.split(".SH EXIT STATUS", 1)[1].split(".TE", 1)[0]
    rows = re.findall(r"^(\d+)\t(.+)$", table, re.M)
    assert [(int(c), t) for c, t in rows] == [(int(c), t) for c, t in EXIT_CODE_MEANINGS.items()]


def test_man_page_probes_match_the_code():
    for probe in program.PROBES:
        assert f"\\fB{probe}\\fR" in MAN.split(".SH PROBES", 1)[1].split(".SH ", 1)[0]


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff is not installed")
def test_man_page_renders_without_warnings():
    done = subprocess.run(["groff", "-man", "-t", "-ww", "-z", str(ROOT / "man/man8/tcpwdist.8")],
                          capture_output=True, text=True)
    assert done.returncode == 0 and done.stderr == ""


def example_commands() -> list[list[str]]:
    cmds = []
    for line in EXAMPLE.splitlines():
        m = re.match(r"^[#$] (tcpwdist .*?)(?: \| .*)?$", line)
        if m:
            cmds.append(shlex.split(m.group(1))[1:])
    return cmds


def test_example_commands_are_valid_invocations():
    assert len(example_commands()) >= 5
    for argv in example_commands():
        if argv == ["-h"]:
            continue
        cli.build_parser().parse_args(argv)  # SystemExit on a bad option


def test_example_and_readme_status_lines_match_the_code():
    said = [ln for ln in (EXAMPLE + (ROOT / "README.md").read_text()).splitlines()
            if ln.startswith("tcpwdist: tracing with ")]
    assert said
    for line in said:
        assert line[len("tcpwdist: tracing with "):] in program.PROBE_MEANINGS.values()
    assert live.TRACING in EXAMPLE


def test_example_usage_line_is_real():
    usage = cli.build_parser().format_usage().strip()
    assert usage in EXAMPLE


def test_example_capture_excerpt_is_real_output():
    done = subprocess.run([sys.executable, "-m", "tcpwdist", "-r",
                           "tests/fixtures/0.17.0/nasty.pty.txt", "-o", "table"],
                          cwd=ROOT, capture_output=True, text=True)
    real = done.stdout.splitlines()
    block = EXAMPLE.split("nasty.pty.txt -o table\n", 1)[1].split("\n\n", 1)[0].splitlines()
    shown = [ln for ln in block if ln != "[...]"]
    assert shown and all(ln in real for ln in shown)
    assert real[:8] == block[:8]


def test_docs_reports_are_in_the_current_format():
    """The runs shown in README and the example file look like today's output."""
    from tcpwdist import report
    from tcpwdist.dump import Bucket, ProcessHist
    shape = report.summary_line(report.Row(ProcessHist(1, b"x", (Bucket(1, 2, 3),))))
    pattern = re.escape(shape).replace("3", r"\d+").replace(re.escape("[1]"), r"\[[^]]+\)?\]?")
    pattern = pattern.replace("100%", r"(?:\d+%|<1%|>99%|-)")
    for text in (EXAMPLE, (ROOT / "README.md").read_text()):
        blocks = text.split(" PID: ")[1:]
        assert blocks
        for block in blocks:
            if "CMD:" not in block.split("\n")[0]:
                continue
            assert re.match(pattern, block.split("\n")[1]), block.split("\n")[1]

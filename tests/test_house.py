"""The house rules, checked: sizes, complexity, and imports that run one way."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

PACKAGE = ROOT / "tcpwdist"
MODULES = sorted(PACKAGE.glob("*.py"))
# The pure core: nothing from the edge (processes, pty, /proc, signals).
PURE = {"program", "dump", "textdump", "jsondump", "report", "table", "conns", "shown", "errors",
        "marks", "scan", "options"}
EDGE_LIBRARIES = {"pexpect": "trace", "pyparsing": "textdump", "tabulate": "table"}


def lines(path: Path) -> int:
    return len(path.read_text().splitlines())


def imports(path: Path) -> set[str]:
    """What a module imports when it runs (not under ``if TYPE_CHECKING``)."""
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and getattr(block.test, "id", None) == "TYPE_CHECKING"
                   for stmt in block.body for n in ast.walk(stmt)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            if node.module == "tcpwdist":
                found.update(f"tcpwdist.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


def test_cli_is_a_front_door_and_no_module_is_a_warehouse():
    assert lines(PACKAGE / "cli.py") <= 350
    assert {p.name: lines(p) for p in MODULES if lines(p) > 700} == {}


def test_no_function_over_complexity_15():
    radon = pytest.importorskip("radon.complexity")
    over = [(p.name, b.name, b.complexity) for p in MODULES
            for b in radon.cc_visit(p.read_text()) if b.complexity > 15]
    assert over == []


def test_imports_run_one_way():
    for path in MODULES:
        mods = imports(path)
        name = path.stem
        assert "tcpwdist.cli" not in mods or name == "entry", f"{name} imports cli"
        if name in PURE:
            ours = {m.split(".", 1)[1] for m in mods if m.startswith("tcpwdist.")}
            assert ours <= PURE, f"pure {name} imports {ours - PURE}"
            assert not mods & {"subprocess", "signal", "pexpect", "socket"}, name
        for library, owner in EDGE_LIBRARIES.items():
            assert library not in mods or name == owner, f"{library} belongs to {owner}"


def test_what_tracing_does_not_need_before_bpftrace_starts_is_not_imported():
    # Start-up (BENCHMARKS.md): the command line is parsed and bpftrace's
    # --version started before pexpect is imported (live imports trace
    # while bpftrace answers), and the dump readers and reports are
    # imported only once bpftrace is compiling (live imports tracing).
    code = ("import sys, tcpwdist.cli; print(' '.join(sorted(m for m in sys.modules "
            "if m.split('.')[0] in ('tcpwdist', 'pexpect', 'pyparsing', 'tabulate', 'socket', "
            "'json'))))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, check=True)
    loaded = set(done.stdout.split())
    assert loaded & {"tcpwdist.trace", "pexpect", "tcpwdist.tracing", "tcpwdist.report",
                     "tcpwdist.dump", "pyparsing", "tabulate", "socket", "json"} == set()
    assert {"tcpwdist.live", "tcpwdist.host", "tcpwdist.program"} <= loaded

"""Text that is safe on a terminal, and cut to fit: comms, command lines,
hosts and times from traced processes and input files never reach a
terminal raw (see report.py), and a long command line keeps what names
the process."""

from __future__ import annotations

import unicodedata
from typing import Sequence

_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}


def safe_text(raw: bytes) -> str:
    """Bytes -> text that is safe on a terminal, keeping printable UTF-8.

    Control and format characters (ESC, bidi overrides, ...) and bytes that
    are not UTF-8 become ``\\xNN``/``\\uNNNN`` escapes; a backslash doubles
    so the escapes stay unambiguous.
    """
    out = []
    for ch in raw.decode("utf-8", "surrogateescape"):
        code = ord(ch)
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif 0xDC80 <= code <= 0xDCFF:  # an undecodable byte
            out.append(f"\\x{code - 0xDC00:02x}")
        elif unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp", "Co", "Cn"):
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


def safe_str(text: str) -> str:
    """Text from an input file, safe on a terminal (see safe_text)."""
    return safe_text(text.encode("utf-8", "surrogateescape"))


def cut(text: str, width: int) -> str:
    """``text`` in ``width`` columns (at least 4: one character and "..."),
    the cut marked with "..."."""
    width = max(width, 4)
    return text if len(text) <= width else text[: width - 3] + "..."


def _base(word: str) -> str:
    return word if "/" not in word.rstrip("/") else ".../" + word.rstrip("/").rsplit("/", 1)[1]


_SCRIPT_SUFFIXES = (".py", ".js", ".mjs", ".cjs", ".ts", ".rb", ".pl", ".php", ".lua", ".sh",
                    ".jar", ".war")


def _script_at(words: Sequence[str]) -> int | None:
    """Where the script is among a command line's words: the first with a
    script's suffix ("-X importtime" is an option's argument), else the
    first argument that is not an option."""
    args = list(enumerate(words))[1:]
    return next((i for i, w in args if w.endswith(_SCRIPT_SUFFIXES)),
                next((i for i, w in args if w and not w.startswith("-")), None))


def cut_cmd(text: str, width: int) -> str:
    """A command line cut to ``width``, keeping what names the process:
    the program and its script (or first argument, see _script_at).  The
    options between them are elided first, then the arguments after, then
    the two words' directories: ``python3 ... /srv/app/server.py ...``."""
    if len(text) <= width:
        return text
    words = text.split(" ")
    at = _script_at(words)
    if at is None:
        return cut(text, width)
    program, script, after = words[0], words[at], " ".join(words[at + 1:])
    middles = [" ".join(words[1:at]), "..."] if at > 1 else [""]
    for prog, scr in ((program, script), (_base(program), _base(script))):
        for middle in middles:
            head = " ".join(w for w in (prog, middle, scr) if w)
            if len(head) + (5 if after else 0) <= width:
                return cut(f"{head} {after}" if after else head, width)
    return cut(text, width)

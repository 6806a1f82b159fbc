"""Command-line parsing of the stage configs: tyro, with its errors turned into one line.

Every ``trajbench`` sub-command parses its dataclass config with :func:`parse_config`, so
``--help`` shows each field's docstring and a bad flag is one ``TrajbenchError`` line, not a box.
"""

from __future__ import annotations

import contextlib
import io
import sys
from typing import Any

import tyro

from .errors import TrajbenchError


def parse_config(cls: type, argv: list[str], prog: str) -> Any:
    """``tyro.cli`` that returns None after ``--help`` and turns tyro's boxed parse errors
    into one TrajbenchError line."""
    if any(a in ("-h", "--help") for a in argv):
        try:
            return tyro.cli(cls, args=argv, prog=prog)
        except SystemExit as err:
            if err.code:
                raise
            return None
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured), contextlib.redirect_stdout(captured):
            return tyro.cli(cls, args=argv, prog=prog)
    except SystemExit as err:
        if not err.code:
            sys.stdout.write(captured.getvalue())
            return None
        lines = [ln.strip().strip("│╭╮╰╯").strip() for ln in captured.getvalue().splitlines()]
        lines = [
            ln
            for ln in lines
            if ln
            and not set(ln) <= set("─-")
            and not ln.startswith(("For full helptext", prog, "usage:"))
        ]
        if "Argument helptext:" in lines:
            lines = lines[: lines.index("Argument helptext:")]
        if len(lines) > 1 and lines[1].startswith(lines[0]):
            lines = lines[1:]  # tyro repeats the title ("Unrecognized options: ...")
        message = ": ".join([lines[0], " ".join(lines[1:])]) if len(lines) > 1 else "".join(lines)
        raise TrajbenchError(f"{message or 'invalid arguments'} (see {prog} --help)") from None

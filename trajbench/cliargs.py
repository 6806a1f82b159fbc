"""Command-line parsing of the stage configs: tyro, with its errors turned into one line.

Every ``trajbench`` sub-command parses its dataclass config with :func:`parse_config`, so
``--help`` shows each field's docstring and a bad flag is one ``TrajbenchError`` line, not a box.
The long commands also take ``--quiet`` (:func:`split_quiet`, :func:`quiet_output`), handled
once for all of them by the dispatcher.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Iterator
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


QUIET_FLAG = "--quiet"
#: The line ``--help`` of a long command adds for the flag.
QUIET_HELP = "--quiet: no progress bars and no chatter; an error is still one line on stderr."


def split_quiet(argv: list[str]) -> tuple[list[str], bool]:
    """``argv`` without ``--quiet``, and whether it was there.

    Example:
        >>> split_quiet(["--out", "x", "--quiet"])
        (['--out', 'x'], True)
    """
    rest = [a for a in argv if a != QUIET_FLAG]
    return rest, len(rest) != len(argv)


@contextlib.contextmanager
def quiet_output(quiet: bool = True) -> Iterator[None]:
    """While active (and ``quiet``), everything written to stdout and stderr is dropped.

    Both Python's streams (progress bars, prints, warnings) and file descriptors 1 and 2 (which
    worker processes inherit) point at the null device; the caller reports errors after leaving
    the block, so they still reach the terminal.
    """
    if not quiet:
        yield
        return
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = [os.dup(1), os.dup(2)]
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        os.dup2(null, 2)
        with (
            open(os.devnull, "w") as sink,
            contextlib.redirect_stdout(sink),
            contextlib.redirect_stderr(sink),
        ):
            yield
    finally:
        for fd, old in zip((1, 2), saved, strict=True):
            os.dup2(old, fd)
            os.close(old)
        os.close(null)

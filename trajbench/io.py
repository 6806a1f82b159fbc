"""Atomic file and directory writes: nothing half-written is ever left at the target path.

Temporaries are hidden siblings named after their target and their writer,
``.NAME.HOST-PID.RANDOM.tmp``, so that :func:`remove_stale_temporaries` can tell the leftovers of
a writer that died (SIGKILL, power loss) from the work of one that is still running, and
:func:`output_lock` keeps two processes from writing one output at once.

Example:
    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> with output_lock(root / "ds"):
    ...     atomic_write_text(root / "ds" / "a.txt", "hi")
    >>> sorted(p.name for p in root.rglob("*"))
    ['a.txt', 'ds']
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import TrajbenchError

# mkstemp/mkdtemp create private (0600/0700) paths; published files get the usual umask modes.
_UMASK = os.umask(0)
os.umask(_UMASK)
#: This machine, as temporary names and locks spell it.
HOST = socket.gethostname()
_HOST_TAG = re.sub(r"[^A-Za-z0-9]", "_", HOST)
_TEMP_RE = re.compile(r"\.(?P<name>.+)\.(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)\.\w+\.tmp")


def _temp_prefix(path: Path) -> str:
    """``.NAME.HOST-PID.``: the start of every temporary this process makes for ``path``."""
    return f".{path.name}.{_HOST_TAG}-{os.getpid()}."


def process_alive(pid: int, host: str = HOST) -> bool:
    """Whether process ``pid`` of ``host`` still runs (True when ``host`` is another machine:
    a process elsewhere cannot be checked, so it is taken to be alive).

    Example:
        >>> process_alive(os.getpid())
        True
    """
    if host not in (HOST, _HOST_TAG):
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    try:  # a killed process nobody has reaped yet is a zombie: it writes nothing any more
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def remove_stale_temporaries(root: str | os.PathLike, target: str | None = None) -> list[Path]:
    """Remove the temporaries under ``root`` whose writer has died; returns what was removed.

    Args:
        root: Directory searched, recursively.
        target: Instead, remove every temporary of the output ``root/target`` (and of its lock
            and work in progress) in ``root`` alone, whoever wrote it: the caller holds the
            output's :func:`output_lock`. This includes the ``.TARGET.RANDOM.tmp`` of older
            trajbench versions, whose names carry no writer.
    """
    root, removed = Path(root), []
    if not root.is_dir():
        return removed
    ours = {target, f".{target}.lock", f".{target}.partial"}
    old_style = re.compile(rf"\.{re.escape(str(target))}\.\w{{8}}\.tmp")
    for directory, dirs, files in os.walk(root):
        for entry in [*dirs, *files]:
            m = _TEMP_RE.fullmatch(entry)
            if target is not None:
                stale = (m is not None and m["name"] in ours) or bool(old_style.fullmatch(entry))
            else:
                stale = m is not None and not process_alive(int(m["pid"]), m["host"])
            if stale:
                path = Path(directory) / entry
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
                removed.append(path)
        dirs[:] = [] if target is not None else [d for d in dirs if (Path(directory) / d).is_dir()]
    return removed


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same directory, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path), suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Atomically write UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON (NaN is rejected)."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n")


def write_parquet(path: str | os.PathLike, frame: pd.DataFrame) -> None:
    """Atomically write a DataFrame as Parquet (without its index)."""
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    atomic_write_bytes(path, buf.getvalue())


def temporary_directory(path: str | os.PathLike) -> Path:
    """A new, empty temporary sibling of ``path`` (removed by :func:`remove_stale_temporaries`
    once this process is gone)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=_temp_prefix(path), suffix=".tmp"))
    os.chmod(tmp, 0o777 & ~_UMASK)
    return tmp


def remove_tree(path: str | os.PathLike) -> None:
    """Delete a directory so that an interruption leaves no half-deleted tree at ``path``:
    it is first renamed to a temporary, then removed."""
    path = Path(path)
    if not path.exists():
        return
    trash = temporary_directory(path)
    os.replace(path, trash)  # replaces the empty temporary directory
    shutil.rmtree(trash, ignore_errors=True)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Build a directory in a temporary sibling and move it into place only on success.

    Example:
        >>> import tempfile, pathlib
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> with atomic_directory(root / "ds") as tmp:
        ...     _ = (tmp / "a.txt").write_text("hi")
        >>> (root / "ds" / "a.txt").read_text()
        'hi'
    """
    path = Path(path)
    tmp = temporary_directory(path)
    try:
        yield tmp
        if not path.exists():
            os.replace(tmp, path)
            return
        if not overwrite:
            raise FileExistsError(f"{path} already exists")
        old = temporary_directory(path)
        os.replace(path, old)  # replaces the empty temporary directory
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def output_lock(path: str | os.PathLike) -> Iterator[Path]:
    """Hold ``.NAME.lock`` beside ``path`` while this process writes ``path``.

    The lock file holds the writer's pid and host. A lock whose writer is alive (or runs on
    another machine) refuses the caller; a dead writer's lock is taken over.

    Raises:
        TrajbenchError: another live process holds the lock.
    """
    path = Path(path)
    lock = path.with_name(f".{path.name}.lock")
    mine = json.dumps({"pid": os.getpid(), "host": HOST}) + "\n"
    for _ in range(5):
        if _create_exclusive(lock, mine):
            break
        try:
            seen = lock.read_text(encoding="utf-8")
        except FileNotFoundError:
            continue  # released meanwhile: try again
        try:
            owner = json.loads(seen)
            pid, host = int(owner["pid"]), str(owner["host"])
        except (ValueError, TypeError, KeyError):
            pid, host = -1, HOST  # not a lock of ours: nobody holds it
        if pid > 0 and process_alive(pid, host):
            where = "" if host == HOST else f" on {host} (delete {lock} if it is gone)"
            raise TrajbenchError(
                f"{path} is being written by another process (pid {pid}{where}); wait for it "
                "to finish or stop it"
            )
        with contextlib.suppress(FileNotFoundError):  # a dead writer's lock: take it over
            if lock.read_text(encoding="utf-8") == seen:
                lock.unlink()
    else:
        raise TrajbenchError(f"cannot take the lock {lock}; is another process starting?")
    try:
        yield lock
    finally:
        with contextlib.suppress(FileNotFoundError):
            if lock.read_text(encoding="utf-8") == mine:
                lock.unlink()


def _create_exclusive(path: Path, text: str) -> bool:
    """Create ``path`` holding ``text``, all at once, unless it exists (then False)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path), suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~_UMASK)
        try:
            os.link(tmp, path)  # fails if path exists: a reader never sees a half-written lock
        except FileExistsError:
            return False
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)

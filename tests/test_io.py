"""Atomic writes, temporaries of dead writers, and the output lock."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from trajbench.errors import TrajbenchError
from trajbench.io import (
    HOST,
    atomic_directory,
    atomic_write_text,
    output_lock,
    process_alive,
    remove_stale_temporaries,
    remove_tree,
)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _names(root) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_process_alive():
    assert process_alive(os.getpid())
    assert not process_alive(_dead_pid())
    assert process_alive(_dead_pid(), host="another-machine")  # cannot be checked: alive


def test_only_dead_writers_temporaries_are_removed(tmp_path):
    tag = HOST.replace("-", "_").replace(".", "_")
    dead, alive = _dead_pid(), os.getpid()
    (tmp_path / "a" / "b").mkdir(parents=True)
    stale_file = tmp_path / "a" / f".x.json.{tag}-{dead}.abc123.tmp"
    stale_dir = tmp_path / "a" / "b" / f".model.{tag}-{dead}.q_w.tmp"
    live = tmp_path / f".y.json.{tag}-{alive}.zz.tmp"
    foreign = tmp_path / f".z.json.elsewhere-{dead}.zz.tmp"
    old_style = tmp_path / ".ds.k2j3ab_9.tmp"  # mkdtemp's 8 characters, no writer
    stale_file.write_text("half")
    (stale_dir / "backbone").mkdir(parents=True)
    for p in (live, foreign, old_style):
        p.write_text("")
    assert sorted(remove_stale_temporaries(tmp_path)) == sorted([stale_file, stale_dir])
    assert _names(tmp_path) == sorted(["a", "a/b", live.name, foreign.name, old_style.name])
    # every temporary of one output, its lock and its work in progress, whoever wrote them
    # (the caller holds the output's lock); not those of another output
    trash = tmp_path / f"..ds.partial.{tag}-{alive}.x1.tmp"
    other = tmp_path / f".ds.v2.{tag}-{alive}.x2.tmp"
    trash.mkdir()
    other.write_text("")
    assert sorted(remove_stale_temporaries(tmp_path, target="ds")) == sorted([old_style, trash])
    assert other.exists() and live.exists()
    assert remove_stale_temporaries(tmp_path / "missing") == []


def test_atomic_writes_leave_no_temporary(tmp_path):
    atomic_write_text(tmp_path / "f.txt", "one")
    with atomic_directory(tmp_path / "d") as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(RuntimeError), atomic_directory(tmp_path / "d", overwrite=True) as tmp:
        (tmp / "a").write_text("2")
        raise RuntimeError("crash while building")
    assert (tmp_path / "d" / "a").read_text() == "1"  # the previous state is intact
    with atomic_directory(tmp_path / "d", overwrite=True) as tmp:
        (tmp / "b").write_text("2")
    with pytest.raises(FileExistsError), atomic_directory(tmp_path / "d") as tmp:
        pass
    assert _names(tmp_path) == ["d", "d/b", "f.txt"]
    remove_tree(tmp_path / "d")
    remove_tree(tmp_path / "nothing")
    assert _names(tmp_path) == ["f.txt"]


def test_output_lock(tmp_path):
    out = tmp_path / "ds"
    lock = tmp_path / ".ds.lock"
    with output_lock(out):
        assert json.loads(lock.read_text()) == {"pid": os.getpid(), "host": HOST}
        with (
            pytest.raises(TrajbenchError, match=rf"{out} is being written by another process"),
            output_lock(out),
        ):
            pass
    assert not lock.exists()

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock.write_text(json.dumps({"pid": sleeper.pid, "host": HOST}))
        with (
            pytest.raises(TrajbenchError, match=rf"pid {sleeper.pid}\); wait for it"),
            output_lock(out),
        ):
            pass
        lock.write_text(json.dumps({"pid": sleeper.pid, "host": "elsewhere"}))
        with (
            pytest.raises(TrajbenchError, match=r"on elsewhere \(delete .*\.ds\.lock if it is"),
            output_lock(out),
        ):
            pass
    finally:
        sleeper.kill()
        sleeper.wait()
    for stale in (json.dumps({"pid": sleeper.pid, "host": HOST}), "garbage"):
        lock.write_text(stale)  # a dead writer's lock is taken over
        with output_lock(out):
            assert json.loads(lock.read_text())["pid"] == os.getpid()
        assert not lock.exists()
    assert _names(tmp_path) == []

"""Nothing lost under faults: ``collect``, ``train`` and ``run`` killed (SIGKILL) at random moments
resume to exactly what an uninterrupted run writes and leave no temporary behind; a full disk or
an unwritable ``--out`` is one clear line and leaves the previous state intact."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

import trajbench.data.writer as writer_mod
from trajbench.cli import main as cli
from trajbench.collect import CollectConfig, collect
from trajbench.data import load
from trajbench.pipeline.checkpoints import CHECKPOINT

pytestmark = pytest.mark.slow

#: A small training run (the knobs of ``trajbench train``), checkpointed every 5 of its 40 steps.
TRAIN = [
    *("--steps", "40", "--checkpoint-every", "5", "--batch-size", "8", "--warmup-steps", "5"),
    *("--context.k", "2", "--model.d-model", "16", "--model.n-layers", "1", "--log-every", "5"),
    *("--device", "cpu", "--threads", "1", "--resume", "--no-progress"),
]


def _leftovers(root: Path) -> list[str]:
    """Temporaries, work in progress and locks anywhere beside or under ``root``."""
    ends = (".tmp", ".partial", ".lock", ".old")
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.name.endswith(ends))


def _files(root: Path, pattern: str = "*") -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob(pattern)) if p.is_file()
    }


def _touched_since(root: Path, t0: float) -> bool:
    """Whether anything under ``root`` was written after ``t0``: the command is at work."""
    for directory, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            try:
                if os.stat(os.path.join(directory, name)).st_mtime >= t0:
                    return True
            except FileNotFoundError:
                continue
    return False


def _start(argv: list[str], watch: Path) -> subprocess.Popen:
    """Start ``trajbench argv`` in a process group of its own; return once it writes under
    ``watch`` (or ends)."""
    time.sleep(0.05)  # apart from the writes of a process killed just before
    t0 = time.time()
    proc = subprocess.Popen(
        [sys.executable, "-m", "trajbench.cli", *argv],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    while proc.poll() is None and not _touched_since(watch, t0):
        time.sleep(0.02)
    return proc


def _timed(argv: list[str], watch: Path) -> float:
    """Run ``trajbench argv`` to its end; returns how long it worked (after its imports)."""
    proc = _start(argv, watch)
    start = time.perf_counter()
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()
    return time.perf_counter() - start


def _kill_at_random_moments(
    argv: list[str], watch: Path, work_s: float, seed: int, kills: int = 3
) -> int:
    """Run ``trajbench argv`` ``kills`` times, each killed (its whole process group, workers
    included) a seeded random moment after it starts writing under ``watch``; returns how many
    were killed (a resumed run may finish first)."""
    killed = 0
    for delay in np.random.default_rng(seed).uniform(0.05, 0.6, size=kills) * work_s:
        proc = _start(argv, watch)
        try:
            _, err = proc.communicate(timeout=delay)
            assert proc.returncode == 0, err.decode()
            break  # it finished before the kill: nothing left to interrupt
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            killed += 1
    return killed


def _run_cli(capsys, *argv: str) -> tuple[int, str]:
    code = cli(list(argv))
    err = capsys.readouterr().err
    return code, err


def _one_line(code: int, err: str, command: str) -> str:
    assert code == 2 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"trajbench {command}: error: "), err
    return lines[0]


# -- collect --------------------------------------------------------------------------------------
def _collect_argv(out: Path, *extra: str, episodes: int = 30, chunk_levels: int = 6) -> list[str]:
    env = ["--env", "trajbench/DarkRoom-v0", "--levels", "train", "--no-progress"]
    sizes = ["--episodes-per-level", str(episodes), "--chunk-levels", str(chunk_levels)]
    return ["collect", *env, *sizes, "--out", str(out), *extra]


def test_killed_collection_resumes_to_the_same_store(tmp_path):
    shard = ("--shard", "1/2", "--workers", "2")
    (tmp_path / "reference").mkdir()
    reference = tmp_path / "reference" / "ds"
    work_s = _timed(_collect_argv(reference, *shard), reference.parent)
    (tmp_path / "killed").mkdir()
    out = tmp_path / "killed" / "ds"
    argv = _collect_argv(out, *shard)
    assert _kill_at_random_moments(argv, out.parent, work_s, seed=0) >= 1
    assert cli(argv) == 0
    assert _files(out) == _files(reference)  # the same files, byte for byte
    shard = "shard-1-of-2"
    assert load(out / shard, verify=True).content_hash == load(reference / shard).content_hash
    assert _leftovers(tmp_path) == []


def test_collect_on_a_full_disk_keeps_the_previous_store(capsys, monkeypatch, tmp_path):
    out = tmp_path / "ds"
    argv = _collect_argv(out, episodes=2, chunk_levels=16)  # 65 levels: 5 chunks
    assert cli(argv) == 0
    before = _files(out)
    real, calls = writer_mod._NpyAppender.append, {"n": 0}

    def full_disk(self, rows):
        calls["n"] += 1
        if calls["n"] > 3 * (16 * 2 * 3):  # 3 arrays per episode: the 4th chunk fills the disk
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(self, rows)

    monkeypatch.setattr(writer_mod._NpyAppender, "append", full_disk)
    line = _one_line(*_run_cli(capsys, *argv, "--seed", "1", "--overwrite"), "collect")
    assert line.endswith(f"cannot write {out}: No space left on device")
    assert _files(out) == before  # the previous store is intact
    assert _leftovers(tmp_path) == [".ds.partial"]  # with the finished chunks to resume from
    assert len(list((tmp_path / ".ds.partial").glob("chunk-*"))) == 3

    monkeypatch.setattr(writer_mod._NpyAppender, "append", real)
    assert cli([*argv, "--seed", "1", "--overwrite"]) == 0
    assert "(resumed: 3 of 5 chunks were done)" in capsys.readouterr().out
    assert cli(_collect_argv(tmp_path / "fresh", "--seed", "1", episodes=2)) == 0
    assert _files(out) == _files(tmp_path / "fresh")
    assert _leftovers(tmp_path) == []


def test_unwritable_out_is_one_line(trained, capsys, tmp_path):
    data = trained[0]
    blocker = tmp_path / "file"
    blocker.write_text("a regular file: not even root can write under it")
    line = _one_line(*_run_cli(capsys, *_collect_argv(blocker / "ds", episodes=1)), "collect")
    assert line.endswith(
        f"cannot write --out {blocker / 'ds'}: {blocker} is a file, not a directory"
    )
    for command in (["run", "--preset", "ci"], ["train", "--data", str(data), *TRAIN]):
        line = _one_line(*_run_cli(capsys, *command, "--out", str(blocker / "out")), command[0])
        assert line.endswith(f"{blocker / 'out'}: Not a directory")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_out_is_one_line(capsys, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        argv = _collect_argv(locked / "ds", episodes=1)
        line = _one_line(*_run_cli(capsys, *argv), "collect")
        assert "Permission denied" in line
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)


# -- train ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path, float]:
    """A store, an uninterrupted training run on it, and how long that run took."""
    root = tmp_path_factory.mktemp("train")
    data = collect(
        CollectConfig(
            env="trajbench/DarkRoom-v0",
            levels="0,1,2,3,4,5,6,7",
            episodes_per_level=6,
            out=root / "data",
            progress=False,
        )
    )
    out = root / "reference"
    start = time.perf_counter()
    code = cli(["train", "--data", str(data), "--out", str(out), *TRAIN])
    assert code == 0
    return data, out, time.perf_counter() - start


def _weights(run_dir: Path) -> dict[str, bytes]:
    return _files(run_dir / "model", "*.safetensors")


def test_killed_training_resumes_to_the_same_weights(trained, tmp_path):
    data, reference, work_s = trained
    out = tmp_path / "run"
    argv = ["train", "--data", str(data), "--out", str(out), *TRAIN]
    assert _kill_at_random_moments(argv, tmp_path, work_s, seed=1) >= 1
    assert cli(argv) == 0
    assert _weights(out) and _weights(out) == _weights(reference)
    assert _leftovers(tmp_path) == []


def test_training_on_a_full_disk_keeps_its_last_checkpoint(trained, capsys, monkeypatch, tmp_path):
    data, reference, _ = trained
    out = tmp_path / "run"
    argv = ["train", "--data", str(data), "--out", str(out), *TRAIN]
    real, calls = os.fsync, {"n": 0}

    def full_disk(fd):
        calls["n"] += 1
        if calls["n"] > 3:  # train_config.json and the checkpoints of steps 5 and 10 fit
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd)

    monkeypatch.setattr(os, "fsync", full_disk)
    line = _one_line(*_run_cli(capsys, *argv), "train")
    assert "No space left on device" in line
    monkeypatch.setattr(os, "fsync", real)
    assert torch.load(out / CHECKPOINT, weights_only=False)["step"] == 10
    assert not (out / "model").exists() and _leftovers(tmp_path) == []
    assert cli(argv) == 0
    assert _weights(out) == _weights(reference)


# -- run ------------------------------------------------------------------------------------------
def _run_outputs(run_dir: Path) -> dict[str, bytes]:
    """What a run must reproduce: every record file and every model's weights."""
    files = _files(run_dir, "records.parquet")
    files.update(_files(run_dir, "*.safetensors"))
    results = json.loads((run_dir / "results.json").read_text())
    for volatile in ("date", "wall_time_s", "hardware"):
        results.pop(volatile)
    files["results.json"] = json.dumps(results, sort_keys=True).encode()
    return files


def test_killed_run_resumes_to_the_same_results(ci_run, tmp_path):
    out = tmp_path / "ci"
    argv = ["run", "--preset", "ci", "--out", str(out), "--workers", "1", "--no-progress"]
    work_s = json.loads((ci_run / "wall_time.json").read_text())["wall_time_s"]
    assert _kill_at_random_moments(argv, tmp_path, work_s, seed=2) >= 1
    assert cli(argv) == 0
    assert _run_outputs(out) == _run_outputs(ci_run)
    assert _leftovers(tmp_path) == []


def test_run_that_cannot_write_keeps_its_previous_results(ci_run, capsys, monkeypatch, tmp_path):
    out = Path(shutil.copytree(ci_run, tmp_path / "ci"))
    before = _files(out)
    real: Callable = os.replace

    def read_only(src, dst, *args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(dst))

    monkeypatch.setattr(os, "replace", read_only)
    argv = ["run", "--preset", "ci", "--out", str(out), "--workers", "1", "--no-progress"]
    line = _one_line(*_run_cli(capsys, *argv), "run")
    assert line.endswith(f"{out / 'records.parquet'}: Permission denied")
    monkeypatch.setattr(os, "replace", real)
    assert _files(out) == before and _leftovers(tmp_path) == []

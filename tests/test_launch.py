"""Launchers: which worker gets which device (pure functions, no GPU needed), worker pinning in a
process pool and in submitit's local executor, failures, and the Slurm array a run submits."""

from __future__ import annotations

import doctest
import os
import stat
from pathlib import Path

import pytest

from trajbench.errors import TrajbenchError
from trajbench.pipeline import launch
from trajbench.pipeline.launch import (
    Pool,
    Sequential,
    SlurmConfig,
    Submitit,
    choose_gpus,
    gpu_slots,
    plan_slots,
    visible_gpus,
)

TESTS = str(Path(__file__).resolve().parent)


def test_doctests():
    assert doctest.testmod(launch).failed == 0


# -- slots -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("env", "count", "expected"),
    [
        (None, 0, []),
        (None, 3, ["0", "1", "2"]),
        ("5,3", 2, ["5", "3"]),
        ("GPU-aa, GPU-bb", 2, ["GPU-aa", "GPU-bb"]),
        ("4,5,6", 2, ["4", "5"]),  # torch counts fewer than listed (an invalid entry ends the list)
        ("", 0, []),
    ],
)
def test_visible_gpus_are_what_a_child_can_be_pinned_to(env, count, expected):
    assert visible_gpus(env, count) == expected


def test_choose_gpus():
    visible = ["2", "5", "7"]
    assert choose_gpus("all", visible) == visible
    assert choose_gpus("2", visible) == ["2", "5"]
    for spec, message in [("4", "between 1 and 3"), ("0", "between 1 and 3"), ("x", "'all' or")]:
        with pytest.raises(TrajbenchError, match=message):
            choose_gpus(spec, visible)
    with pytest.raises(TrajbenchError, match="no CUDA GPU"):
        choose_gpus("all", [])


def test_gpu_slots_spread_across_gpus_first():
    assert gpu_slots(["0", "1", "2"], 1) == ["0", "1", "2"]
    assert gpu_slots(["0", "1"], 3) == ["0", "1", "0", "1", "0", "1"]
    with pytest.raises(TrajbenchError, match=">= 1"):
        gpu_slots(["0"], 0)


@pytest.mark.parametrize(
    ("device", "gpus", "k", "workers", "visible", "slots", "job_device"),
    [
        ("cpu", "", 1, 1, [], [None], "cpu"),
        ("cpu", "", 4, 3, ["0"], [None, None, None], "cpu"),  # jobs-per-gpu is for GPUs
        ("cuda", "", 1, 2, ["0", "1"], ["0"], "cuda"),  # default: the device's one GPU
        ("cuda:1", "", 2, 2, ["3", "6"], ["6", "6"], "cuda"),
        ("cuda", "all", 1, 2, ["0", "1", "2", "3"], ["0", "1", "2", "3"], "cuda"),
        ("cuda", "2", 2, 2, ["4", "5", "6"], ["4", "5", "4", "5"], "cuda"),
    ],
)
def test_plan_slots(device, gpus, k, workers, visible, slots, job_device):
    assert plan_slots(device, gpus, k, workers, visible) == (slots, job_device)


@pytest.mark.parametrize(
    ("device", "gpus", "visible", "message"),
    [
        ("cpu", "all", [], "needs CUDA, but this machine has no CUDA GPU"),
        ("cpu", "2", ["0", "1"], "needs CUDA, but the device is cpu"),
        ("cuda:1", "all", ["0", "1"], "use --device cuda"),
        ("cuda", "3", ["0", "1"], "between 1 and 2"),
        ("cuda:2", "", ["0", "1"], "not among the 2 visible"),
    ],
)
def test_plan_slots_refuses_what_cannot_run(device, gpus, visible, message):
    with pytest.raises(TrajbenchError, match=message):
        plan_slots(device, gpus, 1, 1, visible)


# -- launchers -------------------------------------------------------------------------------------
def record_env(path: str) -> None:
    """A task: write this process's id and the GPUs it may see."""
    Path(path).write_text(f"{os.getpid()} {os.environ.get('CUDA_VISIBLE_DEVICES', '-')}")


def fail_on_odd(path: str) -> None:
    if int(Path(path).name) % 2:
        raise TrajbenchError(f"task {Path(path).name} refuses")
    record_env(path)


def seen(paths: list[Path]) -> dict[str, set[str]]:
    """Worker process -> the CUDA_VISIBLE_DEVICES values its tasks saw."""
    out: dict[str, set[str]] = {}
    for p in paths:
        pid, gpus = p.read_text().split()
        out.setdefault(pid, set()).add(gpus)
    return out


def test_sequential_runs_every_task_in_this_process(tmp_path):
    paths = [tmp_path / str(i) for i in range(3)]
    Sequential(progress=False).map(record_env, [str(p) for p in paths], "t")
    assert set(seen(paths)) == {str(os.getpid())}


def test_pool_pins_each_worker_to_one_slot(tmp_path):
    paths = [tmp_path / str(i) for i in range(8)]
    Pool(["7", "9"], progress=False).map(record_env, [str(p) for p in paths], "t")
    by_worker = seen(paths)
    assert 1 <= len(by_worker) <= 2 and os.getpid() not in map(int, by_worker)
    assert all(len(gpus) == 1 for gpus in by_worker.values())  # a worker never changes GPU
    values = [next(iter(g)) for g in by_worker.values()]
    assert set(values) <= {"7", "9"} and len(set(values)) == len(values)  # one worker per slot


def test_pool_raises_a_task_error(tmp_path):
    tasks = [str(tmp_path / str(i)) for i in range(4)]
    with pytest.raises(TrajbenchError, match=r"task [13] refuses"):
        Pool([None, None], progress=False).map(fail_on_odd, tasks, "t")


@pytest.fixture
def importable_tests(monkeypatch):
    """submitit's local jobs are fresh interpreters: let them import this module's tasks."""
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [TESTS, os.environ.get("PYTHONPATH")]))
    )


def test_submitit_local_runs_one_task_per_slot_pinned(tmp_path, importable_tests):
    paths = [tmp_path / str(i) for i in range(4)]
    Submitit("local", tmp_path / "logs", SlurmConfig(), ["3", "3"], False, poll_s=0.1).map(
        record_env, [str(p) for p in paths], "t"
    )
    by_process = seen(paths)
    assert len(by_process) == 4 and str(os.getpid()) not in by_process  # a process per task
    assert set().union(*by_process.values()) == {"3"}


def test_submitit_failures_are_counted_and_named(tmp_path, importable_tests):
    tasks = [str(tmp_path / str(i)) for i in range(4)]
    with pytest.raises(TrajbenchError) as err:
        Submitit("local", tmp_path / "logs", SlurmConfig(), [None, None], False, poll_s=0.1).map(
            fail_on_odd, tasks, "demo"
        )
    message = str(err.value)
    assert message.startswith("2 of 4 demo task(s) failed, the first with: ")
    assert "TrajbenchError: task 1 refuses" in message and "run the same command again" in message
    assert "\n" not in message
    assert (tmp_path / "0").exists() and (tmp_path / "2").exists()  # the others ran


def test_slurm_needs_slurm(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no srun
    with pytest.raises(TrajbenchError, match="no Slurm on this machine"):
        Submitit("slurm", tmp_path / "logs", SlurmConfig(), progress=False)
    assert not (tmp_path / "logs").exists()


@pytest.mark.parametrize(
    "knobs", [{"time_min": 0}, {"gpus_per_task": -1}, {"array_parallelism": 0}, {"mem_gb": -2.0}]
)
def test_bad_slurm_knobs_are_refused_before_any_write(tmp_path, knobs):
    with pytest.raises(TrajbenchError, match="--slurm"):
        Submitit("local", tmp_path / "logs", SlurmConfig(**knobs), progress=False)
    assert not (tmp_path / "logs").exists()


def test_slurm_submits_one_array_with_the_run_config_knobs(tmp_path, monkeypatch):
    """A fake sbatch keeps the script submitit hands to Slurm."""
    bin_dir, script = tmp_path / "bin", tmp_path / "submitted.sh"
    bin_dir.mkdir()
    fakes = {"srun": "exit 0", "sbatch": f'cp "$1" {script}\necho "Submitted batch job 4242"'}
    for name, body in fakes.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    config = SlurmConfig(
        partition="gpu-long",
        account="lab",
        time_min=90,
        gpus_per_task=2,
        cpus_per_task=6,
        mem_gb=32,
        array_parallelism=3,
        setup=("source ~/venv/bin/activate",),
    )
    launcher = Submitit("slurm", tmp_path / "logs", config, progress=False)
    jobs = launcher.submit(record_env, [str(tmp_path / str(i)) for i in range(5)])
    assert [j.job_id for j in jobs] == [f"4242_{i}" for i in range(5)]
    text = script.read_text()
    for line in [
        "#SBATCH --array=0-4%3",
        "#SBATCH --partition=gpu-long",
        "#SBATCH --account=lab",
        "#SBATCH --time=90",
        "#SBATCH --gpus-per-node=2",
        "#SBATCH --cpus-per-task=6",
        "#SBATCH --mem=32GB",
        "#SBATCH --ntasks-per-node=1",
        "source ~/venv/bin/activate",
    ]:
        assert line in text.splitlines(), line
    assert str(tmp_path / "logs") in text

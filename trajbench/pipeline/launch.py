"""Where ``trajbench run``'s jobs execute: in order, in a process pool, or through submitit.

A launcher runs one function over a list of tasks and returns when every task is done:

- :class:`Sequential`: in this process, one task after another.
- :class:`Pool`: worker processes on this machine, each pinned to a *slot* for its whole life: no
  pin on the CPU, or one GPU's ``CUDA_VISIBLE_DEVICES`` entry (``K`` slots per GPU run ``K`` jobs
  on one card at once).
- :class:`Submitit`: a Slurm job array (``cluster="slurm"``), or submitit's local executor
  (``cluster="local"``: the cluster code path on this machine, one process per task and at most
  one task per slot at a time).

A task writes its own output and the caller reads it from disk, so a launcher returns nothing; a
run whose tasks partly failed is resumed by running it again.

Example:
    >>> Sequential(progress=False).map(print, [1, 2], "numbers")
    1
    2
    >>> gpu_slots(choose_gpus("all", visible_gpus("3,5", 2)), jobs_per_gpu=2)
    ['3', '5', '3', '5']
"""

from __future__ import annotations

import functools
import multiprocessing as mp
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from tqdm.auto import tqdm

from trajbench.errors import TrajbenchError

LauncherName = Literal["pool", "local", "slurm"]


@dataclass
class SlurmConfig:
    """How ``--launcher slurm`` (and ``local``) submits: one array task per job."""

    partition: str = ""
    """Slurm partition (empty: the cluster's default)."""
    account: str = ""
    """Slurm account to charge (empty: your default)."""
    time_min: int = 240
    """Time limit of one task in minutes (also the local executor's limit per task)."""
    gpus_per_task: int = 1
    """GPUs of one task (0 for a CPU-only cluster)."""
    cpus_per_task: int = 8
    """CPU cores of one task (its torch threads, and its collection processes)."""
    mem_gb: float = 0.0
    """Memory of one task in GB (0: the partition's default)."""
    array_parallelism: int = 64
    """Tasks of one array running at once."""
    collect_shards: int = 4
    """Collection runs first, as this many shard tasks per episode store (fewer for few levels)."""
    setup: tuple[str, ...] = ()
    """Shell lines each task runs first, e.g. 'source ~/venv/bin/activate'."""


class Launcher(Protocol):
    """Runs ``fn(task)`` for every task; returns when all are done, raises if one failed."""

    def map(self, fn: Callable[[Any], object], tasks: Sequence[Any], desc: str) -> None: ...


# -- slots: which worker runs on which device ------------------------------------------------------
def visible_gpus(cuda_visible_devices: str | None, count: int) -> list[str]:
    """This process's ``count`` GPUs as ``CUDA_VISIBLE_DEVICES`` entries a child can be pinned to.

    Example:
        >>> visible_gpus(None, 2), visible_gpus("6,2,7", 2)
        (['0', '1'], ['6', '2'])
    """
    if cuda_visible_devices is None:
        return [str(i) for i in range(count)]
    return [e.strip() for e in cuda_visible_devices.split(",") if e.strip()][:count]


def choose_gpus(spec: str, visible: Sequence[str]) -> list[str]:
    """The GPUs ``--gpus`` names: ``all`` of ``visible``, or the first ``N``."""
    if not visible:
        raise TrajbenchError(f"--gpus {spec}: this machine has no CUDA GPU (torch sees none)")
    if spec == "all":
        return list(visible)
    try:
        n = int(spec)
    except ValueError:
        raise TrajbenchError(f"--gpus must be 'all' or a count, got {spec!r}") from None
    if not 1 <= n <= len(visible):
        raise TrajbenchError(f"--gpus {n}: between 1 and {len(visible)} GPU(s) are visible here")
    return list(visible[:n])


def gpu_slots(gpus: Sequence[str], jobs_per_gpu: int) -> list[str]:
    """One slot per concurrent job: every GPU ``jobs_per_gpu`` times, spread across GPUs first."""
    if jobs_per_gpu < 1:
        raise TrajbenchError(f"jobs per GPU must be >= 1, got {jobs_per_gpu}")
    return [g for _ in range(jobs_per_gpu) for g in gpus]


def plan_slots(
    device: str, gpus: str, jobs_per_gpu: int, workers: int, visible: Sequence[str]
) -> tuple[list[str | None], str]:
    """The worker slots of a run and the device string every job gets.

    On the CPU: ``workers`` unpinned slots, jobs on ``cpu``. On CUDA: ``jobs_per_gpu`` slots per
    GPU of ``--gpus`` (default: the one ``device`` names), each pinned to its GPU, where a job
    sees that GPU alone as ``cuda``.

    Args:
        device: The resolved run device: ``cpu``, ``cuda`` or ``cuda:N``.
        gpus: ``--gpus``: ``all``, a count, or empty.
        jobs_per_gpu: Concurrent jobs on one GPU.
        workers: Concurrent jobs on the CPU.
        visible: This process's GPUs (:func:`visible_gpus`).

    Example:
        >>> plan_slots("cuda:1", "", 2, 1, ["4", "7"])
        (['7', '7'], 'cuda')
        >>> plan_slots("cpu", "", 1, 2, [])
        ([None, None], 'cpu')
    """
    if device == "cpu":
        if gpus:
            why = "this machine has no CUDA GPU" if not visible else "the device is cpu"
            raise TrajbenchError(f"--gpus {gpus} needs CUDA, but {why}")
        if workers < 1:
            raise TrajbenchError(f"workers must be >= 1, got {workers}")
        return [None] * workers, "cpu"
    if gpus:
        if ":" in device:
            raise TrajbenchError(f"--gpus {gpus} chooses the GPUs: use --device cuda, not {device}")
        chosen = choose_gpus(gpus, visible)
    else:
        index = int(device.partition(":")[2] or 0)
        if index >= len(visible):
            raise TrajbenchError(f"device {device} is not among the {len(visible)} visible GPU(s)")
        chosen = [visible[index]]
    return list(gpu_slots(chosen, jobs_per_gpu)), "cuda"


def pin(slot: str | None) -> None:
    """Show this process only its slot's GPU (before it touches CUDA); ``None`` leaves it be."""
    if slot is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = slot


# -- launchers -------------------------------------------------------------------------------------
class Sequential:
    """Every task in this process, in order."""

    def __init__(self, progress: bool = True):
        self.progress = progress

    def map(self, fn: Callable[[Any], object], tasks: Sequence[Any], desc: str) -> None:
        for task in tqdm(tasks, desc=desc, unit="job", disable=not self.progress):
            fn(task)


def _pin_from(free: Any) -> None:
    pin(free.get())


class Pool:
    """One spawned worker process per slot, pinned to it; tasks go to whichever worker is idle."""

    def __init__(self, slots: Sequence[str | None], progress: bool = True):
        if not slots:
            raise TrajbenchError("a process pool needs at least one slot")
        self.slots = list(slots)
        self.progress = progress

    def map(self, fn: Callable[[Any], object], tasks: Sequence[Any], desc: str) -> None:
        ctx = mp.get_context("spawn")
        free = ctx.Queue()
        for slot in self.slots:
            free.put(slot)
        bar = tqdm(total=len(tasks), desc=desc, unit="job", disable=not self.progress)
        pool = ProcessPoolExecutor(
            len(self.slots), mp_context=ctx, initializer=_pin_from, initargs=(free,)
        )
        try:
            for future in as_completed([pool.submit(fn, t) for t in tasks]):
                future.result()
                bar.update(1)
        finally:  # on an error, drop the queued tasks instead of running them all first
            pool.shutdown(wait=True, cancel_futures=True)
            bar.close()


def _pinned(slot: str | None, fn: Callable[[Any], object], task: Any) -> object:
    pin(slot)
    return fn(task)


class Submitit:
    """Tasks as submitit jobs: a Slurm job array, or local processes with one task per slot."""

    def __init__(
        self,
        cluster: Literal["local", "slurm"],
        folder: Path,
        config: SlurmConfig,
        slots: Sequence[str | None] = (None,),
        progress: bool = True,
        poll_s: float | None = None,
    ):
        parameters = submitit_parameters(config, cluster)  # bad knobs fail before any write
        try:  # an optional dependency, imported only by the runs that use it
            import submitit
        except ImportError:
            raise TrajbenchError(
                f"--launcher {cluster} needs submitit: pip install 'trajbench[cluster]'"
            ) from None
        try:
            self.executor = submitit.AutoExecutor(folder=folder / "%j", cluster=cluster)
        except RuntimeError as err:  # no srun here
            raise TrajbenchError(
                f"--launcher slurm: no Slurm on this machine ({err}); run it on a login node, or "
                "--launcher local to try the same path here"
            ) from None
        self.executor.update_parameters(**parameters)
        self.cluster, self.folder, self.slots = cluster, folder, list(slots)
        self.progress = progress
        self.poll_s = poll_s if poll_s is not None else (0.5 if cluster == "local" else 20.0)

    def submit(self, fn: Callable[[Any], object], tasks: Sequence[Any]) -> list[Any]:
        """Submit every task as one Slurm array (no waiting); the submitit jobs."""
        return self.executor.map_array(fn, list(tasks))

    def map(self, fn: Callable[[Any], object], tasks: Sequence[Any], desc: str) -> None:
        bar = tqdm(total=len(tasks), desc=desc, unit="job", disable=not self.progress)
        queued = list(enumerate(tasks))
        free = list(self.slots)
        running: dict[Any, tuple[int, str | None]] = {}
        failed: list[tuple[int, Any]] = []
        if self.cluster == "slurm":  # the scheduler paces the array
            running = {job: (i, None) for i, job in enumerate(self.submit(fn, tasks))}
            queued = []
        try:
            while queued or running:
                while queued and free:
                    i, task = queued.pop(0)
                    slot = free.pop(0)
                    job = self.executor.submit(functools.partial(_pinned, slot, fn), task)
                    running[job] = (i, slot)
                done = [job for job in running if job.done()]
                for job in done:
                    i, slot = running.pop(job)
                    free.append(slot)
                    if (error := job.exception()) is not None:
                        failed.append((i, error))
                    bar.update(1)
                if not done:
                    time.sleep(self.poll_s)
        finally:
            for job in running:  # interrupted: leave nothing running behind this process
                job.cancel(check=False)
            bar.close()
        if failed:
            i, error = min(failed, key=lambda f: f[0])
            last = str(error).strip().splitlines()
            raise TrajbenchError(
                f"{len(failed)} of {len(tasks)} {desc} task(s) failed, the first with: "
                f"{_reason(last)}; logs in {self.folder}; run the same command again to resume"
            )


def _reason(lines: list[str]) -> str:
    """The raised exception's line of a submitit error (the traceback's last one)."""
    body = [ln for ln in lines if ln and not set(ln) <= {"-"}]
    tail = [ln for ln in body if not ln.startswith(("You can check", "or at paths", "  - "))]
    return tail[-1] if tail else "no error message"


def submitit_parameters(config: SlurmConfig, cluster: str) -> dict[str, Any]:
    """``AutoExecutor.update_parameters`` arguments for ``config``.

    Example:
        >>> submitit_parameters(SlurmConfig(partition="gpu", array_parallelism=8), "slurm")["slurm_partition"]
        'gpu'
    """
    if config.time_min < 1 or config.cpus_per_task < 1 or config.array_parallelism < 1:
        raise TrajbenchError("--slurm.time-min, cpus-per-task and array-parallelism must be >= 1")
    if config.gpus_per_task < 0 or config.mem_gb < 0 or config.collect_shards < 1:
        raise TrajbenchError("--slurm.gpus-per-task and mem-gb must be >= 0, collect-shards >= 1")
    params: dict[str, Any] = {"timeout_min": config.time_min, "name": "trajbench"}
    if cluster != "slurm":
        return params
    params.update(
        nodes=1,
        tasks_per_node=1,
        cpus_per_task=config.cpus_per_task,
        gpus_per_node=config.gpus_per_task,
        slurm_array_parallelism=config.array_parallelism,
    )
    optional = {
        "slurm_partition": config.partition,
        "slurm_account": config.account,
        "mem_gb": config.mem_gb,
        "slurm_setup": list(config.setup),
    }
    params.update({k: v for k, v in optional.items() if v})
    return params

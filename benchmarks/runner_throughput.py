"""Runner throughput: jobs per hour of ``trajbench run`` with 2 workers against 1, ``ci`` preset.

Measures, in one run on this machine, the train + evaluate phase of the ``ci`` preset (its
conditions and copy baselines, ``--seeds`` seeds: 5 jobs per seed) from scratch, on data collected
once before the clock starts:

- project: ``--workers 2``, the runner's process pool (two spawned worker processes, their start
  included in the time);
- reference: ``--workers 1``, every job in this process, one after another.

Both go through the runner's own launcher choice (``launcher_of``) and ``run_jobs``, and their
records are checked to be identical. Rounds alternate which goes first; the best round of each is
reported, which keeps the ratio honest on a shared machine (the load average is printed above).
A ``ci`` job trains for seconds, so a worker's start (importing torch and transformers, a few
CPU-seconds) is a visible share of the pool's time with few seeds. Ends with
``RESULT runner_throughput ratio=<jobs per hour with 2 workers / with 1> target=1.7``.

Example:
    python benchmarks/runner_throughput.py            # about ten minutes on 2 busy cores
    python benchmarks/runner_throughput.py --quick    # about a minute, a sanity check
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from machine import describe_torch

from trajbench.pipeline.presets import PRESETS
from trajbench.pipeline.runner import (
    RunConfig,
    collect_data,
    jobs_of,
    launcher_of,
    run_jobs,
)
from trajbench.records import RECORDS_FILE


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (pool workers, once shut down)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20, help="training seeds (5 jobs each)")
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds per setting")
    parser.add_argument("--quick", action="store_true", help="2 seeds, 1 round")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.rounds = 2, 1
    torch.set_num_threads(1)  # as the runner gives every CPU job
    print(describe_torch(torch.device("cpu")))

    preset = PRESETS["ci"]
    jobs = jobs_of(preset, tuple(range(args.seeds)))
    print(f"preset ci, {args.seeds} seeds: {len(jobs)} train + evaluate jobs per setting")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        for group in preset.groups:
            for spec in (*group.train_data, *group.test_data, *group.heldout_family_data):
                collect_data(spec, data, workers=1, progress=False)

        def once(workers: int, round_: int) -> tuple[float, pd.DataFrame]:
            out = Path(tmp) / f"run-w{workers}-r{round_}"
            shutil.copytree(data / "data", out / "data")
            cfg = RunConfig(preset="ci", out=str(out), workers=workers, progress=False)
            cpu, start = cpu_seconds(), time.perf_counter()
            launcher, device, threads = launcher_of(cfg, preset, torch.device("cpu"))
            run_jobs(jobs, out, launcher, device, preset.compile, threads)
            wall = time.perf_counter() - start
            cpu = cpu_seconds() - cpu
            print(
                f"round {round_ + 1}: {workers} worker(s) {type(launcher).__name__:<10} "
                f"{len(jobs)} jobs in {wall:7.1f} s ({cpu:6.1f} CPU-s): "
                f"{len(jobs) / wall * 3600:8,.0f} jobs/hour",
                flush=True,
            )
            records = pd.concat([pd.read_parquet(j.directory(out) / RECORDS_FILE) for j in jobs])
            shutil.rmtree(out)
            return wall, records.sort_values(list(records.columns)).reset_index(drop=True)

        best = {1: float("inf"), 2: float("inf")}
        records = {}
        for r in range(args.rounds):
            for workers in (1, 2) if r % 2 == 0 else (2, 1):
                wall, records[workers] = once(workers, r)
                best[workers] = min(best[workers], wall)
    pd.testing.assert_frame_equal(records[1], records[2])  # same answer with any number of workers
    one, two = (len(jobs) / best[w] * 3600 for w in (1, 2))
    print(f"identical records with 1 and 2 workers ({len(records[1])} episodes)")
    print(f"1 worker:  {one:10,.0f} jobs/hour (best round)")
    print(f"2 workers: {two:10,.0f} jobs/hour (best round)")
    print(f"\nRESULT runner_throughput ratio={two / one:.2f} target=1.7")


if __name__ == "__main__":
    main()

"""``trajbench run``: collect -> train -> evaluate -> report for every condition of a preset.

Every stage writes its output atomically and is skipped when that output exists, so a run
interrupted at any point resumes where it stopped (a training job resumes from its checkpoint).

Layout of ``OUT``::

    data/<store>/                      episode stores (trajbench collect)
    jobs/<group>/<condition>/seed<S>/  model/, checkpoint.pt, metrics.csv, records.parquet, offline.parquet
    jobs/<group>/baseline-<name>/seed<S>/records.parquet
    records.parquet                    every evaluated episode of every job
    results.json, report.md, plots/    aggregates with IQM and 95% CIs, the report, the figures

Jobs run through a launcher (``trajbench.pipeline.launch``): in this process, in a pool of
worker processes (one per CPU worker, or ``--jobs-per-gpu`` per GPU of ``--gpus``), or as submitit
jobs (``--launcher slurm``: a Slurm job array; ``--launcher local``: the same path on this machine).

Example:
    trajbench run --preset smoke --out runs/smoke
    trajbench run --preset gpu --dry-run      # jobs, tokens, FLOPs and time estimates only
    trajbench run --preset standard --out runs/standard --gpus all --jobs-per-gpu 2
    trajbench run --preset standard --out runs/standard --launcher slurm --slurm.partition gpu
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from trajbench import __version__
from trajbench.cliargs import parse_config
from trajbench.collect import CollectConfig, collect
from trajbench.data import META_FILE, SHARD_DIR_RE, EpisodeStore, load, shard_dirname
from trajbench.device import resolve_device
from trajbench.errors import TrajbenchError
from trajbench.families import make_env, sample_levels
from trajbench.io import atomic_write_json, remove_stale_temporaries, write_parquet
from trajbench.provenance import cores, git_commit, hardware
from trajbench.records import (
    DECOY_SUCCESS,
    RECORDS_FILE,
)
from trajbench.report import write_report

from .ensemble import ensemble_on, ensembles, train_ensemble
from .evaluate import evaluate
from .jobs import (
    Job,
    RunConfig,
    condition_context,
    evaluations,
    job_eval_config,
    jobs_of,
)
from .launch import (
    Launcher,
    Pool,
    Sequential,
    Submitit,
    plan_slots,
    visible_gpus,
)
from .presets import PRESETS, DataSpec, Group, Preset
from .render import write_episode_gifs
from .targets import dry_run
from .train import train
from .train_config import TrainConfig


def data_dir(out: Path, spec: DataSpec) -> Path:
    return out / "data" / spec.name


def spec_levels(spec: DataSpec) -> np.ndarray:
    """The levels ``spec`` collects."""
    env = make_env(spec.env)
    try:
        return sample_levels(env, spec.levels, spec.max_levels)
    finally:
        env.close()


def collect_config(
    spec: DataSpec, out: Path, workers: int, progress: bool, shard: str | None = None
) -> CollectConfig:
    """The ``trajbench collect`` config of ``spec`` (or of its shard ``I/N``) in run ``out``."""
    levels = spec.levels
    if spec.max_levels:
        levels = ",".join(str(int(x)) for x in spec_levels(spec))
    return CollectConfig(
        env=spec.env,
        levels=levels,
        episodes_per_level=spec.episodes_per_level,
        demonstrator=spec.demonstrator,
        out=data_dir(out, spec),
        seed=spec.seed,
        workers=workers,
        shard=shard,
        progress=progress,
    )


def collect_data(
    spec: DataSpec, out: Path, workers: int, progress: bool, shard: str | None = None
) -> Path:
    """Collect ``spec``, or its shard ``I/N`` (idempotent: an identical existing store is kept)."""
    return collect(collect_config(spec, out, workers, progress, shard))


def collection_shards(spec: DataSpec, out: Path, shards: int) -> list[str | None]:
    """The collections of ``spec``: shards ``I/N`` (at most one per level), or None (unsharded).

    A store already on disk keeps its layout, so a run resumes under any launcher.
    """
    path = data_dir(out, spec)
    if (path / META_FILE).exists():
        return [None]
    counts = [
        int(m.group(2)) for p in path.glob("shard-*") if (m := SHARD_DIR_RE.fullmatch(p.name))
    ]
    n = max(counts) if counts else min(shards, len(spec_levels(spec)) if shards > 1 else 1)
    return [f"{i}/{n}" for i in range(n)] if counts or n > 1 else [None]


def _collected(spec: DataSpec, out: Path, shard: str | None) -> bool:
    path = data_dir(out, spec)
    if shard is not None:
        path /= shard_dirname(*map(int, shard.split("/")))
    return (path / META_FILE).exists()


def _collect_all(
    cfg: RunConfig, specs: list[DataSpec], out: Path, launcher: Launcher, workers: int
) -> None:
    """Collect every store: here, ``workers`` processes each; under submitit, as shard tasks."""
    if not isinstance(launcher, Submitit):
        for spec in specs:
            for shard in collection_shards(spec, out, 1):
                collect_data(spec, out, workers, cfg.progress, shard)
        return
    each = cfg.slurm.cpus_per_task if cfg.launcher == "slurm" else 1
    shards = [(s, x) for s in specs for x in collection_shards(s, out, cfg.slurm.collect_shards)]
    todo = [collect_config(s, out, each, False, x) for s, x in shards if not _collected(s, out, x)]
    if todo:  # a task imports trajbench.collect alone, not the training stack
        launcher.map(collect, todo, f"{cfg.preset}: collect")


def actions_used(store: EpisodeStore, demonstrators: tuple[str, ...]) -> set[int]:
    """Every action taken in the successful episodes of ``demonstrators`` in ``store``."""
    eps = store.episodes
    rows = eps[eps.success & eps.demonstrator.isin(list(demonstrators))]
    spans = zip(rows.offset, rows.length, strict=True)
    steps = [np.asarray(store.actions[o : o + n]) for o, n in spans]
    return {int(a) for a in np.unique(np.concatenate(steps))} if steps else set()


def check_heldout_solvable(group: Group, out: Path) -> None:
    """Refuse a group whose held-out families need an action that training never targets.

    A held-out family can only measure generalization if every action its expert uses is a
    training target (an action of a query episode) somewhere in the group's training data.
    """
    if not group.heldout_family_data:
        return
    targets = set()
    for spec in group.train_data:
        targets |= actions_used(load(data_dir(out, spec)), group.train.context.query_demonstrators)
    for spec in group.heldout_family_data:
        missing = actions_used(load(data_dir(out, spec)), ("expert",)) - targets
        if missing:
            raise TrajbenchError(
                f"group {group.name!r}: the expert of held-out family {spec.env} uses action(s) "
                f"{_named(spec.env, missing)} that no training target shows (training targets: "
                f"{_named(spec.env, targets)}); hold out a family whose actions are trained"
            )


def _named(env_id: str, actions: set[int]) -> str:
    """``[3 pickup, 4 drop]`` where the family names its actions (MiniGrid), else ``[3, 4]``."""
    env = make_env(env_id)
    names = getattr(env.unwrapped, "actions", None)
    env.close()
    return (
        "[" + ", ".join(f"{a} {names(a).name}" if names else str(a) for a in sorted(actions)) + "]"
    )


def run_job(job: Job, out: Path, device: str, compile_model: bool, threads: int) -> Path:
    """Train (unless done) and evaluate (unless done) one job; returns its records file."""
    if threads:
        torch.set_num_threads(threads)
    g = job.group
    jdir = job.directory(out)
    records_path = jdir / RECORDS_FILE
    if records_path.exists():
        return records_path
    policy = job.baseline or str(_trained(job, out, device, compile_model))
    c = job.condition
    frames = []
    for split, specs, instruction, _formats in evaluations(job):
        ecfg = job_eval_config(
            g.eval,
            split,
            instruction,
            policy=policy,
            data=tuple(str(data_dir(out, s)) for s in specs),
            out=str(jdir / f"eval-{split}-{instruction}"),
            seed=job.eval_seed,
            device=device,
            offline=not job.baseline and instruction == "train",
        )
        frames.append(evaluate(ecfg)[0])
    records = pd.concat(frames, ignore_index=True)
    if DECOY_SUCCESS in records:  # NaN where no decoy was shown: a float column, not objects
        records[DECOY_SUCCESS] = records[DECOY_SUCCESS].astype(float)
    records["seed"] = job.seed
    records["p_bursty"] = float("nan") if c is None or c.p_bursty is None else float(c.p_bursty)
    records["group"] = g.name
    write_parquet(records_path, records)
    return records_path


def _trained(job: Job, out: Path, device: str, compile_model: bool) -> Path:
    """The job's model directory, trained (or resumed) unless it is there."""
    model_dir = job.directory(out) / "model"
    if not model_dir.exists():
        train(job_train_config(job, out, device, compile_model))
    return model_dir


def job_train_config(job: Job, out: Path, device: str, compile_model: bool) -> TrainConfig:
    """The ``trajbench train`` config of a training job (resuming its checkpoint)."""
    g, c = job.group, job.condition
    return replace(
        g.train,
        model=replace(g.train.model, backbone=c.backbone or g.train.model.backbone),
        data=tuple(str(data_dir(out, s)) for s in g.train_data),
        out=str(job.directory(out)),
        context=condition_context(g, c),
        seed=job.seed,
        device=device,
        compile=compile_model,
        resume=True,
        progress=False,
    )


def _ensemble_entry(args) -> None:
    cfgs, threads = args
    if threads:
        torch.set_num_threads(threads)
    train_ensemble(cfgs)


# -- the run --------------------------------------------------------------------------------------
def _job_entry(args) -> str:
    return str(run_job(*args))


def run_jobs(
    jobs: list[Job],
    out: Path,
    launcher: Launcher,
    device: str,
    compile_model: bool,
    threads: int,
    desc: str = "train + evaluate",
) -> None:
    """Run every job of ``jobs`` without its records file through ``launcher``."""
    todo = [job for job in jobs if not (job.directory(out) / RECORDS_FILE).exists()]
    args = [(job, out, device, compile_model, threads) for job in todo]
    if args:
        launcher.map(_job_entry, args, desc)


def launcher_of(cfg: RunConfig, preset: Preset, device: torch.device) -> tuple[Launcher, str, int]:
    """The launcher of the run's jobs, the device string each job gets, and its CPU threads."""
    folder = Path(cfg.out) / "submitit"
    if cfg.launcher == "slurm":  # a task resolves the preset's device on its node
        if cfg.gpus or cfg.jobs_per_gpu:
            raise TrajbenchError(
                "--gpus and --jobs-per-gpu spread jobs on this machine; on Slurm each task gets "
                "--slurm.gpus-per-task GPUs"
            )
        launcher = Submitit("slurm", folder, cfg.slurm, progress=cfg.progress)
        return launcher, preset.device, cfg.slurm.cpus_per_task
    if device.type == "cpu" and cfg.jobs_per_gpu:
        raise TrajbenchError("--jobs-per-gpu needs a CUDA device; on the CPU, --workers sets it")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    slots, job_device = plan_slots(
        str(device),
        cfg.gpus,
        cfg.jobs_per_gpu or preset.jobs_per_gpu,
        cfg.workers or preset.workers,
        visible_gpus(os.environ.get("CUDA_VISIBLE_DEVICES"), count),
    )
    # CPU jobs get a thread each; jobs sharing a machine's GPUs share its cores
    threads = 1 if device.type == "cpu" else max(1, cores() // len(slots))
    if cfg.launcher == "local":
        return Submitit("local", folder, cfg.slurm, slots, cfg.progress), job_device, threads
    if len(slots) == 1:  # one job at a time: in this process, on the device as resolved here
        return Sequential(cfg.progress), str(device), 1 if device.type == "cpu" else 0
    return Pool(slots, cfg.progress), job_device, threads


def run(cfg: RunConfig) -> Path:
    """Run ``cfg.preset`` into ``cfg.out``; returns the path of results.json."""
    if cfg.preset not in PRESETS:
        raise TrajbenchError(f"unknown preset {cfg.preset!r}; expected one of {sorted(PRESETS)}")
    if not cfg.out:
        raise TrajbenchError("--out needs a run directory")
    preset = PRESETS[cfg.preset]
    if cfg.device:
        preset = replace(preset, device=cfg.device)
    seeds = tuple(cfg.seeds) or preset.seeds
    if any(s < 0 for s in seeds):
        raise TrajbenchError(f"seeds must be non-negative integers, got {seeds}")
    workers = cfg.workers or preset.workers
    if workers < 1:
        raise TrajbenchError(f"workers must be >= 1, got {workers}")
    device = resolve_device("cpu" if cfg.launcher == "slurm" else preset.device)
    launcher, job_device, threads = launcher_of(cfg, preset, device)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out)  # left by an invocation that was killed
    started = time.perf_counter()
    previous = _previous_wall_time(out)

    _collect_all(cfg, preset.data, out, launcher, workers)
    for group in preset.groups:
        check_heldout_solvable(group, out)

    jobs = jobs_of(preset, seeds)
    if ensemble_on(cfg.ensemble, device):
        untrained = [j for j in jobs if j.condition and not (j.directory(out) / "model").exists()]
        cfgs = [job_train_config(j, out, job_device, preset.compile) for j in untrained]
        if groups := ensembles(cfgs):
            launcher.map(_ensemble_entry, [(g, threads) for g in groups], "train ensembles")
    run_jobs(
        jobs, out, launcher, job_device, preset.compile, threads, f"{preset.name}: train + evaluate"
    )

    records = pd.concat(
        [pd.read_parquet(j.directory(out) / RECORDS_FILE) for j in jobs], ignore_index=True
    )
    wall = previous + time.perf_counter() - started
    meta = {
        "trajbench_version": __version__,
        "git_commit": git_commit(),
        "preset": preset.name,
        "hardware": hardware(),
        "device": job_device,
        "torch_version": torch.__version__,
        "wall_time_s": round(wall, 1),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seeds": list(seeds),
        "config": json.loads(json.dumps(asdict(preset), default=str)),
    }
    results = write_report(out, records, meta, {g.name: g.questions for g in preset.groups})
    write_episode_gifs(out, jobs, str(device))
    atomic_write_json(out / "wall_time.json", {"wall_time_s": wall})
    return results


def _previous_wall_time(out: Path) -> float:
    """Wall time already spent by earlier, interrupted invocations of the same run."""
    try:
        return float(json.loads((out / "wall_time.json").read_text())["wall_time_s"])
    except (OSError, ValueError, KeyError):
        return 0.0


def main(argv: list[str]) -> int:
    """``trajbench run``: parse flags into :class:`RunConfig` and run the preset."""
    cfg = parse_config(RunConfig, argv, "trajbench run")
    if cfg is None:  # --help
        return 0
    if cfg.dry_run:
        print(dry_run(cfg))
        return 0
    results = run(cfg)
    print(f"results: {results}\nreport:  {results.parent / 'report.md'}")
    return 0

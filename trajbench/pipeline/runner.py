"""``trajbench run``: collect -> train -> evaluate -> report for every condition of a preset.

Every stage writes its output atomically and is skipped when that output exists, so a run
interrupted at any point resumes where it stopped (a training job resumes from its checkpoint).

Layout of ``OUT``::

    data/<store>/                      episode stores (trajbench collect)
    jobs/<group>/<condition>/seed<S>/  model/, checkpoint.pt, metrics.csv, records.parquet, offline.parquet
    jobs/<group>/baseline-<name>/seed<S>/records.parquet
    records.parquet                    every evaluated episode of every job
    results.json, report.md, plots/    aggregates with IQM and 95% CIs, the report, the figures

Example:
    trajbench run --preset smoke --out runs/smoke
"""

from __future__ import annotations

import json
import multiprocessing as mp
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from trajbench import __version__
from trajbench.cliargs import parse_config
from trajbench.collect import CollectConfig, collect
from trajbench.data import EpisodeStore, load
from trajbench.device import resolve_device
from trajbench.errors import TrajbenchError
from trajbench.families import make_env, sample_levels
from trajbench.io import atomic_write_json, write_parquet
from trajbench.provenance import git_commit, hardware
from trajbench.report import write_report

from .evaluate import evaluate
from .presets import PRESETS, Condition, DataSpec, Group, Preset
from .train import train

PresetName = Literal[tuple(PRESETS)]  # type: ignore[valid-type]  (the registered presets)


@dataclass
class RunConfig:
    """Run a benchmark preset end to end."""

    preset: PresetName
    """Preset: ci (seconds, for tests), smoke (2-core CPU, <= 15 min), architectures (llama vs
    mamba2 vs lstm, 2-core CPU, <= 20 min), standard (GPU), gpu (~8 min on one H100)."""
    out: str
    """Run directory; rerunning with the same directory resumes."""
    device: str = ""
    """Override the preset's device: auto, cpu, cuda or cuda:N."""
    seeds: tuple[int, ...] = ()
    """Override the preset's training seeds."""
    workers: int = 0
    """Override how many jobs run in parallel (0: the preset's choice)."""
    progress: bool = True
    """Show progress bars."""


# -- jobs -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Job:
    """One training condition and seed (or one reference policy and seed) of a group."""

    group: Group
    seed: int
    condition: Condition | None = None
    baseline: str = ""

    @property
    def name(self) -> str:
        if self.baseline:
            return f"baseline-{self.baseline}"
        c = self.condition
        p = "" if c.p_bursty is None else f"-p{c.p_bursty:g}"
        return f"{c.mode}-{c.instruction}{p}" + (f"-{c.backbone}" if c.backbone else "")

    @property
    def eval_seed(self) -> int:
        """The evaluation seed: apart from the training seed, the same for every condition."""
        return EVAL_SEED_OFFSET + self.seed

    def directory(self, out: Path) -> Path:
        return out / "jobs" / self.group.name / self.name / f"seed{self.seed}"


#: Evaluation seed = this + training seed (so no evaluation reuses a training seed's stream).
EVAL_SEED_OFFSET = 1000


def jobs_of(preset: Preset, seeds: tuple[int, ...]) -> list[Job]:
    """Every (condition or reference policy, seed) of every group of ``preset``."""
    jobs = []
    for group in preset.groups:
        jobs += [Job(group, s, condition=c) for c in group.conditions for s in seeds]
        jobs += [Job(group, s, baseline=b) for b in group.baselines for s in seeds]
    return jobs


def data_dir(out: Path, spec: DataSpec) -> Path:
    return out / "data" / spec.name


def collect_data(spec: DataSpec, out: Path, workers: int, progress: bool) -> Path:
    """Collect ``spec`` (idempotent: an identical existing store is kept)."""
    levels = spec.levels
    if spec.max_levels:
        env = make_env(spec.env)
        chosen = sample_levels(env, spec.levels, spec.max_levels)
        env.close()
        levels = ",".join(str(int(x)) for x in chosen)
    cfg = CollectConfig(
        env=spec.env,
        levels=levels,
        episodes_per_level=spec.episodes_per_level,
        demonstrator=spec.demonstrator,
        out=data_dir(out, spec),
        seed=spec.seed,
        workers=workers,
        progress=progress,
    )
    return collect(cfg)


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
    records_path = jdir / "records.parquet"
    if records_path.exists():
        return records_path
    policy = job.baseline or str(_trained(job, out, device, compile_model))
    c = job.condition
    instructions = ["train"]
    if g.decoy_eval and (job.baseline or c.instruction == "full"):
        instructions.append("wrong")
    frames = []
    for split, specs in (("test_levels", g.test_data), ("test_families", g.heldout_family_data)):
        for instruction in instructions if specs else ():
            ecfg = replace(
                g.eval,
                policy=policy,
                data=tuple(str(data_dir(out, s)) for s in specs),
                out=str(jdir / f"eval-{split}-{instruction}"),
                eval_split=split,
                instruction=instruction,
                formats=g.eval.formats if instruction == "train" else ("common",),
                seed=job.eval_seed,
                device=device,
                progress=False,
                offline=not job.baseline and instruction == "train",
            )
            frames.append(evaluate(ecfg)[0])
    records = pd.concat(frames, ignore_index=True)
    records["seed"] = job.seed
    records["train_context"] = c.mode if c else "-"
    records["instruction"] = c.instruction if c else "-"
    records["p_bursty"] = float("nan") if c is None or c.p_bursty is None else float(c.p_bursty)
    records["group"] = g.name
    write_parquet(records_path, records)
    return records_path


def _trained(job: Job, out: Path, device: str, compile_model: bool) -> Path:
    """The job's model directory, trained (or resumed) unless it is there."""
    g, c = job.group, job.condition
    model_dir = job.directory(out) / "model"
    if not model_dir.exists():
        context = replace(
            g.train.context, mode=c.mode, p_bursty=c.p_bursty, instruction=c.instruction
        )
        model = replace(g.train.model, backbone=c.backbone or g.train.model.backbone)
        train(
            replace(
                g.train,
                model=model,
                data=tuple(str(data_dir(out, s)) for s in g.train_data),
                out=str(job.directory(out)),
                context=context,
                seed=job.seed,
                device=device,
                compile=compile_model,
                resume=True,
                progress=False,
            )
        )
    return model_dir


# -- the run --------------------------------------------------------------------------------------
def _job_entry(args) -> str:
    return str(run_job(*args))


def run(cfg: RunConfig) -> Path:
    """Run ``cfg.preset`` into ``cfg.out``; returns the path of results.json."""
    if cfg.preset not in PRESETS:
        raise TrajbenchError(f"unknown preset {cfg.preset!r}; expected one of {sorted(PRESETS)}")
    preset = PRESETS[cfg.preset]
    if cfg.device:
        preset = replace(preset, device=cfg.device)
    seeds = tuple(cfg.seeds) or preset.seeds
    if any(s < 0 for s in seeds):
        raise TrajbenchError(f"seeds must be non-negative integers, got {seeds}")
    workers = cfg.workers or preset.workers
    if workers < 1:
        raise TrajbenchError(f"workers must be >= 1, got {workers}")
    device = resolve_device(preset.device)
    if device.type == "cuda":
        workers = 1  # one GPU: jobs run one after another, each using the whole card
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    previous = _previous_wall_time(out)

    specs = {
        s for g in preset.groups for s in (*g.train_data, *g.test_data, *g.heldout_family_data)
    }
    for spec in sorted(specs, key=lambda s: s.name):
        collect_data(spec, out, workers, cfg.progress)
    for group in preset.groups:
        check_heldout_solvable(group, out)

    jobs = jobs_of(preset, seeds)
    threads = 1 if device.type == "cpu" else 0
    args = [(job, out, str(device), preset.compile, threads) for job in jobs]
    bar = tqdm(
        total=len(jobs),
        desc=f"{preset.name}: train + evaluate",
        unit="job",
        disable=not cfg.progress,
    )
    if workers == 1:
        for a in args:
            _job_entry(a)
            bar.update(1)
    else:
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
            futures = [pool.submit(_job_entry, a) for a in args]
            for f in as_completed(futures):
                f.result()
                bar.update(1)
    bar.close()

    records = pd.concat(
        [pd.read_parquet(j.directory(out) / "records.parquet") for j in jobs], ignore_index=True
    )
    wall = previous + time.perf_counter() - started
    meta = {
        "trajbench_version": __version__,
        "git_commit": git_commit(),
        "preset": preset.name,
        "hardware": hardware(),
        "device": str(device),
        "torch_version": torch.__version__,
        "wall_time_s": round(wall, 1),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seeds": list(seeds),
        "config": json.loads(json.dumps(asdict(preset), default=str)),
    }
    results = write_report(out, records, meta)
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
    results = run(cfg)
    print(f"results: {results}\nreport:  {results.parent / 'report.md'}")
    return 0

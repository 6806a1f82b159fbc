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
import os
import platform
import subprocess
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import pandas as pd

from . import __version__
from .cliargs import parse_config
from .errors import TrajbenchError
from .io import atomic_write_json
from .presets import PRESETS, DataSpec, Group, Preset


@dataclass
class RunConfig:
    """Run a benchmark preset end to end."""

    preset: Literal["ci", "smoke", "standard", "gpu"]
    """Preset: ci (seconds, for tests), smoke (2-core CPU, <= 15 min), standard (GPU), gpu (~8 min on one H100)."""
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
    mode: str = ""
    instruction: str = "full"
    p_bursty: float | None = None
    baseline: str = ""

    @property
    def name(self) -> str:
        if self.baseline:
            return f"baseline-{self.baseline}"
        p = "" if self.p_bursty is None else f"-p{self.p_bursty:g}"
        return f"{self.mode}-{self.instruction}{p}"

    def directory(self, out: Path) -> Path:
        return out / "jobs" / self.group.name / self.name / f"seed{self.seed}"


def jobs_of(preset: Preset, seeds: tuple[int, ...]) -> list[Job]:
    jobs = []
    for group in preset.groups:
        for mode in group.modes:
            for instruction in group.instructions:
                for p in group.p_bursty:
                    jobs += [Job(group, s, mode, instruction, p) for s in seeds]
        for baseline in group.baselines:
            jobs += [Job(group, s, baseline=baseline) for s in seeds]
    return jobs


def data_dir(out: Path, spec: DataSpec) -> Path:
    return out / "data" / spec.name


def collect_data(spec: DataSpec, out: Path, workers: int, progress: bool) -> Path:
    """Collect ``spec`` (idempotent: an identical existing store is kept)."""
    from .collect import CollectConfig, collect, make_env

    levels = spec.levels
    if spec.max_levels:
        env = make_env(spec.env)
        chosen = env.unwrapped.resolve_levels(spec.levels)[: spec.max_levels]
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


def run_job(job: Job, out: Path, device: str, compile_model: bool, threads: int) -> Path:
    """Train (unless done) and evaluate (unless done) one job; returns its records file."""
    import torch

    from .contexts import ContextConfig
    from .evaluate import EvalConfig, evaluate, write_parquet
    from .train import ModelSize, TrainConfig, train

    if threads:
        torch.set_num_threads(threads)
    g = job.group
    jdir = job.directory(out)
    records_path = jdir / "records.parquet"
    if records_path.exists():
        return records_path
    policy = job.baseline
    if not job.baseline:
        model_dir = jdir / "model"
        if not model_dir.exists():
            cfg = TrainConfig(
                data=tuple(str(data_dir(out, s)) for s in g.train_data),
                out=str(jdir),
                context=ContextConfig(
                    mode=job.mode,
                    k=g.k,
                    p_bursty=job.p_bursty,
                    instruction=job.instruction,
                    context_demonstrators=g.context_demonstrators,
                ),
                model=ModelSize(d_model=g.d_model, n_layers=g.n_layers, n_heads=g.n_heads),
                steps=g.steps,
                batch_size=g.batch_size,
                lr=g.lr,
                warmup_steps=g.warmup_steps,
                seed=job.seed,
                device=device,
                compile=compile_model,
                resume=True,
                progress=False,
            )
            train(cfg)
        policy = str(model_dir)
    frames = []
    for split, specs in (("test_levels", g.test_data), ("test_families", g.heldout_family_data)):
        if not specs:
            continue
        ecfg = EvalConfig(
            policy=policy,
            data=tuple(str(data_dir(out, s)) for s in specs),
            out=str(jdir / f"eval-{split}"),
            ks=g.ks,
            episodes=g.eval_episodes,
            max_levels=g.eval_max_levels,
            eval_split=split,
            seed=job.seed,
            device=device,
            progress=False,
            offline=not job.baseline,
        )
        online, _ = evaluate(ecfg)
        frames.append(online)
    records = pd.concat(frames, ignore_index=True)
    records["seed"] = job.seed
    records["train_context"] = job.mode or "-"
    records["instruction"] = job.instruction if not job.baseline else "-"
    records["p_bursty"] = float("nan") if job.p_bursty is None else float(job.p_bursty)
    records["group"] = g.name
    write_parquet(records_path, records)
    return records_path


# -- the run --------------------------------------------------------------------------------------
def hardware() -> str:
    """A one-line description of the machine (and GPU, if one is used)."""
    import torch

    cpu = platform.processor() or platform.machine()
    with_gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()}{with_gpu}"


def git_commit() -> str:
    try:
        root = Path(__file__).resolve().parent.parent
        return subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _job_entry(args) -> str:
    return str(run_job(*args))


def run(cfg: RunConfig) -> Path:
    """Run ``cfg.preset`` into ``cfg.out``; returns the path of results.json."""
    import torch

    from .report import write_report

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
    from .train import resolve_device

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

    jobs = jobs_of(preset, seeds)
    threads = 1 if device.type == "cpu" else 0
    args = [(job, out, str(device), preset.compile, threads) for job in jobs]
    from tqdm.auto import tqdm

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
        import multiprocessing as mp

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
    cfg = parse_config(RunConfig, argv, "trajbench run")
    if cfg is None:  # --help
        return 0
    results = run(cfg)
    print(f"results: {results}\nreport:  {results.parent / 'report.md'}")
    return 0

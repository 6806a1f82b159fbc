"""``trajbench analyze burstiness``: in-context vs in-weights learning against p_bursty, K and Zipf.

Trains one model per (p_bursty, Zipf exponent, seed) on the train levels of a family (Dark Room by
default) and measures, with no weight updates:

- **in-context success**: held-out (test) levels, K expert demonstrations *of the level itself* in
  the context, for every K of ``--eval.ks`` (the k-shot curve);
- **no-support score**: held-out levels, K demonstrations of *other* levels: what is left is the
  model's prior, not the demonstrations;
- **in-weights success**: *train* levels with K demonstrations of other train levels: a model can
  only succeed there by having memorized the level's goal in its weights (Chan et al. 2022 score
  in-weights learning the same way: trained classes, no exemplar of the class in context). It is
  measured on each model's ``--train-eval-levels`` most-trained levels, counted by replaying the
  model's training batch stream exactly; with a Zipf exponent > 0 these are the frequent levels a
  model can memorize. In the records their ``level`` is the frequency rank (0 = most trained), so
  that seeds line up, and ``train_level`` the level itself.

Two sweeps share the models where they meet:

- ``p_bursty`` in {0, 0.25, 0.5, 0.75, 1} at Zipf exponent 0: each training sequence has
  same-level context with probability p_bursty and other-level context otherwise (Raparthy et
  al. 2023);
- the Zipf exponent of how often each training level is the query, {0, 1, 2}, at ``p_bursty``
  = ``--zipf-p-bursty`` (0.5 by default). At 0.5 half the sequences reward memorizing the goal and
  half reward reading it from the context, so both kinds of learning are possible and the Zipf
  exponent decides which one a few frequent levels pull towards (at 1.0 nothing rewards
  memorization; at 0 nothing rewards reading the context).

Every evaluation episode sees exactly its K demonstrations: held-out levels are scored by
``trajbench evaluate`` once per episode ``e`` (one episode each, evaluation seed ``e``), so later
episodes never see earlier ones; the in-weights score rolls out the same way. Demonstrations and
start states depend only on (level, episode), so all models are compared on the same contexts.
Scores are the success rate per (training seed, level), aggregated as the mean over seeds x levels with
95% stratified-bootstrap CIs.

The sweep is a list of :class:`~trajbench.pipeline.train.TrainConfig` derived from ``--train.*``
with :func:`dataclasses.replace`. The run is resumable from the stages' own outputs: every model is
a ``trajbench train`` run directory ``OUT/models/p<P>-zipf<Z>/seed<S>/`` and every held-out
evaluation a ``trajbench evaluate`` output in its ``eval/seed<E>/``. A rerun with the same
``--out`` skips a model whose ``model/`` exists (and refuses one trained with other settings) and
an evaluation whose records cover every (K, support, level); the in-weights rollouts are cheap
and run again.

Example:
    trajbench analyze burstiness --out runs/burstiness            # ~10 min on a busy 2-core CPU
    trajbench analyze burstiness --out /tmp/b --quick             # seconds: tiny models
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from trajbench.contexts.modes import BURSTY
from trajbench.families import resolve_env_id
from trajbench.pipeline.evaluate import EvalConfig
from trajbench.pipeline.presets import DataSpec
from trajbench.pipeline.runner import collect_data
from trajbench.pipeline.train import TrainConfig
from trajbench.pipeline.train import validate as validate_train

from .common import output_dir, require
from .sweep import (
    evaluate_sweep,
    sweep_table,
    train_sweep,
)

NAME = "burstiness"


@dataclass
class BurstinessConfig:
    """Success on held-out levels against p_bursty, K and the Zipf exponent, with the
    no-support and in-weights scores beside it."""

    out: str
    """Output directory: OUT/burstiness.{csv,md,png} and OUT/burstiness_records.csv, models under
    OUT/models/, data under OUT/data/. Rerunning with the same OUT reuses finished models and
    evaluations."""
    env: str = "trajbench/DarkRoom-v0"
    """Family to train and evaluate on; one whose goal only same-level demonstrations reveal
    (DarkRoom-v0, DarkKeyToDoor-v0) separates in-context from in-weights learning."""
    p_bursty: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    """Probabilities that a training sequence is bursty (same-level context), at Zipf exponent 0."""
    zipf: tuple[float, ...] = (0.0, 1.0, 2.0)
    """Zipf exponents of the training level frequencies, at p_bursty = zipf_p_bursty."""
    zipf_p_bursty: float = 0.5
    """p_bursty of the Zipf sweep (0.5: both in-context and in-weights learning are rewarded)."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Training seeds (the CIs are over seeds x levels)."""
    train_episodes: int = 20
    """Expert episodes collected per train level."""
    test_episodes: int = 4
    """Expert episodes collected per held-out level (the demonstrations)."""
    max_train_levels: int = 0
    """Train on the first N train levels only (0: all)."""
    train_eval_levels: int = 16
    """Train levels on which the in-weights score is measured: each model's N most-trained levels
    (by how often they were the query in its training batches; 0: all)."""
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(steps=200, batch_size=16, warmup_steps=30, threads=1)
    )
    """Training of every model: context.k (context episodes per training sequence), model, steps,
    batch_size, lr, warmup_steps, device, threads, ... Each model sets its own data, out, seed,
    context.mode (bursty), context.p_bursty and context.zipf."""
    eval: EvalConfig = field(default_factory=lambda: EvalConfig(ks=(0, 1, 2, 4), offline=False))
    """Evaluation: ks (the k-shot sweep), episodes (independent episodes per level, K and support;
    each sees only its K demonstrations), max_levels (the first N held-out levels; 0: all), seed
    (episode e draws its demonstrations and start state from seed + e), device, threads. Policy,
    data, out and support are set per model."""
    workers: int = 2
    """Models trained in parallel processes, one CPU thread each (1 on CUDA)."""
    quick: bool = False
    """Tiny settings for tests (overrides the sizes): p_bursty (0, 1), Zipf (0, 2) at p_bursty 1,
    one seed, K in (0, 1), a few steps of a 16-wide model, 4 held-out levels, one worker."""
    progress: bool = True
    """Show progress bars."""


@dataclass
class BurstinessResult:
    """The tables of the analysis (see :func:`compute`)."""

    table: pd.DataFrame
    """One row per (sweep, p_bursty, zipf, levels, k, support): mean success, CI, counts."""
    records: pd.DataFrame
    """One row per evaluated episode of every model."""
    about: dict
    """What was run (see :func:`about_of`)."""


def quick_config(cfg: BurstinessConfig) -> BurstinessConfig:
    """The ``--quick`` settings (seconds on a CPU)."""
    tr = cfg.train
    return replace(
        cfg,
        p_bursty=(0.0, 1.0),
        zipf=(0.0, 2.0),
        zipf_p_bursty=1.0,
        seeds=(0,),
        train_episodes=2,
        test_episodes=2,
        train_eval_levels=4,
        workers=1,
        train=replace(
            tr,
            context=replace(tr.context, k=1),
            model=replace(tr.model, d_model=16, n_layers=1, n_heads=2),
            steps=4,
            batch_size=4,
            warmup_steps=1,
        ),
        eval=replace(cfg.eval, ks=(0, 1), episodes=1, max_levels=4),
    )


def validate(cfg: BurstinessConfig) -> None:
    """Raise :class:`TrajbenchError` naming the first bad knob (the training config's included)."""
    ev, seeds = cfg.eval, cfg.seeds
    require(
        [
            (len(cfg.p_bursty) > 0, "--p-bursty needs at least one value"),
            (
                all(0.0 <= p <= 1.0 for p in (*cfg.p_bursty, cfg.zipf_p_bursty)),
                f"p_bursty must be in [0, 1], got {cfg.p_bursty} and {cfg.zipf_p_bursty}",
            ),
            (
                all(np.isfinite(z) and z >= 0 for z in cfg.zipf),
                f"zipf exponents must be finite and >= 0, got {cfg.zipf}",
            ),
            (len(seeds) > 0 and min(seeds) >= 0, f"seeds must be >= 0 and non-empty, got {seeds}"),
            (len(set(seeds)) == len(seeds), f"seeds must be distinct, got {seeds}"),
            (len(ev.ks) > 0 and min(ev.ks) >= 0, f"ks must be non-empty and >= 0, got {ev.ks}"),
            (
                min(cfg.train_episodes, cfg.test_episodes, ev.episodes, cfg.workers) >= 1,
                "train_episodes, test_episodes, eval.episodes and workers must be >= 1",
            ),
            (
                min(cfg.max_train_levels, cfg.train_eval_levels, ev.max_levels, ev.seed, ev.threads)
                >= 0,
                "max_train_levels, train_eval_levels, eval.max_levels, eval.seed and eval.threads "
                "must be >= 0",
            ),
        ]
    )
    # The training stage's own checks, before any collection (data and out are set per model).
    validate_train(replace(cfg.train, data=(".",), out="."))


def settings(cfg: BurstinessConfig) -> BurstinessConfig:
    """``cfg`` as run: ``--quick`` applied, checked, the family's full id."""
    if cfg.quick:
        cfg = quick_config(cfg)
    validate(cfg)
    return replace(cfg, env=resolve_env_id(cfg.env))


# -- the models -----------------------------------------------------------------------------------
def conditions(cfg: BurstinessConfig) -> list[tuple[float, float]]:
    """Every (p_bursty, zipf) trained: the p_bursty sweep at Zipf 0, then the Zipf sweep."""
    pairs = [(float(p), 0.0) for p in cfg.p_bursty]
    pairs += [(float(cfg.zipf_p_bursty), float(z)) for z in cfg.zipf]
    return list(dict.fromkeys(pairs))


def model_dir(out: Path, p: float, zipf: float, seed: int) -> Path:
    """Run directory of one model (the model itself is its ``model/``)."""
    return out / "models" / f"p{p:g}-zipf{zipf:g}" / f"seed{seed}"


def data_specs(cfg: BurstinessConfig) -> tuple[DataSpec, DataSpec]:
    """The train-level and held-out stores."""
    train = DataSpec(cfg.env, "train", cfg.train_episodes, max_levels=cfg.max_train_levels)
    test = DataSpec(cfg.env, "test", cfg.test_episodes, seed=1, max_levels=cfg.eval.max_levels)
    return train, test


def train_config(
    cfg: BurstinessConfig, out: Path, train_data: Path, p: float, zipf: float, seed: int
) -> TrainConfig:
    """The training config of one model: ``cfg.train`` with its data, directory, seed and mix."""
    context = replace(cfg.train.context, mode=BURSTY, p_bursty=p, zipf=zipf)
    return replace(
        cfg.train,
        data=(str(train_data),),
        out=str(model_dir(out, p, zipf, seed)),
        context=context,
        seed=seed,
        resume=True,
        progress=False,
    )


# -- the analysis ---------------------------------------------------------------------------------
def about_of(cfg: BurstinessConfig, wall_s: float) -> dict:
    """The settings a report names (``cfg`` as run)."""
    tr = cfg.train
    return {
        "env": cfg.env,
        "d_model": tr.model.d_model,
        "n_layers": tr.model.n_layers,
        "steps": tr.steps,
        "batch_size": tr.batch_size,
        "train_k": tr.context.k,
        "eval_episodes": cfg.eval.episodes,
        "train_eval_levels": cfg.train_eval_levels,
        "wall_s": wall_s,
    }


def compute(cfg: BurstinessConfig) -> BurstinessResult:
    """Collect, train (or reuse) the models, evaluate them and aggregate."""
    started = time.perf_counter()
    cfg = settings(cfg)
    out = output_dir(cfg.out)
    train_spec, test_spec = data_specs(cfg)
    train_data = collect_data(train_spec, out, 1, cfg.progress)
    test_data = collect_data(test_spec, out, 1, cfg.progress)
    jobs = {
        (p, z, s): train_config(cfg, out, train_data, p, z, s)
        for p, z in conditions(cfg)
        for s in cfg.seeds
    }
    train_sweep(list(jobs.values()), cfg.workers, cfg.progress)
    records = evaluate_sweep(
        jobs, cfg.eval, train_data, test_data, cfg.env, cfg.train_eval_levels, cfg.progress
    )
    table = sweep_table(records, cfg.p_bursty, cfg.zipf, cfg.zipf_p_bursty)
    return BurstinessResult(table, records, about_of(cfg, time.perf_counter() - started))

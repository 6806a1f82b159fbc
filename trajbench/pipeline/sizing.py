"""``trajbench run --preset NAME --dry-run``: what a preset costs, before it runs.

For every group of a preset: the jobs (training runs and evaluations), the training tokens
(steps x batch x mean sequence length), the training FLOPs
(:func:`~trajbench.baselines.transformer.training_flops_per_token`), the evaluation episodes,
and the estimated training time on this CPU and on a GPU.

- **Mean sequence length**: measured, by sampling the prompt builder (the group's own context
  config, once per condition) on a small collection of the group's training stores (a few levels
  per store, collected into a temporary directory).
- **CPU time**: measured on the spot: a few training steps of the group's model on those
  sequences with one CPU thread (what the runner gives each job), the jobs shared among the
  preset's parallel workers.
- **GPU time**: ``steps x max(FLOPs per step / (peak x MFU), minimum step time)``: a step costs
  its FLOPs at the card's utilisation, but never less than the fixed cost of launching its
  kernels, which is what bounds the small models of the benchmark. Until
  ``benchmarks/gpu_check.sh`` has measured MFU and the minimum step time on a card (its
  ``gpu_check.json``, copied to ``benchmarks/results/gpu_check.json``), both are assumptions on
  an H100's dense bf16 peak, and the output says so.

Collection and evaluation time are not estimated; evaluation is counted in episodes.

Example:
    trajbench run --preset gpu --dry-run
"""

from __future__ import annotations

import functools
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from trajbench.baselines.model_config import ModelConfig
from trajbench.baselines.transformer import TrajectoryTransformer, training_flops_per_token
from trajbench.collect import CollectConfig, collect
from trajbench.contexts import ContextBuilder
from trajbench.coverage import Design
from trajbench.data import load
from trajbench.device import autocast, torch_threads
from trajbench.errors import TrajbenchError
from trajbench.families import make_env, sample_levels, subset
from trajbench.provenance import cores

from .evaluate import _conditions
from .jobs import Job, RunConfig, condition_context, evaluations
from .policies import PolicyInfo
from .presets import PRESETS, DataSpec, Group, Preset
from .train import TrainConfig, TrainStep, make_optimizer

#: Dense bf16 tensor-core peak (FLOP/s) by a substring of the CUDA device name (first match).
PEAK_BF16 = {
    "H200": 989e12,
    "H100 PCIe": 756e12,
    "H100": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
    "L4": 121e12,
    "A10": 125e12,
    "4090": 165e12,
}
#: The card the GPU estimate assumes until one is measured.
ASSUMED_CARD = "H100"
#: Assumed model FLOPs utilisation: the issue's target for the standard model (unmeasured).
ASSUMED_MFU = 0.30
#: Assumed shortest training step: eager PyTorch launches ~1,000 kernels per step of a small
#: model (forward, backward, clipping, AdamW) at ~5-10 us each, plus building the batch.
ASSUMED_MIN_STEP_S = 0.010
#: Where ``gpu_check.sh``'s measurements are read from (a source checkout's benchmarks/results),
#: unless the environment variable ``TRAJBENCH_GPU_CHECK`` names another file.
MEASURED_FILE = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "gpu_check.json"


def peak_flops(device_name: str) -> float | None:
    """Dense bf16 peak of a CUDA card by its name, or None for a card not in :data:`PEAK_BF16`.

    Example:
        >>> peak_flops("NVIDIA H100 80GB HBM3") / 1e12
        989.0
    """
    return next((v for k, v in PEAK_BF16.items() if k in device_name), None)


def preset_group(spec: str) -> Group:
    """The group ``PRESET:GROUP`` names; ``PRESET`` alone: its largest model (FLOPs per token).

    Example:
        >>> preset_group("standard").train.model.d_model
        256
    """
    name, _, group = spec.partition(":")
    if name not in PRESETS:
        raise TrajbenchError(f"unknown preset {name!r}; expected one of {sorted(PRESETS)}")
    groups = PRESETS[name].groups
    if not group:
        return max(groups, key=lambda g: training_flops_per_token(g.train.model, 1, 0.0))
    found = [g for g in groups if g.name == group]
    if not found:
        raise TrajbenchError(
            f"preset {name!r} has no group {group!r}; its groups: {[g.name for g in groups]}"
        )
    return found[0]


# -- the GPU basis ----------------------------------------------------------------------------
@dataclass(frozen=True)
class GpuBasis:
    """What the GPU estimate rests on: a card's peak, its MFU and its shortest step."""

    card: str
    peak_flops: float
    mfu: float
    min_step_s: float
    source: str
    """``assumed`` or where the figures were measured."""

    @property
    def measured(self) -> bool:
        return self.source != "assumed"

    def step_s(self, flops: float) -> float:
        """Seconds of one training step of ``flops`` FLOPs."""
        return max(flops / (self.peak_flops * self.mfu), self.min_step_s)


def gpu_basis(path: str | Path | None = None) -> GpuBasis:
    """The basis measured in ``path`` (``gpu_check.json``, written by ``gpu_check.sh``; default:
    ``$TRAJBENCH_GPU_CHECK`` or :data:`MEASURED_FILE`) if it exists, else the assumed one.

    Raises:
        TrajbenchError: the file exists but does not hold the measured figures.
    """
    path = Path(path or os.environ.get("TRAJBENCH_GPU_CHECK") or MEASURED_FILE)
    if not path.is_file():
        return GpuBasis(ASSUMED_CARD, PEAK_BF16["H100"], ASSUMED_MFU, ASSUMED_MIN_STEP_S, "assumed")
    try:
        data = json.loads(path.read_text())
        basis = GpuBasis(
            card=str(data["card"]),
            peak_flops=float(data["peak_flops"]),
            mfu=float(data["mfu"]),
            min_step_s=float(data["min_step_s"]),
            source=f"measured on {data['card']} by gpu_check.sh (commit "
            f"{str(data.get('commit', '?'))[:12]}, {data.get('date', '?')})",
        )
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise TrajbenchError(f"{path}: not a gpu_check.sh measurement ({err!r})") from None
    if not (basis.peak_flops > 0 and 0 < basis.mfu <= 1 and basis.min_step_s >= 0):
        raise TrajbenchError(f"{path}: peak_flops, mfu or min_step_s out of range")
    return basis


# -- one group ----------------------------------------------------------------------------------
@dataclass
class GroupSize:
    """The cost of one group of a preset."""

    name: str
    model: ModelConfig
    train_jobs: int
    eval_jobs: int
    steps: int
    batch_size: int
    tokens_per_sequence: float
    """Mean over the group's conditions (each sampled from the prompt builder)."""
    training_tokens: float
    training_flops: float
    eval_episodes: int
    cpu_tokens_per_s: float
    """Measured here per CPU-second, one thread, on the condition with the longest sequences."""
    cpu_s: float
    """Training time of every job one after another on one thread."""
    gpu_s: float
    gpu_flops_bound: bool
    """Whether FLOPs (not the shortest step) bound most of the GPU time."""
    collect_episodes_per_cpu_s: float = math.nan
    """Episodes collected per CPU-second here (the small collection of the training stores)."""
    episode_steps: float = math.nan
    """Mean steps of an episode of the small collection."""


def _small_stores(group: Group, tmp: Path, n_levels: int) -> list[Path]:
    """The group's training stores, each on ``n_levels`` of its levels (the same levels for the
    expert and the noisy collection of a family, as in the preset)."""
    paths = []
    for spec in group.train_data:
        env = make_env(spec.env)
        levels = subset(sample_levels(env, spec.levels, spec.max_levels), n_levels, "sizing")
        env.close()
        cfg = CollectConfig(
            env=spec.env,
            levels=",".join(str(int(x)) for x in levels),
            episodes_per_level=spec.episodes_per_level,
            demonstrator=spec.demonstrator,
            seed=spec.seed,
            out=tmp / spec.name,
            progress=False,
        )
        paths.append(collect(cfg))
    return paths


def _cpu_tokens_per_s(builder: ContextBuilder, store, train: TrainConfig, rows: int) -> float:
    """Tokens per CPU-second of a few training steps of ``train.model`` on one thread: what a
    job gets from a core of its own (wall time would count the other processes of a busy
    machine)."""
    cpu = torch.device("cpu")
    torch.manual_seed(0)
    model = TrajectoryTransformer(train.model, store.encoding, builder.vocab).train()
    optimizer = make_optimizer(model, train, cpu)
    step = TrainStep(model, model, optimizer, train.grad_clip, autocast(cpu, bf16=False))
    batches = [builder.sample(rows, seed=s) for s in range(3)]
    with torch_threads(1):
        step(batches[0].to_torch(), 1.0, train.lr)  # warm-up
        start, tokens = time.process_time(), 0
        for batch in batches[1:]:
            step(batch.to_torch(), max(int(batch.loss_mask.sum()), 1), train.lr)
            tokens += int((~batch.pad).sum())
    return tokens / (time.process_time() - start)


@functools.cache
def n_levels_of(spec: DataSpec) -> int:
    """How many levels the store of ``spec`` holds."""
    env = make_env(spec.env)
    n = len(sample_levels(env, spec.levels, spec.max_levels))
    env.close()
    return n


def group_designs(group: Group, seeds: int) -> dict[str, Design]:
    """The design every held-out family of ``group`` is measured at, by env id: ``seeds``
    training seeds, its evaluated levels, the group's episodes per (seed, level) cell."""
    cap = group.eval.max_levels
    return {
        spec.env: Design(
            seeds, min(n_levels_of(spec), cap) if cap else n_levels_of(spec), group.eval.episodes
        )
        for spec in (*group.test_data, *group.heldout_family_data)
    }


def _eval_episodes(group: Group, seeds: int, jobs) -> int:
    """Episodes the group's evaluations play (every evaluation of every job)."""
    total = 0
    for job in jobs:
        info = PolicyInfo(
            policy=job.name, train_context=job.condition.train_context if job.condition else "-"
        )
        for _split, specs, instruction, formats in evaluations(job):
            cfg = replace(group.eval, instruction=instruction, formats=formats)
            per_level = len(_conditions(cfg, info, info.train_context)) * cfg.episodes
            for spec in specs:
                n = n_levels_of(spec)
                total += (min(n, cfg.max_levels) if cfg.max_levels else n) * per_level
    return total * seeds


def size_group(
    group: Group, seeds: int, basis: GpuBasis, n_levels: int = 12, sequences: int = 64
) -> GroupSize:
    """Measure and count what ``group`` costs with ``seeds`` seeds (see the module docstring).

    Args:
        group: The preset group.
        seeds: Number of training seeds.
        basis: What the GPU estimate rests on (:func:`gpu_basis`).
        n_levels: Levels per training store in the small collection.
        sequences: Sequences sampled per condition to measure the mean length.
    """
    train, model = group.train, group.train.model
    jobs = [Job(group, 0, condition=c) for c in group.conditions]
    jobs += [Job(group, 0, baseline=b) for b in group.baselines]
    with tempfile.TemporaryDirectory() as tmp:
        cpu_start = time.process_time()
        store = load([str(p) for p in _small_stores(group, Path(tmp), n_levels)])
        collect_cpu_s = time.process_time() - cpu_start
        lengths, flops_per_token, builders = [], [], []
        for c in group.conditions:
            builder = ContextBuilder(store, seed=0, config=condition_context(group, c))
            n = (~builder.sample(sequences, seed=0).pad).sum(1).astype(np.float64)
            mean_context = float((n * (n - 1) / 2).sum() / n.sum())  # earlier tokens, per token
            lengths.append(float(n.mean()))
            flops_per_token.append(
                training_flops_per_token(model, store.encoding.n_actions, mean_context)
            )
            builders.append(builder)
        cpu_tps = float("nan")  # a group that trains nothing (the llm preset) has no rate
        if lengths:
            longest = int(np.argmax(lengths))
            cpu_tps = _cpu_tokens_per_s(builders[longest], store, train, min(train.batch_size, 16))
    step_tokens = [train.batch_size * n for n in lengths]
    step_flops = [t * f for t, f in zip(step_tokens, flops_per_token, strict=True)]
    gpu_steps = [basis.step_s(f) for f in step_flops]
    flops_bound = sum(t for t in gpu_steps if t > basis.min_step_s)
    return GroupSize(
        name=group.name,
        model=model,
        train_jobs=len(group.conditions) * seeds,
        eval_jobs=len(jobs) * seeds,
        steps=train.steps,
        batch_size=train.batch_size,
        tokens_per_sequence=float(np.mean(lengths)) if lengths else 0.0,
        training_tokens=train.steps * sum(step_tokens) * seeds,
        training_flops=train.steps * sum(step_flops) * seeds,
        eval_episodes=_eval_episodes(group, seeds, jobs),
        cpu_tokens_per_s=cpu_tps,
        cpu_s=train.steps * sum(step_tokens) * seeds / cpu_tps if lengths else 0.0,
        gpu_s=train.steps * sum(gpu_steps) * seeds,
        gpu_flops_bound=flops_bound > sum(gpu_steps) / 2,
        collect_episodes_per_cpu_s=len(store.episodes) / max(collect_cpu_s, 1e-9),
        episode_steps=float(store.episodes["length"].mean()),
    )


# -- a preset ----------------------------------------------------------------------------------
@dataclass
class PresetSize:
    """The cost of a preset: its groups' and what the estimates rest on."""

    preset: Preset
    seeds: tuple[int, ...]
    parallel: int
    """Jobs the runner runs at once on the CPU."""
    groups: list[GroupSize]
    basis: GpuBasis
    n_levels: int
    """Levels per training store of the small collection."""
    collect_episodes: int
    """Episodes the preset's stores hold (collected before any job starts)."""
    stores: int
    """Episode stores of the preset."""


def size_preset(
    preset: Preset,
    seeds: tuple[int, ...] = (),
    workers: int = 0,
    basis: GpuBasis | None = None,
    n_levels: int = 12,
) -> PresetSize:
    """Size every group of ``preset`` (see :func:`size_group`).

    ``seeds`` and ``workers`` override the preset's (as ``trajbench run`` does); ``basis``
    defaults to :func:`gpu_basis`; ``n_levels`` per store go into the small collection.
    """
    basis = basis or gpu_basis()
    seeds = tuple(seeds) or preset.seeds
    sizes = []
    for group in preset.groups:
        print(f"sizing {preset.name}/{group.name} ...", file=sys.stderr, flush=True)
        sizes.append(size_group(group, len(seeds), basis, n_levels))
    parallel = max(1, min(workers or preset.workers, cores()))
    collect_episodes = sum(n_levels_of(s) * s.episodes_per_level for s in preset.data)
    return PresetSize(
        preset, seeds, parallel, sizes, basis, n_levels, collect_episodes, len(preset.data)
    )


def render(size: PresetSize) -> str:
    """The dry-run report: one table row per group, the totals, and what the estimates rest on."""
    preset, seeds, parallel, sizes = size.preset, size.seeds, size.parallel, size.groups
    basis, n_levels = size.basis, size.n_levels
    gpu_label = f"{basis.card} (MFU {basis.mfu:.0%}, step >= {basis.min_step_s * 1e3:.1f} ms)"
    lines = [
        f"preset {preset.name}: {preset.description}",
        f"seeds {list(seeds)}; on the CPU {parallel} job(s) in parallel, one thread each; "
        "on a GPU one job at a time",
        "",
        "| group | model | train jobs | eval jobs | steps x batch | tokens/seq | training tokens "
        f"| training FLOPs | eval episodes | CPU tokens/s | CPU time | {gpu_label} |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in sizes:
        m = s.model
        bound = "FLOPs" if s.gpu_flops_bound else "step"
        lines.append(
            f"| {s.name} | d{m.d_model} x {m.n_layers} layers | {s.train_jobs} | {s.eval_jobs} "
            f"| {s.steps} x {s.batch_size} | {s.tokens_per_sequence:.0f} "
            f"| {_si(s.training_tokens)} | {_si(s.training_flops)} | {s.eval_episodes:,} "
            f"| {s.cpu_tokens_per_s:,.0f} | {_duration(s.cpu_s / parallel)} "
            f"| {_duration(s.gpu_s)} ({bound}-bound) |"
        )

    def total(attr: str) -> float:
        return sum(getattr(s, attr) for s in sizes)

    lines.append(
        f"| **total** | | {total('train_jobs')} | {total('eval_jobs')} | | "
        f"| {_si(total('training_tokens'))} | {_si(total('training_flops'))} "
        f"| {total('eval_episodes'):,} | | {_duration(total('cpu_s') / parallel)} "
        f"| {_duration(total('gpu_s'))} |"
    )
    if basis.measured:
        gpu_note = basis.source + "."
    else:
        gpu_note = (
            f"ASSUMED, not measured: {ASSUMED_CARD} bf16 peak {basis.peak_flops / 1e12:.0f} "
            f"TFLOP/s, MFU {basis.mfu:.0%}, shortest step {basis.min_step_s * 1e3:.0f} ms "
            "(bash benchmarks/gpu_check.sh measures them)."
        )
    lines += [
        "",
        f"Training time only: collection ({size.collect_episodes:,} episodes in {size.stores} "
        "stores) and evaluation are not estimated here (the targets below estimate them).",
        f"Tokens per sequence: sampled from the prompt builder, per condition, on a {n_levels}-level "
        "collection of each training store.",
        "CPU: tokens per CPU-second of a few training steps measured here (one thread, up to 16 "
        "sequences of the condition with the longest ones).",
        f"GPU: steps x max(FLOPs per step / (peak x MFU), shortest step); {gpu_note}",
    ]
    return "\n".join(lines)


def size_of(cfg: RunConfig) -> PresetSize:
    """The size of ``cfg.preset`` with its overrides (the dry-run's figures)."""
    if cfg.preset not in PRESETS:
        raise TrajbenchError(f"unknown preset {cfg.preset!r}; expected one of {sorted(PRESETS)}")
    if any(s < 0 for s in cfg.seeds) or cfg.workers < 0:
        raise TrajbenchError("seeds and workers must be non-negative")
    return size_preset(PRESETS[cfg.preset], cfg.seeds, cfg.workers)


def dry_run(cfg: RunConfig) -> str:
    """The report of ``cfg.preset`` with its overrides (``trajbench run --dry-run`` adds
    :func:`trajbench.pipeline.targets.dry_run`'s targets under it)."""
    return render(size_of(cfg))


def _si(x: float) -> str:
    """``1.2e9`` -> ``1.2G``."""
    for unit, scale in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= scale:
            return f"{x / scale:.1f}{unit}"
    return f"{x:.0f}"


def _duration(seconds: float) -> str:
    """``5000`` -> ``1 h 23 min``; under a minute in seconds."""
    if not math.isfinite(seconds):
        return "n/a"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"

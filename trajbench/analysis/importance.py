"""``trajbench analyze importance``: which context steps carry the lesson (after "thought anchors").

For held-out levels, a trained model reads ``k`` demonstrations of the level (the *context*) and
then a held-out expert episode of the same level (the *query*), teacher-forced. Every context step,
and every context episode, is then perturbed in turn, and the effect on the query is measured:

- **replace**: the step (or episode, with its mission words) is swapped for a random one from
  another level of the same family (``replace_draws`` draws, averaged);
- **delete**: the step's token (or the whole episode) is removed.

Effect measures:

- ``kl_*``: KL divergence ``KL(p_base || p_perturbed)`` of the model's action distribution,
  averaged over the query's steps (nats). The unperturbed and all perturbed copies of a sequence
  go through the model together in batches of ``batch_rows`` sequences.
- ``flip_*``: share of query steps whose most likely action changes.
- ``dsuccess_*`` (episode perturbations only): change in online success when the policy plays the
  level with the perturbed demonstrations in its context (``online_seeds`` paired start states;
  the unperturbed and perturbed contexts start from the same states).
- ``attention``: the cheaper proxy. The attention weight each context token receives, averaged
  over every layer and head and over the query's step tokens (the tokens that predict actions),
  read from the unperturbed sequence with eager attention. One forward pass instead of one per step.
  ``attention_max`` is the same for the single (layer, head) that attends to the token most, since
  averaging over heads can hide one head that reads the lesson.

Summaries:

- **concentration**: per sequence, the share of the total effect held by the top
  ``top_fraction`` (10%) of its context steps (equal effects would give 10%), then averaged.
- **agreement**: per sequence, the Spearman rank correlation between attention and each
  perturbation effect over its context steps, then summarized (median, mean, share positive).
- **step kinds**: the labels of :mod:`trajbench.analysis.steps` (a step may have several; each
  kind is compared with all other steps).

Caveat: a step token carries ``o_t, a_{t-1}, r_{t-1}, a_t, r_t``, so the next token still shows
the previous action and reward of a deleted or replaced step; single-step effects measure what the
step adds beyond its neighbours.

Example:
    trajbench analyze importance --model runs/dr/model --data data/dr-test --out runs/dr/importance
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from trajbench.data import load
from trajbench.device import resolve_device, torch_threads
from trajbench.envs.demonstrators import DEMONSTRATORS
from trajbench.errors import TrajbenchError
from trajbench.pipeline.policies import check_compatible, load_trained_policy

from .common import mission_pool, pct, top_share
from .perturbations import (
    Perturbations,
    context_ok,
    effects,
    episode_rows,
    online_success,
    select_sequences,
    step_rows,
)
from .steps import KINDS, episode_kinds

NAME = "importance"
#: Per-step effect measures, with the attention proxy.
STEP_MEASURES = ("kl_replace", "kl_delete", "attention", "attention_max")
#: Pairs of step measures whose per-sequence rank correlation is reported.
AGREEMENT_PAIRS = (
    ("attention", "kl_replace"),
    ("attention", "kl_delete"),
    ("attention_max", "kl_replace"),
    ("attention_max", "kl_delete"),
    ("kl_replace", "kl_delete"),
)


@dataclass
class ImportanceConfig:
    """Context-step importance: replace/delete effects of context steps and episodes vs attention."""

    model: str
    """A model directory written by trajbench train."""
    data: tuple[str, ...]
    """Evaluation episode stores of held-out levels (the contexts and queries come from them)."""
    out: str
    """Output directory for importance.csv/.md/.png and the extra tables."""
    k: int = 2
    """Context episodes per sequence (fewer make each one matter more; drawn with replacement
    when a level has fewer other episodes)."""
    sequences: int = 16
    """Sequences analysed: one per held-out level in a seeded order, cycling when there are fewer
    levels."""
    context_demonstrators: tuple[str, ...] = ("expert",)
    """Demonstrators whose episodes fill the context (add noisy to see dead ends and recoveries)."""
    allow_failed: bool = False
    """Let failed episodes fill the context."""
    replace_draws: int = 2
    """Random replacements drawn per step and per episode (their effects are averaged)."""
    online: bool = True
    """Also measure the change in online success for episode perturbations."""
    online_seeds: int = 4
    """Start states per (sequence, perturbation) in the online measurement."""
    top_fraction: float = 0.1
    """Concentration: share of the effect held by this fraction of the context steps."""
    batch_rows: int = 256
    """Perturbed sequences per forward pass."""
    seed: int = 0
    """Seed of the level order, contexts, queries, replacements and start states."""
    device: str = "auto"
    """auto, cpu or cuda[:N]."""
    threads: int = 0
    """CPU threads for torch (0: torch's default)."""
    progress: bool = True
    """Show a progress bar."""


@dataclass
class ImportanceResult:
    """The tables of the analysis (see :func:`compute`)."""

    steps: pd.DataFrame
    """One row per context step of every sequence: labels, effects, attention."""
    episodes: pd.DataFrame
    """One row per context episode of every sequence: effects and online success."""
    kinds: pd.DataFrame
    """Mean effect of each step kind against the other steps."""
    sequences: pd.DataFrame
    """One row per sequence: concentration and attention agreement."""
    summary: pd.DataFrame
    """Headline numbers: ``measure, value`` rows."""
    about: dict = field(default_factory=dict)
    """What was analysed (model, data, sizes, wall time)."""


# -- the analysis -------------------------------------------------------------------------------
def validate(cfg: ImportanceConfig) -> None:
    """Raise :class:`TrajbenchError` naming the first bad knob."""
    for name in ("k", "sequences", "replace_draws", "online_seeds", "batch_rows"):
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise TrajbenchError(f"{name} must be an integer >= 1, got {value!r}")
    if not 0.0 < cfg.top_fraction <= 1.0:
        raise TrajbenchError(f"top_fraction must be in (0, 1], got {cfg.top_fraction}")
    if not cfg.data:
        raise TrajbenchError("--data needs at least one evaluation episode store")
    bad = [d for d in cfg.context_demonstrators if d not in DEMONSTRATORS]
    if bad or not cfg.context_demonstrators:
        raise TrajbenchError(
            f"context_demonstrators must be some of {DEMONSTRATORS}, got {cfg.context_demonstrators}"
        )
    if cfg.seed < 0:
        raise TrajbenchError(f"seed must be >= 0, got {cfg.seed}")


def compute(cfg: ImportanceConfig) -> ImportanceResult:
    """Run the analysis; returns its tables (nothing is written)."""
    started = time.perf_counter()
    validate(cfg)
    with torch_threads(cfg.threads):
        device = resolve_device(cfg.device)
        store = load(list(cfg.data))
        eps = store.episodes.reset_index(drop=True)
        pool = mission_pool(store)
        policy, record = load_trained_policy(
            cfg.model, device=device, seed=cfg.seed, mission_pool=pool
        )
        check_compatible(policy.model.encoding, store.encoding, cfg.model)
        if not policy.use_context:
            raise TrajbenchError(
                f"{cfg.model} was trained without context (mode none): there is no context to "
                "attribute"
            )
        ok = context_ok(eps, cfg.context_demonstrators, cfg.allow_failed)
        seqs = select_sequences(
            eps, cfg.sequences, cfg.k, cfg.context_demonstrators, cfg.allow_failed, cfg.seed
        )
        pert = Perturbations(eps, ok, policy, pool, cfg.replace_draws, cfg.seed)
        for si, seq in enumerate(seqs):
            pert.add(si, seq)
        labels, unreplayable = episode_kinds(
            store, eps, sorted({c for s in seqs for c in s.context})
        )
        mean, attention = effects(
            policy.model, store, eps, pert, cfg.batch_rows, device, cfg.progress
        )
        steps = step_rows(store, eps, seqs, mean, attention, labels)
        episodes = episode_rows(eps, seqs, mean)
        if cfg.online:
            online = online_success(
                policy, store, eps, seqs, pert.replacements, cfg.seed, cfg.online_seeds
            )
            episodes = episodes.merge(online, on=["sequence", "episode_pos"], how="left")
    sequences = per_sequence(steps, cfg.top_fraction)
    about = {
        "model": cfg.model,
        "data": list(cfg.data),
        "env_ids": sorted({s.env_id for s in seqs}),
        "levels": len({(s.env_id, s.level) for s in seqs}),
        "sequences": len(seqs),
        "k": cfg.k,
        "context_steps": len(steps),
        "perturbed_sequences": len(pert.plans) - len(seqs),
        "unreplayable_episodes": int(unreplayable),
        "train_k": record.config.context.k,
        "wall_s": time.perf_counter() - started,
    }
    summary = summarize(steps, episodes, sequences, cfg.top_fraction)
    return ImportanceResult(steps, episodes, kind_table(steps), sequences, summary, about)


# -- tables ---------------------------------------------------------------------------------------
def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation; NaN with fewer than 3 values or a constant input."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(spearmanr(x, y).statistic)


def per_sequence(steps: pd.DataFrame, fraction: float) -> pd.DataFrame:
    """One row per sequence: the top-``fraction`` share of each measure, and the rank
    correlations of :data:`AGREEMENT_PAIRS`."""
    rows = []
    for si, g in steps.groupby("sequence", sort=True):
        row = {"sequence": si, "level": int(g["level"].iloc[0]), "context_steps": len(g)}
        for m in STEP_MEASURES:
            row[f"top_share_{m}"] = top_share(g[m].to_numpy(), fraction)
        for a, b in AGREEMENT_PAIRS:
            row[f"spearman_{a}_{b}"] = spearman(g[a].to_numpy(), g[b].to_numpy())
        rows.append(row)
    return pd.DataFrame(rows)


def kind_table(steps: pd.DataFrame) -> pd.DataFrame:
    """Mean of each step measure on steps of each kind vs on all other steps.

    ``ratio_*`` is the kind's mean over the rest's mean (NaN when the rest's mean is 0).
    Kinds with no step are listed with ``n = 0``.
    """
    rows = []
    for kind in KINDS:
        mask = steps[kind].to_numpy(bool) if kind in steps else np.zeros(len(steps), bool)
        row = {"kind": kind, "n": int(mask.sum()), "share_of_steps": float(mask.mean())}
        for m in (*STEP_MEASURES, "flip_replace"):
            x = steps[m].to_numpy(float)
            inside = float(x[mask].mean()) if mask.any() else float("nan")
            rest = float(x[~mask].mean()) if (~mask).any() else float("nan")
            row[f"{m}_kind"] = inside
            row[f"{m}_rest"] = rest
            row[f"ratio_{m}"] = inside / rest if rest > 0 else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def summarize(steps, episodes, sequences, fraction: float) -> pd.DataFrame:
    """The headline numbers: ``measure, value, description`` rows."""
    rows = []

    def add(measure: str, value: float, description: str) -> None:
        rows.append({"measure": measure, "value": float(value), "description": description})

    for m in STEP_MEASURES:
        add(
            f"top_share_{m}",
            sequences[f"top_share_{m}"].mean(),
            f"mean over sequences of the share of {m} held by the top "
            f"{pct(fraction)} of context steps",
        )
    for col in [c for c in sequences if c.startswith("spearman_")]:
        vals = sequences[col].dropna()
        add(f"{col}_median", vals.median() if len(vals) else np.nan, "median over sequences")
        add(f"{col}_mean", vals.mean() if len(vals) else np.nan, "mean over sequences")
        add(f"{col}_positive", (vals > 0).mean() if len(vals) else np.nan, "share of sequences > 0")
        add(f"{col}_n", len(vals), "sequences with a defined correlation")
    for m in ("kl_replace", "kl_delete", "flip_replace", "flip_delete"):
        add(f"step_{m}_mean", steps[m].mean(), f"mean over context steps of {m}")
        add(f"episode_{m}_mean", episodes[m].mean(), f"mean over context episodes of {m}")
    if "success_base" in episodes:
        base = episodes.groupby("sequence")["success_base"].first()
        add("success_base", base.mean(), "online success with the unperturbed context")
        for v in ("delete", "replace"):
            add(
                f"dsuccess_{v}",
                episodes[f"dsuccess_{v}"].mean(),
                f"mean change in online success when one context episode is {v}d",
            )
    return pd.DataFrame(rows)

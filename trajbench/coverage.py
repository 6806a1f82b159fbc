"""Do the benchmark's intervals cover at the sizes a preset runs? A simulation at a design.

A *design* is what a run measures: training seeds per condition, test levels, episodes per
(seed, level) cell. The simulated benchmark draws every cell's success probability as

    p = clip(mean + seed effect + level effect + level x condition effect + cell effect, 0, 1)

(normal effects with the :class:`Variances`; each condition's seeds are trained apart, so seed,
level x condition and cell effects are drawn per condition, the level effect is shared), and its
score as a binomial over the cell's episodes. Each replicate computes the report's intervals --
the two-level bootstrap CI of a condition's mean (:func:`trajbench.bootstrap.two_level_ci`) and
the paired CI of two conditions' difference (:func:`trajbench.bootstrap.paired_difference`) --
and :func:`simulate` counts how often they hold the true population values (computed from a
large draw of the same model). :func:`estimate` reads the variances off a run's score matrices
by the method of moments (two-way random effects, binomial noise removed).

Example:
    >>> cov = simulate(Design(5, 100, 4), Variances(), replicates=20, boot_reps=100)
    >>> 0 <= cov.mean <= 1 and 0 <= cov.difference <= 1
    True
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd

from .bootstrap import minimum_detectable_effect, paired_difference, two_level_ci
from .metrics import score_frame

#: Coverage a nominal 95% interval must reach at a design (issue 25): below, the report says its
#: intervals are conditional on the trained models; above, they are wider than they need be.
ACCEPTED = (0.93, 0.99)


@dataclass(frozen=True)
class Design:
    """What a run measures per condition."""

    n_seeds: int
    """Training seeds (each condition trained once per seed)."""
    n_levels: int
    """Held-out levels evaluated."""
    n_episodes: int
    """Episodes per (seed, level) cell."""


@dataclass(frozen=True)
class Variances:
    """Standard deviations of the simulated effects, on the success-probability scale."""

    mean: float = 0.6
    """Population mean success of the first condition."""
    gap: float = 0.1
    """How much lower the second condition's population mean is."""
    seed_sd: float = 0.05
    """Between training seeds."""
    level_sd: float = 0.2
    """Between levels (shared by the conditions of one comparison)."""
    level_condition_sd: float = 0.05
    """Level x condition: how differently two conditions find one level."""
    cell_sd: float = 0.05
    """Seed x level, beyond the episodes' binomial noise."""


@dataclass(frozen=True)
class Coverage:
    """How often the intervals held the truth, over ``replicates`` simulated runs."""

    mean: float
    """Share of runs whose CI of the first condition's mean held its population mean."""
    difference: float
    """Share of runs whose paired CI of the difference held the population difference."""
    replicates: int
    mde: float = float("nan")
    """Median over runs of the paired difference's minimum detectable effect (80% power)."""

    @property
    def holds(self) -> bool:
        """Whether both coverages lie in :data:`ACCEPTED`."""
        low, high = ACCEPTED
        return low <= self.mean <= high and low <= self.difference <= high


def simulate(
    design: Design,
    variances: Variances,
    replicates: int = 300,
    boot_reps: int = 400,
    confidence: float = 0.95,
    seed: int = 0,
    batched: bool = True,
) -> Coverage:
    """Coverage of the report's mean and paired-difference CIs at ``design`` (see the module).

    ``batched`` bootstraps every simulated run at once (the same resampling as
    :func:`~trajbench.bootstrap.two_level_ci` and :func:`~trajbench.bootstrap.paired_difference`
    with ``same_seeds``, one set of seed and level draws per bootstrap replicate); ``False`` calls
    those functions run by run (slower; the tests check that both agree).
    """
    if min(design.n_seeds, design.n_levels, design.n_episodes) < 1:
        raise ValueError(f"a design needs at least one seed, level and episode: {design}")
    rng = np.random.default_rng(seed)
    truth_a, truth_b = _truth(variances, rng)
    a, b = _draw(design, variances, replicates, rng)
    if batched:
        mean_lo, mean_hi, _ = _batched_intervals(a, boot_reps, confidence, rng)
        diff_lo, diff_hi, se = _batched_intervals(a - b, boot_reps, confidence, rng)
    else:
        mean_lo, mean_hi, diff_lo, diff_hi, se = (np.empty(replicates) for _ in range(5))
        for i in range(replicates):
            mean_lo[i], mean_hi[i] = two_level_ci(
                a[i], reps=boot_reps, confidence=confidence, seed=i
            )
            d = paired_difference(
                a[i], b[i], same_seeds=True, reps=boot_reps, confidence=confidence, seed=i
            )
            diff_lo[i], diff_hi[i], se[i] = d.low, d.high, d.se
    return Coverage(
        float(np.mean((mean_lo <= truth_a) & (truth_a <= mean_hi))),
        float(np.mean((diff_lo <= truth_a - truth_b) & (truth_a - truth_b <= diff_hi))),
        replicates,
        float(np.median([minimum_detectable_effect(x, confidence) for x in se])),
    )


def _batched_intervals(
    m: np.ndarray, reps: int, confidence: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Percentile CIs and bootstrap SEs of the mean of each ``m[r]`` ``[n_seeds, n_levels]``
    under the seeds x levels bootstrap, every run at once (in chunks that bound memory)."""
    runs, s, n = m.shape
    chunk = max(1, (1 << 22) // (reps * (s + n)))
    lows, highs, ses = [], [], []
    for start in range(0, runs, chunk):
        x = m[start : start + chunk]
        r = len(x)
        rows = _draw_counts(rng, (r, reps), s)
        cols = _draw_counts(rng, (r, reps), n)
        means = (np.matmul(rows, x) * cols).sum(-1) / (s * n)
        tail = 50.0 * (1.0 - confidence)
        low, high = np.percentile(means, [tail, 100.0 - tail], axis=1)
        lows.append(low)
        highs.append(high)
        ses.append(means.std(axis=1, ddof=1))
    return np.concatenate(lows), np.concatenate(highs), np.concatenate(ses)


def _draw_counts(rng: np.random.Generator, shape: tuple[int, int], size: int) -> np.ndarray:
    """``[*shape, size]``: how often each of ``range(size)`` is drawn in ``size`` draws with
    replacement, for every one of ``shape`` resamples."""
    draws = rng.integers(0, size, (*shape, size))
    flat = draws.reshape(-1, size) + size * np.arange(np.prod(shape))[:, None]
    counts = np.bincount(flat.ravel(), minlength=int(np.prod(shape)) * size)
    return counts.reshape(*shape, size).astype(float)


def _probabilities(v: Variances, shift: float, seeds, levels, level_x, cells) -> np.ndarray:
    return np.clip(v.mean - shift + seeds + levels + level_x + cells, 0.0, 1.0)


def _truth(v: Variances, rng: np.random.Generator, n: int = 200_000) -> tuple[float, float]:
    """Population mean success of both conditions (a large draw of the model, no episodes)."""
    draws = [
        rng.normal(0, sd, n) for sd in (v.seed_sd, v.level_sd, v.level_condition_sd, v.cell_sd)
    ]
    return tuple(float(_probabilities(v, shift, *draws).mean()) for shift in (0.0, v.gap))


def _draw(
    design: Design, v: Variances, replicates: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Both conditions' score matrices ``[replicates, n_seeds, n_levels]``, all runs at once."""
    r, s, n = replicates, design.n_seeds, design.n_levels
    levels = rng.normal(0, v.level_sd, (r, 1, n))
    out = []
    for shift in (0.0, v.gap):
        p = _probabilities(
            v,
            shift,
            rng.normal(0, v.seed_sd, (r, s, 1)),
            levels,
            rng.normal(0, v.level_condition_sd, (r, 1, n)),
            rng.normal(0, v.cell_sd, (r, s, n)),
        )
        out.append(rng.binomial(design.n_episodes, p) / design.n_episodes)
    return out[0], out[1]


def estimate(
    matrices: Iterable[np.ndarray],
    n_episodes: int,
    pairs: Iterable[tuple[np.ndarray, np.ndarray]] = (),
) -> Variances:
    """Method-of-moments :class:`Variances` from score matrices ``[n_seeds, n_levels]`` of several
    conditions (each with at least 2 seeds and 2 levels; their estimates averaged) and, for the
    level x condition effect, ``pairs`` of two conditions' matrices on the same seeds and levels.

    Per matrix: the residual mean square of a two-way layout estimates the cell variance (its
    binomial part, mean p(1 - p) / episodes, removed); the variances of row and column means,
    less the residual's share, estimate the seed and level variances (floored at 0). Per pair,
    the column means of the difference vary by ``2 level_condition_var + residual / n_seeds``.
    """
    seed_v, level_v, cell_v, means = [], [], [], []
    for m in matrices:
        m = np.asarray(m, float)
        s, n = m.shape
        if s < 2 or n < 2:
            continue
        rows, cols, grand = m.mean(1), m.mean(0), m.mean()
        resid = ((m - rows[:, None] - cols[None, :] + grand) ** 2).sum() / ((s - 1) * (n - 1))
        binom = float((m * (1 - m)).mean()) * n_episodes / max(n_episodes - 1, 1) / n_episodes
        seed_v.append(max(0.0, rows.var(ddof=1) - resid / n))
        level_v.append(max(0.0, cols.var(ddof=1) - resid / s))
        cell_v.append(max(0.0, resid - binom))
        means.append(grand)
    if not seed_v:
        raise ValueError("estimate needs a score matrix with at least 2 seeds and 2 levels")
    lc = []
    for x, y in pairs:
        d = np.asarray(x, float) - np.asarray(y, float)
        s, n = d.shape
        if s < 2 or n < 2:
            continue
        rows, cols, grand = d.mean(1), d.mean(0), d.mean()
        resid = ((d - rows[:, None] - cols[None, :] + grand) ** 2).sum() / ((s - 1) * (n - 1))
        lc.append(max(0.0, (cols.var(ddof=1) - resid / s) / 2))
    default = Variances()
    return Variances(
        mean=float(np.mean(means)),
        gap=default.gap,
        seed_sd=float(np.sqrt(np.mean(seed_v))),
        level_sd=float(np.sqrt(np.mean(level_v))),
        level_condition_sd=float(np.sqrt(np.mean(lc))) if lc else default.level_condition_sd,
        cell_sd=float(np.sqrt(np.mean(cell_v))),
    )


def estimate_records(cells: pd.DataFrame, n_episodes: int) -> Variances:
    """:func:`estimate` from (seed, level) cells ``[condition, seed, level, success]`` of several
    conditions evaluated alike (one family, K, support and format): each condition's matrix, and
    every two conditions that share their seeds and levels as a pair."""
    frames = [score_frame(rows, "success") for _, rows in cells.groupby("condition")]
    frames = [f for f in frames if f.shape[0] >= 2 and f.shape[1] >= 2]
    pairs = [
        (x.to_numpy(float), y.to_numpy(float))
        for x, y in combinations(frames, 2)
        if list(x.index) == list(y.index) and list(x.columns) == list(y.columns)
    ]
    return estimate([f.to_numpy(float) for f in frames], n_episodes, pairs)

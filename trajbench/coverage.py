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

import numpy as np

from .bootstrap import paired_difference, two_level_ci

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
) -> Coverage:
    """Coverage of the report's mean and paired-difference CIs at ``design`` (see the module)."""
    if min(design.n_seeds, design.n_levels, design.n_episodes) < 1:
        raise ValueError(f"a design needs at least one seed, level and episode: {design}")
    rng = np.random.default_rng(seed)
    truth_a, truth_b = _truth(variances, rng)
    a, b = _draw(design, variances, replicates, rng)
    hit_mean = hit_diff = 0
    for i in range(replicates):
        low, high = two_level_ci(a[i], reps=boot_reps, confidence=confidence, seed=i)
        hit_mean += low <= truth_a <= high
        d = paired_difference(
            a[i], b[i], same_seeds=True, reps=boot_reps, confidence=confidence, seed=i
        )
        hit_diff += d.low <= truth_a - truth_b <= d.high
    return Coverage(hit_mean / replicates, hit_diff / replicates, replicates)


def _probabilities(v: Variances, shift: float, seeds, levels, level_x, cells) -> np.ndarray:
    return np.clip(v.mean - shift + seeds + levels + level_x + cells, 0.0, 1.0)


def _truth(v: Variances, rng: np.random.Generator, n: int = 400_000) -> tuple[float, float]:
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

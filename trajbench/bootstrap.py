"""Bootstrap confidence intervals for benchmark scores, all replicates drawn at once with numpy.

Scores come as a matrix ``[n_seeds, n_levels]`` (one cell per training seed and level, averaged
over its episodes; :func:`trajbench.metrics.score_matrix`). Two resampling schemes:

- :func:`two_level_ci` (the headline): resample the seeds, and the levels within each stratum
  (family), both with replacement; what varies is which seeds were trained and which levels were
  drawn from the family, the two sources of uncertainty of a benchmark score.
  :func:`paired_difference` compares two conditions on the same levels the same way, and
  :func:`minimum_detectable_effect` says how small a difference the run could have seen.
- :func:`stratified_bootstrap_ci` (rliable's ``StratifiedBootstrap``): resample seeds within each
  level, levels fixed; with :func:`probability_of_improvement`. Suite-version-1 leaderboard
  aggregates were computed this way.

Every function is deterministic for its ``seed``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import norm

#: Most resampled values held in memory at once; larger bootstraps run in chunks of replicates.
_MAX_CHUNK_ELEMENTS = 1 << 22


def iqm(scores: ArrayLike, axis: int | tuple[int, ...] | None = None) -> float | np.ndarray:
    """Interquartile mean: the mean of the middle 50% of ``scores``.

    Same definition as rliable's ``aggregate_iqm``, i.e. ``scipy.stats.trim_mean(scores, 0.25,
    axis=None)``: ``int(0.25 * n)`` values are cut from each end of the ``n`` sorted values.
    With ``axis`` (an int or a tuple) only those axes are reduced, which lets the bootstrap
    evaluate every replicate in one call.

    Example:
        >>> iqm([[1, 2], [3, 100]])  # 1 and 100 are cut
        2.5
        >>> iqm(np.array([[[1, 2], [3, 4]], [[0, 0], [0, 8]]]), axis=(-2, -1))
        array([2.5, 0. ])
    """
    x = np.asarray(scores, dtype=float)
    if axis is None:
        x = x.reshape(-1)
    else:
        axes = axis if isinstance(axis, tuple) else (axis,)
        if any(not -x.ndim <= a < x.ndim for a in axes):
            raise ValueError(f"iqm: axis {axis} out of range for an array of {x.ndim} dims")
        axes = tuple(a % x.ndim for a in axes)
        x = np.moveaxis(x, axes, range(x.ndim - len(axes), x.ndim))
        x = x.reshape(*x.shape[: x.ndim - len(axes)], -1)
    n = x.shape[-1]
    if n == 0:
        raise ValueError("iqm: no scores")
    if np.isnan(x).any():
        raise ValueError("iqm: scores contain NaN")
    cut = int(0.25 * n)
    middle = np.partition(x, (cut, n - cut - 1), axis=-1)[..., cut : n - cut]
    out = middle.mean(axis=-1)
    return float(out) if out.ndim == 0 else out


def two_level_ci(
    matrix: ArrayLike,
    strata: Sequence | None = None,
    statistic: Callable[..., np.ndarray] | None = None,
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile CI of a statistic of ``matrix`` under a seeds x levels (stratified) bootstrap.

    Each replicate draws ``n_seeds`` rows with replacement and, within each stratum, as many
    columns of that stratum with replacement, and takes the statistic of the resampled cells.

    Args:
        matrix: ``[n_seeds, n_levels]`` scores.
        strata: One label per level (its family); levels are resampled within their stratum.
            None: one stratum.
        statistic: None for the mean (computed from resampling counts, without materializing the
            resamples), or ``f(x, axis=(-2, -1))`` on ``[reps, n_seeds, n_levels]``, e.g. :func:`iqm`.
        reps: Bootstrap replicates.
        confidence: Coverage of the interval.
        seed: Seed of the resampling.

    Example:
        >>> m = np.array([[0.0, 0.5, 1.0, 1.0], [0.5, 0.5, 1.0, 0.5]])
        >>> low, high = two_level_ci(m, strata=["a", "a", "b", "b"], reps=500)
        >>> bool(low <= m.mean() <= high)
        True
    """
    m = _check_matrix(matrix, "matrix")
    _check_bootstrap_args(reps, confidence)
    cols = _column_sampler(m.shape[1], strata)
    rng = np.random.default_rng(seed)
    chunk = max(1, _MAX_CHUNK_ELEMENTS // m.size)
    values = []
    for start in range(0, reps, chunk):
        n = min(chunk, reps - start)
        rows, counts = _row_counts(rng, m.shape[0], n), cols(rng, n)
        if statistic is None:
            values.append(_mean_of(m, rows, counts))
        else:
            cells = m[_expand(rows)[:, :, None], _expand(counts)[:, None, :]]
            values.append(_check_statistic(statistic(cells, axis=(-2, -1)), n))
    return _percentile_interval(np.concatenate(values), confidence)


@dataclass(frozen=True)
class Difference:
    """A paired difference of two conditions' mean scores, with its bootstrap CI and spread."""

    mean: float
    low: float
    high: float
    se: float
    """Bootstrap standard error of the difference."""

    @property
    def separated(self) -> bool:
        """Whether the CI excludes zero."""
        return self.low > 0 or self.high < 0


def paired_difference(
    x: ArrayLike,
    y: ArrayLike,
    strata: Sequence | None = None,
    same_seeds: bool = False,
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Difference:
    """Mean of ``x`` minus mean of ``y`` on shared levels, with a paired two-level bootstrap CI.

    ``x`` ``[n_x, n_levels]`` and ``y`` ``[n_y, n_levels]`` hold the same levels in the same column
    order. Each replicate draws one set of levels for both (paired: a hard level is hard for
    both). With ``same_seeds`` the rows are the same seeds in the same order (both conditions
    trained and evaluated with each seed, so on the same start states) and one set of rows is
    drawn for both; otherwise (a reference policy has no training seed) each side's rows are
    drawn independently.

    Example:
        >>> y = np.array([[0.2, 0.4, 0.9], [0.3, 0.5, 0.8]])
        >>> d = paired_difference(y + 0.1, y, same_seeds=True, reps=200)
        >>> round(d.mean, 6), round(d.low, 6), round(d.high, 6)
        (0.1, 0.1, 0.1)
    """
    x, y = _check_matrix(x, "x"), _check_matrix(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x has {x.shape[1]} levels but y has {y.shape[1]}")
    if same_seeds and x.shape[0] != y.shape[0]:
        raise ValueError(f"same_seeds needs as many seeds in x ({len(x)}) as in y ({len(y)})")
    _check_bootstrap_args(reps, confidence)
    cols = _column_sampler(x.shape[1], strata)
    rng = np.random.default_rng(seed)
    diffs = []
    chunk = max(1, _MAX_CHUNK_ELEMENTS // (x.size + y.size))
    for start in range(0, reps, chunk):
        n = min(chunk, reps - start)
        c = cols(rng, n)
        rx = _row_counts(rng, x.shape[0], n)
        ry = rx if same_seeds else _row_counts(rng, y.shape[0], n)
        diffs.append(_mean_of(x, rx, c) - _mean_of(y, ry, c))
    values = np.concatenate(diffs)
    low, high = _percentile_interval(values, confidence)
    return Difference(float(x.mean() - y.mean()), low, high, float(values.std(ddof=1)))


def minimum_detectable_effect(se: float, confidence: float = 0.95, power: float = 0.8) -> float:
    """The smallest true difference a two-sided test at ``confidence`` detects with ``power``,
    given the difference's standard error: ``(z_{1 - alpha/2} + z_{power}) * se``.

    Example:
        >>> round(minimum_detectable_effect(0.05), 3)
        0.14
    """
    if not 0 < confidence < 1 or not 0 < power < 1:
        raise ValueError("confidence and power must lie in (0, 1)")
    return float((norm.ppf(1 - (1 - confidence) / 2) + norm.ppf(power)) * se)


def stratified_bootstrap_ci(
    matrix: ArrayLike,
    statistic: Callable[..., np.ndarray] = iqm,
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile confidence interval of ``statistic`` by stratified bootstrap over seeds.

    Each replicate resamples the rows (seeds) of every column (level) independently with
    replacement and recomputes ``statistic(x, axis=(-2, -1))``. With one seed every replicate
    equals the data, so the interval has zero width: it only ever measures seed-to-seed
    variation, which is why ``aggregate`` reports ``n_seeds`` beside it.

    Example:
        >>> m = np.array([[0.1, 0.5], [0.3, 0.9], [0.2, 0.7]])  # 3 seeds x 2 levels
        >>> low, high = stratified_bootstrap_ci(m, reps=500)
        >>> bool(low <= iqm(m) <= high)
        True
    """
    m = _check_matrix(matrix, "matrix")
    _check_bootstrap_args(reps, confidence)

    def replicate(rng: np.random.Generator, n: int) -> np.ndarray:
        return _check_statistic(statistic(_resample(rng, m, n), axis=(-2, -1)), n)

    return _percentile_interval(_bootstrap(replicate, m.size, reps, seed), confidence)


def probability_of_improvement(
    x_matrix: ArrayLike,
    y_matrix: ArrayLike,
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """P(X > Y) averaged over levels, with a stratified-bootstrap percentile interval.

    On each level it is the probability that a random seed of X scores above a random seed of Y,
    ties counting 1/2 (the Mann-Whitney U statistic over ``n_x * n_y``), as rliable's
    ``probability_of_improvement``. The two matrices ``[n_x, n_levels]`` and ``[n_y, n_levels]``
    may have different numbers of seeds and are resampled independently within each level, as
    rliable's ``StratifiedIndependentBootstrap`` does. Returns ``(p, low, high)``.

    Example:
        >>> x = np.array([[1, 2], [2, 2], [1, 1], [2, 1]])
        >>> y = np.array([[1, 1], [2, 2], [3, 3]])
        >>> p, low, high = probability_of_improvement(x, y)
        >>> round(p, 4)
        0.3333
    """
    x = _check_matrix(x_matrix, "x_matrix")
    y = _check_matrix(y_matrix, "y_matrix")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x has {x.shape[1]} levels but y has {y.shape[1]}")
    _check_bootstrap_args(reps, confidence)

    def replicate(rng: np.random.Generator, n: int) -> np.ndarray:
        return _improvement(_resample(rng, x, n), _resample(rng, y, n))

    per_rep = x.shape[0] * y.shape[0] * x.shape[1]
    low, high = _percentile_interval(_bootstrap(replicate, per_rep, reps, seed), confidence)
    return float(_improvement(x, y)), low, high


def _row_counts(rng: np.random.Generator, n_rows: int, n: int) -> np.ndarray:
    """``[n, n_rows]``: how often each row is drawn in each of ``n`` resamples of all rows."""
    draws = rng.integers(0, n_rows, size=(n, n_rows))
    return _counts(draws, n_rows)


def _column_sampler(n_levels: int, strata: Sequence | None) -> Callable:
    """A function ``(rng, n) -> [n, n_levels]`` column counts, resampled within each stratum."""
    if strata is None:
        groups = [np.arange(n_levels)]
    else:
        labels = np.asarray(list(strata), dtype=object)
        if len(labels) != n_levels:
            raise ValueError(f"strata has {len(labels)} labels for {n_levels} levels")
        groups = [np.flatnonzero(labels == s) for s in dict.fromkeys(labels.tolist())]

    def sample(rng: np.random.Generator, n: int) -> np.ndarray:
        counts = np.zeros((n, n_levels))
        for members in groups:
            picks = members[rng.integers(0, len(members), size=(n, len(members)))]
            counts += _counts(picks, n_levels)
        return counts

    return sample


def _counts(draws: np.ndarray, size: int) -> np.ndarray:
    """Per row of ``draws`` ``[n, k]``, how often each of ``range(size)`` occurs: ``[n, size]``."""
    n = draws.shape[0]
    flat = (draws + size * np.arange(n)[:, None]).ravel()
    return np.bincount(flat, minlength=n * size).reshape(n, size).astype(float)


def _expand(counts: np.ndarray) -> np.ndarray:
    """Resampling counts ``[n, size]`` (every row drawing as many) back to the drawn indices
    ``[n, k]``, in increasing order within each row."""
    n, size = counts.shape
    drawn = np.repeat(np.tile(np.arange(size), n), counts.astype(int).ravel())
    return drawn.reshape(n, -1)


def _mean_of(m: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Mean of the cells of ``m`` picked by row counts ``[n, S]`` and column counts ``[n, L]``."""
    total = np.einsum("ns,sl,nl->n", rows, m, cols)
    return total / (rows.sum(1) * cols.sum(1))


def _check_matrix(matrix: ArrayLike, name: str) -> np.ndarray:
    m = np.asarray(matrix, dtype=float)
    if m.ndim != 2 or m.shape[0] == 0 or m.shape[1] == 0:
        raise ValueError(f"{name} must be a non-empty [n_seeds, n_levels] array, got {m.shape}")
    if not np.isfinite(m).all():
        raise ValueError(f"{name} contains NaN or infinite scores")
    return m


def _check_bootstrap_args(reps: int, confidence: float) -> None:
    if not isinstance(reps, int | np.integer) or isinstance(reps, bool) or reps < 1:
        raise ValueError(f"reps must be a positive integer, got {reps!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")


def _check_statistic(values: ArrayLike, n: int) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    if values.shape != (n,):
        raise ValueError(
            f"statistic must reduce axes (-2, -1) to one value per replicate: got shape "
            f"{values.shape} for {n} replicates"
        )
    return values


def _resample(rng: np.random.Generator, m: np.ndarray, n: int) -> np.ndarray:
    """``n`` stratified resamples of ``m`` ``[n_seeds, n_levels]``: ``[n, n_seeds, n_levels]``."""
    rows = rng.integers(0, m.shape[0], size=(n, *m.shape))
    return m[rows, np.arange(m.shape[1])]


def _bootstrap(
    replicate: Callable[[np.random.Generator, int], np.ndarray],
    per_rep: int,
    reps: int,
    seed: int,
) -> np.ndarray:
    """Run ``replicate(rng, n)`` over chunks of replicates that keep memory bounded."""
    rng = np.random.default_rng(seed)
    chunk = max(1, _MAX_CHUNK_ELEMENTS // max(per_rep, 1))
    return np.concatenate(
        [replicate(rng, min(chunk, reps - start)) for start in range(0, reps, chunk)]
    )


def _percentile_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = 50.0 * (1.0 - confidence)
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return float(low), float(high)


def _improvement(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(X > Y) + P(X = Y) / 2 per level, averaged over levels; batched over leading axes."""
    xs, ys = x[..., :, None, :], y[..., None, :, :]
    per_level = (xs > ys).mean(axis=(-3, -2)) + 0.5 * (xs == ys).mean(axis=(-3, -2))
    return per_level.mean(axis=-1)

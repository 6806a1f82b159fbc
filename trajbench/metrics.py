"""Aggregate metrics over evaluation records, following Agarwal et al. 2021 (rliable).

Records are one row per (condition..., seed, level, episode). Each (seed, level) cell is first
averaged over its episodes, giving a score matrix ``[n_seeds, n_levels]``. The aggregate is the
interquartile mean (IQM) of all cells, with a 95% *stratified-bootstrap* confidence interval:
seeds are resampled with replacement independently within each level (the stratum), as rliable's
``StratifiedBootstrap`` resamples runs within each task. Conditions are compared with the
probability of improvement P(X > Y).

Every bootstrap draws all replicates at once with numpy and is deterministic for a given seed.
A statistic passed to the bootstrap is called as ``statistic(x, axis=(-2, -1))`` on a batch
``x`` of shape ``[reps, n_seeds, n_levels]`` and must return one value per replicate; ``iqm``,
``np.mean`` and ``np.median`` all qualify.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

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


def score_matrix(
    records: pd.DataFrame,
    metric: str,
    seed_col: str = "seed",
    level_col: str | Sequence[str] = "level",
) -> np.ndarray:
    """Mean of ``metric`` over episodes for every (seed, level): an array ``[n_seeds, n_levels]``.

    Rows are the sorted seeds, columns the sorted levels. ``level_col`` may name several columns
    (e.g. ``["family", "level"]``, since level ids restart in every family); each distinct
    combination is one level. Cells may hold different numbers of episodes (each cell still
    weighs the same), but every seed must have every level: a missing cell raises rather than
    being dropped or imputed, because either would silently change what is being compared.

    Raises:
        ValueError: no records, a column is missing, ``metric`` is not numeric or holds a NaN or
            infinite value, a seed or level is missing, or the (seed, level) grid has holes.

    Example:
        >>> df = pd.DataFrame({"seed": [0, 0, 0, 1, 1], "level": [7, 7, 8, 7, 8],
        ...                    "success": [1, 0, 1, 1, 0]})
        >>> score_matrix(df, "success")
        array([[0.5, 1. ],
               [1. , 0. ]])
    """
    level_cols = [level_col] if isinstance(level_col, str) else list(level_col)
    _require_columns(records, [metric, seed_col, *level_cols])
    if len(records) == 0:
        raise ValueError(f"no records to score {metric!r}")
    values = records[metric]
    bad = values.isna().to_numpy()
    if not bad.any():
        if not pd.api.types.is_numeric_dtype(values):
            raise ValueError(f"metric column {metric!r} is not numeric (dtype {values.dtype})")
        bad = ~np.isfinite(values.to_numpy(dtype=float))
    if bad.any():
        raise ValueError(
            f"metric column {metric!r} has {int(bad.sum())} NaN or infinite value(s), "
            f"first at row {_plain(records.index[bad.argmax()])!r}"
        )
    keys = [seed_col, *level_cols]
    missing_keys = records[keys].isna().any()
    if missing_keys.any():
        raise ValueError(f"records have missing values in {list(missing_keys[missing_keys].index)}")
    cells = values.astype(float).groupby([records[k] for k in keys], sort=True).mean()
    table = cells.unstack(level_cols)
    holes = np.argwhere(table.isna().to_numpy())
    if len(holes):
        shown = ", ".join(
            f"({_plain(table.index[i])!r}, {_plain(table.columns[j])!r})" for i, j in holes[:5]
        )
        more = f" and {len(holes) - 5} more" if len(holes) > 5 else ""
        raise ValueError(
            f"incomplete (seed, level) grid for {metric!r}: {len(holes)} of {table.size} "
            f"cells have no records: {shown}{more}"
        )
    return table.to_numpy(dtype=float)


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


def aggregate(
    records: pd.DataFrame,
    metric: str | Sequence[str],
    group_cols: Sequence[str] = (),
    seed_col: str = "seed",
    level_col: str | Sequence[str] = "level",
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per group: IQM, its stratified-bootstrap CI and the mean of each metric, and counts.

    Columns are ``group_cols``, then for every metric ``<metric>_iqm``, ``<metric>_ci_low``,
    ``<metric>_ci_high``, ``<metric>_mean`` (mean of the score matrix), then ``n_seeds``,
    ``n_levels`` and ``n_episodes`` (the number of records in the group). Every group and metric
    uses the same bootstrap ``seed``, so a row does not depend on which other groups are present.
    Columns of ``records`` that are in neither ``group_cols`` nor the seed and level columns are
    averaged over, so put every condition (model, k, mode, ...) in ``group_cols``.

    Raises:
        ValueError: a column is missing or the group has bad or incomplete records (see
            ``score_matrix``); the message names the group.

    Example:
        >>> df = pd.DataFrame({"model": ["a"] * 4 + ["b"] * 4, "seed": [0, 0, 1, 1] * 2,
        ...                    "level": [0, 1] * 4, "success": [1, 1, 1, 0, 0, 0, 1, 0]})
        >>> aggregate(df, "success", ["model"], reps=200)[["model", "success_mean", "n_seeds"]]
          model  success_mean  n_seeds
        0     a          0.75        2
        1     b          0.25        2
    """
    metrics = [metric] if isinstance(metric, str) else list(metric)
    if not metrics:
        raise ValueError("aggregate: no metric given")
    group_cols = list(group_cols)
    level_cols = [level_col] if isinstance(level_col, str) else list(level_col)
    _require_columns(records, [*group_cols, *metrics, seed_col, *level_cols])
    clash = set(group_cols) & {seed_col, *level_cols, *metrics}
    if clash:
        raise ValueError(f"group_cols overlap the seed, level or metric columns: {sorted(clash)}")
    if len(records) == 0:
        raise ValueError("no records to aggregate")
    if group_cols and records[group_cols].isna().any().any():
        raise ValueError(f"records have missing values in group columns {group_cols}")
    groups = records.groupby(group_cols, sort=True) if group_cols else [((), records)]
    rows = []
    for key, group in groups:
        row = dict(zip(group_cols, key, strict=True))
        for name in metrics:
            try:
                m = score_matrix(group, name, seed_col, level_cols)
            except ValueError as err:
                where = ", ".join(f"{c}={_plain(v)!r}" for c, v in row.items()) or "all records"
                raise ValueError(f"group ({where}): {err}") from None
            low, high = stratified_bootstrap_ci(m, iqm, reps, confidence, seed)
            row |= {
                f"{name}_iqm": iqm(m),
                f"{name}_ci_low": low,
                f"{name}_ci_high": high,
                f"{name}_mean": float(m.mean()),
            }
        rows.append(row | {"n_seeds": m.shape[0], "n_levels": m.shape[1], "n_episodes": len(group)})
    return pd.DataFrame(rows)


def normalized_return(
    returns: ArrayLike, expert_returns: ArrayLike, random_returns: ArrayLike | None = None
) -> float | np.ndarray:
    """``(R - R_random) / (R_expert - R_random)``, or ``R / R_expert`` without a random reference.

    Broadcasts its arguments. Where the expert return equals the random reference (0 without one)
    the ratio is undefined: a return at or above it scores 1.0 and one below it raises.

    Raises:
        ValueError: a value is NaN or infinite, an expert return is below its random reference,
            or a return is below a reference whose span is zero.

    Example:
        >>> normalized_return([0.0, 5.0, 10.0], 10.0)
        array([0. , 0.5, 1. ])
        >>> normalized_return(3.0, expert_returns=5.0, random_returns=1.0)
        0.5
        >>> normalized_return(0.0, 0.0)
        1.0
    """
    r = np.asarray(returns, dtype=float)
    hi = np.asarray(expert_returns, dtype=float)
    lo = np.zeros_like(hi) if random_returns is None else np.asarray(random_returns, dtype=float)
    r, hi, lo = np.broadcast_arrays(r, hi, lo)
    if not (np.isfinite(r).all() and np.isfinite(hi).all() and np.isfinite(lo).all()):
        raise ValueError("normalized_return: returns must be finite")
    span = hi - lo
    if (span < 0).any():
        raise ValueError("normalized_return: an expert return is below its random reference")
    flat = span == 0
    if (flat & (r < hi)).any():
        raise ValueError(
            "normalized_return: undefined for a return below an expert return that equals "
            "the random reference (0 when none is given)"
        )
    out = np.where(flat, 1.0, (r - lo) / np.where(flat, 1.0, span))
    return float(out) if out.ndim == 0 else out


# --- helpers -------------------------------------------------------------------------------


def _plain(value: object) -> object:
    """Python scalars for messages: ``2`` rather than ``np.int64(2)``."""
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    return value.item() if isinstance(value, np.generic) else value


def _require_columns(records: pd.DataFrame, cols: Sequence[str]) -> None:
    missing = [c for c in dict.fromkeys(cols) if c not in records.columns]
    if missing:
        raise ValueError(f"records lack column(s) {missing}; they have {list(records.columns)}")


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

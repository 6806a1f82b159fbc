"""Benchmark scores from evaluation records: cells, aggregates with CIs, normalized return.

Records are one row per (condition..., seed, level, episode). Each (seed, level) cell is first
averaged over its episodes, giving a score matrix ``[n_seeds, n_levels]`` (:func:`score_frame`).
The headline aggregate is the *mean* success over the cells with a 95% confidence interval from a
bootstrap that resamples seeds and levels (levels within their family), so the interval speaks of
other training seeds *and* other levels of the same families. The interquartile mean is used only
for continuous cells (normalized return); averaging 0/1 episode outcomes first and taking an IQM
of few-episode cells saturates at 0 and 1. The resampling lives in :mod:`trajbench.bootstrap`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from .bootstrap import iqm, stratified_bootstrap_ci, two_level_ci


def score_frame(
    records: pd.DataFrame,
    metric: str,
    seed_col: str = "seed",
    level_col: str | Sequence[str] = "level",
) -> pd.DataFrame:
    """Mean of ``metric`` over episodes for every (seed, level): a frame ``[n_seeds, n_levels]``.

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
        >>> score_frame(df, "success").columns.tolist()
        [7, 8]
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
    return table.astype(float)


def score_matrix(records: pd.DataFrame, metric: str, **columns: Any) -> np.ndarray:
    """:func:`score_frame` as an array ``[n_seeds, n_levels]``.

    Example:
        >>> df = pd.DataFrame({"seed": [0, 0, 0, 1, 1], "level": [7, 7, 8, 7, 8],
        ...                    "success": [1, 0, 1, 1, 0]})
        >>> score_matrix(df, "success")
        array([[0.5, 1. ],
               [1. , 0. ]])
    """
    return score_frame(records, metric, **columns).to_numpy(dtype=float)


def aggregate(
    records: pd.DataFrame,
    metric: str | Sequence[str],
    group_cols: Sequence[str] = (),
    seed_col: str = "seed",
    level_col: str | Sequence[str] = "level",
    stratum_col: str | None = None,
    statistic: Literal["mean", "iqm"] = "mean",
    resample: Literal["seeds and levels", "seeds"] = "seeds and levels",
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per group: a statistic of each metric over its (seed, level) cells, with a CI.

    Columns are ``group_cols``, then for every metric ``<metric>_<statistic>``, ``<metric>_ci_low``,
    ``<metric>_ci_high`` and ``<metric>_mean`` (the plain mean of the cells), then ``n_seeds``,
    ``n_levels`` and ``n_episodes`` (records in the group). Every group and metric uses the same
    bootstrap ``seed``, so a row does not depend on which other groups are present. Columns that
    are in neither ``group_cols`` nor the seed and level columns are averaged over, so put every
    condition (model, k, mode, ...) in ``group_cols``.

    Args:
        stratum_col: One of the level columns (e.g. ``family``) whose values are the strata the
            levels are resampled within; None: one stratum.
        statistic: ``mean`` (the headline for success, a 0/1 outcome) or ``iqm`` (only for
            continuous cells, e.g. normalized return).
        resample: ``seeds and levels``: :func:`~trajbench.bootstrap.two_level_ci`; ``seeds``:
            :func:`~trajbench.bootstrap.stratified_bootstrap_ci` (levels fixed; suite v1).

    Raises:
        ValueError: a column is missing or the group has bad or incomplete records (see
            ``score_frame``); the message names the group.

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
    if statistic not in ("mean", "iqm") or resample not in ("seeds and levels", "seeds"):
        raise ValueError(f"unknown statistic {statistic!r} or resampling {resample!r}")
    group_cols = list(group_cols)
    level_cols = [level_col] if isinstance(level_col, str) else list(level_col)
    if stratum_col is not None and stratum_col not in level_cols:
        raise ValueError(f"stratum_col {stratum_col!r} must be one of the level columns")
    _require_columns(records, [*group_cols, *metrics, seed_col, *level_cols])
    clash = set(group_cols) & {seed_col, *level_cols, *metrics}
    if clash:
        raise ValueError(f"group_cols overlap the seed, level or metric columns: {sorted(clash)}")
    if len(records) == 0:
        raise ValueError("no records to aggregate")
    if group_cols and records[group_cols].isna().any().any():
        raise ValueError(f"records have missing values in group columns {group_cols}")
    groups = records.groupby(group_cols, sort=True) if group_cols else [((), records)]
    stat = iqm if statistic == "iqm" else None
    rows = []
    for key, group in groups:
        row = dict(zip(group_cols, key, strict=True))
        for name in metrics:
            try:
                frame = score_frame(group, name, seed_col, level_cols)
            except ValueError as err:
                where = ", ".join(f"{c}={_plain(v)!r}" for c, v in row.items()) or "all records"
                raise ValueError(f"group ({where}): {err}") from None
            m = frame.to_numpy(dtype=float)
            if resample == "seeds":
                low, high = stratified_bootstrap_ci(m, stat or np.mean, reps, confidence, seed)
            else:
                strata = _strata(frame, level_cols, stratum_col)
                low, high = two_level_ci(m, strata, stat, reps, confidence, seed)
            value = iqm(m) if statistic == "iqm" else float(m.mean())
            row |= {
                f"{name}_{statistic}": value,
                f"{name}_ci_low": low,
                f"{name}_ci_high": high,
                f"{name}_mean": float(m.mean()),
            }
        rows.append(row | {"n_seeds": m.shape[0], "n_levels": m.shape[1], "n_episodes": len(group)})
    return pd.DataFrame(rows)


def _strata(frame: pd.DataFrame, level_cols: list[str], stratum_col: str | None) -> list | None:
    """The stratum of every column (level) of a score frame."""
    if stratum_col is None:
        return None
    if len(level_cols) == 1:
        return list(frame.columns)
    position = level_cols.index(stratum_col)
    return [column[position] for column in frame.columns]


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

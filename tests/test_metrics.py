"""Tests for trajbench.metrics: IQM, stratified bootstrap, probability of improvement, aggregate."""

import doctest

import numpy as np
import pandas as pd
import pytest
import scipy.stats
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from trajbench import metrics
from trajbench.metrics import (
    aggregate,
    iqm,
    normalized_return,
    probability_of_improvement,
    score_matrix,
    stratified_bootstrap_ci,
)

finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
score_arrays = arrays(np.float64, st.integers(1, 40), elements=finite)


def test_docstring_examples_run():
    result = doctest.testmod(metrics, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0


# --- iqm ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1,), (3,), (4,), (5,), (7, 3), (10, 10), (3, 4, 5)])
def test_iqm_matches_scipy_trim_mean(shape):
    x = np.random.default_rng(0).standard_cauchy(shape)
    assert iqm(x) == pytest.approx(scipy.stats.trim_mean(x, 0.25, axis=None), rel=1e-12)


@pytest.mark.parametrize(
    "scores, expected",
    [
        ([5.0], 5.0),
        ([1, 2, 3], 2.0),  # int(0.75) = 0 values cut
        ([1, 2, 3, 100], 2.5),  # 1 and 100 cut
        ([1000, 4, 3, 2, -50], 3.0),  # one cut from each end of five
        ([0, 0, 1, 1, 1, 1, 9, 9], 1.0),
        ([[1, 2], [2, 2], [1, 1], [2, 1]], 1.5),  # rliable's test matrices
        ([[1, 1], [2, 2], [3, 3]], 2.0),
    ],
)
def test_iqm_hand_computed(scores, expected):
    assert iqm(scores) == pytest.approx(expected)


def test_iqm_axis_reduces_each_batch_entry():
    batch = np.random.default_rng(1).normal(size=(6, 5, 3))
    assert np.allclose(iqm(batch, axis=(-2, -1)), [iqm(b) for b in batch])
    assert np.allclose(iqm(batch, axis=1), scipy.stats.trim_mean(batch, 0.25, axis=1))


@given(score_arrays)
def test_iqm_between_min_and_max(x):
    ulps = 1e-12 * np.abs(x).max()  # the mean of equal floats may round past them
    assert x.min() - ulps <= iqm(x) <= x.max() + ulps


@given(score_arrays, st.randoms())
def test_iqm_permutation_invariant(x, random):
    shuffled = x.copy()
    random.shuffle(shuffled)
    assert iqm(shuffled) == pytest.approx(iqm(x), rel=1e-12, abs=1e-9)


@given(score_arrays, finite, st.floats(1e-3, 1e3))
def test_iqm_shift_and_scale_equivariant(x, shift, scale):
    assert iqm(x + shift) == pytest.approx(iqm(x) + shift, rel=1e-9, abs=1e-6)
    assert iqm(scale * x) == pytest.approx(scale * iqm(x), rel=1e-9, abs=1e-6)


@pytest.mark.parametrize("bad", [[], [1.0, np.nan]])
def test_iqm_rejects_empty_and_nan(bad):
    with pytest.raises(ValueError):
        iqm(bad)


# --- stratified bootstrap ----------------------------------------------------------------------


def _iqm_of_levels(*levels, axis):
    """scipy.stats.bootstrap statistic: one sample per level, IQM over seeds x levels."""
    assert axis == -1
    return iqm(np.stack(levels, axis=-1), axis=(-2, -1))


def _assert_close_interval(ours, theirs, rel_width=0.03):
    low, high = ours
    tol = rel_width * (high - low)
    assert low == pytest.approx(theirs.low, abs=tol)
    assert high == pytest.approx(theirs.high, abs=tol)


def test_one_level_equals_plain_bootstrap_scipy():
    x = np.random.default_rng(3).normal(size=40)
    ours = stratified_bootstrap_ci(x[:, None], reps=50_000, seed=1)
    theirs = scipy.stats.bootstrap(
        (x,), iqm, n_resamples=50_000, method="percentile", rng=np.random.default_rng(2)
    )
    _assert_close_interval(ours, theirs.confidence_interval)


def test_levels_resampled_independently_as_scipy_independent_samples():
    # scipy's bootstrap resamples each of several unpaired samples independently: one per level.
    m = np.random.default_rng(4).normal(size=(8, 5)) + np.arange(5)
    ours = stratified_bootstrap_ci(m, reps=50_000, seed=1)
    theirs = scipy.stats.bootstrap(
        tuple(m.T),
        _iqm_of_levels,
        n_resamples=50_000,
        paired=False,
        method="percentile",
        rng=np.random.default_rng(2),
    )
    _assert_close_interval(ours, theirs.confidence_interval)


def test_matches_per_replicate_loop_reference_exactly():
    # Pins the whole contract, draw order included, so stored CIs can be recomputed exactly:
    # indices drawn as one [reps, n_seeds, n_levels] array, column j resamples level j only,
    # scipy's trim_mean per replicate, then the 2.5th and 97.5th percentiles.
    m = np.random.default_rng(12).normal(size=(6, 3))
    rows = np.random.default_rng(5).integers(0, 6, size=(400, 6, 3))
    stats = [
        scipy.stats.trim_mean(np.column_stack([m[r[:, j], j] for j in range(3)]), 0.25, axis=None)
        for r in rows
    ]
    expected = np.percentile(stats, [2.5, 97.5])
    assert stratified_bootstrap_ci(m, reps=400, seed=5) == pytest.approx(tuple(expected), abs=1e-12)


def test_resampling_stays_within_levels():
    # Every seed agrees on each level, so any within-level resample is the data itself; a
    # bootstrap pooling cells across levels would give a wide interval here.
    m = np.tile([0.0, 0.2, 0.5, 1.0], (5, 1))
    assert stratified_bootstrap_ci(m) == (pytest.approx(iqm(m)), pytest.approx(iqm(m)))
    pooled_low, pooled_high = stratified_bootstrap_ci(m.reshape(-1, 1))
    assert pooled_high - pooled_low > 0.2


@pytest.mark.parametrize("seed", range(5))
def test_ci_contains_point_estimate(seed):
    m = np.random.default_rng(seed).beta(2, 5, size=(10, 6))
    low, high = stratified_bootstrap_ci(m, seed=seed)
    assert low < iqm(m) < high


def test_ci_deterministic_for_a_seed():
    m = np.random.default_rng(5).random((6, 4))
    assert stratified_bootstrap_ci(m, seed=7) == stratified_bootstrap_ci(m, seed=7)
    assert stratified_bootstrap_ci(m, seed=7) != stratified_bootstrap_ci(m, seed=8)


def test_ci_shrinks_with_more_seeds():
    rng = np.random.default_rng(6)
    widths = []
    for n_seeds in (5, 50):
        low, high = stratified_bootstrap_ci(rng.normal(size=(n_seeds, 4)))
        widths.append(high - low)
    assert widths[1] < 0.5 * widths[0]


def test_ci_wider_at_higher_confidence():
    m = np.random.default_rng(7).normal(size=(10, 3))
    low90, high90 = stratified_bootstrap_ci(m, confidence=0.9)
    low99, high99 = stratified_bootstrap_ci(m, confidence=0.99)
    assert low99 < low90 and high90 < high99


def test_constant_scores_give_zero_width_ci():
    low, high = stratified_bootstrap_ci(np.full((5, 3), 0.7))
    assert low == high == pytest.approx(0.7)


def test_custom_statistic_and_chunking(monkeypatch):
    m = np.random.default_rng(8).normal(size=(7, 3))
    whole = stratified_bootstrap_ci(m, np.mean, reps=300)
    assert whole[0] < m.mean() < whole[1]
    monkeypatch.setattr(metrics, "_MAX_CHUNK_ELEMENTS", 50)  # 2 replicates per chunk
    chunked = stratified_bootstrap_ci(m, np.mean, reps=300)
    assert chunked[0] < m.mean() < chunked[1]
    assert chunked == pytest.approx(whole, abs=0.25)


@pytest.mark.parametrize(
    "matrix, kwargs",
    [
        (np.ones(5), {}),
        (np.ones((0, 3)), {}),
        (np.array([[1.0, np.nan], [0.0, 1.0]]), {}),
        (np.array([[1.0, np.inf], [0.0, 1.0]]), {}),
        (np.ones((3, 2)), {"reps": 0}),
        (np.ones((3, 2)), {"reps": 10.5}),
        (np.ones((3, 2)), {"confidence": 1.0}),
        (np.ones((3, 2)), {"confidence": 0.0}),
        (np.ones((3, 2)), {"statistic": lambda x, axis: x}),  # does not reduce
    ],
)
def test_bootstrap_rejects_bad_input(matrix, kwargs):
    with pytest.raises(ValueError):
        stratified_bootstrap_ci(matrix, **kwargs)


# --- probability of improvement ----------------------------------------------------------------


def test_poi_matches_rliable_reference_value():
    x = np.array([[1, 2], [2, 2], [1, 1], [2, 1]])
    y = np.array([[1, 1], [2, 2], [3, 3]])
    assert probability_of_improvement(x, y)[0] == pytest.approx(1 / 3)


def test_poi_matches_mann_whitney_u_per_level():
    rng = np.random.default_rng(9)
    x, y = rng.integers(0, 4, size=(6, 5)), rng.integers(0, 4, size=(9, 5))  # many ties
    u = [scipy.stats.mannwhitneyu(x[:, j], y[:, j]).statistic for j in range(5)]
    assert probability_of_improvement(x, y)[0] == pytest.approx(np.mean(u) / (6 * 9))


def test_poi_ci_matches_per_replicate_loop_reference_exactly():
    rng = np.random.default_rng(13)
    x, y = rng.normal(0.3, 1, size=(5, 3)), rng.normal(0, 1, size=(4, 3))
    draws = np.random.default_rng(6)
    x_rows, y_rows = draws.integers(0, 5, size=(300, 5, 3)), draws.integers(0, 4, size=(300, 4, 3))
    stats = []
    for xr, yr in zip(x_rows, y_rows, strict=True):
        u = [scipy.stats.mannwhitneyu(x[xr[:, j], j], y[yr[:, j], j]).statistic for j in range(3)]
        stats.append(np.mean(u) / (5 * 4))
    _, low, high = probability_of_improvement(x, y, reps=300, confidence=0.9, seed=6)
    assert (low, high) == pytest.approx(tuple(np.percentile(stats, [5, 95])), abs=1e-12)


def test_poi_dominance_identity_and_symmetry():
    rng = np.random.default_rng(10)
    y = rng.random((5, 4))
    x = y.max() + rng.random((7, 4))
    assert probability_of_improvement(x, y) == (1.0, 1.0, 1.0)
    assert probability_of_improvement(y, x) == (0.0, 0.0, 0.0)
    p, low, high = probability_of_improvement(y, y)
    assert p == 0.5 and low < 0.5 < high
    a, b = rng.normal(size=(6, 3)), rng.normal(size=(4, 3))
    assert probability_of_improvement(a, b)[0] + probability_of_improvement(b, a)[0] == (
        pytest.approx(1.0)
    )


def test_poi_ci_contains_estimate_and_is_deterministic():
    rng = np.random.default_rng(11)
    x, y = rng.normal(0.3, 1, size=(8, 5)), rng.normal(0, 1, size=(6, 5))
    p, low, high = probability_of_improvement(x, y, seed=3)
    assert 0 <= low < p < high <= 1
    assert probability_of_improvement(x, y, seed=3) == (p, low, high)


def test_poi_rejects_mismatched_levels():
    with pytest.raises(ValueError, match="levels"):
        probability_of_improvement(np.ones((3, 2)), np.ones((3, 3)))


# --- records: score_matrix and aggregate -------------------------------------------------------


def _records(models=("a", "b"), seeds=(0, 1, 2), levels=(10, 11), episodes=2, seed=0):
    rng = np.random.default_rng(seed)
    rows = [
        {"model": mdl, "k": 1, "seed": s, "level": lv, "episode": e}
        for mdl in models
        for s in seeds
        for lv in levels
        for e in range(episodes)
    ]
    df = pd.DataFrame(rows)
    df["success"] = rng.integers(0, 2, len(df)).astype(bool)
    df["normalized_return"] = rng.random(len(df))
    return df


def test_score_matrix_averages_episodes_per_seed_and_level():
    df = pd.DataFrame(
        {
            "seed": [1, 1, 1, 0, 0, 0, 0],
            "level": [5, 5, 3, 3, 5, 3, 3],
            "return": [1.0, 3.0, 4.0, 0.0, 8.0, 1.0, 2.0],  # unequal episodes per cell
        }
    )
    # rows: seeds 0, 1; columns: levels 3, 5
    assert np.array_equal(score_matrix(df, "return"), [[1.0, 8.0], [4.0, 2.0]])


def test_score_matrix_several_level_columns():
    df = pd.DataFrame(
        {
            "seed": [0, 0, 1, 1],
            "family": ["A", "B", "A", "B"],
            "level": [0, 0, 0, 0],  # level 0 of two families: two strata, not one
            "success": [1, 0, 1, 1],
        }
    )
    assert score_matrix(df, "success", level_col=["family", "level"]).shape == (2, 2)
    assert score_matrix(df, "success").shape == (2, 1)


@pytest.mark.parametrize(
    "mutate, metric, message",
    [
        (lambda df: df.drop(columns="success"), "success", "lack column"),
        (lambda df: df.drop(columns="seed"), "success", "lack column"),
        (lambda df: df.assign(success=df["success"].where(df.index != 3)), "success", "NaN"),
        (lambda df: df.assign(success=np.where(df.index == 3, np.inf, 0)), "success", "infinite"),
        (lambda df: df.assign(success="yes"), "success", "not numeric"),
        (lambda df: df.assign(level=df["level"].where(df.index != 2)), "success", "missing values"),
        (
            lambda df: df[~((df["seed"] == 2) & (df["level"] == 11))],
            "success",
            r"incomplete.*\(2, 11\)",
        ),
        (lambda df: df.iloc[:0], "success", "no records"),
    ],
)
def test_score_matrix_rejects_bad_records(mutate, metric, message):
    with pytest.raises(ValueError, match=message):
        score_matrix(mutate(_records(models=("a",))), metric)


def test_aggregate_small_frame_expected_rows():
    df = pd.DataFrame(
        {
            "model": ["a"] * 8 + ["b"] * 8,
            "seed": [0, 0, 0, 0, 1, 1, 1, 1] * 2,
            "level": [0, 0, 1, 1] * 4,
            "success": [1, 1, 1, 0, 0, 0, 1, 1] + [0] * 8,
        }
    )
    out = aggregate(df, "success", ["model"], reps=500)
    assert list(out.columns) == [
        "model",
        "success_iqm",
        "success_ci_low",
        "success_ci_high",
        "success_mean",
        "n_seeds",
        "n_levels",
        "n_episodes",
    ]
    assert out["model"].tolist() == ["a", "b"]
    # model a: cells [[1, 0.5], [0, 1]] -> sorted 0, 0.5, 1, 1 -> IQM mean(0.5, 1) = 0.75
    a, b = out.iloc[0], out.iloc[1]
    assert a["success_iqm"] == pytest.approx(0.75)
    assert a["success_mean"] == pytest.approx(0.625)
    assert a["success_ci_low"] <= 0.75 <= a["success_ci_high"]
    assert (b["success_iqm"], b["success_ci_low"], b["success_ci_high"]) == (0.0, 0.0, 0.0)
    assert out[["n_seeds", "n_levels", "n_episodes"]].values.tolist() == [[2, 2, 8], [2, 2, 8]]


def test_aggregate_matches_score_matrix_and_bootstrap():
    df = _records()
    out = aggregate(df, ["success", "normalized_return"], ["model", "k"], seed=4)
    assert len(out) == 2
    for _, row in out.iterrows():
        m = score_matrix(df[df["model"] == row["model"]], "normalized_return")
        assert row["normalized_return_iqm"] == pytest.approx(iqm(m))
        assert row["normalized_return_mean"] == pytest.approx(m.mean())
        ci = stratified_bootstrap_ci(m, seed=4)
        assert (row["normalized_return_ci_low"], row["normalized_return_ci_high"]) == ci
        assert (row["n_seeds"], row["n_levels"], row["n_episodes"]) == (3, 2, 12)
    assert "success_iqm" in out.columns


def test_aggregate_without_groups_gives_one_row():
    out = aggregate(_records(models=("a",)), "success")
    assert len(out) == 1 and out["n_episodes"].item() == 12


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"metric": "success", "group_cols": ["nope"]}, "lack column"),
        ({"metric": "success", "group_cols": ["seed"]}, "overlap"),
        ({"metric": [], "group_cols": ["model"]}, "no metric"),
    ],
)
def test_aggregate_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        aggregate(_records(), **kwargs)


def test_aggregate_error_names_the_group():
    df = _records()
    df = df[~((df["model"] == "b") & (df["seed"] == 0) & (df["level"] == 10))]
    with pytest.raises(ValueError, match=r"group \(model='b'\).*incomplete"):
        aggregate(df, "success", ["model"])


# --- normalized return -------------------------------------------------------------------------


def test_normalized_return_formulas():
    assert np.allclose(normalized_return([0.0, 2.5, 10.0, 12.0], 10.0), [0.0, 0.25, 1.0, 1.2])
    assert normalized_return(3.0, 5.0, random_returns=1.0) == pytest.approx(0.5)
    assert normalized_return(0.0, 5.0, random_returns=1.0) == pytest.approx(-0.25)
    assert np.allclose(normalized_return([1.0, 4.0], [2.0, 8.0], [0.0, 4.0]), [0.5, 0.0])


def test_normalized_return_zero_span_guard():
    assert normalized_return(0.0, 0.0) == 1.0
    assert normalized_return(2.0, 0.0) == 1.0
    assert normalized_return(3.0, 3.0, random_returns=3.0) == 1.0
    with pytest.raises(ValueError, match="undefined"):
        normalized_return(-1.0, 0.0)


@pytest.mark.parametrize(
    "args",
    [(1.0, 1.0, 2.0), (np.nan, 1.0, None), (1.0, np.inf, None)],
)
def test_normalized_return_rejects_bad_input(args):
    with pytest.raises(ValueError):
        normalized_return(*args)

"""Tests for trajbench.bootstrap: IQM, the two bootstraps, paired differences, power."""

import doctest

import numpy as np
import pytest
import scipy.stats
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from trajbench import bootstrap
from trajbench.bootstrap import (
    iqm,
    minimum_detectable_effect,
    paired_difference,
    probability_of_improvement,
    stratified_bootstrap_ci,
    two_level_ci,
)

finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
score_arrays = arrays(np.float64, st.integers(1, 40), elements=finite)


def test_docstring_examples_run():
    result = doctest.testmod(bootstrap, optionflags=doctest.NORMALIZE_WHITESPACE)
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
    monkeypatch.setattr(bootstrap, "_MAX_CHUNK_ELEMENTS", 50)  # 2 replicates per chunk
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


# --- two-level bootstrap (seeds and levels) ----------------------------------------------------


def _reference_two_level(m, strata, reps, seed):
    """A per-replicate loop with the same draws as ``two_level_ci``: rows, then each stratum."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(strata, dtype=object)
    groups = [np.flatnonzero(labels == s) for s in dict.fromkeys(labels.tolist())]
    means = []
    rows = rng.integers(0, m.shape[0], size=(reps, m.shape[0]))
    picks = [g[rng.integers(0, len(g), size=(reps, len(g)))] for g in groups]
    for r in range(reps):
        cols = np.concatenate([p[r] for p in picks])
        means.append(m[np.ix_(rows[r], cols)].mean())
    return tuple(np.percentile(means, [2.5, 97.5]))


def test_two_level_matches_a_per_replicate_loop_exactly():
    m = np.random.default_rng(1).random((3, 7))
    strata = ["a", "a", "b", "b", "b", "c", "a"]
    ours = two_level_ci(m, strata, reps=300, seed=4)
    assert ours == pytest.approx(_reference_two_level(m, strata, 300, 4), abs=1e-12)


def test_two_level_with_one_seed_is_the_bootstrap_of_level_means_over_levels():
    x = np.random.default_rng(3).random(60)
    ours = two_level_ci(x[None, :], reps=50_000, seed=1)
    theirs = scipy.stats.bootstrap(
        (x,), np.mean, n_resamples=50_000, method="percentile", rng=np.random.default_rng(2)
    ).confidence_interval
    assert ours[0] == pytest.approx(theirs.low, abs=0.01)
    assert ours[1] == pytest.approx(theirs.high, abs=0.01)


def test_two_level_known_answers():
    assert two_level_ci(np.full((3, 5), 0.4)) == pytest.approx((0.4, 0.4))
    # Levels differ, seeds agree: only the level draw varies, and strata keep families apart.
    m = np.tile([0.0, 1.0], (4, 1))
    assert two_level_ci(m, strata=["x", "y"]) == pytest.approx((0.5, 0.5))
    low, high = two_level_ci(m)
    assert low <= 0.25 and high >= 0.75
    # A custom statistic is applied to the materialized resamples.
    low, high = two_level_ci(np.random.default_rng(2).random((4, 9)), statistic=iqm, reps=300)
    assert 0 <= low < high <= 1


def test_two_level_covers_the_true_mean_about_95_percent_of_the_time():
    """Simulated benchmarks: success probability = family mean + level effect + seed effect; the
    quantity of interest is the population mean over levels and seeds (0.5). The interval
    should cover it about 95% of the time (the two-level bootstrap is slightly conservative)."""
    rng = np.random.default_rng(0)
    n_sims, n_seeds, n_levels, n_episodes = 300, 3, 40, 4
    strata = np.repeat(["a", "b"], n_levels // 2)
    hits = 0
    for i in range(n_sims):
        level = rng.normal(0, 0.15, n_levels) + np.where(strata == "a", -0.1, 0.1)
        seed_effect = rng.normal(0, 0.05, n_seeds)
        p = np.clip(0.5 + level[None, :] + seed_effect[:, None], 0, 1)
        cells = rng.binomial(n_episodes, p) / n_episodes
        low, high = two_level_ci(cells, strata, reps=400, seed=i)
        hits += low <= 0.5 <= high
    assert 0.90 <= hits / n_sims <= 0.995


def test_paired_difference_known_answers_and_pairing():
    rng = np.random.default_rng(5)
    y = rng.random((3, 30))
    same = paired_difference(y + 0.1, y, same_seeds=True)
    assert (same.mean, same.low, same.high) == pytest.approx((0.1, 0.1, 0.1))
    assert same.separated and same.se < 1e-12
    # Levels are paired: a level effect shared by both sides cancels, unlike in two CIs.
    hard = rng.normal(0, 0.3, 30)
    x2, y2 = 0.6 + hard + rng.normal(0, 0.02, (3, 30)), 0.5 + hard + rng.normal(0, 0.02, (3, 30))
    d = paired_difference(x2, y2, same_seeds=True)
    assert d.separated and d.low > 0.05
    lx, _ = two_level_ci(x2)
    _, hy = two_level_ci(y2)
    assert lx < hy  # the two marginal CIs overlap although the paired difference is clear
    # Seeds drawn independently (a reference policy has other seeds): wider, still centred.
    ind = paired_difference(x2, y2[:1])
    assert ind.low < d.mean < ind.high
    with pytest.raises(ValueError, match="levels"):
        paired_difference(x2, y2[:, :5])
    with pytest.raises(ValueError, match="same_seeds"):
        paired_difference(x2, y2[:1], same_seeds=True)


def test_minimum_detectable_effect():
    assert minimum_detectable_effect(0.05) == pytest.approx(0.05 * (1.959964 + 0.841621), rel=1e-5)
    assert minimum_detectable_effect(0.05, power=0.9) > minimum_detectable_effect(0.05)
    with pytest.raises(ValueError):
        minimum_detectable_effect(0.05, power=1.0)


# --- what mutation testing found unchecked (benchmarks/mutation.py, docs/testing.md) ------------


def test_iqm_errors_name_what_is_wrong():
    with pytest.raises(ValueError, match=r"^iqm: no scores$"):
        iqm([])
    with pytest.raises(ValueError, match=r"^iqm: scores contain NaN$"):
        iqm([1.0, np.nan])
    with pytest.raises(ValueError, match=r"^iqm: axis 2 out of range for an array of 2 dims$"):
        iqm(np.ones((2, 3)), axis=2)
    with pytest.raises(ValueError, match="out of range"):
        iqm(np.ones((2, 3)), axis=-3)
    # The first axis counted from the end is in range.
    x = np.arange(6.0).reshape(2, 3)
    assert np.allclose(iqm(x, axis=-2), scipy.stats.trim_mean(x, 0.25, axis=0))


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda bad: paired_difference(bad, np.ones((2, 3))), "x"),
        (lambda bad: paired_difference(np.ones((2, 3)), bad), "y"),
        (lambda bad: stratified_bootstrap_ci(bad), "matrix"),
        (lambda bad: two_level_ci(bad), "matrix"),
        (lambda bad: probability_of_improvement(bad, np.ones((2, 3))), "x_matrix"),
        (lambda bad: probability_of_improvement(np.ones((2, 3)), bad), "y_matrix"),
    ],
)
def test_a_bad_matrix_is_named_in_the_error(call, name):
    with pytest.raises(ValueError, match=rf"^{name} contains NaN or infinite scores$"):
        call(np.array([[1.0, np.nan, 0.0], [0.0, 1.0, 1.0]]))


def test_a_statistic_that_does_not_reduce_is_refused_with_a_message():
    with pytest.raises(ValueError, match=r"statistic must reduce axes \(-2, -1\) to one value"):
        stratified_bootstrap_ci(np.ones((3, 2)), statistic=lambda x, axis: x)


@pytest.mark.parametrize("confidence, power", [(0.0, 0.8), (1.0, 0.8), (1.5, 0.8), (0.95, 0.0)])
def test_minimum_detectable_effect_refuses_levels_outside_zero_one(confidence, power):
    with pytest.raises(ValueError, match=r"^confidence and power must lie in \(0, 1\)$"):
        minimum_detectable_effect(0.05, confidence=confidence, power=power)


def test_published_intervals_use_the_documented_defaults():
    """results.json and the leaderboard recompute intervals with the defaults (2000 replicates,
    seed 0): changing either changes every published interval."""
    rng = np.random.default_rng(2)
    x, y = rng.random((3, 7)), rng.random((4, 7))
    assert paired_difference(x, y) == paired_difference(x, y, reps=2000, seed=0)
    assert paired_difference(x, y) != paired_difference(x, y, seed=1)
    assert stratified_bootstrap_ci(x) == stratified_bootstrap_ci(x, reps=2000, seed=0)
    assert stratified_bootstrap_ci(x) != stratified_bootstrap_ci(x, reps=2001, seed=0)
    assert probability_of_improvement(x, y) == probability_of_improvement(x, y, 2000, seed=0)
    assert probability_of_improvement(x, y) != probability_of_improvement(x, y, 2001, seed=0)
    assert paired_difference(x, y, reps=2001) != paired_difference(x, y)


def _independent_paired(x, y, strata, same_seeds, reps=4000, seed=99):
    """Paired difference bootstrap written with resampled indices: levels within their stratum
    (the same ones for both sides), seeds the same for both or drawn apart."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(strata)
    groups = [np.flatnonzero(labels == s) for s in dict.fromkeys(labels.tolist())]
    out = []
    for _ in range(reps):
        cols = np.concatenate([rng.choice(g, len(g)) for g in groups])
        rx = rng.integers(0, len(x), len(x))
        ry = rx if same_seeds else rng.integers(0, len(y), len(y))
        out.append(x[rx][:, cols].mean() - y[ry][:, cols].mean())
    out = np.asarray(out)
    return (*np.percentile(out, [2.5, 97.5]), out.std(ddof=1))


@pytest.mark.parametrize("same_seeds", [True, False])
def test_paired_difference_resamples_levels_within_strata_and_seeds_as_told(same_seeds):
    """Two strata of very different level counts and differences, and a seed effect shared by
    both sides: ignoring the strata or the seeds' pairing changes the interval."""
    rng = np.random.default_rng(4)
    strata = ["a"] * 2 + ["b"] * 10
    level = np.r_[np.full(2, 0.9), np.full(10, 0.1)] + rng.normal(0, 0.05, 12)
    seed_effect = rng.normal(0, 0.03, 4)[:, None]
    x = level + seed_effect + np.r_[np.full(2, 0.4), np.zeros(10)] + rng.normal(0, 0.05, (4, 12))
    y = level + seed_effect + rng.normal(0, 0.05, (4, 12))
    d = paired_difference(x, y, strata=strata, same_seeds=same_seeds)
    low, high, se = _independent_paired(x, y, strata, same_seeds)
    assert d.mean == pytest.approx(x.mean() - y.mean())
    assert d.low == pytest.approx(low, abs=0.3 * se)
    assert d.high == pytest.approx(high, abs=0.3 * se)
    assert d.se == pytest.approx(se, rel=0.08)
    other = _independent_paired(x, y, ["s"] * 12, same_seeds)
    assert abs(other[2] - se) > 0.2 * se  # the strata matter for this data


def test_seeds_drawn_apart_for_conditions_with_other_seeds():
    """With same_seeds False (and a y of another shape than x's transpose) each side's seeds are
    drawn independently: a seed effect shared by both no longer cancels."""
    rng = np.random.default_rng(8)
    seed_effect = rng.normal(0, 0.3, 3)[:, None]
    x = 0.6 + seed_effect + rng.normal(0, 0.01, (3, 5))
    y = 0.5 + seed_effect + rng.normal(0, 0.01, (3, 5))
    paired = paired_difference(x, y, same_seeds=True)
    apart = paired_difference(x, y, same_seeds=False)
    *_, se = _independent_paired(x, y, ["s"] * 5, same_seeds=False)
    assert paired.high - paired.low < 0.05 < apart.high - apart.low
    assert apart.se == pytest.approx(se, rel=0.08)


def test_probability_of_improvement_counts_ties_per_level():
    """Ties on one level only: each level's P(X > Y) + P(X = Y) / 2, averaged over levels."""
    x = np.array([[1.0, 4.0], [2.0, 4.0]])
    y = np.array([[1.0, 3.0], [1.0, 5.0]])
    # level 0: pairs (1, 1) twice tie, (2, 1) twice x wins -> 0.5 + 0.5 * 0.5 = 0.75
    # level 1: (4, 3) x wins, (4, 5) y wins, twice each -> 0.5; no tie
    p, _, _ = probability_of_improvement(x, y, reps=10)
    assert p == pytest.approx((0.75 + 0.5) / 2)


def test_two_replicates_are_two_replicates():
    """reps counts the replicates drawn: two give two different values and a finite spread."""
    x, y = np.arange(12.0).reshape(3, 4) ** 2, np.zeros((3, 4))
    d = paired_difference(x, y, reps=2)
    assert d.low < d.high and np.isfinite(d.se) and d.mean == pytest.approx(x.mean())

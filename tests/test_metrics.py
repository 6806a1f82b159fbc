"""Tests for trajbench.metrics: score matrices, aggregates and normalized return."""

import doctest

import numpy as np
import pandas as pd
import pytest

from trajbench import metrics
from trajbench.bootstrap import iqm, stratified_bootstrap_ci, two_level_ci
from trajbench.metrics import aggregate, normalized_return, score_matrix


def test_docstring_examples_run():
    result = doctest.testmod(metrics, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0


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
    out = aggregate(df, "success", ["model"], statistic="iqm", resample="seeds", reps=500)
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


def test_aggregate_headline_is_the_mean_with_a_two_level_ci():
    df = _records()
    out = aggregate(df, "success", ["model", "k"], seed=4)
    assert "success_iqm" not in out.columns
    for _, row in out.iterrows():
        m = score_matrix(df[df["model"] == row["model"]], "success")
        assert row["success_mean"] == pytest.approx(m.mean())
        assert (row["success_ci_low"], row["success_ci_high"]) == two_level_ci(m, seed=4)


def test_aggregate_strata_are_the_family_of_each_level():
    df = _records(models=("a",))
    df = pd.concat([df.assign(family="f"), df.assign(family="g", success=1 - df["success"])])
    out = aggregate(df, "success", level_col=["family", "level"], stratum_col="family", seed=2)
    m = score_matrix(df, "success", level_col=["family", "level"])
    ci = two_level_ci(m, strata=["f", "f", "g", "g"], seed=2)
    assert (out["success_ci_low"].item(), out["success_ci_high"].item()) == ci
    with pytest.raises(ValueError, match="stratum_col"):
        aggregate(df, "success", stratum_col="seed")


def test_aggregate_iqm_over_seeds_as_suite_v1_computed_it():
    df = _records()
    kw = dict(statistic="iqm", resample="seeds", seed=4)
    out = aggregate(df, ["success", "normalized_return"], ["model", "k"], **kw)
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


# --- what mutation testing found unchecked (benchmarks/mutation.py, docs/testing.md) ------------


def test_messages_name_the_first_bad_row_and_the_missing_cells():
    df = _records(models=("a",), seeds=(0, 1, 2), levels=(10, 11, 12, 13))
    bad = df.assign(success=df["success"].astype(float).where(df.index != 7))
    with pytest.raises(ValueError, match=r"has 1 NaN or infinite value\(s\), first at row 7$"):
        score_matrix(bad, "success")
    holes = df[~((df["seed"] > 0) & (df["level"] != 10)) | (df["seed"] == 2) & (df["level"] == 13)]
    # Cells (1, 11), (1, 12), (1, 13), (2, 11), (2, 12) have no records: 5 of 12, all shown.
    message = (
        r"incomplete \(seed, level\) grid for 'success': 5 of 12 cells have no records: "
        r"\(1, 11\), \(1, 12\), \(1, 13\), \(2, 11\), \(2, 12\)$"
    )
    with pytest.raises(ValueError, match=message):
        score_matrix(holes, "success")
    fewer = df[~((df["seed"] > 0) & (df["level"] != 10))]
    with pytest.raises(ValueError, match=r"6 of 12 cells .*\(2, 12\) and 1 more$"):
        score_matrix(fewer, "success")
    two = df.assign(family="f")
    two = two[~((two["seed"] == 1) & (two["level"] == 11))]
    with pytest.raises(ValueError, match=r"cells have no records: \(1, \('f', 11\)\)$"):
        score_matrix(two, "success", level_col=["family", "level"])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"metric": []}, r"^aggregate: no metric given$"),
        ({"statistic": "median"}, r"^unknown statistic 'median' or resampling 'seeds and levels'$"),
        ({"resample": "levels"}, r"^unknown statistic 'mean' or resampling 'levels'$"),
    ],
)
def test_aggregate_refuses_unknown_settings_with_a_message(kwargs, message):
    with pytest.raises(ValueError, match=message):
        aggregate(_records(), **{"metric": "success", **kwargs})


def test_aggregate_messages_for_empty_and_incomplete_groups():
    with pytest.raises(ValueError, match=r"^no records to aggregate$"):
        aggregate(_records().iloc[:0], "success")
    nan_group = _records().assign(model=lambda d: d["model"].where(d.index != 0))
    with pytest.raises(
        ValueError, match=r"^records have missing values in group columns \['model'\]$"
    ):
        aggregate(nan_group, "success", ["model"])
    holes = _records(models=("a",)).iloc[1:]
    holes = holes[~((holes["seed"] == 0) & (holes["level"] == 10))]
    with pytest.raises(ValueError, match=r"^group \(all records\): incomplete"):
        aggregate(holes, "success")
    with pytest.raises(ValueError, match=r"^group \(model='a', k=1\): incomplete"):
        aggregate(holes, "success", ["model", "k"])
    one = aggregate(_records(models=("a",), seeds=(0,), levels=(10,), episodes=1), "success")
    assert one["n_episodes"].item() == 1


def test_aggregate_rows_come_sorted_by_group_whatever_the_record_order():
    df = _records(models=("b", "c", "a"))
    out = aggregate(df.iloc[::-1], "success", ["model"], reps=50)
    assert out["model"].tolist() == ["a", "b", "c"]


def test_aggregate_is_reproducible_with_the_published_defaults():
    df = _records(seeds=range(5), levels=range(6))
    out = aggregate(df, ["success", "normalized_return"], ["model"])
    again = aggregate(df, ["success", "normalized_return"], ["model"], reps=2000, seed=0)
    pd.testing.assert_frame_equal(out, again)
    m = score_matrix(df[df["model"] == "a"], "normalized_return")
    ci = (out["normalized_return_ci_low"][0], out["normalized_return_ci_high"][0])
    assert ci == two_level_ci(m) and ci != two_level_ci(m, seed=1)
    assert ci != two_level_ci(m, reps=2001)
    other = aggregate(df, "normalized_return", ["model"], seed=1)
    assert (other["normalized_return_ci_low"][0], other["normalized_return_ci_high"][0]) == (
        two_level_ci(m, seed=1)
    )


def test_aggregate_iqm_interval_is_of_the_iqm_over_seeds_and_levels():
    """The IQM's interval resamples seeds and levels and takes the IQM of each resample: checked
    against a bootstrap of scipy's trim_mean written here."""
    import scipy.stats

    rng = np.random.default_rng(1)
    df = _records(models=("a",), seeds=range(5), levels=range(8), episodes=1, seed=3)
    df["normalized_return"] = rng.standard_cauchy(len(df)) ** 2  # skewed: IQM far from mean
    out = aggregate(df, "normalized_return", statistic="iqm").iloc[0]
    m = score_matrix(df, "normalized_return")
    rows = rng.integers(0, 5, (4000, 5))[:, :, None]
    cols = rng.integers(0, 8, (4000, 8))[:, None, :]
    values = scipy.stats.trim_mean(m[rows, cols].reshape(4000, -1), 0.25, axis=1)
    low, high = np.percentile(values, [2.5, 97.5])
    assert out["normalized_return_iqm"] == pytest.approx(scipy.stats.trim_mean(m.ravel(), 0.25))
    assert out["normalized_return_ci_low"] == pytest.approx(low, abs=0.3 * values.std())
    assert out["normalized_return_ci_high"] == pytest.approx(high, abs=0.3 * values.std())
    assert out["normalized_return_mean"] == pytest.approx(m.mean())


def test_each_level_its_own_stratum_keeps_the_levels_fixed():
    """stratum_col naming the one level column: every level is its own stratum, so only the
    seeds are resampled (checked against a seeds-only bootstrap written here)."""
    df = _records(models=("a",), seeds=range(6), levels=(10, 11, 12), episodes=3, seed=5)
    out = aggregate(df, "success", stratum_col="level").iloc[0]
    m = score_matrix(df, "success")
    rng = np.random.default_rng(7)
    values = m[rng.integers(0, 6, (4000, 6))].mean(axis=(1, 2))
    low, high = np.percentile(values, [2.5, 97.5])
    assert out["success_ci_low"] == pytest.approx(low, abs=0.3 * values.std())
    assert out["success_ci_high"] == pytest.approx(high, abs=0.3 * values.std())


def test_normalized_return_messages_and_no_division_by_zero(recwarn):
    with pytest.raises(ValueError, match=r"^normalized_return: returns must be finite$"):
        normalized_return(np.nan, 1.0)
    with pytest.raises(
        ValueError, match=r"^normalized_return: an expert return is below its random reference$"
    ):
        normalized_return(1.0, 1.0, 2.0)
    with pytest.raises(
        ValueError,
        match=r"^normalized_return: undefined for a return below an expert return that equals "
        r"the random reference \(0 when none is given\)$",
    ):
        normalized_return(-1.0, 0.0)
    assert np.array_equal(normalized_return([1.0, 2.0], [0.0, 4.0]), [1.0, 0.5])
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]

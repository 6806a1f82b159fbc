"""Every number of ``results.json`` and ``report.md`` against an independent computation.

The records are built by hand (``report_support``): each (seed, level) cell of each condition has
a chosen number of episodes and successes, so every mean and paired difference is known exactly
from the construction; intervals and minimum detectable effects are compared with a bootstrap
written in the tests, within Monte-Carlo tolerance. The report is made by the function the runner
calls (:func:`trajbench.report.write_report`).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from report_support import (
    DARK_ROOM,
    TRAINED,
    Z_MDE,
    Cells,
    bootstrap_difference,
    bootstrap_interval,
    label_of,
    report,
    rows_of,
    simulate,
)
from scipy.stats import trim_mean

SEEDS = (0, 1, 2, 3, 4)
LEVELS = (2, 3, 5, 7, 11, 13, 17, 19)
KMAX = 4
#: (policy, train_context, instruction) -> success probability at K=4 with demonstrations of the
#: level, in the common format.
HEADLINE = {
    (TRAINED, "bursty", "full"): 0.80,
    (TRAINED, "trajectories", "full"): 0.50,
    (TRAINED, "shuffled", "full"): 0.62,
    (TRAINED, "isolated", "full"): 0.47,
    ("no-context", "none", "full"): 0.25,
    ("no-context", "none", "empty"): 0.10,
    ("random", "-", "-"): 0.05,
    ("hashmap", "-", "-"): 0.55,
    ("replay", "-", "-"): 0.30,
    ("expert", "-", "-"): 1.00,
}
#: The unordered modes' own (matched) format: other numbers than in the common format.
MATCHED = {"shuffled": 0.35, "isolated": 0.28}
#: The benchmark's questions at the largest K (the spec, written apart from the report's code):
#: (question, a, b) -> the format b is shown in (a always in the common one).
QUESTIONS = {
    ("support", "bursty", "trajectories"): "common",
    ("support and order", "bursty", "isolated"): "common",
    ("order", "bursty", "shuffled"): "common",
    ("order (matched format)", "bursty", "shuffled"): "matched",
    ("order", "trajectories", "isolated"): "common",
    ("context", "bursty", "none"): "common",
    ("copying", "bursty", "hashmap"): "common",
    ("copying", "bursty", "replay"): "common",
    ("grounding", "none", "none/empty"): "common",
}


def build(rng: np.random.Generator) -> tuple[pd.DataFrame, dict]:
    """Records of every condition, and the cells of each (label, k, support, format, shown)."""
    seed_effect = np.linspace(-0.04, 0.04, len(SEEDS))
    level_effect = np.linspace(-0.25, 0.25, len(LEVELS))
    cells, rows = {}, []

    def add(spec, p, k, support="same", fmt="common", shown=None, decoy=False):
        episodes = rng.integers(6, 13, size=(len(SEEDS), len(LEVELS)))  # unequal cells
        c = simulate(rng, p, seed_effect, level_effect, episodes)
        if decoy:
            c.decoys = rng.binomial(c.episodes - c.successes, 0.5)
        policy, context, instruction = spec
        cells[(label_of(*spec), k, support, fmt, shown or instruction)] = c
        rows.extend(
            rows_of(
                c,
                policy=policy,
                context=context,
                instruction=instruction,
                k=k,
                support=support,
                fmt=fmt,
                eval_instruction=shown,
                seeds=SEEDS,
                levels=LEVELS,
            )
        )

    for spec, p in HEADLINE.items():
        context, trained = spec[1], spec[1] != "-"
        add(spec, 0.3, 0)
        add(spec, 1.0 - p, 1)  # K=1 reverses every effect: the report must read K=4
        add(spec, p, KMAX)
        if trained:
            add(spec, 0.15, KMAX, support="other")  # other levels' demonstrations
        if context in MATCHED:
            add(spec, MATCHED[context], KMAX, fmt="matched")
        if spec[2] in ("full", "-"):  # decoy missions: full-instruction models and references
            add(spec, 0.05, KMAX, shown="decoy", decoy=True)
    return pd.DataFrame(rows), cells


@pytest.fixture(scope="module")
def constructed(tmp_path_factory):
    records, cells = build(np.random.default_rng(7))
    results, text = report(tmp_path_factory.mktemp("numbers"), records)
    return records, cells, results, text


def comparison(results: dict, question: str, a: str, b: str) -> dict:
    found = [
        c for c in results["comparisons"] if (c["question"], c["a"], c["b"]) == (question, a, b)
    ]
    assert len(found) == 1, f"{question}: {a} vs {b} reported {len(found)} times"
    return found[0]


def test_every_question_is_answered_once_and_nothing_else(constructed):
    _, _, results, _ = constructed
    asked = {(c["question"], c["a"], c["b"]) for c in results["comparisons"]}
    assert asked == set(QUESTIONS)


@pytest.mark.parametrize("question", QUESTIONS, ids=lambda q: f"{q[0]}: {q[1]} vs {q[2]}")
def test_a_comparison_is_its_two_means_difference_with_an_independent_ci(constructed, question):
    _, cells, results, _ = constructed
    name, a, b = question
    x = cells[(a, KMAX, "same", "common", _shown(a))].means
    y = cells[(b, KMAX, "same", QUESTIONS[question], _shown(b))].means
    c = comparison(results, name, a, b)
    assert (c["family"], c["eval_split"], c["k"]) == (DARK_ROOM, "test_levels", KMAX)
    assert (c["n_levels"], c["n_seeds"]) == (len(LEVELS), len(SEEDS))
    # Each cell weighs the same, whatever its number of episodes.
    assert c["a_mean"] == pytest.approx(x.mean(), abs=1e-12)
    assert c["b_mean"] == pytest.approx(y.mean(), abs=1e-12)
    assert c["diff"] == pytest.approx(x.mean() - y.mean(), abs=1e-12)
    low, high, se = bootstrap_difference(x, y)
    tol = 0.35 * se + 1e-9  # two bootstraps of 2000 and 4000 replicates: about 0.08 se apart
    assert c["ci_low"] == pytest.approx(low, abs=tol)
    assert c["ci_high"] == pytest.approx(high, abs=tol)
    assert c["mde"] == pytest.approx(Z_MDE * se, rel=0.1)
    assert c["separated"] == (c["ci_low"] > 0 or c["ci_high"] < 0)


def test_the_constructed_effects_have_the_signs_they_were_built_with(constructed):
    _, _, results, _ = constructed
    diffs = {(c["question"], c["a"], c["b"]): c["diff"] for c in results["comparisons"]}
    for (question, a, b), diff in diffs.items():
        if question == "order" and a == "trajectories":
            continue  # 0.50 vs 0.47: built to be close
        assert diff > 0.1, (question, a, b, diff)
    assert (
        diffs[("order (matched format)", "bursty", "shuffled")]
        > diffs[("order", "bursty", "shuffled")]
    )


def test_the_readings_say_what_the_numbers_show(constructed):
    """Every comparison's line in report.md: its means and difference, and 'higher' where its
    independent interval excludes 0 by a margin, 'not distinguishable' with the smallest
    detectable effect where it holds 0 by a margin."""
    _, cells, _, text = constructed
    lines = text.splitlines()
    checked = 0
    for (name, a, b), fmt in QUESTIONS.items():
        x = cells[(a, KMAX, "same", "common", _shown(a))].means
        y = cells[(b, KMAX, "same", fmt, _shown(b))].means
        low, high, se = bootstrap_difference(x, y)
        diff = x.mean() - y.mean()
        means = f"{x.mean():.2f} vs {y.mean():.2f}"
        found = [ln for ln in lines if f"`{a}`" in ln and f"`{b}`" in ln and means in ln]
        if name == "grounding":
            found = [ln for ln in found if "Grounding check" in ln]
        else:
            found = [ln for ln in found if ln.startswith(f"- *{name}*")]
        assert len(found) == 1, (name, a, b, found)
        assert f"difference {diff:+.2f} [" in found[0]
        if low > 0.5 * se or high < -0.5 * se:
            word = "higher" if diff > 0 else "lower"
            assert f"`{a}` is {word} than `{b}`" in found[0]
            checked += 1
        elif low < -0.5 * se and high > 0.5 * se:
            assert "not distinguishable" in found[0]
            mde = float(re.search(r"detect a difference of (\d\.\d\d)", found[0]).group(1))
            assert mde == pytest.approx(Z_MDE * se, abs=0.1 * Z_MDE * se + 0.006)
            checked += 1
    assert checked >= len(QUESTIONS) - 2


def test_condition_rows_weigh_cells_equally_with_independent_intervals(constructed):
    """results.json's conditions: mean success over cells (not episodes), its seeds-and-levels
    CI, the normalized-return IQM of the cells with its CI, and decoy success."""
    _, cells, results, _ = constructed
    by_key = {}
    for row in results["conditions"]:
        key = (row["label"], row["k"], row["support"], row["format"], row["eval_instruction"])
        assert key not in by_key
        by_key[key] = row
    assert set(by_key) == set(cells)
    for key, c in cells.items():
        row = by_key[key]
        m = c.means
        assert row["success_mean"] == pytest.approx(m.mean(), abs=1e-12)
        assert row["n_episodes"] == int(c.episodes.sum())
        low, high, se = bootstrap_interval(m)
        assert row["success_ci_low"] == pytest.approx(low, abs=0.35 * se + 1e-9)
        assert row["success_ci_high"] == pytest.approx(high, abs=0.35 * se + 1e-9)
        assert row["return_iqm"] == pytest.approx(trim_mean(c.returns.ravel(), 0.25), abs=1e-12)
        low, high, se = bootstrap_interval(c.returns, statistic="iqm")
        assert row["return_ci_low"] == pytest.approx(low, abs=0.35 * se + 1e-9)
        assert row["return_ci_high"] == pytest.approx(high, abs=0.35 * se + 1e-9)
        if c.decoys is not None:
            assert row["decoy_success_mean"] == pytest.approx(
                (c.decoys / c.episodes).mean(), abs=1e-12
            )
        else:
            assert "decoy_success_mean" not in row
    # The construction makes episode weighting visibly different for some condition.
    bursty = cells[("bursty", KMAX, "same", "common", "full")]
    assert abs(bursty.successes.sum() / bursty.episodes.sum() - bursty.means.mean()) > 1e-3


def test_the_k_shot_table_shows_every_conditions_mean_and_interval(constructed):
    _, _, results, text = constructed
    for row in results["conditions"]:
        if row["eval_instruction"] == "decoy":
            continue
        cell = (
            f"{row['success_mean']:.2f} [{row['success_ci_low']:.2f}, {row['success_ci_high']:.2f}]"
        )
        line = f"| {row['label']} | {row['format']} | {row['support']} |"
        assert any(ln.startswith(line) and cell in ln for ln in text.splitlines()), (line, cell)


def _shown(label: str) -> str:
    """The eval_instruction of a label's headline records (its training instruction)."""
    if "/" in label:
        return label.split("/")[1]
    return "full" if label in ("bursty", "trajectories", "shuffled", "isolated", "none") else "-"


# -- saturation ------------------------------------------------------------------------------------
def test_a_table_is_marked_saturated_only_where_its_best_entries_reach_the_ceiling(tmp_path):
    """Two families: on one the three best entries succeed on every episode (saturated), on the
    other the best is at 0.6 (not)."""
    rng = np.random.default_rng(3)
    n = np.full((len(SEEDS), len(LEVELS)), 4)
    rows = []
    for family, top in ((DARK_ROOM, 1.0), ("trajbench/DarkKeyToDoor-v0", 0.6)):
        for spec, p in (
            ((TRAINED, "bursty", "full"), top),
            ((TRAINED, "shuffled", "full"), top),
            (("hashmap", "-", "-"), top),
            (("random", "-", "-"), 0.1),
            (("expert", "-", "-"), 1.0),
        ):
            zero = np.zeros(len(SEEDS))
            cells = simulate(rng, p, zero, np.zeros(len(LEVELS)), n)
            for k in (0, KMAX):
                rows += rows_of(
                    cells,
                    policy=spec[0],
                    context=spec[1],
                    instruction=spec[2],
                    family=family,
                    k=k,
                    seeds=SEEDS,
                    levels=LEVELS,
                )
    results, text = report(tmp_path, pd.DataFrame(rows))
    assert results["saturated"] == [
        {"group": "g", "family": DARK_ROOM, "eval_split": "test_levels"}
    ]
    headers = [ln for ln in text.splitlines() if ln.startswith("### trajbench/")]
    assert sorted(headers) == [
        "### trajbench/DarkKeyToDoor-v0 — test levels",
        "### trajbench/DarkRoom-v0 — test levels — saturated at this preset",
    ]


def test_cells_of_other_episode_counts_are_not_weighted_by_episodes(tmp_path):
    """By hand: seed 0 has 1 of 1 episode on level 1 and 0 of 9 on level 2 -> cell mean 0.5,
    episode mean 0.1."""
    cells = Cells(np.array([[1, 9]]), np.array([[1, 0]]), returns=np.array([[0.2, 0.4]]))
    rows = rows_of(cells, policy="hashmap", k=2, seeds=(0,), levels=(1, 2))
    results, _ = report(tmp_path, pd.DataFrame(rows))
    (row,) = results["conditions"]
    assert row["success_mean"] == pytest.approx(0.5)
    assert row["return_iqm"] == pytest.approx(0.3)


# -- backbones -------------------------------------------------------------------------------------
def test_backbone_comparisons_read_the_training_instruction_only(tmp_path):
    """Two backbones evaluated with and without decoy missions: the *in context* and
    *architecture* answers are the differences of the non-decoy cells (decoys: all failures)."""
    rng = np.random.default_rng(11)
    n = np.full((len(SEEDS), len(LEVELS)), 4)
    zero_s, zero_l = np.zeros(len(SEEDS)), np.zeros(len(LEVELS))
    rows, cells = [], {}
    for backbone, p in (("llama", 0.8), ("lstm", 0.5)):
        for support, shown, q in (
            ("same", "full", p),
            ("other", "full", 0.2),
            ("same", "decoy", 0),
        ):
            c = simulate(rng, q, zero_s, zero_l, n)
            if shown == "decoy":
                c.decoys = np.zeros_like(n)
            cells[(backbone, support, shown)] = c.means
            rows += rows_of(
                c,
                policy=TRAINED,
                context="bursty",
                instruction="full",
                k=KMAX,
                support=support,
                eval_instruction=shown,
                seeds=SEEDS,
                levels=LEVELS,
                backbone=backbone,
            )
    results, _ = report(tmp_path, pd.DataFrame(rows))
    for backbone in ("llama", "lstm"):
        lab = f"bursty [{backbone}]"
        c = comparison(results, "in context", f"{lab}, same level", f"{lab}, other levels")
        assert c["a_mean"] == pytest.approx(cells[(backbone, "same", "full")].mean())
        assert c["b_mean"] == pytest.approx(cells[(backbone, "other", "full")].mean())
    c = comparison(results, "architecture", "bursty [llama]", "bursty [lstm]")
    want = cells[("llama", "same", "full")].mean() - cells[("lstm", "same", "full")].mean()
    assert c["diff"] == pytest.approx(want)

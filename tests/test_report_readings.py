"""How the report words a comparison (``trajbench.report.readings``): a null whose sides never
vary claims no detectable difference; one policy scored whole and shuffled is named by format.

And what it says of its intervals (``trajbench.report.intervals``), computed at the run's own
design read from the right records: the trained conditions, demonstrations of the level, the
common format, the true mission, the largest K. Records that must not count are planted beside
them with other seeds, levels and episode counts; the design and the records it is estimated from
are picked here by hand. Also: ``results.json`` carries a condition's ``p_bursty``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from report_support import TRAINED, Cells, report, rows_of

from trajbench.coverage import Design, estimate_records, simulate
from trajbench.report.intervals import REPLICATES, interval_note, note, run_design
from trajbench.report.questions import ask
from trajbench.report.readings import order_sentence, sentence
from trajbench.report.tables import Comparison, compare_sides, labelled


def comparison(**kw) -> Comparison:
    base = dict(question="order", a="x", b="y", family="f", eval_split="test_levels", k=4)
    base.update(a_mean=0.0, b_mean=0.0, diff=0.0, ci_low=0.0, ci_high=0.0, mde=0.0)
    return Comparison(**{**base, "n_levels": 6, "n_seeds": 5, **kw})


def test_a_null_without_variation_claims_no_detectable_difference():
    flat = sentence(comparison())
    assert "do not differ in any cell" in flat and "would detect a difference of" not in flat
    assert "0.00 vs 0.00" in flat
    contrast = sentence(comparison(contrast="(a - b) - (c - d)"))
    assert "no variation" in contrast and "would detect 0" not in contrast
    varied = sentence(comparison(a_mean=0.1, diff=0.1, ci_low=-0.05, ci_high=0.3, mde=0.2))
    assert "not distinguishable" in varied and "would detect a difference of 0.20" in varied


def test_every_reading_is_worded_exactly():
    """The five sentences, whole: a flat null, a null with variation (even at a difference of
    exactly 0), a separated difference either way, and a contrast's three verdicts."""
    assert sentence(comparison(a_mean=0.25, b_mean=0.25)) == (
        "`x` and `y` do not differ in any cell: 0.25 vs 0.25; with no variation, this run cannot "
        "say what difference it would detect."
    )
    at_zero = comparison(a_mean=0.3, b_mean=0.3, ci_low=-0.1, ci_high=0.1, mde=0.14)
    assert sentence(at_zero) == (
        "`x` and `y` are not distinguishable: 0.30 vs 0.30, difference +0.00 [-0.10, +0.10]; "
        "this run would detect a difference of 0.14 or more (80% power)."
    )
    up = comparison(a_mean=0.6, b_mean=0.2, diff=0.4, ci_low=0.25, ci_high=0.55, mde=0.1)
    assert sentence(up) == "`x` is higher than `y`: 0.60 vs 0.20, difference +0.40 [+0.25, +0.55]."
    down = comparison(a_mean=0.2, b_mean=0.6, diff=-0.4, ci_low=-0.55, ci_high=-0.25, mde=0.1)
    assert sentence(down) == "`x` is lower than `y`: 0.20 vs 0.60, difference -0.40 [-0.55, -0.25]."
    c = "(a - b) - (c - d)"
    assert sentence(comparison(contrast=c)) == (
        f"{c} = +0.00 [+0.00, +0.00]: 0 in every cell: no variation to detect a difference against."
    )
    assert sentence(comparison(contrast=c, ci_low=-0.2, ci_high=0.2, mde=0.3)) == (
        f"{c} = +0.00 [-0.20, +0.20]: not distinguishable from 0; this run would detect 0.30 or "
        "more (80% power)."
    )
    assert sentence(comparison(contrast=c, diff=0.3, ci_low=0.1, ci_high=0.5, mde=0.2)) == (
        f"{c} = +0.30 [+0.10, +0.50]: positive, the CI excludes 0."
    )
    assert sentence(comparison(contrast=c, diff=-0.3, ci_low=-0.5, ci_high=-0.1, mde=0.2)) == (
        f"{c} = -0.30 [-0.50, -0.10]: negative, the CI excludes 0."
    )


def records(success: dict[tuple[str, str], list[float]]) -> pd.DataFrame:
    """One policy's records: per (support, format), one success per (seed, level) cell."""
    rows = []
    for (support, fmt), values in success.items():
        for i, s in enumerate(values):
            rows.append(
                dict(
                    label="lm", policy="lm", support=support, format=fmt, family="f",
                    eval_split="test_levels", k=4, seed=i % 2, level=i // 2, episode=0,
                    success=float(s), group="g",
                )
            )  # fmt: skip
    return pd.DataFrame(rows)


def test_one_policy_whole_vs_shuffled_is_named_by_format_and_its_difference_is_the_means():
    whole, shuffled = [1, 1, 0, 1, 1, 0, 1, 1], [0, 1, 0, 0, 1, 0, 0, 0]
    recs = records({("same", "common"): whole, ("same", "matched"): shuffled})
    a = {"label": "lm", "support": "same", "format": "common"}
    c = compare_sides(recs, "order", [a], [{**a, "format": "matched"}])
    assert (c.a, c.b) == ("lm (common format)", "lm (matched format)")
    assert np.isclose(c.diff, np.mean(whole) - np.mean(shuffled))
    # Supports that differ name the support only.
    recs = records({("same", "common"): whole, ("other", "common"): shuffled})
    c = compare_sides(recs, "support", [a], [{**a, "support": "other"}])
    assert (c.a, c.b) == ("lm, same level", "lm, other levels")


# -- the intervals' note ---------------------------------------------------------------------------
INTERVAL_LEVELS = (2, 3, 5, 7)


def cells(rng, seeds: int, levels: int, fewest: int) -> Cells:
    """Cells of 6 to 9 episodes but one of ``fewest``; successes at random."""
    episodes = rng.integers(6, 10, size=(seeds, levels))
    episodes[-1, -1] = fewest
    return Cells(episodes, rng.binomial(episodes, 0.5), np.zeros((seeds, levels)))


def trained(rng, context: str, seeds: int, levels: int, fewest: int, **kw) -> list[dict]:
    return rows_of(
        cells(rng, seeds, levels, fewest),
        policy=TRAINED,
        context=context,
        instruction="full",
        seeds=tuple(range(seeds)),
        levels=INTERVAL_LEVELS[:levels],
        **kw,
    )


def planted(rng) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The records (labelled), and those the design must be read from."""
    counted = [
        *trained(rng, "bursty", 3, 4, 5, k=4),
        *trained(rng, "shuffled", 2, 3, 6, k=4),
    ]
    ignored = [
        *trained(rng, "bursty", 4, 4, 3, k=1),  # not the largest K
        *trained(rng, "bursty", 5, 4, 2, k=4, support="other"),
        *trained(rng, "shuffled", 5, 4, 2, k=4, fmt="matched"),
        *trained(rng, "bursty", 5, 4, 1, k=4, eval_instruction="decoy"),
        *rows_of(  # a reference, not trained
            cells(rng, 5, 4, 1),
            policy="hashmap",
            k=4,
            seeds=tuple(range(5)),
            levels=INTERVAL_LEVELS,
        ),
    ]
    records = labelled(pd.DataFrame(counted + ignored))
    return records, labelled(pd.DataFrame(counted))


def test_the_design_is_read_from_the_trained_same_level_common_records_at_the_largest_k():
    records, counted = planted(np.random.default_rng(0))
    design, variances = run_design(records)
    # The most seeds and levels of a counted condition, the fewest episodes of a counted cell.
    assert design == Design(n_seeds=3, n_levels=4, n_episodes=5)
    want = estimate_records(counted.rename(columns={"label": "condition"}), 5)
    assert variances == want


def test_no_design_without_a_trained_condition_of_two_seeds_and_two_levels():
    rng = np.random.default_rng(1)
    for seeds, levels, found in [(2, 2, True), (1, 4, False), (3, 1, False)]:
        records = labelled(pd.DataFrame(trained(rng, "bursty", seeds, levels, 6, k=4)))
        assert (run_design(records) is not None) is found, (seeds, levels)
    reference = rows_of(cells(rng, 3, 3, 6), policy="hashmap", k=4, levels=INTERVAL_LEVELS[:3])
    assert run_design(labelled(pd.DataFrame(reference))) is None
    assert interval_note(labelled(pd.DataFrame(reference))) == ""


@pytest.mark.parametrize("seed", [0, 3])
def test_the_note_is_the_simulation_at_that_design(seed):
    records, counted = planted(np.random.default_rng(2))
    design = Design(n_seeds=3, n_levels=4, n_episodes=5)
    variances = estimate_records(counted.rename(columns={"label": "condition"}), 5)
    want = note(design, variances, simulate(design, variances, REPLICATES, 300, seed=seed))
    assert interval_note(records, seed=seed) == want
    assert want.startswith(
        f"At this run's design (3 seeds, 4 levels, 5 episodes per cell; seed sd "
        f"{variances.seed_sd:.3f}"
    )
    assert f"a simulation of {REPLICATES} runs" in want


def test_results_carry_each_conditions_p_bursty(tmp_path):
    rng = np.random.default_rng(3)
    rows = pd.DataFrame(
        trained(rng, "bursty", 2, 2, 6, k=4) + trained(rng, "shuffled", 2, 2, 6, k=4)
    )
    rows.loc[rows["train_context"] == "bursty", "p_bursty"] = 0.25
    results, _ = report(tmp_path, rows, {})
    by_label = {c["train_context"]: c["p_bursty"] for c in results["conditions"]}
    assert by_label == {"bursty": 0.25, "shuffled": None}
    assert isinstance(by_label["bursty"], float)


@pytest.mark.parametrize("asked, said", [("order", True), ("copying", False)])
def test_the_order_gaps_meaning_follows_an_order_reading_only(tmp_path, asked, said):
    """DarkSequence declares what its order gap measures: the report says it once, after the
    readings, where the group asked an order question, and not where it asked another."""
    rng = np.random.default_rng(4)
    family = "trajbench/DarkSequence-v0"
    rows = [
        *trained(rng, "bursty", 2, 2, 6, k=4, family=family),
        *trained(rng, "shuffled", 2, 2, 6, k=4, family=family),
        *rows_of(cells(rng, 2, 2, 6), policy="hashmap", k=4, family=family, seeds=(0, 1),
                 levels=INTERVAL_LEVELS[:2]),
    ]  # fmt: skip
    question = ask(asked, "bursty", "shuffled" if asked == "order" else "hashmap")
    _, text = report(tmp_path, pd.DataFrame(rows), {"g": (question,)})
    lines = text.splitlines()
    meaning = order_sentence(family)
    assert meaning and lines.count(meaning) == int(said)
    if said:
        at = lines.index(meaning)
        assert lines[at + 1] == "" and lines[at - 1] == ""
        assert lines[at - 2].startswith("- *order*: ")

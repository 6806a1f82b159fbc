"""How the report words a comparison (``trajbench.report.readings``): a null whose sides never
vary claims no detectable difference; one policy scored whole and shuffled is named by format."""

from __future__ import annotations

import numpy as np
import pandas as pd

from trajbench.report.readings import sentence
from trajbench.report.tables import Comparison, compare_sides


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

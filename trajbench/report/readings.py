"""How a report words its comparisons: one sentence per declared question's answer.

The comparisons themselves are the preset's declared questions (:mod:`trajbench.report.questions`),
answered at every K they are asked at; nothing here chooses a condition. A separated difference is
written as higher or lower, anything else as not distinguishable next to the smallest difference
the run could have detected. An ordered-vs-shuffled gap is worded by what it measures on the
family (:func:`trajbench.report.classes.order_gap`).
"""

from __future__ import annotations

import numpy as np

from ..families import make_env
from .classes import ORDER_GAPS, order_gap
from .tables import Comparison

#: Questions whose gap is an ordered-vs-unordered contrast (worded by the family's order gap).
ORDER_QUESTIONS = ("order", "order (matched format)")


def sentence(c: Comparison) -> str:
    """One line saying what the comparison shows, with its CI and, for a null, its power."""
    diff = f"{c.diff:+.2f} [{c.ci_low:+.2f}, {c.ci_high:+.2f}]"
    # No variation between the sides' cells (both 0 everywhere, say): no power to speak of.
    flat = c.mde == 0 and c.diff == 0
    if c.contrast:
        verdict = (
            ("positive" if c.diff > 0 else "negative") + ", the CI excludes 0"
            if c.separated
            else "0 in every cell: no variation to detect a difference against"
            if flat
            else f"not distinguishable from 0; this run would detect {c.mde:.2f} or more "
            "(80% power)"
        )
        return f"{c.contrast} = {diff}: {verdict}."
    means = f"{c.a_mean:.2f} vs {c.b_mean:.2f}"
    if c.separated:
        word = "higher" if c.diff > 0 else "lower"
        return f"`{c.a}` is {word} than `{c.b}`: {means}, difference {diff}."
    if flat:
        return (
            f"`{c.a}` and `{c.b}` do not differ in any cell: {means}; with no variation, this "
            "run cannot say what difference it would detect."
        )
    return (
        f"`{c.a}` and `{c.b}` are not distinguishable: {means}, difference {diff}; this run "
        f"would detect a difference of {c.mde:.2f} or more (80% power)."
    )


def guess_reference(family: str, levels: list[int]) -> float | None:
    """Mean over ``levels`` of the chance that acting on a random object satisfies the mission
    (BabyAI families; None elsewhere)."""
    env = make_env(family, levels="all")
    try:
        u = env.unwrapped
        if not hasattr(u, "mission_chance"):
            return None
        chances = []
        for level in levels:
            env.reset(seed=0, options={"level": int(level)})
            chances.append(u.mission_chance())
        return float(np.mean(chances))
    finally:
        env.close()


def order_sentence(family: str) -> str:
    """What an ordered-vs-shuffled gap measures on ``family`` ("" where it declares nothing)."""
    gap = order_gap(family)
    return f"On {family.split('/')[-1]} the *order* gap is {ORDER_GAPS[gap]}." if gap else ""

"""The benchmark's questions, asked of one group's records as paired comparisons.

At the largest K, with demonstrations of the level itself, in the common format and the
training instruction:

- *support*: ``bursty`` vs ``trajectories`` (same structure, other levels), and ``bursty`` vs
  ``isolated`` (other levels and no order: the published contrast);
- *order*: ``bursty`` vs ``shuffled`` (in the common and in shuffled's own format) and
  ``trajectories`` vs ``isolated``;
- *context*: ``bursty`` vs ``none``;
- *copying*: the best trained condition (every backbone's, where a group compares backbones) vs
  each copy baseline (``hashmap``, ``replay``);
- *grounding* (groups with an instruction ablation): ``none`` with full vs empty missions;
- *in context* and *architecture* (groups that train several backbones): each model with
  demonstrations of the level vs of other levels (the no-support score), and each pair of models.
"""

from __future__ import annotations

from dataclasses import replace
from itertools import combinations

import numpy as np
import pandas as pd

from trajbench.contexts.modes import BURSTY, ISOLATED, NONE, SHUFFLED, TRAJECTORIES
from trajbench.records import COMMON, COPY_BASELINES, DECOY, EVAL_INSTRUCTION, EVAL_SPLIT, MATCHED

from ..families import make_env
from .tables import Comparison, compare, is_trained

QUESTIONS = (
    ("support", BURSTY, TRAJECTORIES, COMMON),
    ("support and order", BURSTY, ISOLATED, COMMON),
    ("order", BURSTY, SHUFFLED, COMMON),
    ("order", BURSTY, SHUFFLED, MATCHED),
    ("order", TRAJECTORIES, ISOLATED, COMMON),
    ("context", BURSTY, NONE, COMMON),
)


def headline(records: pd.DataFrame) -> pd.DataFrame:
    """The records every question reads: largest K, same-level support, training instruction."""
    kmax = int(records["k"].max())
    return records[
        (records["k"] == kmax)
        & (records["support"] == "same")
        & (records[EVAL_INSTRUCTION] != DECOY)
    ]


def comparisons(records: pd.DataFrame) -> list[Comparison]:
    """Every question's comparison that this group's labelled records can answer."""
    out = []
    for (_family, _split), rows in headline(records).groupby(["family", EVAL_SPLIT]):
        base = {"family": _family, EVAL_SPLIT: _split}
        for question, a, b, fmt in QUESTIONS:
            c = compare(
                rows,
                question if fmt == COMMON else f"{question} ({fmt} format)",
                {**base, "label": a, "format": COMMON},
                {**base, "label": b, "format": fmt},
            )
            out.append(c)
        # Copying is the bar for the best trained condition, and for every backbone's model
        # where the group compares backbones.
        common = rows[rows["format"] == COMMON]
        best = best_trained(common)
        bar = [best] if best is not None else []
        if _backbones(rows) > 1:
            bar = sorted(common.loc[is_trained(common), "label"].unique())
        for label in bar:
            for copy in COPY_BASELINES:
                out.append(
                    compare(
                        rows,
                        "copying",
                        {**base, "label": label, "format": COMMON},
                        {**base, "label": copy, "format": COMMON},
                    )
                )
        out.append(
            compare(
                rows,
                "grounding",
                {**base, "label": NONE, "format": COMMON},
                {**base, "label": "none/empty", "format": COMMON},
            )
        )
    out += architectures(records)
    return [c for c in out if c is not None]


def architectures(records: pd.DataFrame) -> list[Comparison | None]:
    """Where the records hold models of several backbones, at the largest K in the common format:
    each model's *in context* gain (demonstrations of the level vs of other levels) and each pair
    of models on demonstrations of the level (*architecture*)."""
    if _backbones(records) < 2:
        return []
    trained = is_trained(records)
    kmax = int(records["k"].max())
    at = records[
        (records["k"] == kmax)
        & (records["format"] == COMMON)
        & (records[EVAL_INSTRUCTION] != "wrong")
    ]
    out: list[Comparison | None] = []
    for (family, split), rows in at.groupby(["family", EVAL_SPLIT]):
        base = {"family": family, EVAL_SPLIT: split}
        labels = sorted(rows.loc[trained.loc[rows.index], "label"].unique())
        for label in labels:
            c = compare(
                rows,
                "in context",
                {**base, "label": label, "support": "same"},
                {**base, "label": label, "support": "other"},
            )
            out.append(c and replace(c, a=f"{label}, same level", b=f"{label}, other levels"))
        for a, b in combinations(labels, 2):
            out.append(
                compare(
                    rows,
                    "architecture",
                    {**base, "label": a, "support": "same"},
                    {**base, "label": b, "support": "same"},
                )
            )
    return out


def _backbones(records: pd.DataFrame) -> int:
    """How many backbones the trained models among ``records`` have."""
    return records.loc[is_trained(records), "backbone"].nunique()


def best_trained(rows: pd.DataFrame) -> str | None:
    """The trained condition with the highest mean success among ``rows``."""
    trained = rows[is_trained(rows)]
    if trained.empty:
        return None
    return str(trained.groupby("label")["success"].mean().idxmax())


def sentence(c: Comparison) -> str:
    """One line saying what the comparison shows, with its CI and, for a null, its power."""
    diff = f"{c.diff:+.2f} [{c.ci_low:+.2f}, {c.ci_high:+.2f}]"
    means = f"{c.a_mean:.2f} vs {c.b_mean:.2f}"
    if c.separated:
        word = "higher" if c.diff > 0 else "lower"
        return f"`{c.a}` is {word} than `{c.b}`: {means}, difference {diff}."
    return (
        f"`{c.a}` and `{c.b}` are not distinguishable: {means}, difference {diff}; this run "
        f"would detect a difference of {c.mde:.2f} or more (80% power)."
    )


def grounded(cs: list[Comparison], family: str, split: str) -> bool | None:
    """Whether ``none`` with full missions beats ``none`` with empty ones (disjoint CIs): the
    model can read its missions. None where the group has no such pair."""
    for c in cs:
        if c.question == "grounding" and (c.family, c.eval_split) == (family, split):
            return c.separated and c.diff > 0
    return None


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

"""The numbers of a report: one row per condition, and the paired comparisons that answer the
benchmark's questions. Everything here is computed from the evaluation records; nothing is typed.

A *condition* is a policy (with its backbone) under a training condition evaluated one way:
``CONDITION`` columns.
Its success is the mean over (seed, level) cells with a 95% two-level bootstrap CI (seeds and
levels; :func:`trajbench.bootstrap.two_level_ci`); normalized return is its IQM (continuous cells).
A *comparison* is the paired difference of two conditions on their shared levels and seeds
(:func:`trajbench.bootstrap.paired_difference`), with the smallest difference the run could have
detected at 80% power (:func:`trajbench.bootstrap.minimum_detectable_effect`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from trajbench.records import (
    DECOY_SUCCESS,
    EVAL_INSTRUCTION,
    EVAL_SPLIT,
    EXPERT,
    NORMALIZED_RETURN,
    REFERENCES,
    TRAIN_CONTEXT,
)

from ..bootstrap import minimum_detectable_effect, paired_difference
from ..metrics import aggregate, score_frame

CONDITION = [
    "group",
    "policy",
    "backbone",
    TRAIN_CONTEXT,
    "instruction",
    "p_bursty",
    "family",
    EVAL_SPLIT,
    "k",
    "support",
    "format",
    EVAL_INSTRUCTION,
]
#: A table whose best three entries (the expert excluded) all reach this is saturated.
SATURATION = 0.97


def is_trained(records: pd.DataFrame) -> pd.Series:
    """Which records are of a model trajbench trained (not a reference or an outside policy)."""
    return ~records["policy"].isin(REFERENCES) & (records[TRAIN_CONTEXT] != "-")


def labelled(records: pd.DataFrame) -> pd.DataFrame:
    """``records`` with ``p_bursty`` as a label ('-' where a condition does not mix modes) and a
    ``label`` column naming the condition's policy or training context, and its backbone where
    the records hold models of several (``bursty [mamba2]``). Records from before backbones were
    recorded get ``backbone`` '-'."""
    if "backbone" not in records:
        records = records.assign(backbone="-")
    p = records["p_bursty"].map(lambda v: "-" if pd.isna(v) else f"{v:g}")
    trained = is_trained(records)
    several = records.loc[trained, "backbone"].nunique() > 1
    label = np.where(
        trained,
        records[TRAIN_CONTEXT]
        + np.where(records["instruction"] != "full", "/" + records["instruction"], "")
        + np.where(p != "-", " p=" + p, "")
        + (" [" + records["backbone"] + "]" if several else ""),
        records["policy"],
    )
    return records.assign(p_bursty=p, label=label)


def conditions_table(records: pd.DataFrame) -> pd.DataFrame:
    """One row per condition: mean success [CI], normalized-return IQM [CI], decoy success."""
    records = labelled(records)
    keys = [*CONDITION, "label"]
    table = aggregate(records, "success", keys)
    ret = aggregate(records, NORMALIZED_RETURN, keys, statistic="iqm")
    table = table.merge(
        ret[
            [
                *keys,
                "normalized_return_iqm",
                "normalized_return_ci_low",
                "normalized_return_ci_high",
            ]
        ].rename(columns=lambda c: c.replace(NORMALIZED_RETURN, "return")),
        on=keys,
    )
    if DECOY_SUCCESS in records and records[DECOY_SUCCESS].notna().any():
        # Records without a decoy hold None beside True/False: an object column until cast.
        shown = records[records[DECOY_SUCCESS].notna()]
        shown = shown.assign(decoy_success=shown[DECOY_SUCCESS].astype(float))
        decoy = aggregate(shown, DECOY_SUCCESS, keys)
        cols = ["decoy_success_mean", "decoy_success_ci_low", "decoy_success_ci_high"]
        table = table.merge(decoy[[*keys, *cols]], on=keys, how="left")
    params = records.groupby(keys)["model_params"].max().reset_index()
    return table.merge(params, on=keys)


@dataclass
class Comparison:
    """The paired difference ``a - b`` in mean success of two conditions on shared cells."""

    question: str
    a: str
    b: str
    family: str
    eval_split: str
    k: int
    a_mean: float
    b_mean: float
    diff: float
    ci_low: float
    ci_high: float
    mde: float
    """The smallest true difference this comparison detects with 80% power at 95% confidence."""
    n_levels: int
    n_seeds: int

    @property
    def separated(self) -> bool:
        return self.ci_low > 0 or self.ci_high < 0

    def to_dict(self) -> dict:
        return {**asdict(self), "separated": self.separated}


def compare(
    records: pd.DataFrame, question: str, a: dict, b: dict, seed: int = 0
) -> Comparison | None:
    """The paired comparison of the conditions selected by ``a`` and ``b`` (column -> value,
    over labelled records), or None when either is missing or they share no level."""
    fa, fb = _frame(records, a), _frame(records, b)
    if fa is None or fb is None:
        return None
    shared = fa.columns.intersection(fb.columns)
    if not len(shared):
        return None
    x, y = fa[shared].to_numpy(float), fb[shared].to_numpy(float)
    same = list(fa.index) == list(fb.index)
    d = paired_difference(x, y, same_seeds=same, seed=seed)
    first = records[_mask(records, a)].iloc[0]
    return Comparison(
        question=question,
        a=str(a.get("label")),
        b=str(b.get("label")),
        family=str(first["family"]),
        eval_split=str(first[EVAL_SPLIT]),
        k=int(first["k"]),
        a_mean=float(x.mean()),
        b_mean=float(y.mean()),
        diff=d.mean,
        ci_low=d.low,
        ci_high=d.high,
        mde=minimum_detectable_effect(d.se),
        n_levels=len(shared),
        n_seeds=min(len(fa), len(fb)),
    )


def _mask(records: pd.DataFrame, where: dict) -> pd.Series:
    mask = pd.Series(True, index=records.index)
    for col, value in where.items():
        mask &= records[col] == value
    return mask


def _frame(records: pd.DataFrame, where: dict) -> pd.DataFrame | None:
    sel = records[_mask(records, where)]
    return None if sel.empty else score_frame(sel, "success")


def saturated(rows: pd.DataFrame) -> bool:
    """Whether the best three entries of a table (the expert excluded) all reach 0.97."""
    top = rows[rows["policy"] != EXPERT].nlargest(3, "success_mean")
    return len(top) > 0 and bool((top["success_mean"] >= SATURATION).all())

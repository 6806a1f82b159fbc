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
    COMMON,
    DECODER,
    DECOY,
    DECOY_SUCCESS,
    EVAL_INSTRUCTION,
    EVAL_SPLIT,
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
#: A table whose best trained condition reaches this on the decoder scale is saturated.
SATURATION = 0.95
#: The columns that name one table of a report: references and models in it share them.
TABLE = ["group", "family", EVAL_SPLIT, "k", "support", "format"]


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
    contrast: str = ""
    """How the report writes the contrast ("" for ``a - b``)."""
    group: str = ""
    """The preset group whose records it compares."""

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
    return compare_sides(records, question, [a], [b], seed=seed)


def compare_sides(
    records: pd.DataFrame,
    question: str,
    a: list[dict],
    b: list[dict],
    scale: float = 1.0,
    contrast: str = "",
    seed: int = 0,
) -> Comparison | None:
    """``scale`` times the paired difference of two sides' mean success, each side the cell-wise
    mean of the conditions its selections (column -> value, over labelled records) pick.

    Levels are those every condition shares. A side of several conditions needs them to share
    their seeds (trained conditions of one group do), so its cells average seed by seed; the two
    sides are resampled together where they share their seeds too. None when a condition is
    missing, the conditions share no level, or a side's seeds differ.
    """
    frames = [[_frame(records, w) for w in side] for side in (a, b)]
    if any(f is None for side in frames for f in side):
        return None
    shared = frames[0][0].columns
    for f in (f for side in frames for f in side):
        shared = shared.intersection(f.columns)
    if not len(shared):
        return None
    sides = []
    for side in frames:
        if any(list(f.index) != list(side[0].index) for f in side):
            return None
        sides.append(sum(f[shared].to_numpy(float) for f in side) / len(side))
    x, y = sides
    same = list(frames[0][0].index) == list(frames[1][0].index)
    d = paired_difference(x, y, same_seeds=same, seed=seed)
    first = records[_mask(records, a[0])].iloc[0]
    return Comparison(
        group=str(first.get("group", "")),
        question=question,
        a=_name(a, b),
        b=_name(b, a),
        family=str(first["family"]),
        eval_split=str(first[EVAL_SPLIT]),
        k=int(first["k"]),
        a_mean=float(x.mean()),
        b_mean=float(y.mean()),
        diff=scale * d.mean,
        ci_low=min(scale * d.low, scale * d.high),
        ci_high=max(scale * d.low, scale * d.high),
        mde=minimum_detectable_effect(abs(scale) * d.se),
        n_levels=len(shared),
        n_seeds=min(len(f) for side in frames for f in side),
        contrast=contrast,
    )


def _name(side: list[dict], other: list[dict]) -> str:
    """A side's conditions, with their support where the two sides' supports differ, and their
    format where only the format tells the sides apart (one policy, whole vs shuffled)."""
    labels = [str(w.get("label")) for w in side]
    name = labels[0] if len(labels) == 1 else f"mean({', '.join(labels)})"
    support = side[0].get("support")
    if support is not None and support != other[0].get("support"):
        name += ", same level" if support == "same" else ", other levels"
    fmt = side[0].get("format")
    if fmt != other[0].get("format") and labels == [str(w.get("label")) for w in other]:
        name += f" ({fmt} format)"
    return name


def _mask(records: pd.DataFrame, where: dict) -> pd.Series:
    mask = pd.Series(True, index=records.index)
    for col, value in where.items():
        mask &= records[col] == value
    return mask


def _frame(records: pd.DataFrame, where: dict) -> pd.DataFrame | None:
    sel = records[_mask(records, where)]
    return None if sel.empty else score_frame(sel, "success")


def decoder_scale(score: float, floor: float, ceiling: float) -> float:
    """``(score - floor) / (ceiling - floor)``: 0 at ``floor`` (random), 1 at ``ceiling`` (the
    decoder); NaN where the ceiling does not clear the floor.

    Example:
        >>> decoder_scale(0.6, 0.2, 1.0)
        0.5
    """
    span = ceiling - floor
    return float((score - floor) / span) if span > 0 else float("nan")


def scale_of(rows: pd.DataFrame) -> tuple[float, float, str]:
    """The (floor, ceiling, ceiling's name) of one table's rows: ``random`` (0 where absent) and
    the ``decoder``, or, where the table has no decoder, the expert's success of 1 (every family's
    expert succeeds on every level it accepts, from every start: tested)."""
    means = rows.groupby("policy")["success_mean"].mean()
    floor = float(means.get("random", 0.0))
    if DECODER in means:
        return floor, float(means[DECODER]), DECODER
    return floor, 1.0, "expert"


def add_normalized(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with ``normalized``: each row's mean success on its table's decoder scale
    (:func:`scale_of` over the rows that share its :data:`TABLE` columns and decoy or not)."""
    decoy = table[EVAL_INSTRUCTION] == DECOY
    out = table.assign(normalized=np.nan)
    for _, rows in table.groupby([*TABLE, decoy], sort=False):
        floor, ceiling, name = scale_of(rows[rows["format"] == COMMON])
        if name != DECODER:
            continue
        out.loc[rows.index, "normalized"] = [
            decoder_scale(v, floor, ceiling) for v in rows["success_mean"]
        ]
    return out


def saturated(rows: pd.DataFrame) -> bool:
    """Whether the best trained entry of one table reaches :data:`SATURATION` on its scale
    (:func:`scale_of`): the table cannot separate conditions near the bar. Entries are trained
    unless their ``policy`` is a reference (and, where the rows say, their ``train_context`` is
    not ``-``)."""
    trained = ~rows["policy"].isin(REFERENCES)
    if TRAIN_CONTEXT in rows:
        trained &= rows[TRAIN_CONTEXT] != "-"
    if not trained.any():
        return False
    floor, ceiling, _ = scale_of(rows)
    best = float(rows.loc[trained, "success_mean"].max())
    return bool(decoder_scale(best, floor, ceiling) >= SATURATION)

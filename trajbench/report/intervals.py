"""What a report's intervals may claim: their coverage simulated at the run's own design.

For one (group, family, split) the run's design (seeds, levels, episodes per cell) and its seed,
level and cell variances, estimated from its trained conditions' records
(:func:`trajbench.coverage.estimate`), feed :func:`trajbench.coverage.simulate`. Where the mean's
or the paired difference's 95% interval covers less than 93% of the time, the report says that
its intervals are *conditional on the trained models* (they speak of these trained seeds on the
family's levels, not of training the conditions again) and widens nothing.
"""

from __future__ import annotations

import pandas as pd

from trajbench.records import COMMON, DECOY, EVAL_INSTRUCTION

from ..coverage import ACCEPTED, Coverage, Design, Variances, estimate_records, simulate
from .tables import is_trained

#: The wording a report uses where its intervals under-cover at its design (tested).
CONDITIONAL = "conditional on the trained models"
#: Simulated runs per report (a coverage of 0.93 is known to about +-0.02 at 200).
REPLICATES = 200


def run_design(records: pd.DataFrame) -> tuple[Design, Variances] | None:
    """The design and estimated variances of one (group, family, split)'s labelled records, at
    their largest K with demonstrations of the level in the common format; None where no trained
    condition has two seeds and two levels."""
    at = records[
        is_trained(records)
        & (records["support"] == "same")
        & (records["format"] == COMMON)
        & (records[EVAL_INSTRUCTION] != DECOY)
    ]
    if at.empty:
        return None
    at = at[at["k"] == at["k"].max()]
    seeds = at.groupby("label")["seed"].nunique()
    levels = at.groupby("label")["level"].nunique()
    if not ((seeds >= 2) & (levels >= 2)).any():
        return None
    episodes = int(at.groupby(["label", "seed", "level"]).size().min())
    design = Design(n_seeds=int(seeds.max()), n_levels=int(levels.max()), n_episodes=episodes)
    return design, estimate_records(at.rename(columns={"label": "condition"}), episodes)


def note(design: Design, variances: Variances, coverage: Coverage) -> str:
    """The sentence a report prints about its intervals at ``design``."""
    low, high = ACCEPTED
    said = (
        f"At this run's design ({design.n_seeds} seeds, {design.n_levels} levels, "
        f"{design.n_episodes} episodes per cell; seed sd {variances.seed_sd:.3f}, level sd "
        f"{variances.level_sd:.3f}, cell sd {variances.cell_sd:.3f}, estimated from its records) "
        f"a simulation of {coverage.replicates} runs covers the mean "
        f"{coverage.mean:.0%} and the paired difference {coverage.difference:.0%} of the time at "
        "nominal 95%"
    )
    if min(coverage.mean, coverage.difference) < low:
        return (
            f"{said}: the intervals are {CONDITIONAL} (they describe these trained seeds on the "
            "family's levels, not another training of the same conditions), and so are the "
            "smallest detectable differences."
        )
    if max(coverage.mean, coverage.difference) > high:
        return f"{said}: the intervals are conservative at this design (wider than nominal)."
    return f"{said}."


def interval_note(records: pd.DataFrame, seed: int = 0) -> str:
    """The coverage sentence of one (group, family, split)'s labelled records ("" where no
    trained condition has two seeds)."""
    found = run_design(records)
    if found is None:
        return ""
    design, variances = found
    return note(design, variances, simulate(design, variances, REPLICATES, 300, seed=seed))

"""The seed, level and cell variances of a past run, read from its leaderboard entries' records:
the defaults of the coverage simulations (:mod:`trajbench.coverage`) at the presets' designs."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from trajbench.coverage import Variances, estimate_records
from trajbench.records import COMMON, DECOY, EVAL_INSTRUCTION, TRAIN_CONTEXT

#: The repository's submissions folder (a source checkout's).
SUBMISSIONS = Path(__file__).resolve().parents[2] / "leaderboard" / "submissions"
#: The entries of the last smoke run (suite 2, protocol 2: 2 seeds).
SMOKE = "smoke2-"


def run_variances(folder: Path = SUBMISSIONS, prefix: str = SMOKE) -> dict[str, Variances]:
    """Per family, :func:`trajbench.coverage.estimate_records` over the trained entries named
    ``prefix*`` in ``folder``, at their largest K, with demonstrations of the level, in the common
    format and their training mission. Empty where there are none."""
    frames = []
    for path in sorted(folder.glob(f"{prefix}*.json")):
        entry = json.loads(path.read_text())
        if entry["training"].get(TRAIN_CONTEXT) in (None, "-"):
            continue
        frames.append(pd.DataFrame(entry["records"]).assign(condition=entry["name"]))
    if not frames:
        return {}
    cells = pd.concat(frames, ignore_index=True)
    cells = cells[
        (cells["support"] == "same")
        & (cells["format"] == COMMON)
        & (cells[EVAL_INSTRUCTION] != DECOY)
    ]
    out = {}
    for family, rows in cells.groupby("family"):
        rows = rows[rows["k"] == rows["k"].max()]
        out[family] = estimate_records(rows, int(rows["n_episodes"].min()))
    return out

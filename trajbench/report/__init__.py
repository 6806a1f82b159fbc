"""Reports: ``records.parquet``, ``results.json``, ``report.md`` and plots from a run's records.

Every number comes from the evaluation records (:mod:`trajbench.report.tables`): mean success per
condition with 95% two-level bootstrap CIs, normalized-return IQM, decoy success, and the paired
comparisons that answer the benchmark's questions (:mod:`trajbench.report.readings`); the prose of
``report.md`` is generated from them (:mod:`trajbench.report.markdown`), never written by hand.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from trajbench.records import (
    COMMON,
    DECOY,
    EVAL_INSTRUCTION,
    EVAL_SPLIT,
    RECORDS_FILE,
    RESULTS_FILE,
)

from ..io import atomic_write_json, atomic_write_text, write_parquet
from ..suite import SUITE, SUITE_VERSION
from .markdown import render_markdown
from .plots import write_plots
from .readings import comparisons
from .tables import conditions_table, labelled, saturated

__all__ = ["conditions_table", "write_report"]


def write_report(out: Path, records: pd.DataFrame, meta: dict) -> Path:
    """Write ``records.parquet``, ``results.json``, ``report.md`` and ``plots/`` into ``out``."""
    write_parquet(out / RECORDS_FILE, records)
    table = conditions_table(records)
    labels = labelled(records)
    cs = [c for _, g in labels.groupby("group", sort=False) for c in comparisons(g)]
    meta = {**meta, "suite": SUITE, "suite_version": SUITE_VERSION}
    results = {
        **meta,
        "conditions": [_row(r) for r in table.to_dict("records")],
        "comparisons": [c.to_dict() for c in cs],
        "saturated": _saturation(table),
    }
    atomic_write_json(out / RESULTS_FILE, results)
    plots = write_plots(out / "plots", table)
    atomic_write_text(out / "report.md", render_markdown(labels, table, cs, meta, plots))
    return out / RESULTS_FILE


def _row(row: dict) -> dict:
    item = {k: _plain(v) for k, v in row.items() if not (isinstance(v, float) and np.isnan(v))}
    item["p_bursty"] = None if item.get("p_bursty") == "-" else float(item["p_bursty"])
    return item


def _saturation(table: pd.DataFrame) -> list[dict]:
    """The (group, family, split) tables whose best entries all reach the ceiling."""
    out = []
    head = table[(table["support"] == "same") & (table["format"] == COMMON)]
    head = head[head[EVAL_INSTRUCTION] != DECOY]
    for (group, family, split), rows in head.groupby(["group", "family", EVAL_SPLIT]):
        at = rows[rows["k"] == rows["k"].max()]
        if saturated(at):
            out.append({"group": group, "family": family, EVAL_SPLIT: split})
    return out


def _plain(value):
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value

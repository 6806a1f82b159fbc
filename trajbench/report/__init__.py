"""Reports: ``records.parquet``, ``results.json``, ``report.md`` and plots from a run's records.

Every number comes from the evaluation records (:mod:`trajbench.report.tables`): mean success per
condition with 95% two-level bootstrap CIs and normalized to the decoder, normalized-return IQM,
decoy success, and the paired comparisons that answer the questions the preset declared before it
ran (:mod:`trajbench.report.questions`), at every K they are asked at; the prose of ``report.md``
is generated from them (:mod:`trajbench.report.markdown`), never written by hand.
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
from .questions import Question, answer
from .tables import add_normalized, conditions_table, labelled, saturated

__all__ = ["conditions_table", "write_report"]


def write_report(
    out: Path, records: pd.DataFrame, meta: dict, questions: dict[str, tuple[Question, ...]]
) -> Path:
    """Write ``records.parquet``, ``results.json``, ``report.md`` and ``plots/`` into ``out``;
    ``questions`` are the questions each group (by name) declared before the run."""
    write_parquet(out / RECORDS_FILE, records)
    table = add_normalized(conditions_table(records))
    labels = labelled(records)
    cs, unanswered = [], {}
    for group, g in labels.groupby("group", sort=False):
        done, missing = answer(g, tuple(questions.get(group, ())))
        cs += done
        unanswered[group] = missing
    meta = {**meta, "suite": SUITE, "suite_version": SUITE_VERSION}
    results = {
        **meta,
        "questions": {g: [q.to_dict() for q in qs] for g, qs in questions.items()},
        "conditions": [_row(r) for r in table.to_dict("records")],
        "comparisons": [c.to_dict() for c in cs],
        "unanswered": [u.to_dict() for missing in unanswered.values() for u in missing],
        "saturated": _saturation(table),
    }
    atomic_write_json(out / RESULTS_FILE, results)
    plots = write_plots(out / "plots", table)
    report = render_markdown(labels, table, cs, meta, plots, questions, unanswered)
    atomic_write_text(out / "report.md", report)
    return out / RESULTS_FILE


def _row(row: dict) -> dict:
    item = {k: _plain(v) for k, v in row.items() if not (isinstance(v, float) and np.isnan(v))}
    item["p_bursty"] = None if item.get("p_bursty") == "-" else float(item["p_bursty"])
    return item


def _saturation(table: pd.DataFrame) -> list[dict]:
    """The (group, family, split, K) tables whose best trained condition reaches the bar."""
    out = []
    head = table[(table["support"] == "same") & (table["format"] == COMMON)]
    head = head[head[EVAL_INSTRUCTION] != DECOY]
    for (group, family, split, k), rows in head.groupby(["group", "family", EVAL_SPLIT, "k"]):
        if saturated(rows):
            out.append({"group": group, "family": family, EVAL_SPLIT: split, "k": int(k)})
    return out


def _plain(value):
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value

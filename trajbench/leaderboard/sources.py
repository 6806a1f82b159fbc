"""What ``trajbench leaderboard submit`` reads: a ``trajbench run`` directory or a ``trajbench
evaluate`` output.

A run directory holds ``results.json`` beside its ``records.parquet``; an evaluate output holds
``evaluation.json`` (written by :mod:`trajbench.pipeline.evaluation_file`). :func:`read_source`
tells them apart by that file, refuses a directory that is neither, and checks the provenance and
the records of both the same way before any entry is made.

Example:
    source = read_source("runs/tabular")
    source.kind, source.meta["policy"], len(source.records)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from trajbench.errors import TrajbenchError
from trajbench.records import (
    DECOY_SUCCESS,
    EVALUATION_FILE,
    RECORDS_FILE,
    RESULTS_FILE,
    TRAIN_CONTEXT,
)

from .schema import METRICS, RECORD_KEYS, SCHEMA_VERSION, schema_of
from .validate import read_json

#: Columns of records.parquet that name the trained condition (one submission each).
CONDITION_COLS = ("policy", TRAIN_CONTEXT, "instruction", "p_bursty")
#: What an entry needs from either json file.
PROVENANCE = ("trajbench_version", "git_commit", "suite", "suite_version", "hardware")
PROVENANCE += ("wall_time_s", "date", "config")
#: What each kind of output adds: a run its seeds; an evaluate output its one policy.
NEEDS = {
    "run": ("seeds",),
    "evaluate": ("command", "policy", "policy_version", "training"),
}


@dataclass
class Source:
    """A directory to submit from: which kind it is, its json file and its records."""

    path: Path
    kind: Literal["run", "evaluate"]
    meta: dict[str, Any]
    """results.json (a run) or evaluation.json (an evaluate output)."""
    records: pd.DataFrame
    """records.parquet, with p_bursty added from evaluation.json for an evaluate output."""


def read_source(path: str | Path) -> Source:
    """Read and check a ``trajbench run`` directory or a ``trajbench evaluate`` output.

    Raises:
        TrajbenchError: ``path`` is neither, or its json file or records are missing, malformed,
            of an archived suite version, or disagree with each other.
    """
    path = Path(path)
    if not path.is_dir():
        raise TrajbenchError(
            f"{path} not found: pass a directory written by trajbench run or trajbench evaluate"
        )
    found = [name for name in (RESULTS_FILE, EVALUATION_FILE) if (path / name).is_file()]
    if len(found) == 2:
        raise TrajbenchError(
            f"{path} holds both {RESULTS_FILE} (trajbench run) and {EVALUATION_FILE} (trajbench evaluate): "
            "submit a directory that one of them wrote"
        )
    if not found:
        alone = (
            f": it has {RECORDS_FILE} only; rerun what wrote it"
            if (path / RECORDS_FILE).is_file()
            else ""
        )
        raise TrajbenchError(
            f"{path} is neither a trajbench run directory ({RESULTS_FILE}) nor a trajbench evaluate "
            f"output ({EVALUATION_FILE}){alone}"
        )
    kind: Literal["run", "evaluate"] = "run" if found[0] == RESULTS_FILE else "evaluate"
    meta_path = path / found[0]
    try:
        meta = read_json(meta_path)
    except TrajbenchError as err:
        raise TrajbenchError(f"{meta_path}: {err}") from None
    need = [*PROVENANCE, *NEEDS[kind]]
    missing = [k for k in need if not isinstance(meta, dict) or k not in meta]
    if missing:
        raise TrajbenchError(f"{meta_path} lacks {missing}")
    version = str(meta["suite_version"])
    if schema_of(version) != SCHEMA_VERSION:
        raise TrajbenchError(
            f"{meta_path}: suite version {version} is archived; the leaderboard takes new "
            f"entries of later suite versions only (rerun with this trajbench)"
        )
    records = _read_records(path / RECORDS_FILE, path)
    if kind == "evaluate":
        records = _evaluated(meta, records, meta_path)
    _check_records(records, path / RECORDS_FILE)
    return Source(path, kind, meta, records)


def _read_records(path: Path, where: Path) -> pd.DataFrame:
    if not path.is_file():
        raise TrajbenchError(f"{path} not found: is {where} a whole trajbench output?")
    try:
        records = pd.read_parquet(path)
    except Exception as err:  # pyarrow raises several types for a corrupt file
        raise TrajbenchError(f"{path}: cannot read parquet: {err}") from None
    if len(records) == 0:
        raise TrajbenchError(f"{path} has no records")
    return records


def _evaluated(meta: dict, records: pd.DataFrame, where: Path) -> pd.DataFrame:
    """An evaluate output's records, checked against its evaluation.json (one policy under one
    training condition, on levels it did not train on), with that condition's p_bursty added."""
    config = meta["config"]
    if not isinstance(config, dict) or config.get("allow_trained_levels") is not False:
        raise TrajbenchError(
            f"{where}: config must be an evaluation config with allow_trained_levels false (the "
            "leaderboard takes only levels the policy did not train on)"
        )
    training = meta["training"]
    keys = (TRAIN_CONTEXT, "instruction", "p_bursty")
    if not isinstance(training, dict) or any(k not in training for k in keys):
        raise TrajbenchError(f"{where}: training must hold {list(keys)}, got {training!r}")
    expected = {"policy": meta["policy"], "policy_version": meta["policy_version"]}
    expected |= {k: training[k] for k in keys[:2]}
    for column, value in expected.items():
        if column not in records:
            raise TrajbenchError(f"{where.parent / RECORDS_FILE} lacks column {column!r}")
        seen = sorted(map(str, records[column].unique()))
        if seen != [str(value)]:
            raise TrajbenchError(
                f"{where} says {column} {value!r} but {RECORDS_FILE} holds {seen}: they come from "
                "different evaluations"
            )
    p_bursty = training["p_bursty"]
    return records.assign(p_bursty=float("nan") if p_bursty is None else float(p_bursty))


def _check_records(records: pd.DataFrame, path: Path) -> None:
    """Refuse records without the columns of an entry, or with missing or infinite values."""
    cols = [*CONDITION_COLS, *RECORD_KEYS, *METRICS, "eval_seed", "model_params"]
    missing = [c for c in cols if c not in records.columns]
    if missing:
        raise TrajbenchError(f"{path} lacks column(s) {missing}")
    keys = [c for c in cols if c != "p_bursty"]
    bad = records[keys].isna().any()
    if bad.any():
        raise TrajbenchError(f"{path} has missing or NaN values in {list(bad[bad].index)}")
    scores = [*METRICS, DECOY_SUCCESS] if DECOY_SUCCESS in records else list(METRICS)
    values = records[scores].to_numpy(dtype=float)
    if np.isinf(values).any():
        raise TrajbenchError(f"{path} has infinite values in {scores}")

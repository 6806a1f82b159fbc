"""The records contract (``trajbench.records``) is what a run writes and the leaderboard reads."""

from __future__ import annotations

import pandas as pd
import pytest

from trajbench.leaderboard.schema import RECORD_KEYS
from trajbench.records import COLUMNS, OPTIONAL_COLUMNS, RECORDS_FILE

KINDS = {
    "text": pd.api.types.is_string_dtype,
    "int": pd.api.types.is_integer_dtype,
    "float": pd.api.types.is_float_dtype,
    "bool": pd.api.types.is_bool_dtype,
}


def kind_problems(records: pd.DataFrame) -> list[str]:
    """Columns a records frame has that the contract does not, lacks, or holds other values in."""
    problems = [f"{c}: not in the contract" for c in records if c not in COLUMNS]
    problems += [f"{c}: missing" for c in COLUMNS if c not in records and c not in OPTIONAL_COLUMNS]
    problems += [
        f"{c}: {records[c].dtype}, not {COLUMNS[c]}"
        for c in records
        if c in COLUMNS and not KINDS[COLUMNS[c]](records[c])
    ]
    return problems


def test_a_run_writes_the_contract(ci_run):
    records = pd.read_parquet(ci_run / RECORDS_FILE)
    assert kind_problems(records) == []
    assert {"p_bursty", "group"} <= set(records)


def test_a_record_off_the_contract_is_detected(ci_run):
    records = pd.read_parquet(ci_run / RECORDS_FILE)
    bad = records.drop(columns="k").assign(success=records["success"].astype(float), extra=1)
    assert kind_problems(bad) == [
        "extra: not in the contract",
        "k: missing",
        "success: float64, not bool",
    ]


@pytest.mark.parametrize("key", RECORD_KEYS)
def test_the_leaderboard_keys_records_by_contract_columns(key):
    assert key in COLUMNS

"""Validating submissions: read the files, check the schema, recompute every aggregate.

:func:`check` finds what the schema cannot see: families outside the suite version, levels
outside their family's test split, holes and duplicates in the (seed x level) grids, seeds that
do not match, and aggregates that differ from the ones recomputed from the records with the
entry's bootstrap method (:func:`compute_aggregates`). :func:`validate_files` runs it on files
and checks that names are unique.

Example:
    subs, problems = validate_files(submission_files(Path("leaderboard")))
"""

from __future__ import annotations

import functools
import json
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import ValidationError

from trajbench.collect import make_env
from trajbench.errors import TrajbenchError
from trajbench.metrics import aggregate
from trajbench.records import DECOY_SUCCESS, NORMALIZED_RETURN
from trajbench.suite import SUITE_VERSIONS

from .schema import (
    AGG_KEYS,
    AGG_KEYS_V1,
    IQM,
    MEAN,
    METRICS,
    Aggregate,
    AggregateV1,
    Bootstrap,
    Entry,
    agg_key,
    key_text,
    parse,
)

#: Absolute tolerance when comparing a submitted aggregate with the recomputed one.
TOLERANCE = 1e-9


def compute_aggregates(records: pd.DataFrame, bootstrap: Bootstrap) -> list[dict[str, Any]]:
    """Aggregates of (seed, level) records with ``bootstrap.method``, one per key, sorted.

    ``"mean, seeds and levels"`` (schema 2): per (family, eval_split, k, support, format,
    eval_instruction), mean success and, where the records carry it, mean decoy success, with
    two-level CIs (seeds, and levels: each aggregate holds one family, so its levels are one
    stratum), and the normalized-return IQM with the same resampling. ``"iqm, seeds"`` (schema 1):
    per (family, eval_split, k, support), IQMs with CIs that resample seeds within each level.
    Each record is already an episode average, so every cell weighs the same, as in
    :func:`trajbench.metrics.score_matrix`. Decoy fields are None where no decoy was shown.

    Raises:
        ValueError: a (seed x level) grid has holes, a value is NaN (see ``metrics.aggregate``),
            or an aggregate's records give decoy_success only in part.

    Example:
        >>> cells = pd.DataFrame({"family": "f", "eval_split": "test_levels", "k": 4,
        ...     "support": "same", "format": "common", "eval_instruction": "full",
        ...     "seed": [0, 0, 1, 1], "level": [3, 5, 3, 5], "n_episodes": 4,
        ...     "success": [1.0, 0.5, 1.0, 0.25], "normalized_return": [1.0, 0.5, 0.9, 0.0]})
        >>> agg = compute_aggregates(cells, Bootstrap(method="mean, seeds and levels",
        ...     reps=1000, confidence=0.95, seed=0))
        >>> agg[0]["success_mean"], agg[0]["n_levels"], agg[0]["n_episodes"], agg[0]["format"]
        (0.6875, 2, 16, 'common')
    """
    model, keys = _METHODS[bootstrap.method]
    keys = list(keys)
    boot = {"reps": bootstrap.reps, "confidence": bootstrap.confidence, "seed": bootstrap.seed}
    if model is AggregateV1:
        table = aggregate(records, list(METRICS), keys, statistic="iqm", resample="seeds", **boot)
    else:
        table = aggregate(records, "success", keys, **boot)
        ret = aggregate(records, NORMALIZED_RETURN, keys, statistic="iqm", **boot)
        stats = [f"normalized_return_{s}" for s in ("iqm", "ci_low", "ci_high")]
        table = _with_decoys(table.merge(ret[[*keys, *stats]], on=keys), records, keys, boot)
    # aggregate's n_episodes counts records (cells); the entry reports the episodes behind them.
    episodes = records.groupby(keys, sort=True)["n_episodes"].sum().reset_index()
    table = table.drop(columns="n_episodes").merge(episodes, on=keys, validate="one_to_one")
    return [
        {name: _value(name, row[name]) for name in model.model_fields}
        for row in table.to_dict("records")
    ]


#: bootstrap method -> (the aggregate it computes, the keys it aggregates over)
_METHODS = {MEAN: (Aggregate, AGG_KEYS), IQM: (AggregateV1, AGG_KEYS_V1)}
_DECOY_STATS = [f"{DECOY_SUCCESS}_{s}" for s in ("mean", "ci_low", "ci_high")]


def _with_decoys(
    table: pd.DataFrame, records: pd.DataFrame, keys: list[str], boot: dict
) -> pd.DataFrame:
    """``table`` with the decoy-success columns: the mean and CI where records carry it, else NaN."""
    shown = (
        records[DECOY_SUCCESS].notna()
        if DECOY_SUCCESS in records
        else pd.Series(False, index=records.index)
    )
    per_key = shown.groupby([records[k] for k in keys], sort=True).agg(["any", "all"])
    partial = per_key[per_key["any"] & ~per_key["all"]]
    if len(partial):
        where = key_text(tuple(_value(k, v) for k, v in zip(keys, partial.index[0], strict=True)))
        raise ValueError(f"({where}): only some records give {DECOY_SUCCESS}")
    if not shown.any():
        return table.assign(**{c: float("nan") for c in _DECOY_STATS})
    decoys = aggregate(records[shown], DECOY_SUCCESS, keys, **boot)
    return table.merge(decoys[[*keys, *_DECOY_STATS]], on=keys, how="left")


def _value(name: str, value: Any) -> Any:
    """A table value as the schema has it: ints, strings, floats, and None for NaN."""
    if name in ("k", "n_seeds", "n_levels", "n_episodes"):
        return int(value)
    if isinstance(value, str):
        return value
    value = float(value)
    return None if math.isnan(value) else value


@functools.cache
def held_out_levels(family: str) -> frozenset[int]:
    """The levels of ``family``'s test split, where every leaderboard record must lie.

    Raises:
        TrajbenchError: ``family`` is not a registered trajbench family.

    Example:
        >>> sorted(held_out_levels("trajbench/DarkRoom-v0"))[:4]
        [0, 2, 7, 11]
    """
    with warnings.catch_warnings():  # a family of an archived suite version may be out of date
        warnings.simplefilter("ignore", DeprecationWarning)
        env = make_env(family, disable_env_checker=True)
    try:
        return frozenset(int(level) for level in env.unwrapped.splits()["test"])
    finally:
        env.close()


def _level_problems(sub: Entry) -> list[str]:
    """One line per (family, eval_split) with levels outside the family's test split."""
    families = SUITE_VERSIONS[sub.suite_version]["families"]
    suite = f"suite {sub.suite} v{sub.suite_version}"
    levels: dict[tuple[str, str], set[int]] = {}
    for rec in sub.records:
        if rec.family in families:
            levels.setdefault((rec.family, rec.eval_split), set()).add(rec.level)
    problems = []
    for (fam, split), found in sorted(levels.items()):
        try:
            outside = sorted(found - held_out_levels(fam))
        except TrajbenchError as err:
            problems.append(f"records: cannot read the test split of {fam}: {err}")
            continue
        if outside:
            shown = ", ".join(map(str, outside[:5])) + (", ..." if len(outside) > 5 else "")
            problems.append(
                f"records: {len(outside)} level(s) of {fam} ({split}) are not in its test "
                f"split in {suite}: {shown}"
            )
    return problems


def check(sub: Entry) -> list[str]:
    """Problems a schema cannot see: families, levels, record grid, seeds, recomputed aggregates.

    Returns one line per problem (empty when the submission is consistent).
    """
    problems = []
    families = SUITE_VERSIONS[sub.suite_version]["families"]
    for fam in sorted({r.family for r in sub.records} - set(families)):
        problems.append(f"records: family {fam!r} is not in suite {sub.suite} v{sub.suite_version}")
    problems += _level_problems(sub)
    records = pd.DataFrame([r.model_dump() for r in sub.records])
    keys = sub.RECORD_KEYS
    dup = records.duplicated(list(keys))
    if dup.any():
        first = records.loc[dup.idxmax(), list(keys)].tolist()
        shown = ", ".join(f"{k}={v}" for k, v in zip(keys, first, strict=True))
        problems.append(f"records: {int(dup.sum())} duplicate record(s), first ({shown})")
    if set(records["seed"]) != set(sub.seeds) or len(set(sub.seeds)) != len(sub.seeds):
        problems.append(
            f"seeds {sub.seeds} do not match the seeds of the records "
            f"{sorted(set(records['seed'].tolist()))}"
        )
    if problems:
        return problems
    try:
        computed = compute_aggregates(records, sub.bootstrap)
    except ValueError as err:
        return [f"records: {err}"]
    expected = {agg_key(a, sub.AGG_KEYS): a for a in computed}
    seen = set()
    for i, agg in enumerate(sub.aggregates):
        key = agg_key(agg, sub.AGG_KEYS)
        where = f"aggregates[{i}] ({key_text(key, sub.AGG_KEYS)})"
        if key in seen:
            problems.append(f"{where}: duplicate aggregate")
            continue
        seen.add(key)
        if key not in expected:
            problems.append(f"{where}: no records for this aggregate")
            continue
        for name, want in expected[key].items():
            got = getattr(agg, name)
            if got == want or (
                isinstance(want, float) and isinstance(got, float) and abs(got - want) <= TOLERANCE
            ):
                continue
            problems.append(f"{where}: {name} is {got!r} but the records give {want!r}")
    for key in sorted(set(expected) - seen):
        problems.append(f"aggregates: missing the aggregate for ({key_text(key, sub.AGG_KEYS)})")
    return problems


# -- files ------------------------------------------------------------------------------------
def _reject_constant(token: str) -> float:
    raise ValueError(f"{token} is not allowed (JSON has no NaN or Infinity)")


def read_json(path: Path) -> Any:
    """Parse a JSON file, rejecting the NaN/Infinity tokens Python's json module accepts.

    Raises:
        TrajbenchError: the file cannot be read or is not valid JSON.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise TrajbenchError(f"cannot read: {err}") from None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as err:
        raise TrajbenchError(
            f"invalid JSON: {err.msg} (line {err.lineno}, column {err.colno})"
        ) from None
    except ValueError as err:
        raise TrajbenchError(f"invalid JSON: {err}") from None


def describe(error: dict) -> str:
    """One line for one pydantic error, e.g. ``missing field 'model.parameters'``.

    Example:
        >>> describe({"loc": ("model", "parameters"), "type": "missing", "msg": "Field required"})
        "missing field 'model.parameters'"
    """
    loc = ""
    for part in error["loc"]:
        loc += f"[{part}]" if isinstance(part, int) else f".{part}" if loc else str(part)
    kind, value = error["type"], error.get("input")
    if kind == "missing":
        return f"missing field {loc!r}"
    if kind == "extra_forbidden":
        return f"unknown field {loc!r}"
    if kind == "finite_number" or (
        isinstance(value, str) and value.strip().lower().lstrip("+-") in {"nan", "inf", "infinity"}
    ):
        return f"{loc}: NaN or infinite value {value!r}"
    message = error["msg"].removeprefix("Value error, ")
    return f"{loc}: {message}" if loc else message


def load(path: Path) -> tuple[Entry | None, list[str]]:
    """Read and fully check one submission file; returns ``(submission or None, problems)``."""
    try:
        obj = read_json(path)
    except TrajbenchError as err:
        return None, [str(err)]
    try:
        sub = parse(obj)
    except ValidationError as err:
        return None, [describe(e) for e in err.errors()]
    except ValueError as err:  # an unknown schema version
        return None, [str(err)]
    problems = check(sub)
    return (None if problems else sub), problems


def validate_files(paths: Sequence[Path]) -> tuple[list[Entry], list[str]]:
    """Check every file, that names are unique and that each file is ``<name>.json``.

    Returns the valid submissions and one ``file: problem`` line per problem.
    """
    subs, problems, owner = [], [], {}
    for path in paths:
        sub, found = load(path)
        problems += [f"{path}: {p}" for p in found]
        if sub is None:
            continue
        if sub.name in owner:
            problems.append(f"{path}: duplicate name {sub.name!r} (also in {owner[sub.name]})")
        elif path.stem != sub.name:
            problems.append(f"{path}: name {sub.name!r} does not match the file name")
        else:
            owner[sub.name] = path
            subs.append(sub)
    return subs, problems


def submission_files(root: Path) -> list[Path]:
    """Every ``root/submissions/*.json``, sorted."""
    return sorted((root / "submissions").glob("*.json"))

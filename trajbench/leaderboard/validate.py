"""Validating submissions: read the files, check the schema, recompute every aggregate.

:func:`check` finds what the schema cannot see: families outside the suite version, levels
outside their family's test split, holes and duplicates in the (seed x level) grids, seeds that
do not match, and aggregates that differ from the ones recomputed from the records.
:func:`validate_files` runs it on files and checks that names are unique.

Example:
    subs, problems = validate_files(submission_files(Path("leaderboard")))
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import ValidationError

from trajbench.collect import make_env
from trajbench.errors import TrajbenchError
from trajbench.metrics import aggregate
from trajbench.suite import SUITE_VERSIONS

from .schema import AGG_KEYS, METRICS, RECORD_KEYS, Bootstrap, Submission, agg_key, key_text

#: Absolute tolerance when comparing a submitted aggregate with the recomputed one.
TOLERANCE = 1e-9


def compute_aggregates(records: pd.DataFrame, bootstrap: Bootstrap) -> list[dict[str, Any]]:
    """Aggregates of (seed, level) records, one per (family, eval_split, k, support), sorted.

    Each record is already an episode average, so every cell weighs the same, as in
    :func:`trajbench.metrics.score_matrix`.

    Raises:
        ValueError: a (seed x level) grid has holes, or a value is NaN (see ``metrics.aggregate``).

    Example:
        >>> cells = pd.DataFrame({"family": "f", "eval_split": "test_levels", "k": 4,
        ...     "support": "same", "seed": [0, 0, 1, 1], "level": [3, 5, 3, 5],
        ...     "n_episodes": 2, "success": [1.0, 0.5, 1.0, 0.0],
        ...     "normalized_return": [1.0, 0.5, 0.9, 0.0]})
        >>> agg = compute_aggregates(cells, Bootstrap(reps=1000, confidence=0.95, seed=0))
        >>> agg[0]["success_iqm"], agg[0]["n_levels"], agg[0]["n_episodes"]
        (0.75, 2, 8)
    """
    keys = list(AGG_KEYS)
    table = aggregate(
        records,
        list(METRICS),
        keys,
        statistic="iqm",
        resample="seeds",
        reps=bootstrap.reps,
        confidence=bootstrap.confidence,
        seed=bootstrap.seed,
    )
    # aggregate's n_episodes counts records (cells); the entry reports the episodes behind them.
    episodes = records.groupby(keys, sort=True)["n_episodes"].sum().reset_index()
    table = table.drop(columns="n_episodes").merge(episodes, on=keys, validate="one_to_one")
    out = []
    for row in table.to_dict("records"):
        item: dict[str, Any] = {
            "family": str(row["family"]),
            "eval_split": str(row["eval_split"]),
            "k": int(row["k"]),
            "support": str(row["support"]),
        }
        for metric in METRICS:
            for stat in ("iqm", "ci_low", "ci_high"):
                item[f"{metric}_{stat}"] = float(row[f"{metric}_{stat}"])
        item |= {c: int(row[c]) for c in ("n_seeds", "n_levels", "n_episodes")}
        out.append(item)
    return out


@functools.cache
def held_out_levels(family: str) -> frozenset[int]:
    """The levels of ``family``'s test split, where every leaderboard record must lie.

    Raises:
        TrajbenchError: ``family`` is not a registered trajbench family.

    Example:
        >>> sorted(held_out_levels("trajbench/DarkRoom-v0"))[:4]
        [0, 2, 7, 11]
    """
    env = make_env(family, disable_env_checker=True)
    try:
        return frozenset(int(level) for level in env.unwrapped.splits()["test"])
    finally:
        env.close()


def _level_problems(sub: Submission) -> list[str]:
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


def check(sub: Submission) -> list[str]:
    """Problems a schema cannot see: families, levels, record grid, seeds, recomputed aggregates.

    Returns one line per problem (empty when the submission is consistent).
    """
    problems = []
    families = SUITE_VERSIONS[sub.suite_version]["families"]
    for fam in sorted({r.family for r in sub.records} - set(families)):
        problems.append(f"records: family {fam!r} is not in suite {sub.suite} v{sub.suite_version}")
    problems += _level_problems(sub)
    records = pd.DataFrame([r.model_dump() for r in sub.records])
    dup = records.duplicated(list(RECORD_KEYS))
    if dup.any():
        first = records.loc[dup.idxmax(), list(RECORD_KEYS)].tolist()
        shown = ", ".join(f"{k}={v}" for k, v in zip(RECORD_KEYS, first, strict=True))
        problems.append(f"records: {int(dup.sum())} duplicate record(s), first ({shown})")
    if set(records["seed"]) != set(sub.seeds) or len(set(sub.seeds)) != len(sub.seeds):
        problems.append(
            f"seeds {sub.seeds} do not match the seeds of the records "
            f"{sorted(set(records['seed'].tolist()))}"
        )
    if problems:
        return problems
    try:
        expected = {agg_key(a): a for a in compute_aggregates(records, sub.bootstrap)}
    except ValueError as err:
        return [f"records: {err}"]
    seen = set()
    for i, agg in enumerate(sub.aggregates):
        key = agg_key(agg)
        where = f"aggregates[{i}] ({key_text(key)})"
        if key in seen:
            problems.append(f"{where}: duplicate aggregate")
            continue
        seen.add(key)
        if key not in expected:
            problems.append(f"{where}: no records for this aggregate")
            continue
        for name, want in expected[key].items():
            got = getattr(agg, name)
            if (isinstance(want, float) and abs(got - want) <= TOLERANCE) or got == want:
                continue
            problems.append(f"{where}: {name} is {got!r} but the records give {want!r}")
    for key in sorted(set(expected) - seen):
        problems.append(f"aggregates: missing the aggregate for ({key_text(key)})")
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


def load(path: Path) -> tuple[Submission | None, list[str]]:
    """Read and fully check one submission file; returns ``(submission or None, problems)``."""
    try:
        obj = read_json(path)
    except TrajbenchError as err:
        return None, [str(err)]
    try:
        sub = Submission.model_validate(obj)
    except ValidationError as err:
        return None, [describe(e) for e in err.errors()]
    problems = check(sub)
    return (None if problems else sub), problems


def validate_files(paths: Sequence[Path]) -> tuple[list[Submission], list[str]]:
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

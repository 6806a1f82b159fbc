"""``trajbench leaderboard``: turn a run into submissions, validate them, build the leaderboard.

A submission is one JSON file ``leaderboard/submissions/<name>.json`` holding **one trained
condition**: one policy under one training condition (context mode, instruction mode, p_bursty),
over all of its training seeds. ``submit`` therefore writes one file per condition of a run
(a run of the smoke preset gives a file for every context mode, plus the reference policies);
each file is one row of the leaderboard, so entries rank against each other directly.

The :class:`Submission` model below is the single definition of a submission. It keeps the
per-(seed, level) records (episode-averaged success and normalized return per family, held-out
split, k and support) and the aggregates computed from them with :func:`trajbench.metrics.aggregate`;
``validate`` recomputes every aggregate from the records with the recorded bootstrap settings and
rejects any mismatch. ``build`` writes ``README.md``, ``index.html`` and ``schema.json`` (the
JSON Schema of :class:`Submission`); ``build --check`` fails when any of them is stale.

Ranking: one table per family and held-out split (held-out levels, then held-out families), ranked
by success IQM with same-level support at the largest k that every entry of the table evaluated.

Example:
    trajbench run --preset smoke --out runs/smoke
    trajbench leaderboard submit runs/smoke --name smoke-2cpu --authors "Ada Lovelace"
    trajbench leaderboard validate
    trajbench leaderboard build
"""

from __future__ import annotations

import argparse
import html
import io
import json
import math
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import TrajbenchError
from .io import atomic_write_text
from .metrics import aggregate
from .suite import SUITE, SUITE_VERSIONS

#: Absolute tolerance when comparing a submitted aggregate with the recomputed one.
TOLERANCE = 1e-9
#: Metrics aggregated per condition (episode-averaged per (seed, level) first).
METRICS = ("success", "normalized_return")
#: What an aggregate is computed over: one (family, held-out split, k, support).
AGG_KEYS = ("family", "eval_split", "k", "support")
#: What one record is: one (seed, level) cell of an aggregate.
RECORD_KEYS = (*AGG_KEYS, "seed", "level")
#: Columns of records.parquet that name the trained condition (one submission each).
CONDITION_COLS = ("policy", "train_context", "instruction", "p_bursty")
#: Labels used for reference policies, which have no training condition.
NO_VALUE = ("", "-", None)

DEFAULT_ROOT = Path("leaderboard")
SPLIT_TITLES = {"test_levels": "held-out levels", "test_families": "held-out family"}


# -- the schema -------------------------------------------------------------------------------
class _Strict(BaseModel):
    # strict: no "0.5" -> 0.5 coercion; allow_inf_nan=False: a NaN is an error, not a score.
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        allow_inf_nan=False,
        frozen=True,
        use_attribute_docstrings=True,
    )


Text = Annotated[str, Field(min_length=1)]
Unit = Annotated[float, Field(ge=0.0, le=1.0)]


class Model(_Strict):
    """The policy that was evaluated."""

    name: Text
    """Human-readable model name, e.g. "trajbench transformer"."""
    policy: Text
    """Policy kind: transformer, no-context, random, hashmap, expert, or your own."""
    parameters: int = Field(ge=0)
    """Number of trained parameters (0 for reference policies)."""


class Training(_Strict):
    """The training condition; reference policies use "-" for what does not apply."""

    train_context: Text
    """Context mode of the training sequences: bursty, trajectories, shuffled, isolated, none."""
    instruction: Text
    """Instruction mode: full, empty, template, wrong."""
    p_bursty: Unit | None
    """Probability that a training sequence is bursty (null where it does not apply)."""


class Bootstrap(_Strict):
    """Settings of the stratified bootstrap behind every confidence interval."""

    reps: int = Field(ge=1000, le=100_000)
    """Bootstrap replicates."""
    confidence: Literal[0.95]
    """Confidence level of the intervals."""
    seed: int = Field(ge=0)
    """Bootstrap seed; with reps it makes every interval reproducible."""


class Record(_Strict):
    """One (seed, level) cell: the policy's episodes on one level, averaged."""

    family: Text
    """Environment id, e.g. "trajbench/DarkRoom-v0"."""
    eval_split: Literal["test_levels", "test_families"]
    """What is held out: levels of a training family, or a whole family."""
    k: int = Field(ge=0)
    """Demonstrations in the context."""
    support: Literal["same", "other"]
    """Demonstrations from the level itself (same) or from other levels (other)."""
    seed: int
    """Training seed."""
    level: int = Field(ge=0)
    """Level of the family."""
    n_episodes: int = Field(ge=1)
    """Episodes averaged in this cell."""
    success: Unit
    """Mean success over the episodes."""
    normalized_return: float
    """Mean return over the episodes divided by the expert's mean return on the level."""


class Aggregate(_Strict):
    """IQM over (seeds x levels) with 95% stratified-bootstrap CIs for one (family, split, k, support)."""

    family: Text
    eval_split: Literal["test_levels", "test_families"]
    k: int = Field(ge=0)
    support: Literal["same", "other"]
    success_iqm: Unit
    success_ci_low: Unit
    success_ci_high: Unit
    normalized_return_iqm: float
    normalized_return_ci_low: float
    normalized_return_ci_high: float
    n_seeds: int = Field(ge=1)
    n_levels: int = Field(ge=1)
    n_episodes: int = Field(ge=1)
    """Episodes behind the aggregate (sum over its records)."""


class Submission(_Strict):
    """One leaderboard entry: one policy under one training condition, on one suite version.

    Beyond this schema, ``trajbench leaderboard validate`` checks that the name is unique and
    matches the file name, every family belongs to the suite version, records form complete
    (seed x level) grids without duplicates, their seeds are ``seeds``, and every aggregate
    equals the one recomputed from the records (to 1e-9) with the recorded bootstrap settings.
    """

    schema_version: Literal[1]
    """Version of this schema."""
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,119}$")
    """Unique id of the entry; the file is <name>.json."""
    authors: list[Text] = Field(min_length=1)
    """Who submitted it."""
    model: Model
    suite: str
    """Benchmark suite measured on (trajbench)."""
    suite_version: str = Field(json_schema_extra={"enum": sorted(SUITE_VERSIONS)})
    """Suite version: pins the families and their level splits."""
    training: Training
    seeds: list[int] = Field(min_length=1)
    """Training seeds."""
    trajbench_version: Text
    git_commit: Text
    """Commit of trajbench the run used."""
    hardware: Text
    """What the run ran on."""
    wall_time_s: float = Field(ge=0.0)
    """Wall time of the whole run the entry comes from, in seconds."""
    date: Text
    """ISO 8601 date of the run."""
    command: Text
    """The command that produced the run."""
    preset: str | None
    """Preset of trajbench run, if any."""
    config: dict[str, Any]
    """Configuration of the run, as written in results.json."""
    bootstrap: Bootstrap
    records: list[Record] = Field(min_length=1)
    aggregates: list[Aggregate] = Field(min_length=1)

    @field_validator("suite")
    @classmethod
    def _known_suite(cls, value: str) -> str:
        if value != SUITE:
            raise ValueError(f"unknown suite {value!r} (accepted: {SUITE!r})")
        return value

    @field_validator("suite_version")
    @classmethod
    def _known_version(cls, value: str) -> str:
        if value not in SUITE_VERSIONS:
            accepted = ", ".join(repr(v) for v in sorted(SUITE_VERSIONS))
            raise ValueError(f"unknown suite version {value!r} (accepted: {accepted})")
        return value

    @field_validator("date")
    @classmethod
    def _iso_date(cls, value: str) -> str:
        try:
            datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"not an ISO 8601 date: {value!r}") from None
        return value


def schema_text() -> str:
    """The JSON Schema of :class:`Submission`, as written to ``leaderboard/schema.json``.

    Example:
        >>> json.loads(schema_text())["title"]
        'Submission'
    """
    schema = Submission.model_json_schema()
    return json.dumps(schema, indent=2, allow_nan=False) + "\n"


# -- aggregates -------------------------------------------------------------------------------
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


def _agg_key(item: Aggregate | dict) -> tuple:
    get = item.get if isinstance(item, dict) else lambda k: getattr(item, k)
    return tuple(get(k) for k in AGG_KEYS)


def _key_text(key: tuple) -> str:
    return ", ".join(f"{name}={value}" for name, value in zip(AGG_KEYS, key, strict=True))


def check(sub: Submission) -> list[str]:
    """Problems a schema cannot see: families, record grid, seeds, and recomputed aggregates.

    Returns one line per problem (empty when the submission is consistent).
    """
    problems = []
    families = SUITE_VERSIONS[sub.suite_version]["families"]
    for fam in sorted({r.family for r in sub.records} - set(families)):
        problems.append(f"records: family {fam!r} is not in suite {sub.suite} v{sub.suite_version}")
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
        expected = {_agg_key(a): a for a in compute_aggregates(records, sub.bootstrap)}
    except ValueError as err:
        return [f"records: {err}"]
    seen = set()
    for i, agg in enumerate(sub.aggregates):
        key = _agg_key(agg)
        where = f"aggregates[{i}] ({_key_text(key)})"
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
        problems.append(f"aggregates: missing the aggregate for ({_key_text(key)})")
    return problems


# -- loading and validating files -------------------------------------------------------------
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


def _describe(error: dict) -> str:
    """One line for one pydantic error, e.g. ``missing field 'model.parameters'``."""
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
        return None, [_describe(e) for e in err.errors()]
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


# -- submit -----------------------------------------------------------------------------------
def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _slug(condition: dict[str, Any]) -> str:
    parts = [condition["policy"]]
    parts += [
        condition[c] for c in ("train_context", "instruction") if condition[c] not in NO_VALUE
    ]
    if condition["p_bursty"] is not None:
        parts.append(f"p{condition['p_bursty']:g}")
    return re.sub(r"[^A-Za-z0-9._-]+", "_", "-".join(str(p) for p in parts))


def _hardware_text(hardware: Any) -> str:
    if isinstance(hardware, dict):
        return ", ".join(f"{k}: {v}" for k, v in hardware.items())
    return str(hardware)


def _read_run(run_dir: Path) -> tuple[dict, pd.DataFrame]:
    results_path, records_path = run_dir / "results.json", run_dir / "records.parquet"
    for path in (results_path, records_path):
        if not path.is_file():
            raise TrajbenchError(f"{path} not found: is {run_dir} a trajbench run directory?")
    try:
        results = read_json(results_path)
    except TrajbenchError as err:
        raise TrajbenchError(f"{results_path}: {err}") from None
    need = ["trajbench_version", "git_commit", "suite", "suite_version", "hardware"]
    need += ["wall_time_s", "date", "seeds", "config"]
    missing = [k for k in need if not isinstance(results, dict) or k not in results]
    if missing:
        raise TrajbenchError(f"{results_path} lacks {missing}")
    try:
        records = pd.read_parquet(records_path)
    except Exception as err:  # pyarrow raises several types for a corrupt file
        raise TrajbenchError(f"{records_path}: cannot read parquet: {err}") from None
    cols = [*CONDITION_COLS, *RECORD_KEYS, *METRICS, "model_params"]
    missing = [c for c in cols if c not in records.columns]
    if missing:
        raise TrajbenchError(f"{records_path} lacks column(s) {missing}")
    if len(records) == 0:
        raise TrajbenchError(f"{records_path} has no records")
    keys = [c for c in (*RECORD_KEYS, *METRICS, "model_params", "policy") if c != "p_bursty"]
    bad = records[keys].isna().any()
    if bad.any():
        raise TrajbenchError(f"{records_path} has missing or NaN values in {list(bad[bad].index)}")
    values = records[list(METRICS)].to_numpy(dtype=float)
    if not np.isfinite(values).all():
        raise TrajbenchError(f"{records_path} has infinite values in {list(METRICS)}")
    return results, records


def _cross_check(results: dict, condition: dict, aggregates: list[dict], where: Path) -> None:
    """Refuse a run whose results.json disagrees with its records (the report would differ)."""
    ours = {_agg_key(a): a["success_iqm"] for a in aggregates}
    for item in results.get("conditions") or []:
        if any(_plain(item.get(c)) != condition[c] for c in CONDITION_COLS):
            continue
        key = tuple(_plain(item.get(c)) for c in AGG_KEYS)
        theirs = _plain(item.get("success_iqm"))
        if key in ours and theirs is not None and abs(theirs - ours[key]) > TOLERANCE:
            raise TrajbenchError(
                f"{where}: success_iqm {theirs!r} for {condition} ({_key_text(key)}) disagrees "
                f"with records.parquet, which gives {ours[key]!r}"
            )


def make_submissions(
    run_dir: str | Path,
    name: str,
    authors: Sequence[str] = ("anonymous",),
    model_name: str | None = None,
    reps: int = 2000,
    seed: int = 0,
    command: str | None = None,
) -> list[Submission]:
    """One checked :class:`Submission` per trained condition of a run directory.

    A run with a single condition gives the entry ``name``; otherwise every entry is named
    ``<name>[-<group>]-<policy>[-<train_context>-<instruction>][-p<p_bursty>]`` (the group when
    the run has several, since each group trains its own models).

    Raises:
        TrajbenchError: the run directory is missing, inconsistent or gives an invalid entry.

    Example:
        subs = make_submissions("runs/smoke", "smoke-2cpu", authors=["Ada Lovelace"])
    """
    run_dir = Path(run_dir)
    results, records = _read_run(run_dir)
    command = command or results.get("command")
    if not command and results.get("preset"):
        command = f"trajbench run --preset {results['preset']} --out {run_dir.name}"
    if not command:
        raise TrajbenchError(f"{run_dir}/results.json records no command or preset: pass --command")
    boot = Bootstrap(reps=reps, confidence=0.95, seed=seed)
    # A run's groups (e.g. dark-room, babyai-goto) train separate models: one entry per group.
    by_group = "group" in records and records["group"].nunique() > 1
    split_cols = ["group", *CONDITION_COLS] if by_group else list(CONDITION_COLS)
    groups = list(records.groupby(split_cols, sort=True, dropna=False))
    subs = []
    for values, frame in groups:
        prefix = f"{name}-{values[0]}" if by_group else name
        values = values[1:] if by_group else values
        condition = {c: _plain(v) for c, v in zip(CONDITION_COLS, values, strict=True)}
        params = frame["model_params"].unique()
        if len(params) != 1:
            raise TrajbenchError(f"{condition}: records disagree on model_params {list(params)}")
        cells = (
            frame.groupby(list(RECORD_KEYS), sort=True)
            .agg(
                n_episodes=("success", "size"),
                success=("success", "mean"),
                normalized_return=("normalized_return", "mean"),
            )
            .reset_index()
        )
        cell_dicts = [{c: _plain(v) for c, v in row.items()} for row in cells.to_dict("records")]
        cells = pd.DataFrame(cell_dicts)
        try:
            aggregates = compute_aggregates(cells, boot)
        except ValueError as err:
            raise TrajbenchError(f"{run_dir} {condition}: {err}") from None
        _cross_check(results, condition, aggregates, run_dir / "results.json")
        entry = name if len(groups) == 1 else f"{prefix}-{_slug(condition)}"
        obj = {
            "schema_version": 1,
            "name": entry,
            "authors": list(authors),
            "model": {
                "name": model_name or condition["policy"],
                "policy": condition["policy"],
                "parameters": int(params[0]),
            },
            "suite": results["suite"],
            "suite_version": str(results["suite_version"]),
            "training": {c: condition[c] for c in CONDITION_COLS if c != "policy"},
            "seeds": sorted({int(s) for s in cells["seed"]}),
            "trajbench_version": str(results["trajbench_version"]),
            "git_commit": str(results["git_commit"]),
            "hardware": _hardware_text(results["hardware"]),
            "wall_time_s": float(results["wall_time_s"]),
            "date": str(results["date"]),
            "command": command,
            "preset": results.get("preset"),
            "config": results["config"],
            "bootstrap": boot.model_dump(),
            "records": cell_dicts,
            "aggregates": aggregates,
        }
        try:
            sub = Submission.model_validate(obj)
        except ValidationError as err:
            lines = "; ".join(_describe(e) for e in err.errors())
            raise TrajbenchError(f"{run_dir} gives an invalid entry {entry!r}: {lines}") from None
        problems = check(sub)
        if problems:
            raise TrajbenchError(f"{run_dir} gives an invalid entry {entry!r}: {problems[0]}")
        subs.append(sub)
    return subs


def dumps(sub: Submission) -> str:
    """A submission as JSON with one line per record and per aggregate, so diffs stay readable.

    Example:
        atomic_write_text(f"leaderboard/submissions/{sub.name}.json", dumps(sub))
    """
    return _dumps_object(sub.model_dump(mode="json"))


def _dumps_object(obj: dict[str, Any]) -> str:
    """Indented JSON, except that each item of ``records`` and ``aggregates`` takes one line.

    Example:
        >>> text = '{"a": [1, 2], "records": [{"k": 1}, {"k": 2}]}'
        >>> print(_dumps_object(json.loads(text)), end="")
        {
          "a": [
            1,
            2
          ],
          "records": [
            {"k": 1},
            {"k": 2}
          ]
        }
    """

    def one(value: Any, indent: int | None) -> str:
        return json.dumps(value, indent=indent, allow_nan=False, ensure_ascii=False)

    items = []
    for key, value in obj.items():
        if key in ("records", "aggregates"):
            rows = ",\n".join(f"    {one(v, None)}" for v in value)
            items.append(f"  {one(key, None)}: [\n{rows}\n  ]")
        else:
            items.append(f"  {one(key, None)}: {one(value, 2).replace(chr(10), chr(10) + '  ')}")
    return "{\n" + ",\n".join(items) + "\n}\n"


def write_submissions(subs: Sequence[Submission], out: str | Path) -> list[Path]:
    """Write each submission to ``out/<name>.json``, refusing to overwrite or reuse a name."""
    out = Path(out)
    taken = {}
    for path in sorted(out.glob("*.json")):
        try:
            obj = read_json(path)
        except TrajbenchError:
            continue
        if isinstance(obj, dict) and isinstance(obj.get("name"), str):
            taken[obj["name"]] = path
    paths = [out / f"{sub.name}.json" for sub in subs]
    for sub, path in zip(subs, paths, strict=True):
        if path.exists() or sub.name in taken:
            where = taken.get(sub.name, path)
            raise TrajbenchError(
                f"entry {sub.name!r} already exists ({where}); choose another --name"
            )
    for sub, path in zip(subs, paths, strict=True):
        atomic_write_text(path, dumps(sub))
    return paths


# -- build ------------------------------------------------------------------------------------
@dataclass
class Row:
    """One entry in one table: its aggregate at the table's k, with and without support."""

    sub: Submission
    same: Aggregate | None
    other: Aggregate | None
    rank: int = 0


@dataclass
class Table:
    """Entries of one suite version on one (held-out split, family), ranked at k."""

    suite_version: str
    eval_split: str
    family: str
    k: int
    rows: list[Row] = field(default_factory=list)

    @property
    def title(self) -> str:
        return f"{self.family} — {SPLIT_TITLES[self.eval_split]} (k = {self.k})"

    @property
    def ranked(self) -> list[Row]:
        return [r for r in self.rows if r.same is not None]


def tables(subs: Iterable[Submission]) -> list[Table]:
    """Ranked tables, one per (suite version, held-out split, family) that has entries.

    k is the largest k with same-level support that every entry of the table evaluated (the
    largest k of any entry if they share none; entries without it are listed unranked).
    Entries rank by success IQM, then CI low end, then name; equal IQM and CI share a rank.
    """
    by_name = {s.name: s for s in subs}
    index = {s.name: {_agg_key(a): a for a in s.aggregates} for s in by_name.values()}
    out = []
    for version in sorted({s.suite_version for s in by_name.values()}, key=_version_key):
        families = SUITE_VERSIONS[version]["families"]
        for split in SPLIT_TITLES:
            for fam in families:
                ks = {}
                for sub in (s for s in by_name.values() if s.suite_version == version):
                    mine = {
                        k for f, e, k, sup in index[sub.name] if (f, e, sup) == (fam, split, "same")
                    }
                    if mine:
                        ks[sub.name] = mine
                if not ks:
                    continue
                common = set.intersection(*ks.values())
                k = max(common) if common else max(set.union(*ks.values()))
                table = Table(version, split, fam, k)
                for entry in sorted(ks):
                    aggs = index[entry]
                    table.rows.append(
                        Row(
                            by_name[entry],
                            aggs.get((fam, split, k, "same")),
                            aggs.get((fam, split, k, "other")),
                        )
                    )
                table.rows.sort(key=_rank_key)
                for i, row in enumerate(table.ranked):
                    prev = table.ranked[i - 1] if i else None
                    tie = prev is not None and _rank_key(prev)[:2] == _rank_key(row)[:2]
                    row.rank = prev.rank if tie else i + 1
                out.append(table)
    return out


def _version_key(version: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in version.split("."))


def _rank_key(row: Row) -> tuple:
    if row.same is None:
        return (1.0, 1.0, row.sub.name)  # unranked, after every ranked row
    return (-row.same.success_iqm, -row.same.success_ci_low, row.sub.name)


def _ci(iqm: float, low: float, high: float) -> str:
    return f"{iqm:.3f} [{low:.3f}, {high:.3f}]"


def _training(t: Training) -> str:
    parts = [v for v in (t.train_context, t.instruction) if v not in NO_VALUE]
    if t.p_bursty is not None:
        parts.append(f"p_bursty={t.p_bursty:g}")
    return " / ".join(parts) or "—"


HEADERS = (
    "#",
    "Entry",
    "Model",
    "Training",
    "Success IQM [95% CI]",
    "No-support success",
    "Norm. return IQM [95% CI]",
    "Seeds × levels",
    "Params",
    "Hardware",
    "Date",
)


def _cells(row: Row) -> list[str]:
    """The table cells of one row, shared by the Markdown and HTML renderings."""
    s, same, other = row.sub, row.same, row.other
    if same is None:
        scores = ["—", "—", "—", "—"]
    else:
        scores = [
            _ci(same.success_iqm, same.success_ci_low, same.success_ci_high),
            "—" if other is None else f"{other.success_iqm:.3f}",
            _ci(
                same.normalized_return_iqm,
                same.normalized_return_ci_low,
                same.normalized_return_ci_high,
            ),
            f"{same.n_seeds} × {same.n_levels}",
        ]
    return [
        str(row.rank) if row.rank else "—",
        s.name,
        f"{s.model.name} ({s.model.policy})" if s.model.name != s.model.policy else s.model.name,
        _training(s.training),
        *scores,
        f"{s.model.parameters:,}" if s.model.parameters else "—",
        s.hardware,
        s.date[:10],
    ]


INTRO = (
    "In-context learning from trajectories: each policy sees k expert demonstrations of a "
    "held-out level in its context and then plays that level. Each table ranks entries by "
    "success IQM (interquartile mean over training seeds × levels) with same-level "
    "demonstrations, at the largest k that every entry of the table evaluated; brackets are "
    "95% stratified-bootstrap confidence intervals over seeds. No-support success gives the "
    "same k demonstrations from other levels, so it measures what the weights alone know. "
    "Normalized return is return divided by the expert's return on the level."
)
HOW_TO = [
    "trajbench run --preset smoke --out runs/smoke",
    'trajbench leaderboard submit runs/smoke --name NAME --authors "Your Name"',
    "trajbench leaderboard validate",
    "trajbench leaderboard build",
]


def _md(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def render_markdown(subs: Sequence[Submission]) -> str:
    """The leaderboard README.

    Example:
        >>> render_markdown([]).splitlines()[0]
        '# trajbench leaderboard'
    """
    lines = [
        "# trajbench leaderboard",
        "",
        "<!-- Generated by `trajbench leaderboard build` from submissions/*.json; do not edit. -->",
        "",
        INTRO,
        "",
        "To add an entry (its format is `schema.json`), run these and open a pull request with "
        "the new `submissions/*.json` and the rebuilt leaderboard:",
        "",
        "```",
        *HOW_TO,
        "```",
        "",
    ]
    boards = tables(subs)
    if not boards:
        return "\n".join([*lines, "No entries yet.", ""])
    for version in dict.fromkeys(t.suite_version for t in boards):
        lines += [f"## Suite {SUITE} v{version}", ""]
        for table in (t for t in boards if t.suite_version == version):
            lines += [f"### {table.title}", ""]
            lines.append("| " + " | ".join(HEADERS) + " |")
            lines.append("|" + "|".join("---" for _ in HEADERS) + "|")
            lines += ["| " + " | ".join(_md(c) for c in _cells(r)) + " |" for r in table.rows]
            lines.append("")
    lines += [
        "## How each entry was produced",
        "",
        "| Entry | Authors | Command |",
        "|---|---|---|",
    ]
    for sub in sorted(subs, key=lambda s: s.name):
        command = sub.command.replace("`", "'")
        lines.append(f"| {_md(sub.name)} | {_md(', '.join(sub.authors))} | `{_md(command)}` |")
    return "\n".join([*lines, ""])


def plot_svg(boards: Sequence[Table]) -> str:
    """An inline SVG: success IQM with its CI per ranked entry, one panel per table.

    Deterministic: fixed hash salt, text kept as text, no date or creator metadata.
    """
    import matplotlib
    from matplotlib.figure import Figure

    boards = [t for t in boards if t.ranked]
    heights = [0.3 * len(t.ranked) + 0.8 for t in boards]
    style = {"svg.hashsalt": "trajbench-leaderboard", "svg.fonttype": "none", "font.size": 8}
    with matplotlib.rc_context(style):
        fig = Figure(figsize=(7.0, sum(heights) + 0.4), layout="constrained")
        axes = fig.subplots(len(boards), 1, squeeze=False, height_ratios=heights)[:, 0]
        for ax, table in zip(axes, boards, strict=True):
            rows = table.ranked
            y = np.arange(len(rows))
            same = [r.same for r in rows]
            ax.hlines(y, [a.success_ci_low for a in same], [a.success_ci_high for a in same], "C0")
            ax.plot([a.success_iqm for a in same], y, "o", color="C0", label="same-level support")
            nos = [(r.other.success_iqm, i) for i, r in enumerate(rows) if r.other is not None]
            if nos:
                xs, ys = zip(*nos, strict=True)
                ax.plot(xs, ys, "o", mfc="none", color="C3", label="no support")
            ax.set_yticks(y, [r.sub.name for r in rows])
            ax.set_ylim(len(rows) - 0.5, -0.5)
            ax.set_xlim(-0.02, 1.02)
            ax.grid(axis="x", alpha=0.3)
            ax.set_title(table.title, loc="left")
            ax.legend(loc="lower right", fontsize=7)
        axes[-1].set_xlabel("success IQM with 95% CI")
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    svg = buf.getvalue()
    return svg[svg.index("<svg") :].strip()


CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 80em; padding: 0 1em; }
table { border-collapse: collapse; margin-bottom: 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; }
th { background: #f3f3f3; }
td:nth-child(n+5):nth-child(-n+9), td:nth-child(11) { white-space: nowrap; }
tr.unranked { color: #888; }
code, pre { background: #f6f6f6; }
figure svg { max-width: 100%; height: auto; }
"""


def render_html(subs: Sequence[Submission]) -> str:
    """A static page: the ranked tables and a plot, with no external resources.

    Example:
        >>> "No entries yet." in render_html([])
        True
    """
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        '<head><meta charset="utf-8"><title>trajbench leaderboard</title>',
        f"<style>{CSS}</style></head>",
        "<body>",
        "<h1>trajbench leaderboard</h1>",
        f"<p>{e(INTRO)}</p>",
        f"<pre>{e(chr(10).join(HOW_TO))}</pre>",
    ]
    boards = tables(subs)
    if not boards:
        parts.append("<p>No entries yet.</p>")
    for version in dict.fromkeys(t.suite_version for t in boards):
        mine = [t for t in boards if t.suite_version == version]
        parts += [f"<h2>Suite {e(SUITE)} v{e(version)}</h2>"]
        if any(t.ranked for t in mine):
            parts.append(f"<figure>{plot_svg(mine)}</figure>")
        for table in mine:
            attrs = f'data-family="{e(table.family)}" data-split="{e(table.eval_split)}"'
            parts += [f"<h3>{e(table.title)}</h3>", f'<table class="board" {attrs}>']
            parts.append(
                "<thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in HEADERS) + "</tr></thead>"
            )
            parts.append("<tbody>")
            for row in table.rows:
                cls = "" if row.rank else ' class="unranked"'
                cells = "".join(f"<td>{e(c)}</td>" for c in _cells(row))
                parts.append(f'<tr{cls} data-entry="{e(row.sub.name)}">{cells}</tr>')
            parts.append("</tbody></table>")
    if boards:
        parts += ["<h2>How each entry was produced</h2>", "<table><thead><tr>"]
        parts.append("<th>Entry</th><th>Authors</th><th>Command</th></tr></thead><tbody>")
        for sub in sorted(subs, key=lambda s: s.name):
            parts.append(
                f"<tr><td>{e(sub.name)}</td><td>{e(', '.join(sub.authors))}</td>"
                f"<td><code>{e(sub.command)}</code></td></tr>"
            )
        parts.append("</tbody></table>")
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)


def render(subs: Sequence[Submission]) -> dict[str, str]:
    """Every generated file of the leaderboard directory: name -> content."""
    return {
        "README.md": render_markdown(subs),
        "index.html": render_html(subs),
        "schema.json": schema_text(),
    }


# -- command line -----------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trajbench leaderboard", description="Submit, validate and build the leaderboard."
    )
    sub = parser.add_subparsers(dest="action", required=True, metavar="{submit,validate,build}")
    p = sub.add_parser("submit", help="turn a run directory into submission files")
    p.add_argument("run_dir", type=Path, help="directory written by trajbench run")
    p.add_argument("--name", required=True, help="entry name (suffixed per condition if several)")
    p.add_argument("--authors", nargs="+", default=["anonymous"], help="who submits it")
    p.add_argument("--model-name", default=None, help="model name (default: the policy kind)")
    p.add_argument(
        "--command",
        default=None,
        help="command that produced the run (default: results.json's command, else its preset)",
    )
    p.add_argument("--out", type=Path, default=DEFAULT_ROOT / "submissions")
    p.add_argument("--reps", type=int, default=2000, help="bootstrap replicates for the CIs")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p = sub.add_parser("validate", help="check submissions (default: every one in the leaderboard)")
    p.add_argument("files", nargs="*", type=Path, help="submission files")
    p.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="leaderboard directory")
    p = sub.add_parser("build", help="regenerate README.md, index.html and schema.json")
    p.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="leaderboard directory")
    p.add_argument("--check", action="store_true", help="fail if the files on disk are stale")
    return parser


def _report(problems: Sequence[str]) -> int:
    for line in problems:
        print(line, file=sys.stderr)
    return 1 if problems else 0


def main(argv: Sequence[str] | None = None) -> int:
    """``trajbench leaderboard {submit,validate,build}``; returns the exit status."""
    try:
        args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as err:  # --help, or a usage error argparse has already printed
        return int(err.code or 0)
    if args.action == "submit":
        if not 1000 <= args.reps <= 100_000:
            raise TrajbenchError(f"--reps must be in 1000..100000, got {args.reps}")
        subs = make_submissions(
            args.run_dir,
            args.name,
            args.authors,
            args.model_name,
            args.reps,
            args.seed,
            args.command,
        )
        for path in write_submissions(subs, args.out):
            print(f"wrote {path}")
        return 0
    if args.action == "validate":
        files = args.files or submission_files(args.root)
        subs, problems = validate_files(files)
        if not files:
            print(f"no submissions in {args.root / 'submissions'}")
        for sub in subs:
            print(f"ok: {sub.name}")
        return _report(problems)
    files = submission_files(args.root)
    subs, problems = validate_files(files)
    if problems:
        return _report([*problems, "build: fix the submissions above first"])
    generated = render(subs)
    if args.check:
        stale = [
            f"{args.root / name}: stale; run trajbench leaderboard build"
            for name, text in generated.items()
            if not (args.root / name).is_file()
            or (args.root / name).read_bytes() != text.encode("utf-8")
        ]
        if not stale:
            print(f"{args.root}: up to date ({len(subs)} entries)")
        return _report(stale)
    for name, text in generated.items():
        atomic_write_text(args.root / name, text)
    print(f"wrote {', '.join(str(args.root / n) for n in generated)} ({len(subs)} entries)")
    return 0

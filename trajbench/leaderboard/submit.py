"""``trajbench leaderboard submit``: a run directory or an evaluate output -> submission files.

A submission holds **one trained condition**: one policy under one training condition (context
mode, instruction mode, p_bursty), over all of its training seeds. A run directory of
``trajbench run`` (``results.json`` and ``records.parquet``) therefore gives one entry per
condition (and per group, since each group trains its own models); an output of ``trajbench
evaluate`` (``evaluation.json`` and ``records.parquet``: any policy, also one trajbench did not
train) gives one entry, whose model records the policy's import path and version. Each is checked
like ``validate`` checks a file before anything is written (:mod:`.sources` reads both outputs).

Entries are written with schema 2: records per (family, eval_split, k, support, format,
eval_instruction, seed, level), averaged over their episodes and carrying the evaluation seed and,
where the query named a decoy (eval_instruction "decoy"), the decoy success; those evaluations
become aggregates of their own.

Example:
    subs = make_submissions("runs/smoke", "smoke-2cpu", authors=["Ada Lovelace"])
    write_submissions(subs, "leaderboard/submissions")
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import ValidationError

from trajbench.configs import from_dict
from trajbench.data import read_meta
from trajbench.errors import TrajbenchError
from trajbench.io import atomic_write_text
from trajbench.records import (
    DECOY_SUCCESS,
    EVAL_SPLIT,
    RESULTS_FILE,
    TEST_FAMILIES,
    TEST_LEVELS,
    TRAIN_CONTEXT,
)

from .schema import (
    AGG_KEYS,
    MEAN,
    METRICS,
    NO_VALUE,
    RECORD_KEYS,
    SCHEMA_VERSION,
    Bootstrap,
    Submission,
    agg_key,
    key_text,
)
from .sources import CONDITION_COLS, read_source
from .validate import TOLERANCE, check, compute_aggregates, describe, read_json


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _slug(condition: dict[str, Any]) -> str:
    parts = [condition["policy"]]
    parts += [condition[c] for c in (TRAIN_CONTEXT, "instruction") if condition[c] not in NO_VALUE]
    if condition["p_bursty"] is not None:
        parts.append(f"p{condition['p_bursty']:g}")
    return re.sub(r"[^A-Za-z0-9._-]+", "_", "-".join(str(p) for p in parts))


def _hardware_text(hardware: Any) -> str:
    if isinstance(hardware, dict):
        return ", ".join(f"{k}: {v}" for k, v in hardware.items())
    return str(hardware)


def episode_cells(frame: pd.DataFrame, where: str) -> list[dict[str, Any]]:
    """The (seed, level) cells of one condition's episodes: the records of its entry."""
    episodes = frame.assign(**{c: frame[c].astype(float) for c in METRICS})
    stats = {
        "eval_seed": ("eval_seed", "first"),
        "n_eval_seeds": ("eval_seed", "nunique"),
        "n_episodes": ("success", "size"),
        **{c: (c, "mean") for c in METRICS},
    }
    if DECOY_SUCCESS in frame:
        episodes[DECOY_SUCCESS] = frame[DECOY_SUCCESS].astype(float)
        stats |= {DECOY_SUCCESS: (DECOY_SUCCESS, "mean"), "n_decoys": (DECOY_SUCCESS, "count")}
    cells = episodes.groupby(list(RECORD_KEYS), sort=True).agg(**stats).reset_index()
    mixed = cells[cells["n_eval_seeds"] > 1]
    if len(mixed):
        raise TrajbenchError(
            f"{where}: the episodes of {_cell_text(mixed.iloc[0])} come from "
            f"{int(mixed.iloc[0]['n_eval_seeds'])} evaluation seeds; an entry holds one "
            "evaluation per training seed"
        )
    if DECOY_SUCCESS in frame:
        partial = cells[(cells["n_decoys"] > 0) & (cells["n_decoys"] < cells["n_episodes"])]
        if len(partial):
            raise TrajbenchError(
                f"{where}: only some episodes of {_cell_text(partial.iloc[0])} give {DECOY_SUCCESS}"
            )
    out = []
    for row in cells.drop(columns=["n_eval_seeds", "n_decoys"], errors="ignore").to_dict("records"):
        cell = {c: _plain(v) for c, v in row.items()}
        if cell.get(DECOY_SUCCESS, 0) is None:
            del cell[DECOY_SUCCESS]
        out.append(cell)
    return out


def _version(frame: pd.DataFrame) -> str | None:
    """The policy's version its records carry (None for records written before they did)."""
    versions = frame["policy_version"].unique() if "policy_version" in frame else []
    return str(versions[0]) if len(versions) == 1 else None


def _cell_text(cell: pd.Series) -> str:
    return "(" + ", ".join(f"{k}={_plain(cell[k])}" for k in RECORD_KEYS) + ")"


def _cross_check(
    results: dict, condition: dict, aggregates: list[dict], where: Path, group: str | None
) -> None:
    """Refuse a run whose results.json disagrees with its records (the report would differ)."""
    ours = {agg_key(a): a["success_mean"] for a in aggregates}
    for item in results.get("conditions") or []:
        if any(_plain(item.get(c)) != condition[c] for c in CONDITION_COLS):
            continue
        if group is not None and item.get("group") != group:
            continue
        key = tuple(_plain(item.get(c)) for c in AGG_KEYS)
        theirs = _plain(item.get("success_mean"))
        if key in ours and theirs is not None and abs(theirs - ours[key]) > TOLERANCE:
            raise TrajbenchError(
                f"{where}: success_mean {theirs!r} for {condition} ({key_text(key)}) disagrees "
                f"with records.parquet, which gives {ours[key]!r}"
            )


def _reproduction(run_dir: Path, results: dict, frame: pd.DataFrame, condition: dict) -> Any:
    """What re-runs the evaluation of one condition of a ``trajbench run`` directory: its group,
    the evaluation stores (spec and content hash) and each seed's model directory. None where
    the run does not say (not a trajbench run, or its stores or models are gone)."""
    # The pipeline imports torch: only here, so that validate and build start fast.
    from trajbench.pipeline.presets import DataSpec
    from trajbench.pipeline.runner import data_dir
    from trajbench.pipeline.training_record import read_training_record
    from trajbench.records import REFERENCES

    names = frame["group"].unique() if "group" in frame else []
    groups = results["config"].get("groups") if isinstance(results["config"], dict) else None
    group = next((g for g in groups or [] if len(names) == 1 and g.get("name") == names[0]), None)
    if group is None:
        return None
    data = []
    for split, key in ((TEST_LEVELS, "test_data"), (TEST_FAMILIES, "heldout_family_data")):
        for spec in group.get(key) or []:
            try:
                meta = read_meta(data_dir(run_dir, from_dict(DataSpec, spec)))
            except TrajbenchError:
                return None
            data.append({EVAL_SPLIT: split, "spec": spec, "content_hash": meta["content_hash"]})
    models = {}
    if condition["policy"] not in REFERENCES:
        for model in sorted((run_dir / "jobs" / group["name"]).glob("*/seed*/model")):
            try:
                trained = read_training_record(model).config
            except TrajbenchError:
                continue
            context = trained.context
            if (context.mode, context.instruction, context.p_bursty) == (
                condition[TRAIN_CONTEXT],
                condition["instruction"],
                condition["p_bursty"],
            ):
                models[str(trained.seed)] = model.relative_to(run_dir).as_posix()
        if set(models) != {str(int(s)) for s in frame["seed"].unique()}:
            return None
    return {"group": group["name"], "data": data, "models": models}


def _evaluated_reproduction(meta: dict) -> Any:
    """What re-runs the evaluation of a ``trajbench evaluate`` output: its evaluation stores'
    collection specs and content hashes, read from each store's ``meta.json``. None where a store
    is gone or is not one ``trajbench collect`` that a spec repeats (merged, sticky actions, ...)."""
    from trajbench.collect import CollectConfig
    from trajbench.pipeline.presets import DataSpec

    config = meta["config"]
    data = []
    for path in config.get("data") or []:
        try:
            store = read_meta(Path(path))
        except TrajbenchError:
            return None
        collected = store.get("config")
        if not isinstance(collected, dict) or store.get("shard"):
            return None
        default = CollectConfig(env="", out=Path())
        if (collected.get("epsilon"), collected.get("sticky_p")) != (
            default.epsilon,
            default.sticky_p,
        ):
            return None
        try:
            spec = from_dict(DataSpec, {f: collected[f] for f in DATA_SPEC_FIELDS}, str(path))
        except (KeyError, TrajbenchError):
            return None
        data.append(
            {
                EVAL_SPLIT: config.get(EVAL_SPLIT, TEST_LEVELS),
                "spec": {f: getattr(spec, f) for f in DATA_SPEC_FIELDS},
                "content_hash": store["content_hash"],
            }
        )
    return {"group": None, "data": data, "models": {}} if data else None


#: The DataSpec fields a store's collection config gives.
DATA_SPEC_FIELDS = ("env", "levels", "episodes_per_level", "demonstrator", "seed")


def make_submissions(
    run_dir: str | Path,
    name: str,
    authors: Sequence[str] = ("anonymous",),
    model_name: str | None = None,
    reps: int = 2000,
    seed: int = 0,
    command: str | None = None,
) -> list[Submission]:
    """One checked :class:`Submission` per trained condition of a ``trajbench run`` directory,
    or the one entry of a ``trajbench evaluate`` output (:func:`~.sources.read_source`).

    A run with a single condition, and an evaluate output, give the entry ``name``; otherwise
    every entry is named ``<name>[-<group>]-<policy>[-<train_context>-<instruction>][-p<p_bursty>]``
    (the group when the run has several, since each group trains its own models). An evaluate
    output's entry records its evaluation stores' specs to re-run it (``reproduce``, group null)
    where they can be collected again.

    Raises:
        TrajbenchError: the directory is neither output, or is missing, inconsistent or gives an
            invalid entry.

    Example:
        subs = make_submissions("runs/smoke", "smoke-2cpu", authors=["Ada Lovelace"])
        subs = make_submissions("runs/tabular", "tabular-icl", authors=["Ada Lovelace"])
    """
    run_dir = Path(run_dir)
    source = read_source(run_dir)
    results, records = source.meta, source.records
    command = command or results.get("command")
    if not command and results.get("preset"):
        command = f"trajbench run --preset {results['preset']} --out {run_dir.name}"
    if not command:
        raise TrajbenchError(f"{run_dir}/results.json records no command or preset: pass --command")
    boot = Bootstrap(method=MEAN, reps=reps, confidence=0.95, seed=seed)
    # A run's groups (e.g. dark-room, babyai) train separate models: one entry per group.
    by_group = "group" in records and records["group"].nunique() > 1
    split_cols = ["group", *CONDITION_COLS] if by_group else list(CONDITION_COLS)
    groups = list(records.groupby(split_cols, sort=True, dropna=False))
    subs = []
    for values, frame in groups:
        group = values[0] if by_group else None
        prefix = f"{name}-{group}" if by_group else name
        values = values[1:] if by_group else values
        condition = {c: _plain(v) for c, v in zip(CONDITION_COLS, values, strict=True)}
        params = frame["model_params"].unique()
        if len(params) != 1:
            raise TrajbenchError(f"{condition}: records disagree on model_params {list(params)}")
        cells = episode_cells(frame, f"{run_dir} {condition}")
        try:
            aggregates = compute_aggregates(pd.DataFrame(cells), boot)
        except ValueError as err:
            raise TrajbenchError(f"{run_dir} {condition}: {err}") from None
        _cross_check(results, condition, aggregates, run_dir / RESULTS_FILE, group)
        entry = name if len(groups) == 1 else f"{prefix}-{_slug(condition)}"
        run = source.kind == "run"
        reproduce = (
            _reproduction(run_dir, results, frame, condition)
            if run
            else _evaluated_reproduction(results)
        )
        obj = {
            "schema_version": SCHEMA_VERSION,
            "name": entry,
            "authors": list(authors),
            "model": {
                "name": model_name or condition["policy"],
                "policy": condition["policy"],
                "parameters": int(params[0]),
                "version": _version(frame),
            },
            "suite": results["suite"],
            "suite_version": str(results["suite_version"]),
            "training": {c: condition[c] for c in CONDITION_COLS if c != "policy"},
            "seeds": sorted({int(c["seed"]) for c in cells}),
            "trajbench_version": str(results["trajbench_version"]),
            "git_commit": str(results["git_commit"]),
            "hardware": _hardware_text(results["hardware"]),
            "wall_time_s": float(results["wall_time_s"]),
            "date": str(results["date"]),
            "command": command,
            "preset": results.get("preset"),
            "config": results["config"],
            "bootstrap": boot.model_dump(),
            "reproduce": reproduce,
            "records": cells,
            "aggregates": aggregates,
        }
        try:
            sub = Submission.model_validate(obj)
        except ValidationError as err:
            lines = "; ".join(describe(e) for e in err.errors())
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

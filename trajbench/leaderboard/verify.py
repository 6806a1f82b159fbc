"""``trajbench leaderboard verify``: re-run part of an entry's evaluation and compare the records.

``validate`` recomputes an entry's aggregates from its records; it cannot tell invented records
from measured ones. ``verify`` re-runs the evaluation: it samples ``--cells`` records ((seed,
level) cells) with a seeded draw, re-runs the evaluations that produced them (one per training
seed, held-out split and query mission, whole: a policy's random stream and the model's batches
run across levels, so a level cannot be re-run alone and give the same numbers) from the models,
the evaluation config and the evaluation stores the entry records (``reproduce``, ``config``), and
compares every re-run record with the submitted one.

A policy trajbench did not train (an entry of ``trajbench evaluate --policy package.module:factory``)
is re-run from its recorded import path, which must import (from the current directory, as
``trajbench evaluate`` does) with the version the entry records, and its ``--policy-kwargs``.
Its re-run sees what any outside policy sees (``docs/agent-view.md``).

Tolerance: none by default. On a CPU the evaluation is deterministic given the evaluation seed
each record carries, so the re-run records of trajbench-trained models and reference policies
are exactly the submitted ones (each cell's success is a mean over a few episodes: any change is
a whole episode). A GPU re-run may differ where two actions tie to the last bit: re-run on the
CPU (the default).

The evaluation stores are collected again from their recorded specs (or read from ``--data``)
and must have the content hash the run's stores had; otherwise the trajbench version differs
from the entry's ``git_commit``.

Example:
    trajbench leaderboard verify leaderboard/submissions/NAME.json --model runs/NAME --write
"""

from __future__ import annotations

import importlib
import os
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from trajbench.configs import from_dict
from trajbench.data import load
from trajbench.errors import TrajbenchError
from trajbench.io import atomic_write_text
from trajbench.pipeline.evaluate import EvalConfig, evaluate
from trajbench.pipeline.policies import IMPORT_PATH, package_version
from trajbench.pipeline.presets import DataSpec
from trajbench.pipeline.runner import collect_data, job_eval_config
from trajbench.pipeline.training_record import read_training_record
from trajbench.provenance import git_commit
from trajbench.records import DECOY_SUCCESS, REFERENCES, RESULTS_FILE

from .schema import METRICS, RECORD_KEYS, Record, Submission, Verification, key_text
from .submit import dumps, episode_cells
from .validate import load as load_entry

#: A re-run evaluation: (training seed, eval_split, eval_instruction, eval_seed).
Unit = tuple[int, str, str, int]


def policies(sub: Submission, models: tuple[Path, ...]) -> dict[int, str]:
    """Training seed -> the policy that re-runs it: a reference policy's name, or the model
    directory (of ``models``: model directories, or the run directory the entry records
    them in) trained with that seed under the entry's training condition."""
    if sub.model.policy in REFERENCES:
        return {seed: sub.model.policy for seed in sub.seeds}
    if IMPORT_PATH.match(sub.model.policy):
        check_importable(sub)
        return {seed: sub.model.policy for seed in sub.seeds}
    dirs = []
    for path in models:
        if (path / RESULTS_FILE).is_file():  # a run directory: the models the entry names
            dirs += [path / rel for rel in sub.reproduce.models.values()]
        else:
            dirs.append(path)
    found = {}
    t = sub.training
    for model in dirs:
        record = read_training_record(model)
        context = record.config.context
        theirs = (context.mode, context.instruction, context.p_bursty, record.parameters)
        ours = (t.train_context, t.instruction, t.p_bursty, sub.model.parameters)
        if theirs != ours:
            raise TrajbenchError(
                f"--model {model} was trained as (mode, instruction, p_bursty, parameters) "
                f"{theirs}, the entry {sub.name} as {ours}"
            )
        found[record.config.seed] = str(model)
    usable = {seed: p for seed, p in found.items() if seed in sub.seeds}
    if not usable:
        raise TrajbenchError(
            f"--model: give the model directory of at least one training seed of {sub.name} "
            f"(seeds {', '.join(map(str, sub.seeds))}), or the run directory"
        )
    return usable


def check_importable(sub: Submission) -> None:
    """Refuse an outside policy that does not import here, or imports at another version than
    the entry's (its records would not be the entry's policy's)."""
    if os.getcwd() not in sys.path:  # as trajbench evaluate: a module of the current directory
        sys.path.insert(0, os.getcwd())
    module = sub.model.policy.partition(":")[0]
    try:
        importlib.import_module(module)
    except Exception as err:  # whatever the entry's module raises on import
        raise TrajbenchError(
            f"{sub.name}: its policy {sub.model.policy} does not import here "
            f"({type(err).__name__}: {err}); verify from where it imports"
        ) from None
    version = package_version(module)
    if version != sub.model.version:
        raise TrajbenchError(
            f"{sub.name}: {sub.model.policy} imports here at version {version}, the entry's is "
            f"{sub.model.version}: verify with that version"
        )


def sample_units(sub: Submission, seeds: set[int], cells: int, seed: int) -> list[Unit]:
    """The evaluations behind a seeded sample of ``cells`` records of the ``seeds``."""
    pool = [r for r in sub.records if r.seed in seeds]
    picked = np.random.default_rng(seed).choice(
        len(pool), size=min(cells, len(pool)), replace=False
    )
    return sorted({_unit(pool[i]) for i in picked})


def _unit(record: Record) -> Unit:
    return (record.seed, record.eval_split, record.eval_instruction, record.eval_seed)


def evaluation_stores(sub: Submission, root: Path, workers: int) -> dict[str, list[str]]:
    """eval_split -> its evaluation stores under ``root/data`` (collected where missing), each
    checked against the content hash the run's store had."""
    stores: dict[str, list[str]] = {}
    for item in sub.reproduce.data:
        spec = from_dict(DataSpec, item.spec, f"{sub.name}: reproduce.data")
        path = collect_data(spec, root, workers, progress=False)
        found = load(path).content_hash
        if found != item.content_hash:
            raise TrajbenchError(
                f"the evaluation store {spec.name} collected here has content "
                f"{found[:12]}, the run's had {item.content_hash[:12]}: verify with the "
                f"trajbench of the entry's commit {sub.git_commit[:12]}"
            )
        stores.setdefault(item.eval_split, []).append(str(path))
    return stores


def eval_config(sub: Submission) -> EvalConfig:
    """The evaluation config of the entry's group, as its run recorded it (an entry of
    ``trajbench evaluate``: its config)."""
    if sub.reproduce is not None and sub.reproduce.group is None:
        return from_dict(EvalConfig, sub.config, f"{sub.name}: config")
    groups = sub.config.get("groups") or []
    group = next(
        (g for g in groups if isinstance(g, dict) and g.get("name") == sub.reproduce.group), None
    )
    if group is None or "eval" not in group:
        raise TrajbenchError(
            f"{sub.name}: config records no group {sub.reproduce.group!r} with an evaluation config"
        )
    return from_dict(EvalConfig, group["eval"], f"{sub.name}: config.groups.eval")


def rerun(sub: Submission, unit: Unit, policy: str, data: list[str], out: Path, device: str):
    """The records (one dict per (seed, level) cell) the evaluation ``unit`` gives again."""
    seed, split, instruction, eval_seed = unit
    ecfg = job_eval_config(
        eval_config(sub),
        split,
        "train" if instruction == sub.training.instruction else instruction,
        policy=policy,
        data=tuple(data),
        out=str(out),
        seed=eval_seed,
        device=device,
        offline=False,
    )
    online = evaluate(ecfg)[0]
    online["seed"] = seed  # as trajbench run labels a job's records
    return episode_cells(online, f"re-run of {sub.name}")


def compare(sub: Submission, unit: Unit, cells: list[dict], tolerance: float) -> list[str]:
    """One line per difference between the submitted records of ``unit`` and re-run ``cells``."""
    mine = {tuple(r.model_dump()[k] for k in RECORD_KEYS): r for r in sub.records}
    mine = {k: r for k, r in mine.items() if _unit(r) == unit}
    problems = []
    for cell in cells:
        key = tuple(cell[k] for k in RECORD_KEYS)
        where = f"record ({key_text(key, RECORD_KEYS)})"
        record = mine.pop(key, None)
        if record is None:
            problems.append(f"{where}: re-run, but the entry has no such record")
            continue
        for name in ("n_episodes", "eval_seed", *METRICS, DECOY_SUCCESS):
            want, got = cell.get(name), getattr(record, name)
            close = want is not None and got is not None and abs(want - got) <= tolerance
            if want != got and not (close and name in (*METRICS, DECOY_SUCCESS)):
                problems.append(f"{where}: {name} is {got!r} in the entry, {want!r} re-run")
    problems += [
        f"record ({key_text(k, RECORD_KEYS)}): in the entry, but the re-run gives no such record"
        for k in mine
    ]
    return problems


def verify(
    path: Path,
    models: tuple[Path, ...] = (),
    data: Path | None = None,
    cells: int = 8,
    seed: int = 0,
    tolerance: float = 0.0,
    device: str = "cpu",
    workers: int = 1,
    write: bool = False,
) -> int:
    """Re-check the entry in ``path`` (see the module docstring); 0 when it holds, else 1.

    Prints one line when the re-run agrees, one stderr line per difference otherwise; with
    ``write``, marks a passing entry ``verified`` in its file.

    Raises:
        TrajbenchError: the entry is invalid or cannot be re-run, or the models or stores given
            are not the ones it records.
    """
    if cells < 1 or tolerance < 0:
        raise TrajbenchError(f"--cells must be >= 1 and --tolerance >= 0, got {cells}, {tolerance}")
    sub, problems = load_entry(path)
    if problems:
        raise TrajbenchError(f"{path} is not a valid entry: {problems[0]}")
    if not isinstance(sub, Submission) or sub.reproduce is None:
        raise TrajbenchError(
            f"{path} records no way to re-run its evaluation (an archived schema-1 entry, or not "
            "submitted from a trajbench run by this version)"
        )
    eval_config(sub)  # before any work: the entry records how it was evaluated
    by_seed = policies(sub, models)
    cells = min(cells, sum(r.seed in by_seed for r in sub.records))
    units = sample_units(sub, set(by_seed), cells, seed)
    problems, compared = [], 0
    with tempfile.TemporaryDirectory(prefix="trajbench-verify-") as tmp:
        stores = evaluation_stores(sub, data or Path(tmp), workers)
        for i, unit in enumerate(units):
            if unit[1] not in stores:
                problems.append(f"records of {unit[1]}: the entry records no evaluation store")
                continue
            got = rerun(sub, unit, by_seed[unit[0]], stores[unit[1]], Path(tmp) / f"e{i}", device)
            problems += compare(sub, unit, got, tolerance)
            compared += len(got)
    if problems:
        for line in problems:
            print(f"{path}: {line}", file=sys.stderr)
        print(f"{path}: rejected: the re-run differs in {len(problems)} place(s)", file=sys.stderr)
        return 1
    seeds = sorted({u[0] for u in units})
    print(
        f"verified {sub.name}: {cells} sampled cells, {len(units)} "
        f"evaluation(s) re-run (seeds {', '.join(map(str, seeds))}), {compared} records equal "
        + ("exactly" if tolerance == 0 else f"within {tolerance:g}")
    )
    if write:
        mark = Verification(
            date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            git_commit=git_commit(),
            cells=cells,
            records=compared,
            seed=seed,
            tolerance=float(tolerance),
        )
        atomic_write_text(path, dumps(sub.model_copy(update={"verified": mark})))
        print(f"marked {path} verified")
    return 0

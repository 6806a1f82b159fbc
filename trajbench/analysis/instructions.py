"""``trajbench analyze instructions``: the instruction ablation split by whether the mission can be
inferred from the demonstrations, scored against guessing.

The instruction ablation (``full`` / ``empty`` / ``template`` / ``wrong`` mission text) asks how
much a model reads the mission. The answer should depend on the level: when the demonstrations
already show unambiguously what to do, the mission text adds little; when they do not, it should
matter. This analysis computes, from the environment of every evaluated level:

**The demonstrations' final target.** MiniGrid levels fix the layout and the start state, so the
expert's demonstrations of a level are all the same episode; the analysis replays it and reads
the object it ends on: for ``GoToLocal`` the object the agent faces at the end, for ``PickupLoc``
the object it carries at the end, for ``PutNextLocal`` the object it dropped last *and* the
objects that object ends next to (BabyAI's "next to": one cell up, down, left or right).

**Inferable.** A level's mission is *inferable from the demonstrations* when exactly one object
of the layout matches the demonstrations' final target, i.e. no other object has the same type
and color (for ``PutNextLocal``: the moved object has no look-alike, it ends next to exactly one
object, and that object has no look-alike). Then "do what the demonstrations did" names a single
object. Otherwise a look-alike exists, and only the mission text (its article "a"/"the", its
location words "on your left") says whether the look-alike would do as well.

**Chance and the guess-normalized score.** A guesser that picks one of the level's candidate
objects (keys, balls, boxes and doors in the layout, ``n`` of them) uniformly at random satisfies
the mission with probability ``chance = |S| / n``, where ``S`` is the set of objects satisfying
the mission as BabyAI's own verifier resolves it (color, type and location words, at the start
state); ``chance = 1 / n`` when one object satisfies it. ``PutNextLocal`` guesses an ordered pair
of distinct objects: ``chance = #{(a, b): a in S_move, b in S_fixed, a != b} / (n (n - 1))``.
The guess-normalized score of an episode is ``(success - chance) / (1 - chance)``: 0 for a
guesser, 1 for always succeeding, negative below chance.

Input: a run directory of ``trajbench run`` (its ``records.parquet``), ``records.parquet`` files
of ``trajbench evaluate``, or model directories (or reference policies) evaluated here on
``--eval.data``. Only families with object missions (``GoToLocal-v0``, ``PickupLoc-v0``,
``PutNextLocal-v0``) are analysed; other families in the records are skipped.

Example:
    trajbench run --preset smoke --out runs/smoke
    trajbench analyze instructions --run runs/smoke --out runs/instructions
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from minigrid.core.actions import Actions
from minigrid.envs.babyai.core.verifier import GoToInstr, PickupInstr, PutNextInstr
from tqdm.auto import tqdm

from trajbench.errors import TrajbenchError
from trajbench.families import make_env
from trajbench.metrics import aggregate
from trajbench.pipeline.evaluate import EvalConfig, evaluate
from trajbench.records import EVAL_SPLIT, RECORDS_FILE, TRAIN_CONTEXT

NAME = "instructions"
#: Object types a BabyAI mission can name (the candidates of a guess).
CANDIDATE_TYPES = frozenset({"key", "ball", "box", "door"})
REQUIRED = ("policy", TRAIN_CONTEXT, "instruction", "family", EVAL_SPLIT, "k", "support")
#: Columns that, when present, also separate conditions (the runner's group and p_bursty).
OPTIONAL_CONDITION = ("group", "p_bursty")
INSTRUCTION_ORDER = ("full", "empty", "template", "wrong", "-")
#: The BabyAI missions this analysis reads: go to / pick up / put next to an object.
OBJECT_MISSIONS = (GoToInstr, PickupInstr, PutNextInstr)


@dataclass
class InstructionsConfig:
    """The instruction ablation split by whether the mission is inferable from the demonstrations."""

    out: str
    """Output directory: OUT/instructions.{csv,md,png} and OUT/instructions_levels.csv."""
    run: str = ""
    """A run directory of trajbench run (reads RUN/records.parquet)."""
    records: tuple[str, ...] = ()
    """records.parquet files (of trajbench run or trajbench evaluate)."""
    models: tuple[str, ...] = ()
    """Model directories (or reference policies random / expert / hashmap) to evaluate on
    --eval.data."""
    ks: tuple[int, ...] = ()
    """K values to report (empty: the largest K of the records); with --models also the K values
    evaluated (empty: --eval.ks)."""
    support: Literal["same", "other", "both"] = "same"
    """Which demonstrations to report (and evaluate, with --models): of the level itself (same),
    of other levels, or both."""
    baselines: bool = True
    """Keep reference policies (instruction '-') in the table."""
    eval: EvalConfig = field(default_factory=lambda: EvalConfig(ks=(0, 4), offline=False))
    """How --models are evaluated: data (expert episodes of the levels to score), episodes,
    max_levels, seed, device, threads, ...; policy and out are set per model, support is --support
    and ks is --ks unless that is empty."""
    progress: bool = True
    """Show progress bars."""


@dataclass
class InstructionsResult:
    """The tables of the analysis (see :func:`compute`)."""

    table: pd.DataFrame
    """One row per (condition, inferable or not): success, guess-normalized score and chance."""
    levels: pd.DataFrame
    """One row per evaluated level: its mission, chance, inferability and final target."""
    about: dict
    """What was analysed (wall time)."""


# -- what the level's layout says --------------------------------------------------------------
def _appearance(obj) -> tuple[str, str]:
    return (obj.type, obj.color)


def has_object_missions(env_id: str) -> bool:
    """Whether ``env_id``'s missions name objects (go to / pick up / put next to)."""
    env = make_env(env_id, disable_env_checker=True)
    try:
        if not getattr(env.unwrapped, "has_mission", False):
            return False
        env.unwrapped.reset(seed=0)
        return isinstance(getattr(env.unwrapped, "instrs", None), OBJECT_MISSIONS)
    finally:
        env.close()


def _chance(instr, objs: list) -> tuple[float, int]:
    """``(chance, satisfying)`` of a uniform guess among ``objs`` (see the module doc)."""
    n = len(objs)
    if isinstance(instr, PutNextInstr):
        move = {id(o) for o in instr.desc_move.obj_set}
        fixed = {id(o) for o in instr.desc_fixed.obj_set}
        pairs = sum(id(a) in move and id(b) in fixed for a in objs for b in objs if a is not b)
        return pairs / (n * (n - 1)), pairs
    satisfying = len(instr.desc.obj_set)
    return satisfying / n, satisfying


def _expert_episode(u, env_id: str, level: int):
    """Play the expert to the end of the episode; returns the object it dropped last (or None).

    Raises:
        TrajbenchError: the expert does not succeed.
    """
    moved, info = None, {}
    for _ in range(10 * int(u.max_steps)):
        action = int(u.expert_action())
        if action == int(Actions.drop) and u.carrying is not None:
            moved = u.carrying
        _, _, terminated, truncated, info = u.step(action)
        if terminated or truncated:
            break
    if not info.get("success", False):
        raise TrajbenchError(f"the expert does not solve {env_id} level {level}")
    return moved


def _final_target(u, instr, objs: list, moved, count: dict) -> tuple[list, bool]:
    """The objects the demonstrations end on, and whether that names a single object."""
    if isinstance(instr, GoToInstr | PickupInstr):
        target = u.grid.get(*u.front_pos) if isinstance(instr, GoToInstr) else u.carrying
        return [target], count[_appearance(target)] == 1
    x, y = moved.cur_pos
    near = [
        o for o in objs if o is not moved and abs(o.cur_pos[0] - x) + abs(o.cur_pos[1] - y) == 1
    ]
    inferable = (
        count[_appearance(moved)] == 1 and len(near) == 1 and count[_appearance(near[0])] == 1
    )
    return [moved, *near], inferable


def level_targets(env_id: str, level: int) -> dict:
    """Chance, inferability and the demonstrations' final target of one level (see the module doc).

    Raises:
        TrajbenchError: the family has no object missions, or its expert fails on the level.
    """
    env = make_env(env_id, levels=[int(level)], disable_env_checker=True)
    u = env.unwrapped
    try:
        u.reset(seed=0, options={"level": int(level)})
        instr = getattr(u, "instrs", None)
        if not isinstance(instr, OBJECT_MISSIONS):
            raise TrajbenchError(
                f"{env_id} has no object mission (go to / pick up / put next to); the instruction "
                "analysis covers GoToLocal-v0, PickupLoc-v0 and PutNextLocal-v0"
            )
        objs = [o for o in u.grid.grid if o is not None and o.type in CANDIDATE_TYPES]
        count = {a: sum(_appearance(o) == a for o in objs) for a in map(_appearance, objs)}
        mission = str(u.mission)
        chance, satisfying = _chance(instr, objs)
        moved = _expert_episode(u, env_id, level)
        targets, inferable = _final_target(u, instr, objs, moved, count)
    finally:
        env.close()
    return {
        "family": env_id,
        "level": int(level),
        "mission": mission,
        "n_objects": len(objs),
        "n_satisfying": int(satisfying),
        "chance": float(chance),
        "inferable": bool(inferable),
        "target": " + ".join(f"{o.color} {o.type}" for o in targets),
        "lookalikes": int(max(count[_appearance(o)] for o in targets) - 1),
    }


def levels_table(pairs: Iterable[tuple[str, int]], progress: bool = False) -> pd.DataFrame:
    """:func:`level_targets` of every (family, level)."""
    pairs = sorted(set(pairs))
    rows = [
        level_targets(f, lv)
        for f, lv in tqdm(pairs, desc="instructions: levels", disable=not progress)
    ]
    return pd.DataFrame(rows)


def guess_normalized(success, chance):
    """``(success - chance) / (1 - chance)``: 0 at chance, 1 at certain success.

    Example:
        >>> guess_normalized(np.array([1.0, 0.25, 0.0]), 0.25)
        array([ 1.        ,  0.        , -0.33333333])
    """
    success = np.asarray(success, dtype=float)
    chance = np.asarray(chance, dtype=float)
    if ((chance < 0) | (chance >= 1)).any():
        raise TrajbenchError("chance must be in [0, 1) for a guess-normalized score")
    out = (success - chance) / (1.0 - chance)
    return float(out) if out.ndim == 0 else out


# -- inputs ------------------------------------------------------------------------------------
def load_records(cfg: InstructionsConfig) -> pd.DataFrame:
    """The evaluation records named by ``--run``, ``--records`` or ``--models`` + ``--eval.data``."""
    sources = sum(bool(x) for x in (cfg.run, cfg.records, cfg.models))
    if sources != 1:
        raise TrajbenchError("give exactly one of --run, --records or --models (with --eval.data)")
    if cfg.models:
        return evaluate_models(cfg)
    paths = [Path(cfg.run) / RECORDS_FILE] if cfg.run else [Path(p) for p in cfg.records]
    frames = []
    for p in paths:
        if not p.is_file():
            where = f"--run {cfg.run}: no records.parquet there (has the run finished?)"
            raise TrajbenchError(where if cfg.run else f"--records {p}: no such file")
        try:
            frames.append(pd.read_parquet(p))
        except Exception as err:  # pyarrow raises several types for a corrupt file
            raise TrajbenchError(f"cannot read {p}: {err}") from None
    records = pd.concat(frames, ignore_index=True)
    if "p_bursty" in records.columns:  # the runner writes NaN for conditions that do not mix modes
        records = records.assign(
            p_bursty=records["p_bursty"].map(lambda v: "-" if pd.isna(v) else f"{v:g}")
        )
    return records


def evaluate_models(cfg: InstructionsConfig) -> pd.DataFrame:
    """Evaluate every ``--models`` entry with ``trajbench evaluate`` (``cfg.eval``)."""
    if not cfg.eval.data:
        raise TrajbenchError(
            "--models needs --eval.data: episode stores of the levels to evaluate on"
        )
    template = replace(
        cfg.eval, ks=tuple(cfg.ks) or cfg.eval.ks, support=cfg.support, progress=cfg.progress
    )
    frames = []
    for i, model in enumerate(cfg.models):
        out = str(Path(cfg.out) / "eval" / f"model{i}")
        online, _ = evaluate(replace(template, policy=model, out=out))
        frames.append(online)
    return pd.concat(frames, ignore_index=True)


# -- the analysis ------------------------------------------------------------------------------
def _select(records: pd.DataFrame, cfg: InstructionsConfig) -> pd.DataFrame:
    """The records to report: the chosen K, support and families with object missions."""
    missing = [c for c in (*REQUIRED, "seed", "level", "success") if c not in records.columns]
    if missing:
        raise TrajbenchError(f"records lack column(s) {missing}; they have {list(records.columns)}")
    if not cfg.baselines:
        records = records[records.instruction != "-"]
    supports = ["same", "other"] if cfg.support == "both" else [cfg.support]
    records = records[records.support.isin(supports)]
    ks = list(cfg.ks) or ([int(records.k.max())] if len(records) else [])
    records = records[records.k.isin(ks)]
    if records.empty:
        raise TrajbenchError(f"no records with k in {ks} and support {cfg.support}")
    families = [f for f in sorted(records.family.unique()) if has_object_missions(f)]
    if not families:
        raise TrajbenchError(
            f"none of the records' families ({', '.join(sorted(records.family.unique()))}) has object "
            "missions; the instruction analysis covers GoToLocal-v0, PickupLoc-v0 and PutNextLocal-v0"
        )
    return records[records.family.isin(families)]


def compute(cfg: InstructionsConfig) -> InstructionsResult:
    """The table and the per-level table (see the module docstring)."""
    started = time.perf_counter()
    records = _select(load_records(cfg), cfg)
    levels = levels_table(
        zip(records.family, records.level.astype(int), strict=True), progress=cfg.progress
    )
    degenerate = levels[levels.chance >= 1.0]
    levels = levels[levels.chance < 1.0]
    records = records.merge(
        levels[["family", "level", "chance", "inferable"]], on=["family", "level"]
    )
    records = records.assign(
        inferable=np.where(records.inferable, "inferable", "not inferable"),
        success=records.success.astype(float),
        guess_normalized=guess_normalized(records.success.astype(float), records.chance),
    )
    group = [*REQUIRED, *(c for c in OPTIONAL_CONDITION if c in records.columns), "inferable"]
    table = aggregate(records, ["success", "guess_normalized", "chance"], group)
    table["instruction"] = pd.Categorical(table["instruction"], INSTRUCTION_ORDER, ordered=True)
    table = table.sort_values(
        ["family", EVAL_SPLIT, "k", "support", TRAIN_CONTEXT, "instruction", "inferable"]
    )
    table["instruction"] = table["instruction"].astype(str)
    levels = levels.assign(skipped=False)
    if len(degenerate):
        levels = pd.concat([levels, degenerate.assign(skipped=True)], ignore_index=True)
    about = {"wall_s": time.perf_counter() - started}
    return InstructionsResult(table.reset_index(drop=True), levels, about)

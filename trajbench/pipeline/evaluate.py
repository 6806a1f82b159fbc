"""``trajbench evaluate``: in-context evaluation on held-out levels and families.

For every held-out level of the evaluation store, K expert demonstrations of that level (episodes
never trained on) go in the policy's context; the policy then plays E independent episodes online
from start states no demonstration had, so no context holds the query's own episode. K sweeps a
list (the k-shot curve). The *no-support* score shows K demonstrations of *other* levels instead:
what is left is in-weights, not in-context, knowledge. Offline in-context action accuracy on
held-out expert episodes is reported beside it.

Formats: every policy sees the demonstrations in the *common* format (whole episodes in order);
a model trained on an unordered mode (``shuffled``, ``isolated``) is also scored in its *matched*
format (the same steps as transitions in random order, as it trained). Records say which.

Instructions: the query shows the mission as the model trained (``--instruction train``), or as
``full`` / ``empty`` / ``template`` says; ``decoy`` shows a mission naming another object of the
level while the demonstrations go to the true goal, and records both whether the agent reached
the demonstrations' goal (``success``) and the decoy's object (``decoy_success``).

Rollouts are batched: every (level, k, support, format) of a family is one row of a batch, the
rows' environments are made once and reused, and a trained model steps with its backbone's cache.

Any policy: ``--policy package.module:factory`` scores a policy trajbench did not train (see
:mod:`trajbench.pipeline.policies`), and :func:`evaluate_policy` (``trajbench.evaluate``) scores a
policy object from Python. Both go through the one implementation the CLI uses.

Output: ``OUT/records.parquet`` (one row per (family, level, k, support, format, episode)),
``OUT/offline.parquet`` and ``OUT/evaluation.json`` (where the records came from: what
``trajbench leaderboard submit`` reads, see :mod:`trajbench.pipeline.evaluation_file`), plus a
printed summary.

Example:
    trajbench collect --env trajbench/DarkRoom-v0 --levels test --episodes-per-level 6 --out data/dr-test
    trajbench evaluate --policy runs/dr-bursty/model --data data/dr-test --out runs/dr-bursty/eval
    trajbench evaluate --policy examples.tabular_icl:make_policy --data data/dr-test --out runs/tabular
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from trajbench.batch import Batch
from trajbench.cliargs import parse_config
from trajbench.contexts import MODES, ContextBuilder
from trajbench.contexts.formats import in_structure
from trajbench.contexts.modes import NONE, ordered_mode
from trajbench.data import load
from trajbench.device import resolve_device, torch_threads
from trajbench.errors import TrajbenchError
from trajbench.families import subset
from trajbench.io import write_parquet
from trajbench.metrics import aggregate
from trajbench.privileged import AgentView, PrivilegedPolicy
from trajbench.records import (
    COMMON,
    DECOY,
    EVAL_INSTRUCTION,
    EVAL_SPLIT,
    MATCHED,
    NORMALIZED_RETURN,
    RECORDS_FILE,
    TRAIN_CONTEXT,
)
from trajbench.rollout import Demonstrations, first_observations, rollout

from .eval_config import EvalConfig, policy_kwargs, validate
from .evaluation_file import changed_fields, write_evaluation_file
from .policies import (
    PolicyInfo,
    check_outside,
    describe,
    load_policy,
    refuse_trained_levels,
    trained_levels_of,
)
from .streams import batches


def evaluate(cfg: EvalConfig, command: str = "") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Evaluate the policy ``cfg.policy`` names; returns (online records, offline accuracy) and
    writes them to ``cfg.out`` with ``evaluation.json`` (which records ``command``; default: this
    call)."""
    started = time.perf_counter()
    validate(cfg)
    command = command or f"trajbench.pipeline.evaluate.evaluate(EvalConfig({changed_fields(cfg)}))"
    device = resolve_device(cfg.device)
    with torch_threads(cfg.threads if device.type == "cpu" else 0):
        store = load(list(cfg.data))
        policy, info = load_policy(
            cfg.policy,
            store.encoding,
            seed=cfg.seed,
            device=device,
            mission_pool=_missions(store),
            use_cache=cfg.use_cache,
            greedy=cfg.greedy,
            policy_kwargs=policy_kwargs(cfg),
        )
        trained = {} if cfg.allow_trained_levels else trained_levels_of(cfg.policy)
        return _evaluate(cfg, store, policy, info, trained, command, started)


@dataclass
class Evaluation:
    """What :func:`evaluate_policy` returns."""

    records: pd.DataFrame
    """One row per (family, level, k, support, format, episode)."""
    aggregates: pd.DataFrame
    """Mean success with its 95% CI over levels, and the normalized-return IQM, per (family, k,
    support, format): :func:`summary` of the records."""


def evaluate_policy(
    policy: Any,
    data: str | Path | Sequence[str | Path],
    *,
    name: str | None = None,
    version: str | None = None,
    **config: Any,
) -> Evaluation:
    """Score any object with the :class:`~trajbench.policy.Policy` interface, in context, on the
    held-out levels of evaluation stores: ``trajbench.evaluate``.

    Args:
        policy: Implements ``begin(rows)`` and ``act(obs, prev_action, prev_reward, rows)``
            (:class:`~trajbench.policy.Policy`); it is shown the protocol's view only.
        data: Evaluation store directories (``trajbench collect`` of a test split).
        name: The policy's name in the records (default: its class as ``module:Class``).
        version: Its version in the records (default: its package's ``__version__``).
        **config: Any other :class:`EvalConfig` field (``ks``, ``episodes``, ``support``,
            ``seed``, ``max_levels``, ``out`` to also write ``records.parquet`` and
            ``evaluation.json``, ...).

    Returns:
        The records and their aggregates.

    Raises:
        TrajbenchError: ``policy`` is not a policy or is a privileged one, a field is unknown or bad, or a store is
            missing or cannot give K distinct demonstrations.

    Example:
        >>> import trajbench
        >>> from trajbench.baselines import RandomPolicy
        >>> result = trajbench.evaluate(RandomPolicy(5, seed=0), "data/dr-test", ks=(0, 2))  # doctest: +SKIP
        >>> result.aggregates[["k", "support", "success_mean", "success_ci_low"]]  # doctest: +SKIP
    """
    check_outside(policy, "trajbench.evaluate needs a policy that sees the protocol's view, got")
    started = time.perf_counter()
    known = {f.name for f in dataclasses.fields(EvalConfig)} - {"policy", "data", "policy_kwargs"}
    unknown = sorted(set(config) - known)
    if unknown:
        raise TrajbenchError(f"unknown evaluation setting(s) {unknown}; known: {sorted(known)}")
    info = describe(policy, name, version)
    paths = [data] if isinstance(data, (str, Path)) else list(data)
    cfg = EvalConfig(policy=info.policy, data=tuple(str(p) for p in paths))
    cfg = dataclasses.replace(cfg, **{"progress": False, **config})
    validate(cfg, need_out=False)
    given = [f"<{info.policy}>", repr(list(cfg.data)), changed_fields(cfg, API_SKIPS)]
    command = f"trajbench.evaluate({', '.join(a for a in given if a)})"
    with torch_threads(cfg.threads):
        online, _ = _evaluate(cfg, load(list(cfg.data)), policy, info, {}, command, started)
    return Evaluation(online, summary(online))


#: What the API's recorded command leaves out of its keywords (given otherwise, or its default).
API_SKIPS = ("policy", "data", "progress")


def _missions(store) -> dict[str, list[str]]:
    """Every family's missions in ``store``: the source of ``wrong`` missions."""
    return {
        env: sorted(store.episodes.loc[store.episodes.env_id == env, "mission"].unique())
        for env in store.env_ids
    }


def _evaluate(
    cfg: EvalConfig, store, policy, info: PolicyInfo, trained: dict, command: str, started: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The evaluation both entry points run: roll out, score offline, write (if ``cfg.out``)."""
    shown_instruction = _set_instruction(policy, info, cfg.instruction)
    runner = policy
    if not isinstance(policy, PrivilegedPolicy):  # an outside policy: the protocol's view only
        shown = "full" if cfg.instruction in ("train", DECOY) else cfg.instruction
        runner = AgentView(policy, shown, _missions(store), cfg.seed)
    demos = Demonstrations(store)
    if demos.expert.empty:
        raise TrajbenchError(
            f"the evaluation store {', '.join(cfg.data)} has no successful expert episodes"
        )
    matched = info.train_context if info.train_context in MODES else _declared_mode(policy)
    conditions = _conditions(cfg, info, matched)
    chunks = []
    for env_id in store.env_ids:
        present = demos.expert.loc[demos.expert.env_id == env_id, "level"].unique()
        levels = subset(present, cfg.max_levels, env_id).tolist()
        refuse_trained_levels(cfg.policy, env_id, levels, trained)
        isolate = runner is not policy  # an outside policy plays isolated streams of rows
        chunks += [
            (env_id, rows)
            for rows in batches(
                levels, conditions, cfg.batch_rows, isolate, cfg.seed, store.content_hash
            )
        ]
    about = {**asdict(info), EVAL_INSTRUCTION: shown_instruction, "eval_seed": cfg.seed}
    records = _roll_out(cfg, runner, info, matched, demos, chunks, about)
    online = pd.DataFrame.from_records(records)
    order = {c: i for i, c in enumerate(conditions)}
    online["_order"] = [
        order[c] for c in zip(online["k"], online["support"], online["format"], strict=True)
    ]
    online = (
        online.sort_values(["family", "_order", "level", "episode"], kind="stable")
        .drop(columns="_order")
        .reset_index(drop=True)
    )
    offline = (
        offline_accuracy(policy, store, cfg, info)
        if cfg.offline and info.model_params
        else pd.DataFrame()
    )
    if cfg.out:
        write_parquet(Path(cfg.out) / RECORDS_FILE, online)
        write_parquet(Path(cfg.out) / "offline.parquet", offline)
        write_evaluation_file(cfg, policy, info, command, started)  # last: the records are whole
    return online, offline


def _set_instruction(policy, info: PolicyInfo, instruction: str) -> str:
    """Point a trained policy at the instruction mode to show; returns the mode's name (for a
    policy with no training mode, ``train`` records ``-`` and shows the full mission)."""
    if instruction in ("train", DECOY):
        return info.instruction if instruction == "train" else DECOY
    if info.model_params:
        policy.instruction = instruction
    return instruction


def _declared_mode(policy) -> str:
    """The context mode an outside policy asks its matched format in (``Policy.context_mode``)."""
    mode = getattr(policy, "context_mode", "-")
    if mode != "-" and mode not in MODES:
        raise TrajbenchError(
            f"the policy's context_mode {mode!r} is not a context mode ({', '.join(MODES)} or -)"
        )
    return mode


def _conditions(cfg: EvalConfig, info: PolicyInfo, matched: str) -> list[tuple[int, str, str]]:
    """Every (k, support, format) to evaluate; ``matched`` (in the structure of the mode
    ``matched``) only where it differs from common."""
    supports = ["same", "other"] if cfg.support == "both" else [cfg.support]
    mode = MODES.get(matched)
    formats = [f for f in cfg.formats if f == COMMON or (mode is not None and not mode.ordered)]
    if not formats:
        raise TrajbenchError(
            f"{cfg.policy}: nothing to evaluate in the matched format only; its context mode "
            f"{matched!r} keeps whole episodes, so matched is the common format"
        )
    return [
        (k, s, f)
        for k in cfg.ks
        for s in supports
        for f in formats
        if not (k == 0 and (s == "other" or f == MATCHED))
    ]


def _roll_out(cfg, policy, info, matched, demos, chunks, about) -> list[dict]:
    """Roll every chunk of rows out; one record per (row, episode)."""
    expert = demos.expert
    kmax = max(cfg.ks)
    records, envs = [], {}
    try:
        for env_id, rows in tqdm(
            chunks, desc=f"evaluate {info.policy}", disable=not cfg.progress, leave=False
        ):
            fam = expert[expert.env_id == env_id]
            missions = fam.groupby("level")["mission"].first().to_dict()
            expert_return = fam.groupby("level")["return"].mean().to_dict()
            pool = envs.setdefault(env_id, [])
            pool += [gym.make(env_id, levels="all") for _ in range(len(rows) - len(pool))]
            contexts, avoid = [], []
            for lv, k, support, fmt in rows:
                shown = demos(env_id, lv, k, support, cfg.seed)
                ordered = fmt == COMMON or MODES[matched].ordered
                rng = np.random.default_rng([cfg.seed, lv, k, support == "other"])
                contexts.append(in_structure(shown, ordered, rng))
                avoid.append(first_observations(demos(env_id, lv, kmax, "same", cfg.seed)))
            levels = [lv for lv, *_ in rows]
            out = rollout(
                policy,
                env_id,
                levels,
                contexts,
                missions,
                cfg.episodes,
                cfg.seed,
                envs=pool,
                avoid_starts=avoid,
                own_episodes=cfg.own_episodes,
                decoys=cfg.instruction == DECOY,
            )
            for rec in out:
                _, k, support, fmt = rows[rec.pop("row")]
                ref = expert_return[rec["level"]]
                rec[NORMALIZED_RETURN] = (
                    rec["return"] / ref if ref > 0 else float(rec["return"] >= ref)
                )
                records.append(
                    {
                        **about,
                        "family": env_id,
                        EVAL_SPLIT: cfg.eval_split,
                        "k": k,
                        "support": support,
                        "format": fmt,
                        "seed": info.train_seed,
                        **rec,
                    }
                )
    finally:
        for pool in envs.values():
            for env in pool:
                env.close()
    return records


@torch.no_grad()
def offline_accuracy(policy, store, cfg: EvalConfig, info: PolicyInfo) -> pd.DataFrame:
    """Accuracy of the model's most likely action on held-out expert queries, per (k, support).

    Uses the prompt builder on the evaluation store: ``bursty`` contexts for same-level support,
    ``trajectories`` for other-level support, and ``none`` for k = 0.
    """
    rows = []
    model = policy.model
    chunk = 64
    for k in cfg.ks:
        for support in ["same", "other"] if cfg.support == "both" else [cfg.support]:
            if k == 0 and support == "other":
                continue
            shown = k > 0 and policy.use_context
            mode = (ordered_mode(support) if shown else MODES[NONE]).name
            try:
                builder = ContextBuilder(
                    store,
                    mode=mode,
                    k=max(k, 1),
                    seed=cfg.seed,
                    vocab=policy.vocab,
                    instruction=policy.instruction,
                )
            except TrajbenchError:
                continue  # e.g. too few episodes per level for k distinct demonstrations
            correct = total = 0
            for start in range(0, cfg.offline_sequences, chunk):
                batch = builder.sample(min(chunk, cfg.offline_sequences - start))
                tokens = batch.to_torch(policy.device, keys=Batch.MODEL_INPUTS)
                logits, _ = model(tokens)
                pred = logits.argmax(-1).cpu().numpy()
                correct += int((pred == batch.target)[batch.loss_mask].sum())
                total += int(batch.loss_mask.sum())
            rows.append(
                {
                    **asdict(info),
                    "family": ",".join(store.env_ids),
                    EVAL_SPLIT: cfg.eval_split,
                    "k": k,
                    "support": support,
                    "seed": info.train_seed,
                    "accuracy": correct / max(total, 1),
                    "n_targets": total,
                }
            )
    return pd.DataFrame.from_records(rows)


def summary(online: pd.DataFrame) -> pd.DataFrame:
    """Mean success (95% CI over levels) and normalized-return IQM per condition."""
    groups = ["policy", TRAIN_CONTEXT, "family", "k", "support", "format"]
    succ = aggregate(online, "success", groups, seed_col="eval_seed")
    ret = aggregate(online, NORMALIZED_RETURN, groups, seed_col="eval_seed", statistic="iqm")
    return succ.merge(ret[[*groups, "normalized_return_iqm"]], on=groups)


def main(argv: list[str]) -> int:
    """``trajbench evaluate``: parse flags into :class:`EvalConfig` and evaluate."""
    cfg = parse_config(EvalConfig, list(argv), "trajbench evaluate")
    if cfg is None:  # --help
        return 0
    # As `python -m` does: a --policy factory in a module of the current directory imports.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    online, offline = evaluate(cfg, shlex.join(["trajbench", "evaluate", *argv]))
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(summary(online).to_string(index=False))
        if len(offline):
            print(
                offline[["family", "k", "support", "accuracy", "n_targets"]].to_string(index=False)
            )
    print(f"records written to {Path(cfg.out) / RECORDS_FILE}")
    return 0

"""``trajbench evaluate``: in-context evaluation on held-out levels and families.

For every held-out level of the evaluation store, K expert demonstrations of that level (episodes
never trained on) go in the policy's context; the policy then plays E episodes online, its own
earlier episodes on the level staying in its context. K sweeps a list (the k-shot curve). The
*no-support* score gives the same budget of demonstrations from *other* levels instead: what is
left is in-weights, not in-context, knowledge. Offline in-context action accuracy on held-out
expert episodes is reported beside it.

Rollouts are batched: every (level, k, support) of a family is one row of a batch, the rows'
environments are made once and reused, and the transformer steps with its KV cache (see
:mod:`trajbench.baselines.transformer_policy`). On the CPU it runs on one torch thread by default.

Output: ``OUT/records.parquet`` (one row per (policy, family, level, k, support, episode)) and
``OUT/offline.parquet``, plus a printed summary with IQM and 95% CIs.

Example:
    trajbench collect --env trajbench/DarkRoom-v0 --levels test --episodes-per-level 6 --out data/dr-test
    trajbench evaluate --policy runs/dr-bursty/model --data data/dr-test --out runs/dr-bursty/eval
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import gymnasium as gym
import pandas as pd
import torch
from tqdm.auto import tqdm

from trajbench.batch import Batch
from trajbench.cliargs import parse_config
from trajbench.contexts import ContextBuilder
from trajbench.data import load
from trajbench.device import resolve_device, torch_threads
from trajbench.errors import TrajbenchError
from trajbench.families import subset
from trajbench.io import write_parquet
from trajbench.metrics import aggregate
from trajbench.rollout import Demonstrations, rollout

from .policies import PolicyInfo, load_policy, refuse_trained_levels, trained_levels_of


@dataclass
class EvalConfig:
    """Evaluate a policy in context on held-out levels."""

    policy: str = ""
    """A model directory written by trajbench train, or a reference policy: random, expert,
    hashmap, replay."""
    data: tuple[str, ...] = ()
    """Evaluation episode stores: expert episodes of held-out levels (or held-out families)."""
    out: str = ""
    """Output directory for records.parquet and offline.parquet."""
    ks: tuple[int, ...] = (0, 1, 2, 4)
    """Numbers of demonstrations in the context (the k-shot sweep)."""
    episodes: int = 2
    """Online episodes per level and k; later ones see the earlier ones in their context."""
    support: Literal["same", "other", "both"] = "both"
    """Demonstrations from the level itself (same), from other levels (other: the no-support score), or both."""
    max_levels: int = 0
    """Evaluate a seeded random draw of this many levels per family (0: every level in the store)."""
    allow_trained_levels: bool = False
    """Also score levels the model trained on (for in-weights analyses only: such records never
    measure in-context generalization and the leaderboard refuses them)."""
    eval_split: str = "test_levels"
    """Label of what is held out: test_levels or test_families."""
    offline: bool = True
    """Also measure offline in-context action accuracy (transformer only)."""
    offline_sequences: int = 256
    """Sequences per (k, support) for the offline accuracy."""
    batch_rows: int = 128
    """Rollouts run together in one batch: every (level, k, support) of a family is one row."""
    seed: int = 0
    """Evaluation seed (start states, demonstration choice, reference policies)."""
    device: str = "auto"
    """auto, cpu or cuda[:N]."""
    threads: int = 1
    """CPU threads for torch on the CPU (0: torch's default). One is fastest for the small models
    of the benchmark, and never oversubscribes a machine that runs other jobs."""
    use_cache: bool = True
    """Step the transformer with its KV cache (False: re-encode the sequence every step)."""
    greedy: bool = True
    """Act with the most likely action (False: sample)."""
    progress: bool = True
    """Show a progress bar."""


# -- the evaluation ---------------------------------------------------------------------------
def validate(cfg: EvalConfig) -> None:
    """Raise :class:`TrajbenchError` naming the first bad knob."""
    if cfg.episodes < 1 or cfg.batch_rows < 1 or any(k < 0 for k in cfg.ks) or not cfg.ks:
        raise TrajbenchError(
            "episodes and batch_rows must be >= 1 and ks a non-empty list of k >= 0"
        )
    if cfg.max_levels < 0 or cfg.offline_sequences < 0 or cfg.threads < 0:
        raise TrajbenchError("max_levels, offline_sequences and threads must be >= 0")
    if not cfg.policy:
        raise TrajbenchError("--policy needs a model directory or a reference policy name")
    if not cfg.data:
        raise TrajbenchError("--data needs at least one episode store directory")
    if not cfg.out:
        raise TrajbenchError("--out needs an output directory")


def evaluate(cfg: EvalConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run the evaluation; returns (online records, offline accuracy) and writes them to ``cfg.out``."""
    validate(cfg)
    device = resolve_device(cfg.device)
    with torch_threads(cfg.threads if device.type == "cpu" else 0):
        return _evaluate(cfg, device)


def _evaluate(cfg: EvalConfig, device: torch.device) -> tuple[pd.DataFrame, pd.DataFrame]:
    store = load(list(cfg.data))
    pool = {
        env: sorted(store.episodes.loc[store.episodes.env_id == env, "mission"].unique())
        for env in store.env_ids
    }
    policy, info = load_policy(
        cfg.policy,
        store.encoding,
        seed=cfg.seed,
        device=device,
        mission_pool=pool,
        use_cache=cfg.use_cache,
        greedy=cfg.greedy,
    )
    about = asdict(info)
    supports = ["same", "other"] if cfg.support == "both" else [cfg.support]
    conditions = [(k, s) for k in cfg.ks for s in supports if not (k == 0 and s == "other")]
    demos = Demonstrations(store)
    expert = demos.expert
    if expert.empty:
        raise TrajbenchError(
            f"the evaluation store {', '.join(cfg.data)} has no successful expert episodes"
        )
    trained = trained_levels_of(cfg.policy)
    # Every (level, k, support) of a family is one row; rows are rolled out in batches.
    chunks = []
    for env_id in store.env_ids:
        present = expert.loc[expert.env_id == env_id, "level"].unique()
        levels = subset(present, cfg.max_levels, env_id).tolist()
        if not cfg.allow_trained_levels:
            refuse_trained_levels(cfg.policy, env_id, levels, trained)
        rows = [(lv, k, s) for k, s in conditions for lv in levels]
        for start in range(0, len(rows), cfg.batch_rows):
            chunks.append((env_id, rows[start : start + cfg.batch_rows]))
    records, envs = [], {}
    try:
        for env_id, rows in tqdm(
            chunks, desc=f"evaluate {about['policy']}", disable=not cfg.progress, leave=False
        ):
            fam = expert[expert.env_id == env_id]
            missions = fam.groupby("level")["mission"].first().to_dict()
            expert_return = fam.groupby("level")["return"].mean().to_dict()
            pool = envs.setdefault(env_id, [])
            pool += [gym.make(env_id, levels="all") for _ in range(len(rows) - len(pool))]
            contexts = [demos(env_id, lv, k, support, cfg.seed) for lv, k, support in rows]
            levels = [lv for lv, _, _ in rows]
            out = rollout(
                policy, env_id, levels, contexts, missions, cfg.episodes, cfg.seed, envs=pool
            )
            for rec in out:
                _, k, support = rows[rec.pop("row")]
                ref = expert_return[rec["level"]]
                rec["normalized_return"] = (
                    rec["return"] / ref if ref > 0 else float(rec["return"] >= ref)
                )
                records.append(
                    {
                        **about,
                        "family": env_id,
                        "eval_split": cfg.eval_split,
                        "k": k,
                        "support": support,
                        "seed": about["train_seed"],
                        **rec,
                    }
                )
    finally:
        for pool in envs.values():
            for env in pool:
                env.close()
    online = pd.DataFrame.from_records(records)
    order = {c: i for i, c in enumerate(conditions)}
    online["_order"] = [order[(k, s)] for k, s in zip(online["k"], online["support"], strict=True)]
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
    write_parquet(Path(cfg.out) / "records.parquet", online)
    write_parquet(Path(cfg.out) / "offline.parquet", offline)
    return online, offline


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
            mode = (
                "none"
                if k == 0 or not policy.use_context
                else ("bursty" if support == "same" else "trajectories")
            )
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
                continue  # e.g. a single level in the store: no other-level support to measure
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
                    "eval_split": cfg.eval_split,
                    "k": k,
                    "support": support,
                    "seed": info.train_seed,
                    "accuracy": correct / max(total, 1),
                    "n_targets": total,
                }
            )
    return pd.DataFrame.from_records(rows)


def summary(online: pd.DataFrame) -> pd.DataFrame:
    """IQM success and normalized return with 95% stratified-bootstrap CIs per (family, k, support)."""
    groups = ["policy", "train_context", "family", "k", "support"]
    succ = aggregate(online, "success", groups, statistic="iqm", resample="seeds")
    ret = aggregate(online, "normalized_return", groups, statistic="iqm", resample="seeds")
    return succ.merge(ret[[*groups, "normalized_return_iqm"]], on=groups)


def main(argv: list[str]) -> int:
    """``trajbench evaluate``: parse flags into :class:`EvalConfig` and evaluate."""
    cfg = parse_config(EvalConfig, list(argv), "trajbench evaluate")
    if cfg is None:  # --help
        return 0
    online, offline = evaluate(cfg)
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(summary(online).to_string(index=False))
        if len(offline):
            print(
                offline[["family", "k", "support", "accuracy", "n_targets"]].to_string(index=False)
            )
    print(f"records written to {Path(cfg.out) / 'records.parquet'}")
    return 0

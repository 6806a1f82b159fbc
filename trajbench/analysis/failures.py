"""``trajbench analyze failures``: successful vs failed demonstrations in the context.

Given trained models (one per training seed) and a family's evaluation levels, every held-out
level gets a context of exactly K episodes in each of three conditions:

- ``expert``: K successful expert demonstrations of the level;
- ``raw``: K - m expert demonstrations plus m *imperfect* episodes of the level as collected
  (``noisy`` or ``random`` demonstrator, with their dead ends and failures);
- ``cut``: the same K - m expert demonstrations and the same m imperfect episodes, in the same
  positions, each cut to the steps *before it went wrong*.

Success on the level (the policy then plays with that context) is reported per condition, and
also per 1,000 context tokens (steps plus mission words), since cut episodes are shorter.

**Where an episode went wrong** (:mod:`trajbench.analysis.cuts`): the first step that moved it away
from success, by the expert's remaining distance after every step. Episodes in which nothing goes
wrong are not imperfect and are left out of the pool; a level with no imperfect episode is dropped
from every condition.

Dark Room reveals its goal only by the reward on reaching it, so a successful noisy episode cut
at its first deviation no longer shows the goal: the ``cut`` condition there tests whether the
direction of the first steps alone is enough.

Example:
    trajbench analyze failures --models runs/b/models/p1-zipf0/seed0/model --out runs/failures
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from trajbench.collect import CollectConfig, collect
from trajbench.data import load
from trajbench.device import resolve_device, torch_threads
from trajbench.errors import TrajbenchError
from trajbench.families import make_env, parse_levels, resolve_env_id
from trajbench.metrics import aggregate
from trajbench.pipeline.evaluate import EvalConfig
from trajbench.pipeline.policies import check_compatible, load_trained_policy
from trajbench.policy import EpisodeRecord
from trajbench.rollout import demonstrations, episode_record, rollout
from trajbench.vocab import template

from .common import (
    mission_pool,
    output_dir,
    require,
)
from .cuts import cut_episode, imperfect_pool

NAME = "failures"
CONDITIONS = ("expert", "raw", "cut")


@dataclass
class FailuresConfig:
    """Contexts of successful, raw imperfect and cut imperfect episodes, at equal episode counts."""

    models: tuple[str, ...]
    """Model directories written by trajbench train (one per training seed; the CIs are over them)."""
    out: str
    """Output directory: OUT/failures.{csv,md,png}, the per-episode records and the imperfect
    episodes (OUT/failures_records.csv, OUT/failures_pool.csv), the collected episodes under
    OUT/data/."""
    env: str = "trajbench/DarkRoom-v0"
    """Family to evaluate on (the models must read its observations)."""
    levels: str = "test"
    """Evaluation levels: test, train, all, or a comma-separated list."""
    imperfect_shares: tuple[float, ...] = (0.5, 1.0)
    """Shares of the K episodes that are imperfect in the raw and cut conditions (rounded, >= 1)."""
    imperfect: Literal["noisy", "random"] = "noisy"
    """Demonstrator of the imperfect episodes."""
    epsilon: float = 0.25
    """Random-action probability of the noisy demonstrator."""
    expert_episodes: int = 4
    """Expert episodes collected per level (the successful demonstrations)."""
    imperfect_episodes: int = 8
    """Imperfect episodes collected per level (the pool the m imperfect ones are drawn from)."""
    eval: EvalConfig = field(default_factory=lambda: EvalConfig(ks=(4,)))
    """How the models play: ks (context episodes per condition; every condition holds exactly K),
    episodes (independent episodes per level and condition, each seeing only its K episodes),
    max_levels (the first N of --levels; 0: all), seed (episode e draws its contexts and start
    state from seed + e), device, threads, use_cache, greedy. The contexts are built here, so
    policy, data, out, support, offline and batch_rows are not used."""
    quick: bool = False
    """Tiny settings for tests: 4 levels, K=2, 2 expert and 4 imperfect episodes per level."""
    progress: bool = True
    """Show progress bars."""


@dataclass
class FailuresResult:
    """The tables of the analysis (see :func:`compute`)."""

    table: pd.DataFrame
    """One row per (K, m, context): success, success per 1,000 context tokens, context tokens."""
    records: pd.DataFrame
    """One row per (model, K, m, context, level, episode)."""
    pool: pd.DataFrame
    """Every collected imperfect episode and where it went wrong (see :func:`imperfect_pool`)."""
    about: dict
    """What was analysed (family, levels, models, wall time)."""


def quick_config(cfg: FailuresConfig) -> FailuresConfig:
    """The ``--quick`` settings (seconds on a CPU)."""
    quick_eval = replace(cfg.eval, ks=(2,), episodes=1, max_levels=4)
    return replace(cfg, expert_episodes=2, imperfect_episodes=4, eval=quick_eval)


def validate(cfg: FailuresConfig) -> None:
    """Raise :class:`TrajbenchError` naming the first bad knob."""
    ev, shares = cfg.eval, cfg.imperfect_shares
    require(
        [
            (len(cfg.models) > 0, "--models needs at least one model directory"),
            *((Path(m).is_dir(), f"--models {m}: no such directory") for m in cfg.models),
            (len(ev.ks) > 0 and min(ev.ks) >= 1, f"ks must be >= 1, got {ev.ks}"),
            (
                len(shares) > 0 and all(0 < s <= 1 for s in shares),
                f"imperfect_shares must be in (0, 1], got {shares}",
            ),
            (0.0 <= cfg.epsilon <= 1.0, f"epsilon must be in [0, 1], got {cfg.epsilon}"),
            (
                min(cfg.expert_episodes, cfg.imperfect_episodes, ev.episodes) >= 1,
                "expert_episodes, imperfect_episodes and eval.episodes must be >= 1",
            ),
            (
                min(ev.max_levels, ev.threads, ev.seed) >= 0,
                "eval.max_levels, eval.threads and eval.seed must be >= 0",
            ),
        ]
    )


def build_contexts(
    expert_store,
    imperfect_store,
    pool: pd.DataFrame,
    env_id: str,
    level: int,
    k: int,
    m: int,
    e: int,
) -> dict[str, list[EpisodeRecord]]:
    """The three contexts of one (level, K, m, evaluation episode ``e``).

    ``raw`` and ``cut`` hold the same K - m expert demonstrations and the same m imperfect
    episodes in the same positions; ``expert`` holds K expert demonstrations. Draws depend only on
    (level, K, m, e), so every model sees the same contexts.
    """
    rng = np.random.default_rng([e, level, k, m])
    mine = pool[(pool.level == level) & (pool.cut >= 0)]
    order = rng.permutation(len(mine))
    picks = [mine.iloc[order[i % len(mine)]] for i in range(m)]
    raw = [
        episode_record(imperfect_store, imperfect_store.episodes.iloc[int(p.row)]) for p in picks
    ]
    cut = [cut_episode(ep, int(p.cut)) for ep, p in zip(raw, picks, strict=True)]
    experts = demonstrations(expert_store, env_id, level, k - m, "same", e)
    where = np.sort(rng.permutation(k)[:m])  # positions of the imperfect episodes
    out = {
        "expert": demonstrations(expert_store, env_id, level, k, "same", e),
        "raw": [],
        "cut": [],
    }
    it_e = iter(experts)
    it_i = iter(range(m))
    for pos in range(k):
        if pos in where:
            j = next(it_i)
            out["raw"].append(raw[j])
            out["cut"].append(cut[j])
        else:
            ep = next(it_e)
            out["raw"].append(ep)
            out["cut"].append(ep)
    return out


def mission_words(policy, mission: str) -> int:
    """Word tokens the policy reads before an episode with ``mission`` (its instruction mode
    applied; a ``wrong`` mission is counted at the true mission's length)."""
    shown = {"empty": "", "template": template(mission)}.get(policy.instruction, mission)
    return len(policy.vocab.encode(shown))


def context_tokens(policy, episodes: list[EpisodeRecord]) -> int:
    """Tokens of a context: one per step plus the mission words before every episode."""
    return sum(len(ep) + mission_words(policy, ep.mission) for ep in episodes)


# -- the analysis --------------------------------------------------------------------------------
def _collect(cfg: FailuresConfig, out: Path, demonstrator: str, n: int) -> Path:
    """Collect ``n`` episodes per evaluation level with ``demonstrator`` (reused when present)."""
    env = make_env(cfg.env)
    try:
        _, chosen = parse_levels(cfg.levels, env)
    finally:
        env.close()
    if cfg.eval.max_levels:
        chosen = chosen[: cfg.eval.max_levels]
    eps = f"-eps{cfg.epsilon:g}" if demonstrator == "noisy" else ""
    tag = cfg.levels.replace(",", "_") + (
        f"-first{cfg.eval.max_levels}" if cfg.eval.max_levels else ""
    )
    name = f"{cfg.env.split('/')[-1]}-{tag}-{demonstrator}{eps}-n{n}-s1"
    return collect(
        CollectConfig(
            env=cfg.env,
            levels=",".join(str(int(x)) for x in chosen),
            episodes_per_level=n,
            demonstrator=demonstrator,
            epsilon=cfg.epsilon,
            out=out / "data" / name,
            seed=1,
            progress=cfg.progress,
        )
    )


def load_models(cfg: FailuresConfig, device) -> tuple[list, list[int]]:
    """The models as policies, and their training seeds; refused unless they read ``cfg.env``."""
    env = make_env(cfg.env)
    encoding = env.unwrapped.encoding
    env.close()
    policies, seeds = [], []
    for model in cfg.models:
        policy, record = load_trained_policy(
            model, device=device, use_cache=cfg.eval.use_cache, greedy=cfg.eval.greedy
        )
        check_compatible(policy.model.encoding, encoding, model)  # before any collection
        policies.append(policy)
        seeds.append(record.config.seed)
    return policies, seeds


def context_sets(
    expert_store,
    imperfect_store,
    pool: pd.DataFrame,
    env_id: str,
    levels: list[int],
    k: int,
    ms: list[int],
    e: int,
) -> Iterator[tuple[dict, dict[int, list[EpisodeRecord]]]]:
    """``(condition, level -> context)`` of every condition at K = ``k`` and evaluation episode
    ``e``: the expert context once, then raw and cut for every m of ``ms``."""
    for i, m in enumerate(ms):
        ctx = {
            lv: build_contexts(expert_store, imperfect_store, pool, env_id, lv, k, m, e)
            for lv in levels
        }
        if i == 0:  # the expert context does not depend on m
            yield {"k": k, "m": 0, "context": "expert"}, {lv: c["expert"] for lv, c in ctx.items()}
        for cond in ("raw", "cut"):
            yield {"k": k, "m": m, "context": cond}, {lv: c[cond] for lv, c in ctx.items()}


def play(
    policy, env_id: str, contexts: dict[int, list[EpisodeRecord]], missions: dict, e: int
) -> list[dict]:
    """One episode per level with its context (start state ``e``); a record per level."""
    levels = list(contexts)
    rows = []
    for rec in rollout(policy, env_id, levels, [contexts[lv] for lv in levels], missions, 1, e):
        tokens = context_tokens(policy, contexts[rec["level"]])
        rows.append(
            {
                "level": rec["level"],
                "episode": e,
                "success": float(rec["success"]),
                "context_tokens": tokens,
                "success_per_1k_tokens": 1000.0 * rec["success"] / max(tokens, 1),
            }
        )
    return rows


def play_all(
    cfg: FailuresConfig, policies: list, expert_store, imperfect_store, pool, levels
) -> pd.DataFrame:
    """Every model in every condition, K and evaluation episode; ``seed`` is the model's index."""
    missions = expert_store.episodes.groupby("level")["mission"].first().to_dict()
    plans = {
        k: sorted({min(k, max(1, round(s * k))) for s in cfg.imperfect_shares}) for k in cfg.eval.ks
    }
    episodes = range(cfg.eval.seed, cfg.eval.seed + cfg.eval.episodes)
    n_jobs = len(policies) * len(episodes) * sum(1 + 2 * len(ms) for ms in plans.values())
    bar = tqdm(total=n_jobs, desc="failures: evaluate", disable=not cfg.progress)
    records = []
    for mi, policy in enumerate(policies):
        policy.mission_pool = mission_pool(expert_store)
        for k, ms in plans.items():
            for e in episodes:
                for where, contexts in context_sets(
                    expert_store, imperfect_store, pool, cfg.env, levels, k, ms, e
                ):
                    rows = play(policy, cfg.env, contexts, missions, e)
                    records += [{"seed": mi, **where, **r} for r in rows]
                    bar.update(1)
    bar.close()
    return pd.DataFrame(records)


def compute(cfg: FailuresConfig) -> FailuresResult:
    """Collect, find where the imperfect episodes went wrong, and play every condition."""
    started = time.perf_counter()
    if cfg.quick:
        cfg = quick_config(cfg)
    validate(cfg)
    cfg = replace(cfg, env=resolve_env_id(cfg.env))
    out = output_dir(cfg.out)
    device = resolve_device(cfg.eval.device)
    with torch_threads(cfg.eval.threads):
        policies, train_seeds = load_models(cfg, device)
        expert_store = load(_collect(cfg, out, "expert", cfg.expert_episodes))
        imperfect_store = load(_collect(cfg, out, cfg.imperfect, cfg.imperfect_episodes))
        pool = imperfect_pool(imperfect_store, cfg.env, cfg.progress)
        levels = sorted(int(x) for x in pool.loc[pool.cut >= 0, "level"].unique())
        if not levels:
            raise TrajbenchError(
                f"none of the {len(pool)} {cfg.imperfect} episodes went wrong anywhere; raise "
                "--epsilon or --imperfect-episodes"
            )
        records = play_all(cfg, policies, expert_store, imperfect_store, pool, levels)
    if len(set(train_seeds)) == len(train_seeds):  # name seeds by training seed when distinct
        records["seed"] = records["seed"].map(dict(enumerate(train_seeds)))
    table = aggregate(
        records, ["success", "success_per_1k_tokens", "context_tokens"], ["k", "m", "context"]
    )
    table["context"] = pd.Categorical(table["context"], CONDITIONS, ordered=True)
    table = table.sort_values(["k", "m", "context"]).reset_index(drop=True)
    table["context"] = table["context"].astype(str)
    about = {
        "env": cfg.env,
        "levels": cfg.levels,
        "models": len(cfg.models),
        "eval_episodes": cfg.eval.episodes,
        "imperfect": cfg.imperfect,
        "epsilon": cfg.epsilon,
        "wall_s": time.perf_counter() - started,
    }
    return FailuresResult(table, records, pool, about)

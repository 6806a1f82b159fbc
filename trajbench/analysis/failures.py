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

**Where an episode went wrong.** Replay the episode in the environment (same level, same reset
seed, same actions; the replayed observations must equal the stored ones) and compute, after
every step, the expert's remaining distance ``d[t]``: the number of steps the family's expert
needs from that state to succeed (0 once the episode has succeeded, infinite if it cannot; the
expert is rolled out on a copy of the environment, with no time limit but a cap of 4 x the
family's episode length). Then, for an episode of ``T`` steps with ``d[0..T]``:

- a **successful** episode went wrong at its first step ``t`` whose action *increased* the
  remaining distance, ``d[t+1] > d[t]`` (a random deviation the expert then had to undo);
  wasted steps that leave the distance unchanged (a no-op, a bump into a wall) do not count;
- a **failed** episode went wrong at the step after which the distance never recovered: the
  last ``t`` at which ``d[t]`` equals its minimum over the episode (its closest approach to
  success); everything after it moved away for good, or stalled.

The cut keeps steps ``0 .. t-1`` (the actions before the wrong one); it can be empty, leaving only
the episode's mission words. Episodes in which nothing goes wrong (a successful episode that
never increases the distance, a failed one that ends at its closest approach) are not imperfect
and are left out of the pool; a level with no imperfect episode is dropped from every condition.

Dark Room reveals its goal only by the reward on reaching it, so a successful noisy episode cut
at its first deviation no longer shows the goal: the ``cut`` condition there tests whether the
direction of the first steps alone is enough.

Example:
    trajbench analyze failures --models runs/b/models/p1-zipf0/seed0/model --out runs/failures
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Literal

import numpy as np
import pandas as pd

from trajbench.errors import TrajbenchError
from trajbench.policy import EpisodeRecord

from .common import compare, fmt_ci, parse, pyplot, write_outputs

NAME = "failures"
CONDITIONS = ("expert", "raw", "cut")
#: The expert's distance-to-go is searched for at most this many times the family's episode length.
DISTANCE_CAP_FACTOR = 4


@dataclass
class FailuresConfig:
    """Contexts of successful, raw imperfect and cut imperfect episodes, at equal episode counts."""

    models: tuple[str, ...]
    """Model directories written by trajbench train (one per training seed; the CIs are over them)."""
    out: str
    """Output directory: OUT/failures.{csv,md,png}, the collected episodes under OUT/data/."""
    env: str = "trajbench/DarkRoom-v0"
    """Family to evaluate on (the models must read its observations)."""
    levels: str = "test"
    """Evaluation levels: test, train, all, or a comma-separated list."""
    max_levels: int = 0
    """Use only the first N of those levels (0: all)."""
    ks: tuple[int, ...] = (4,)
    """Context episodes per condition (every condition has exactly K)."""
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
    eval_episodes: int = 2
    """Independent evaluation episodes per (level, condition); each sees only its K episodes."""
    device: str = "auto"
    """auto, cpu, cuda or cuda:N."""
    threads: int = 1
    """CPU threads for torch (0: torch's default)."""
    quick: bool = False
    """Tiny settings for tests: 4 levels, K=2, 2 expert and 4 imperfect episodes per level."""
    progress: bool = True
    """Show progress bars."""


def quick_config(cfg: FailuresConfig) -> FailuresConfig:
    return replace(
        cfg, max_levels=4, ks=(2,), expert_episodes=2, imperfect_episodes=4, eval_episodes=1
    )


def validate(cfg: FailuresConfig) -> None:
    def need(ok: bool, message: str) -> None:
        if not ok:
            raise TrajbenchError(message)

    need(len(cfg.models) > 0, "--models needs at least one model directory")
    for m in cfg.models:
        need(Path(m).is_dir(), f"--models {m}: no such directory")
    need(len(cfg.ks) > 0 and all(k >= 1 for k in cfg.ks), f"ks must be >= 1, got {cfg.ks}")
    need(
        len(cfg.imperfect_shares) > 0 and all(0 < s <= 1 for s in cfg.imperfect_shares),
        f"imperfect_shares must be in (0, 1], got {cfg.imperfect_shares}",
    )
    need(0.0 <= cfg.epsilon <= 1.0, f"epsilon must be in [0, 1], got {cfg.epsilon}")
    for name in ("expert_episodes", "imperfect_episodes", "eval_episodes"):
        need(getattr(cfg, name) >= 1, f"{name} must be >= 1, got {getattr(cfg, name)}")
    need(cfg.max_levels >= 0 and cfg.threads >= 0, "max_levels and threads must be >= 0")


# -- where an episode went wrong -----------------------------------------------------------------
def steps_to_success(env, cap: int) -> float:
    """Steps the family's expert needs from ``env``'s current state to succeed (``inf``: never
    within ``cap``). ``env`` is an unwrapped trajbench environment; it is not modified."""
    sim = copy.deepcopy(env)
    sim.max_steps = 1 << 30  # distance, not time left: no truncation
    for n in range(1, cap + 1):
        _, _, terminated, _, info = sim.step(int(sim.expert_action()))
        if info.get("success", False):
            return float(n)
        if terminated:
            return math.inf
    return math.inf


def expert_distances(
    env_id: str, level: int, env_seed: int, actions: Sequence[int], obs: np.ndarray | None = None
) -> np.ndarray:
    """The expert's remaining distance ``d[0..T]`` along a recorded episode (see the module doc).

    The episode is replayed from ``reset(seed=env_seed, options={"level": level})``; with ``obs``
    (the stored encoded observations) every replayed observation is checked against it.

    Raises:
        TrajbenchError: the replay does not reproduce the stored observations.
    """
    from trajbench.families import make_env

    env = make_env(env_id, levels=[int(level)], disable_env_checker=True)
    u = env.unwrapped
    try:
        cap = DISTANCE_CAP_FACTOR * int(u.max_steps)
        o, info = u.reset(seed=int(env_seed), options={"level": int(level)})
        done = False
        d = [steps_to_success(u, cap)]
        for t, a in enumerate(actions):
            if done:
                raise TrajbenchError(
                    f"{env_id} level {level}: the replay ended after {t} of {len(actions)} steps"
                )
            if obs is not None and not np.array_equal(u.encode_obs(o), obs[t]):
                raise TrajbenchError(
                    f"{env_id} level {level}: replaying the episode (reset seed {env_seed}) does not "
                    f"reproduce its observation at step {t}; was it collected with sticky actions?"
                )
            u.expert_action()  # keeps a stateful expert (the BabyAI bot) in step, so copies are cheap
            o, _, terminated, truncated, info = u.step(int(a))
            done = terminated or truncated
            if info.get("success", False):
                d.append(0.0)
            elif terminated:
                d.append(math.inf)
            else:
                d.append(steps_to_success(u, cap))
    finally:
        env.close()
    return np.asarray(d, dtype=float)


def cut_point(d: Sequence[float], success: bool) -> int | None:
    """Number of steps kept when cutting an episode where it went wrong (see the module doc).

    Args:
        d: The expert's remaining distance before every step and after the last, ``T + 1`` values.
        success: Whether the episode succeeded.

    Returns:
        ``t`` (keep steps ``0 .. t-1``), or None when nothing went wrong (``t`` would be ``T``).

    Example:
        >>> cut_point([3, 2, 3, 2, 1, 0], success=True)      # the 2nd action moved away
        1
        >>> cut_point([4, 3, 2, 3, 4, 3], success=False)     # closest approach after 2 steps
        2
        >>> cut_point([3, 2, 1, 0], success=True) is None
        True
    """
    d = np.asarray(d, dtype=float)
    if d.ndim != 1 or len(d) < 1 or np.isnan(d).any():
        raise TrajbenchError(f"distances must be a non-empty 1-d sequence without NaN, got {d!r}")
    T = len(d) - 1
    if success:
        up = np.flatnonzero(d[1:] > d[:-1])
        return int(up[0]) if len(up) else None
    last_best = int(np.flatnonzero(d == d.min())[-1])
    return last_best if last_best < T else None


def imperfect_pool(store, env_id: str, progress: bool = False) -> pd.DataFrame:
    """Every episode of ``store`` with where it went wrong: one row per episode with ``cut``
    (steps kept; -1 when nothing went wrong), ``length``, ``success``, ``level`` and ``row``
    (its index in ``store.episodes``)."""
    from tqdm.auto import tqdm

    eps = store.episodes
    rows = []
    for i in tqdm(range(len(eps)), desc="failures: where it went wrong", disable=not progress):
        row = eps.iloc[i]
        s, n = int(row.offset), int(row.length)
        d = expert_distances(
            env_id,
            int(row.level),
            int(row.seed),
            np.asarray(store.actions[s : s + n]),
            np.asarray(store.obs[s : s + n]),
        )
        c = cut_point(d, bool(row.success))
        rows.append(
            {
                "row": i,
                "level": int(row.level),
                "success": bool(row.success),
                "length": n,
                "cut": -1 if c is None else c,
                "start_distance": d[0],
            }
        )
    return pd.DataFrame(rows)


def cut_episode(ep: EpisodeRecord, n: int) -> EpisodeRecord:
    """The first ``n`` steps of ``ep``."""
    return replace(ep, obs=ep.obs[:n], actions=ep.actions[:n], rewards=ep.rewards[:n])


# -- contexts ------------------------------------------------------------------------------------
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
    from trajbench.rollout import demonstrations, episode_record

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
    from trajbench.vocab import template

    shown = {"empty": "", "template": template(mission)}.get(policy.instruction, mission)
    return len(policy.vocab.encode(shown))


def context_tokens(policy, episodes: list[EpisodeRecord]) -> int:
    """Tokens of a context: one per step plus the mission words before every episode."""
    return sum(len(ep) + mission_words(policy, ep.mission) for ep in episodes)


# -- the analysis --------------------------------------------------------------------------------
def _collect(cfg: FailuresConfig, out: Path, demonstrator: str, n: int) -> Path:
    """Collect ``n`` episodes per evaluation level with ``demonstrator`` (reused when present)."""
    from trajbench.collect import CollectConfig, collect
    from trajbench.families import make_env, parse_levels

    env = make_env(cfg.env)
    try:
        _, chosen = parse_levels(cfg.levels, env)
    finally:
        env.close()
    if cfg.max_levels:
        chosen = chosen[: cfg.max_levels]
    eps = f"-eps{cfg.epsilon:g}" if demonstrator == "noisy" else ""
    tag = cfg.levels.replace(",", "_") + (f"-first{cfg.max_levels}" if cfg.max_levels else "")
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


def failures(cfg: FailuresConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run the analysis; returns (aggregated table, imperfect-episode pool)."""
    import torch
    from tqdm.auto import tqdm

    from trajbench.data import load
    from trajbench.device import resolve_device
    from trajbench.families import resolve_env_id
    from trajbench.io import write_parquet
    from trajbench.metrics import aggregate
    from trajbench.pipeline.policies import check_compatible, load_trained_policy
    from trajbench.pipeline.train import read_training_record
    from trajbench.rollout import rollout

    if cfg.quick:
        cfg = quick_config(cfg)
    validate(cfg)
    cfg = replace(cfg, env=resolve_env_id(cfg.env))
    out = Path(cfg.out)
    device = resolve_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    policies = [load_trained_policy(m, device=device)[0] for m in cfg.models]
    from trajbench.families import make_env

    env = make_env(cfg.env)
    family = SimpleNamespace(encoding=env.unwrapped.encoding, env_ids=[cfg.env])
    env.close()
    for policy, model in zip(policies, cfg.models, strict=True):
        check_compatible(policy.model.encoding, family.encoding, model)  # before any collection
    expert_store = load(_collect(cfg, out, "expert", cfg.expert_episodes))
    imperfect_store = load(_collect(cfg, out, cfg.imperfect, cfg.imperfect_episodes))
    pool = imperfect_pool(imperfect_store, cfg.env, cfg.progress)
    levels = sorted(int(x) for x in pool.loc[pool.cut >= 0, "level"].unique())
    if not levels:
        raise TrajbenchError(
            f"none of the {len(pool)} {cfg.imperfect} episodes went wrong anywhere; raise --epsilon "
            "or --imperfect-episodes"
        )
    eps = expert_store.episodes
    missions = eps.groupby("level")["mission"].first().to_dict()
    mission_pool = {cfg.env: sorted(eps["mission"].unique())}
    plans = {
        k: sorted({min(k, max(1, round(s * k))) for s in cfg.imperfect_shares}) for k in cfg.ks
    }
    records = []
    train_seeds = []
    n_jobs = len(cfg.models) * cfg.eval_episodes * sum(1 + 2 * len(ms) for ms in plans.values())
    bar = tqdm(total=n_jobs, desc="failures: evaluate", disable=not cfg.progress)

    def play(policy, mi: int, contexts: dict[int, list[EpisodeRecord]], e: int, **where) -> None:
        ctx = [contexts[lv] for lv in levels]
        for rec in rollout(policy, cfg.env, levels, ctx, missions, 1, e):
            tokens = context_tokens(policy, contexts[rec["level"]])
            records.append(
                {
                    "seed": mi,
                    **where,
                    "level": rec["level"],
                    "episode": e,
                    "success": float(rec["success"]),
                    "context_tokens": tokens,
                    "success_per_1k_tokens": 1000.0 * rec["success"] / max(tokens, 1),
                }
            )
        bar.update(1)

    for mi, policy in enumerate(policies):
        policy.mission_pool = mission_pool
        train_seeds.append(read_training_record(cfg.models[mi]).config.seed)

        for k, ms in plans.items():
            for e in range(cfg.eval_episodes):
                for i, m in enumerate(ms):
                    ctx = {
                        lv: build_contexts(
                            expert_store, imperfect_store, pool, cfg.env, lv, k, m, e
                        )
                        for lv in levels
                    }
                    if i == 0:  # the expert context does not depend on m
                        play(
                            policy,
                            mi,
                            {lv: c["expert"] for lv, c in ctx.items()},
                            e,
                            k=k,
                            m=0,
                            context="expert",
                        )
                    for cond in ("raw", "cut"):
                        play(
                            policy,
                            mi,
                            {lv: c[cond] for lv, c in ctx.items()},
                            e,
                            k=k,
                            m=m,
                            context=cond,
                        )
    bar.close()
    records = pd.DataFrame(records)
    if len(set(train_seeds)) == len(train_seeds):  # name seeds by training seed when distinct
        records["seed"] = records["seed"].map(dict(enumerate(train_seeds)))
    write_parquet(out / f"{NAME}-records.parquet", records)
    write_parquet(out / f"{NAME}-pool.parquet", pool)
    table = aggregate(
        records, ["success", "success_per_1k_tokens", "context_tokens"], ["k", "m", "context"]
    )
    table["context"] = pd.Categorical(table["context"], CONDITIONS, ordered=True)
    table = table.sort_values(["k", "m", "context"]).reset_index(drop=True)
    table["context"] = table["context"].astype(str)
    return table, pool


# -- report --------------------------------------------------------------------------------------
LABEL = {
    "expert": "successful expert episodes only",
    "raw": "K - m expert + m raw imperfect",
    "cut": "K - m expert + m imperfect cut where it went wrong",
}


def row_label(context: str, k: int, m: int) -> str:
    """What a context of the table holds, in words."""
    if context == "expert":
        return f"{k} successful expert"
    what = "raw imperfect" if context == "raw" else "imperfect, cut where it went wrong"
    return f"{m} {what}" if m == k else f"{k - m} expert + {m} {what}"


def render(table: pd.DataFrame, pool: pd.DataFrame, cfg: FailuresConfig, wall_s: float) -> str:
    imperfect = pool[pool.cut >= 0]
    kept = (imperfect.cut / imperfect.length).mean() if len(imperfect) else float("nan")
    n_levels_all = pool.level.nunique()
    n_levels = imperfect.level.nunique()
    lines = [
        f"# Successes and failures in context ({cfg.env}, {cfg.levels} levels)",
        "",
        f"{len(cfg.models)} model(s); IQM over seeds x {n_levels} levels with 95% "
        f"stratified-bootstrap CIs; {cfg.eval_episodes} independent episode(s) per level and "
        f"condition. Imperfect episodes: `{cfg.imperfect}` demonstrator"
        + (f" (epsilon {cfg.epsilon:g})" if cfg.imperfect == "noisy" else "")
        + f"; {len(imperfect)} of {len(pool)} went wrong somewhere "
        f"({int((~imperfect.success).sum())} of them failed), and their cuts keep "
        f"{100 * kept:.0f}% of their steps on average. "
        + (
            f"{n_levels_all - n_levels} level(s) without an imperfect episode were dropped. "
            if n_levels < n_levels_all
            else ""
        )
        + f"Wall time {wall_s:.0f} s.",
        "",
        "| K | imperfect m | context | success | context tokens | success per 1k tokens |",
        "|---|---|---|---|---|---|",
    ]
    for r in table.to_dict("records"):
        lines.append(
            f"| {r['k']} | {r['m']} | {row_label(r['context'], r['k'], r['m'])} | "
            f"{fmt_ci(r)} | {r['context_tokens_mean']:.0f} | "
            f"{fmt_ci(r, 'success_per_1k_tokens')} |"
        )
    lines += ["", "**Reading.**", ""]
    for k, g in table.groupby("k", sort=True):
        ex = g[g.context == "expert"]
        if ex.empty:
            continue
        ex = ex.iloc[0]
        for m in sorted(g.loc[g.context != "expert", "m"].unique()):
            by = {r["context"]: r for r in g[g.m == m].to_dict("records")}
            if not {"raw", "cut"} <= set(by):
                continue
            raw, cut = by["raw"], by["cut"]
            saved = 1 - cut["context_tokens_mean"] / raw["context_tokens_mean"]
            lines.append(
                f"- K={k} with {m} imperfect episode(s): "
                f"{compare(raw, ex, 'the raw context', 'the expert-only one')} "
                f"({raw['success_iqm']:.2f} vs {ex['success_iqm']:.2f}); "
                f"{compare(cut, raw, 'the cut context', 'the raw one')} "
                f"({cut['success_iqm']:.2f}) and {compare(cut, ex, 'it', 'the expert-only one')}, "
                f"with {100 * saved:.0f}% fewer context tokens than raw; per 1,000 context tokens "
                f"{compare(cut, raw, 'cut', 'raw', 'success_per_1k_tokens')} "
                f"({cut['success_per_1k_tokens_iqm']:.2f} vs {raw['success_per_1k_tokens_iqm']:.2f})."
            )
    lines += ["", f"![{NAME}]({NAME}.png)", ""]
    return "\n".join(lines)


def plot(table: pd.DataFrame):
    """Bars per (K, m, context): success, and success per 1,000 context tokens, with 95% CIs."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    colors = dict(zip(CONDITIONS, ("#4C72B0", "#DD8452", "#55A868"), strict=True))
    x = np.arange(len(table))
    for ax, metric, ylabel in (
        (axes[0], "success", "success IQM"),
        (axes[1], "success_per_1k_tokens", "success per 1,000 context tokens (IQM)"),
    ):
        y = table[f"{metric}_iqm"].to_numpy()
        err = np.vstack(
            [y - table[f"{metric}_ci_low"].to_numpy(), table[f"{metric}_ci_high"].to_numpy() - y]
        )
        ax.bar(x, y, yerr=err, capsize=3, color=[colors[c] for c in table["context"]])
        ax.set_xticks(x, [f"K={k}\nm={m}" for k, m in zip(table["k"], table["m"], strict=True)])
        ax.set_ylabel(ylabel)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colors[c]) for c in CONDITIONS]
    axes[0].legend(handles, [LABEL[c] for c in CONDITIONS], fontsize=7)
    axes[0].set_ylim(0, 1.05)
    axes[0].set_title("success on the evaluation levels (95% CI)")
    axes[1].set_title("per 1,000 context tokens (95% CI)")
    fig.tight_layout()
    return fig


def main(argv: list[str]) -> int:
    cfg = parse(FailuresConfig, argv, NAME)
    if cfg is None:
        return 0
    started = time.perf_counter()
    table, pool = failures(cfg)
    if cfg.quick:
        cfg = quick_config(cfg)
    md = write_outputs(
        cfg.out, NAME, table, render(table, pool, cfg, time.perf_counter() - started), plot(table)
    )
    print(md.read_text())
    print(f"written: {md}, {md.with_suffix('.csv')}, {md.with_suffix('.png')}")
    return 0

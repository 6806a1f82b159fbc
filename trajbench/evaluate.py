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

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import gymnasium as gym
import numpy as np
import pandas as pd
import torch

from trajbench.baselines.base import EpisodeRecord, Policy, RowContext

from .batch import Batch
from .errors import TrajbenchError
from .io import atomic_write_bytes

REFERENCE_POLICIES = ("random", "expert", "hashmap")


@dataclass
class EvalConfig:
    """Evaluate a policy in context on held-out levels."""

    policy: str
    """A model directory written by trajbench train, or a reference policy: random, expert, hashmap."""
    data: tuple[str, ...]
    """Evaluation episode stores: expert episodes of held-out levels (or held-out families)."""
    out: str
    """Output directory for records.parquet and offline.parquet."""
    ks: tuple[int, ...] = (0, 1, 2, 4)
    """Numbers of demonstrations in the context (the k-shot sweep)."""
    episodes: int = 2
    """Online episodes per level and k; later ones see the earlier ones in their context."""
    support: Literal["same", "other", "both"] = "both"
    """Demonstrations from the level itself (same), from other levels (other: the no-support score), or both."""
    max_levels: int = 0
    """Evaluate at most this many levels per family (0: every level in the store)."""
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


# -- building blocks --------------------------------------------------------------------------
def episode_record(store, row) -> EpisodeRecord:
    """An :class:`EpisodeRecord` of one row of ``store.episodes``."""
    s, n = int(row.offset), int(row.length)
    return EpisodeRecord(
        np.asarray(store.obs[s : s + n]),
        np.asarray(store.actions[s : s + n], dtype=np.int64),
        np.asarray(store.rewards[s : s + n], dtype=np.float32),
        int(row.level),
        int(row.episode_id),
        str(row.mission),
    )


class Demonstrations:
    """Draws the context demonstrations of :func:`demonstrations` from one store, fast.

    The successful expert episodes of each family are indexed once; each draw is then a few numpy
    operations, and each episode is read from the store once.
    """

    def __init__(self, store):
        self.store = store
        eps = store.episodes
        self.expert = eps[(eps.demonstrator == "expert") & eps.success].reset_index(drop=True)
        self._families: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._records: dict[int, EpisodeRecord] = {}

    def __call__(
        self, env_id: str, level: int, k: int, support: str, seed: int
    ) -> list[EpisodeRecord]:
        if env_id not in self._families:
            rows = np.flatnonzero((self.expert.env_id == env_id).to_numpy())
            self._families[env_id] = (rows, self.expert.level.to_numpy()[rows])
        rows, levels = self._families[env_id]
        pool = rows[levels == level] if support == "same" else rows[levels != level]
        if k and len(pool) == 0:
            raise TrajbenchError(
                f"no expert episodes for {support}-level support of {env_id} level {level}"
            )
        if k == 0:
            return []
        order = np.random.default_rng([seed, level, support == "other"]).permutation(len(pool))
        return [self._record(int(pool[order[i % len(pool)]])) for i in range(k)]

    def _record(self, r: int) -> EpisodeRecord:
        if r not in self._records:
            self._records[r] = episode_record(self.store, self.expert.iloc[r])
        return self._records[r]


def demonstrations(
    store, env_id: str, level: int, k: int, support: str, seed: int
) -> list[EpisodeRecord]:
    """``k`` expert episodes of ``level`` (``same``) or of other levels of the family (``other``).

    The choice is a fixed seeded order per level, so the k-shot contexts are nested (k=1 is the
    first demonstration of k=2, ...) and identical across policies. (Evaluation draws through one
    :class:`Demonstrations`, which gives the same episodes.)
    """
    return Demonstrations(store)(env_id, level, k, support, seed)


def reset_seed(seed: int, level: int, episode: int) -> int:
    """Start-state seed: shared across k, support and policies, so comparisons are paired."""
    return int(np.random.SeedSequence([seed, level, episode]).generate_state(1)[0])


def rollout(
    policy: Policy,
    env_id: str,
    levels: list[int],
    contexts: list[list[EpisodeRecord]],
    missions: dict[int, str],
    n_episodes: int,
    seed: int,
    envs: list | None = None,
) -> list[dict]:
    """Play ``n_episodes`` episodes in every row, batched across rows.

    Row ``i`` plays level ``levels[i]`` (a level may appear in several rows, e.g. with different
    contexts) with ``contexts[i]`` in the policy's context, followed by the row's own earlier
    episodes. ``envs`` (one per row, of ``env_id``) are reused if given, else made and closed here.

    Returns one dict per (row, episode) with ``row``, ``level``, ``episode``, ``return``,
    ``success`` and ``length``.
    """
    own_envs = envs is None
    if own_envs:
        envs = [gym.make(env_id, levels="all") for _ in levels]
    elif len(envs) < len(levels):
        raise ValueError(f"rollout needs {len(levels)} environments, got {len(envs)}")
    envs = list(envs[: len(levels)])
    n_actions = int(envs[0].action_space.n)
    raw = [env.unwrapped for env in envs]
    own: list[list[EpisodeRecord]] = [[] for _ in levels]
    out = []
    try:
        for e in range(n_episodes):
            obs = [
                env.reset(seed=reset_seed(seed, lv, e), options={"level": lv})[0]
                for env, lv in zip(envs, levels, strict=True)
            ]
            policy.begin(
                [
                    RowContext(env_id, lv, missions[lv], ctx + own[i])
                    for i, (lv, ctx) in enumerate(zip(levels, contexts, strict=True))
                ]
            )
            active = np.arange(len(levels))
            prev_a = np.full(len(levels), n_actions, dtype=np.int64)
            prev_r = np.zeros(len(levels), dtype=np.float32)
            traj = [([], [], []) for _ in levels]
            success = np.zeros(len(levels), dtype=bool)
            while len(active):
                enc = np.stack([raw[i].encode_obs(obs[i]) for i in active])
                actions = policy.act(
                    enc, prev_a[active], prev_r[active], active, [envs[i] for i in active]
                )
                finished = np.zeros(len(active), dtype=bool)
                for j, i in enumerate(active.tolist()):
                    a = int(actions[j])
                    o, r, term, trunc, info = envs[i].step(a)
                    traj[i][0].append(enc[j])
                    traj[i][1].append(a)
                    traj[i][2].append(r)
                    obs[i], prev_a[i], prev_r[i] = o, a, r
                    success[i] = bool(info.get("success", False))
                    finished[j] = term or trunc
                active = active[~finished]
            for i, lv in enumerate(levels):
                o, a, r = traj[i]
                own[i].append(
                    EpisodeRecord(
                        np.stack(o).astype(np.uint8),
                        np.asarray(a, np.int64),
                        np.asarray(r, np.float32),
                        lv,
                        -1,
                        missions[lv],
                    )
                )
                out.append(
                    {
                        "row": i,
                        "level": lv,
                        "episode": e,
                        "return": float(np.sum(r)),
                        "success": bool(success[i]),
                        "length": len(a),
                    }
                )
    finally:
        if own_envs:
            for env in envs:
                env.close()
    return out


# -- the evaluation ---------------------------------------------------------------------------
def make_policy(cfg: EvalConfig, store, device: torch.device) -> tuple[Policy, dict]:
    """The policy named by ``cfg.policy`` and a dict describing it for the records."""
    n_actions = int(store.encoding.n_actions)
    if cfg.policy in REFERENCE_POLICIES:
        from trajbench.baselines import ExpertPolicy, HashmapPolicy, RandomPolicy

        policy = {
            "random": lambda: RandomPolicy(n_actions, cfg.seed),
            "expert": ExpertPolicy,
            "hashmap": lambda: HashmapPolicy(n_actions, cfg.seed),
        }[cfg.policy]()
        return policy, {
            "policy": cfg.policy,
            "train_context": "-",
            "instruction": "-",
            "train_seed": 0,
            "model_params": 0,
        }
    from trajbench.baselines.transformer_policy import TransformerPolicy

    if not Path(cfg.policy).is_dir():
        raise TrajbenchError(
            f"policy {cfg.policy!r} is neither a model directory written by trajbench train nor "
            f"one of the reference policies {', '.join(REFERENCE_POLICIES)}"
        )
    pool = {
        env: sorted(store.episodes.loc[store.episodes.env_id == env, "mission"].unique())
        for env in store.env_ids
    }
    policy = TransformerPolicy.load(
        cfg.policy,
        mission_pool=pool,
        use_cache=cfg.use_cache,
        greedy=cfg.greedy,
        device=device,
        seed=cfg.seed,
    )
    check_compatible(policy, store, cfg.policy)
    train_cfg = policy.extra.get("train_config", {})
    mode = train_cfg.get("context", {}).get("mode", "?")
    return policy, {
        "policy": "no-context" if mode == "none" else "transformer",
        "train_context": mode,
        "instruction": train_cfg.get("context", {}).get("instruction", "full"),
        "train_seed": int(train_cfg.get("seed", 0)),
        "model_params": policy.model.num_parameters(),
    }


def check_compatible(policy, store, where: str) -> None:
    """Refuse a store whose families the model cannot read (another observation encoding)."""
    cfg = policy.model.cfg
    enc = store.encoding
    if tuple(cfg.feature_sizes) != tuple(enc.feature_sizes) or cfg.n_actions != enc.n_actions:
        raise TrajbenchError(
            f"model {where} reads encoding {cfg.encoding_name!r} ({len(cfg.feature_sizes)} features, "
            f"{cfg.n_actions} actions) but {', '.join(store.env_ids)} uses {enc.name!r} "
            f"({len(enc.feature_sizes)} features, {enc.n_actions} actions)"
        )


def validate(cfg: EvalConfig) -> None:
    if cfg.episodes < 1 or cfg.batch_rows < 1 or any(k < 0 for k in cfg.ks) or not cfg.ks:
        raise TrajbenchError(
            "episodes and batch_rows must be >= 1 and ks a non-empty list of k >= 0"
        )
    if cfg.max_levels < 0 or cfg.offline_sequences < 0 or cfg.threads < 0:
        raise TrajbenchError("max_levels, offline_sequences and threads must be >= 0")
    if not cfg.data:
        raise TrajbenchError("--data needs at least one episode store directory")


def evaluate(cfg: EvalConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run the evaluation; returns (online records, offline accuracy) and writes them to ``cfg.out``."""
    from .train import resolve_device, torch_threads

    validate(cfg)
    device = resolve_device(cfg.device)
    with torch_threads(cfg.threads if device.type == "cpu" else 0):
        return _evaluate(cfg, device)


def _evaluate(cfg: EvalConfig, device: torch.device) -> tuple[pd.DataFrame, pd.DataFrame]:
    from tqdm.auto import tqdm

    from .data import load

    store = load(list(cfg.data))
    policy, about = make_policy(cfg, store, device)
    supports = ["same", "other"] if cfg.support == "both" else [cfg.support]
    conditions = [(k, s) for k in cfg.ks for s in supports if not (k == 0 and s == "other")]
    demos = Demonstrations(store)
    expert = demos.expert
    if expert.empty:
        raise TrajbenchError(
            f"the evaluation store {', '.join(cfg.data)} has no successful expert episodes"
        )
    # Every (level, k, support) of a family is one row; rows are rolled out in batches.
    chunks = []
    for env_id in store.env_ids:
        levels = sorted(expert.loc[expert.env_id == env_id, "level"].unique().tolist())
        if cfg.max_levels:
            levels = levels[: cfg.max_levels]
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
        offline_accuracy(policy, store, cfg, about)
        if cfg.offline and about["model_params"]
        else pd.DataFrame()
    )
    write_parquet(Path(cfg.out) / "records.parquet", online)
    write_parquet(Path(cfg.out) / "offline.parquet", offline)
    return online, offline


@torch.no_grad()
def offline_accuracy(policy, store, cfg: EvalConfig, about: dict) -> pd.DataFrame:
    """Accuracy of the model's most likely action on held-out expert queries, per (k, support).

    Uses the prompt builder on the evaluation store: ``bursty`` contexts for same-level support,
    ``trajectories`` for other-level support, and ``none`` for k = 0.
    """
    from .contexts import ContextBuilder

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
                    **about,
                    "family": ",".join(store.env_ids),
                    "eval_split": cfg.eval_split,
                    "k": k,
                    "support": support,
                    "seed": about["train_seed"],
                    "accuracy": correct / max(total, 1),
                    "n_targets": total,
                }
            )
    return pd.DataFrame.from_records(rows)


def write_parquet(path: Path, frame: pd.DataFrame) -> None:
    """Write a DataFrame as parquet atomically."""
    import io

    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    atomic_write_bytes(path, buf.getvalue())


def summary(online: pd.DataFrame) -> pd.DataFrame:
    """IQM success and normalized return with 95% stratified-bootstrap CIs per (family, k, support)."""
    from .metrics import aggregate

    groups = ["policy", "train_context", "family", "k", "support"]
    succ = aggregate(online, "success", groups)
    ret = aggregate(online, "normalized_return", groups)
    return succ.merge(ret[[*groups, "normalized_return_iqm"]], on=groups)


def main(argv: list[str]) -> int:
    from .cliargs import parse_config

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

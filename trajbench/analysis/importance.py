"""``trajbench analyze importance``: which context steps carry the lesson (after "thought anchors").

For held-out levels, a trained model reads ``k`` demonstrations of the level (the *context*) and
then a held-out expert episode of the same level (the *query*), teacher-forced. Every context step,
and every context episode, is then perturbed in turn, and the effect on the query is measured:

- **replace**: the step (or episode, with its mission words) is swapped for a random one from
  another level of the same family (``replace_draws`` draws, averaged);
- **delete**: the step's token (or the whole episode) is removed.

Effect measures:

- ``kl_*``: KL divergence ``KL(p_base || p_perturbed)`` of the model's action distribution,
  averaged over the query's steps (nats). The unperturbed and all perturbed copies of a sequence
  go through the model together in batches of ``batch_rows`` sequences.
- ``flip_*``: share of query steps whose most likely action changes.
- ``dsuccess_*`` (episode perturbations only): change in online success when the policy plays the
  level with the perturbed demonstrations in its context (``online_seeds`` paired start states;
  the unperturbed and perturbed contexts start from the same states).
- ``attention``: the cheaper proxy. The attention weight each context token receives, averaged
  over every layer and head and over the query's step tokens (the tokens that predict actions),
  read from the unperturbed sequence with eager attention. One forward pass instead of one per step.
  ``attention_max`` is the same for the single (layer, head) that attends to the token most, since
  averaging over heads can hide one head that reads the lesson.

Summaries:

- **concentration**: per sequence, the share of the total effect held by the top
  ``top_fraction`` (10%) of its context steps (equal effects would give 10%), then averaged.
- **agreement**: per sequence, the Spearman rank correlation between attention and each
  perturbation effect over its context steps, then summarized (median, mean, share positive).
- **step kinds** (a step may have several; each kind is compared with all other steps):

  ============== ==================================================================================
  goal_reached   a step that earns the task's reward: Dark Room, every step ending on the goal
                 (reward > 0); Key-to-Door, the door reward; MiniGrid/BabyAI, reward > 0
  goal_arrival   the first step of a run of goal_reached steps (Dark Room: arriving on the goal;
                 elsewhere the same as goal_reached)
  key_pickup     Key-to-Door: the key reward (``has_key`` still 0 on the step); MiniGrid: ``pickup``
                 facing a key that then shows as carried
  door_opened    Key-to-Door: the door reward; MiniGrid: ``toggle`` facing a closed or locked door
                 that is then open
  turning_point  the action differs from the previous step's action
  off_plan       the demonstrator's action differs from the expert's action in that state (noisy
                 or random demonstrations; found by replaying the episode from its seed)
  recovery       the first on-plan step after one or more off-plan steps: the recovery after a
                 dead end
  episode_start  the first step of an episode
  episode_end    the last step of an episode
  ============== ==================================================================================

Caveat: a step token carries ``o_t, a_{t-1}, r_{t-1}, a_t, r_t``, so the next token still shows
the previous action and reward of a deleted or replaced step; single-step effects measure what the
step adds beyond its neighbours.

Example:
    trajbench analyze importance --model runs/dr/model --data data/dr-test --out runs/dr/importance
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from trajbench.batch import STEP
from trajbench.cliargs import parse_config
from trajbench.errors import TrajbenchError

from .internals import (
    fmt,
    forward_with_attention,
    kl_divergence,
    markdown_table,
    pct,
    set_threads,
    top_share,
    write_outputs,
)

NAME = "importance"
#: Step kinds, in report order (definitions in the module docstring).
KINDS = (
    "goal_reached",
    "goal_arrival",
    "key_pickup",
    "door_opened",
    "turning_point",
    "off_plan",
    "recovery",
    "episode_start",
    "episode_end",
)
#: Per-step effect measures, with the attention proxy.
STEP_MEASURES = ("kl_replace", "kl_delete", "attention", "attention_max")
#: Pairs of step measures whose per-sequence rank correlation is reported.
AGREEMENT_PAIRS = (
    ("attention", "kl_replace"),
    ("attention", "kl_delete"),
    ("attention_max", "kl_replace"),
    ("attention_max", "kl_delete"),
    ("kl_replace", "kl_delete"),
)


@dataclass
class ImportanceConfig:
    """Context-step importance: replace/delete effects of context steps and episodes vs attention."""

    model: str
    """A model directory written by trajbench train."""
    data: tuple[str, ...]
    """Evaluation episode stores of held-out levels (the contexts and queries come from them)."""
    out: str
    """Output directory for importance.csv/.md/.png and the extra tables."""
    k: int = 2
    """Context episodes per sequence (fewer make each one matter more; drawn with replacement
    when a level has fewer other episodes)."""
    sequences: int = 16
    """Sequences analysed: one per held-out level in a seeded order, cycling when there are fewer
    levels."""
    context_demonstrators: tuple[str, ...] = ("expert",)
    """Demonstrators whose episodes fill the context (add noisy to see dead ends and recoveries)."""
    allow_failed: bool = False
    """Let failed episodes fill the context."""
    replace_draws: int = 2
    """Random replacements drawn per step and per episode (their effects are averaged)."""
    online: bool = True
    """Also measure the change in online success for episode perturbations."""
    online_seeds: int = 4
    """Start states per (sequence, perturbation) in the online measurement."""
    top_fraction: float = 0.1
    """Concentration: share of the effect held by this fraction of the context steps."""
    batch_rows: int = 256
    """Perturbed sequences per forward pass."""
    seed: int = 0
    """Seed of the level order, contexts, queries, replacements and start states."""
    device: str = "auto"
    """auto, cpu or cuda[:N]."""
    threads: int = 0
    """CPU threads for torch (0: torch's default)."""
    progress: bool = True
    """Show a progress bar."""


@dataclass
class ImportanceResult:
    """The tables of the analysis (see :func:`importance`)."""

    steps: pd.DataFrame
    """One row per context step of every sequence: labels, effects, attention."""
    episodes: pd.DataFrame
    """One row per context episode of every sequence: effects and online success."""
    kinds: pd.DataFrame
    """Mean effect of each step kind against the other steps."""
    sequences: pd.DataFrame
    """One row per sequence: concentration and attention agreement."""
    summary: pd.DataFrame
    """Headline numbers: ``measure, value`` rows."""
    about: dict = field(default_factory=dict)
    """What was analysed (model, data, sizes, wall time)."""


# -- step kinds ---------------------------------------------------------------------------------
def _minigrid_view():
    """Feature indices of MiniGrid's encoded view: the agent's own cell (shows what it carries)
    and the cell in front of it, plus the object, state and action ids used by the labels."""
    from minigrid.core.actions import Actions
    from minigrid.core.constants import OBJECT_TO_IDX, STATE_TO_IDX

    from trajbench.envs.minigrid_levels import VIEW_CELLS

    side = round(VIEW_CELLS**0.5)
    # encode_minigrid_obs flattens image[x, y, channel] in C order; the agent sits at
    # (side // 2, side - 1) looking towards y - 1.
    agent = ((side // 2) * side + side - 1) * 3
    front = ((side // 2) * side + side - 2) * 3
    return dict(
        agent_obj=agent,
        front_obj=front,
        front_state=front + 2,
        key=OBJECT_TO_IDX["key"],
        door=OBJECT_TO_IDX["door"],
        open=STATE_TO_IDX["open"],
        shut=(STATE_TO_IDX["closed"], STATE_TO_IDX["locked"]),
        pickup=int(Actions.pickup),
        toggle=int(Actions.toggle),
    )


def step_kinds(
    obs: np.ndarray,
    actions: np.ndarray,
    rewards: np.ndarray,
    encoding: str,
    off_plan: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Label every step of one episode with the :data:`KINDS` (boolean arrays of its length).

    Args:
        obs: ``[L, F]`` encoded observations (``obs[t]`` is what action ``t`` was chosen on).
        actions: ``[L]`` actions.
        rewards: ``[L]`` rewards that followed them.
        encoding: The family's observation encoding name (``dark-room``, ``dark-key-to-door``,
            ``minigrid``); other encodings get the generic labels only (goal = reward > 0,
            turning points, plan, start, end).
        off_plan: ``[L]`` whether each action left the expert's plan (None: all on plan).
    """
    obs = np.asarray(obs)
    a = np.asarray(actions).astype(np.int64)
    r = np.asarray(rewards, dtype=np.float64)
    n = len(a)
    if obs.shape[0] != n or r.shape != (n,):
        raise TrajbenchError(f"episode arrays disagree: obs {obs.shape}, {n} actions, {r.shape}")
    kinds = {k: np.zeros(n, dtype=bool) for k in KINDS}
    if n == 0:
        return kinds
    rewarded = r > 0
    if encoding == "dark-key-to-door":
        has_key = obs[:, 2] > 0
        kinds["key_pickup"] = rewarded & ~has_key
        kinds["door_opened"] = rewarded & has_key
        kinds["goal_reached"] = kinds["door_opened"].copy()
    elif encoding == "minigrid":
        v = _minigrid_view()
        nxt = np.concatenate([obs[1:], obs[-1:]])  # the view after each action (last: itself)
        last = np.arange(n) == n - 1
        carried_key = nxt[:, v["agent_obj"]] == v["key"]
        kinds["key_pickup"] = (
            (a == v["pickup"])
            & (obs[:, v["front_obj"]] == v["key"])
            & (obs[:, v["agent_obj"]] != v["key"])
            & (carried_key | (last & rewarded))
        )
        opened = (nxt[:, v["front_obj"]] == v["door"]) & (nxt[:, v["front_state"]] == v["open"])
        kinds["door_opened"] = (
            (a == v["toggle"])
            & (obs[:, v["front_obj"]] == v["door"])
            & np.isin(obs[:, v["front_state"]], v["shut"])
            & (opened & ~last | (last & rewarded))
        )
        kinds["goal_reached"] = rewarded
    else:  # dark-room and any other encoding: the reward marks the goal
        kinds["goal_reached"] = rewarded
    prev_goal = np.concatenate([[False], kinds["goal_reached"][:-1]])
    kinds["goal_arrival"] = kinds["goal_reached"] & ~prev_goal
    kinds["turning_point"][1:] = a[1:] != a[:-1]
    if off_plan is not None:
        off = np.asarray(off_plan, dtype=bool)
        if off.shape != (n,):
            raise TrajbenchError(f"off_plan must have {n} entries, got {off.shape}")
        kinds["off_plan"] = off.copy()
        kinds["recovery"][1:] = ~off[1:] & off[:-1]
    kinds["episode_start"][0] = True
    kinds["episode_end"][-1] = True
    return kinds


def off_plan_steps(
    env_id: str,
    env_seed: int,
    level: int,
    obs: np.ndarray,
    actions: np.ndarray,
    sticky_p: float = 0.0,
) -> np.ndarray | None:
    """Replay an episode from its seed and mark the actions that differ from the expert's.

    Returns None when the replay does not reproduce the stored observations (then the episode's
    plan is unknown).
    """
    import gymnasium as gym

    env = gym.make(env_id, levels="all", sticky_p=sticky_p)
    try:
        o, _ = env.reset(seed=int(env_seed), options={"level": int(level)})
        off = np.zeros(len(actions), dtype=bool)
        for t, action in enumerate(np.asarray(actions).astype(np.int64)):
            if not np.array_equal(env.unwrapped.encode_obs(o), obs[t]):
                return None
            off[t] = int(action) != int(env.unwrapped.expert_action())
            o, *_ = env.step(int(action))
        return off
    finally:
        env.close()


# -- the analysis -------------------------------------------------------------------------------
def _validate(cfg: ImportanceConfig) -> None:
    from trajbench.envs.demonstrators import DEMONSTRATORS

    for name in ("k", "sequences", "replace_draws", "online_seeds", "batch_rows"):
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise TrajbenchError(f"{name} must be an integer >= 1, got {value!r}")
    if not 0.0 < cfg.top_fraction <= 1.0:
        raise TrajbenchError(f"top_fraction must be in (0, 1], got {cfg.top_fraction}")
    if not cfg.data:
        raise TrajbenchError("--data needs at least one evaluation episode store")
    bad = [d for d in cfg.context_demonstrators if d not in DEMONSTRATORS]
    if bad or not cfg.context_demonstrators:
        raise TrajbenchError(
            f"context_demonstrators must be some of {DEMONSTRATORS}, got {cfg.context_demonstrators}"
        )
    if cfg.seed < 0:
        raise TrajbenchError(f"seed must be >= 0, got {cfg.seed}")


@dataclass
class _Sequence:
    env_id: str
    level: int
    query: int  # row of store.episodes
    context: list[int]  # rows of store.episodes, in context order


def _select(cfg: ImportanceConfig, eps: pd.DataFrame) -> list[_Sequence]:
    """One sequence per level (seeded order, cycling): a query and ``k`` context episodes."""
    rng = np.random.default_rng([cfg.seed, 1])
    ctx_ok = eps["demonstrator"].isin(list(cfg.context_demonstrators)) & (eps["length"] > 0)
    if not cfg.allow_failed:
        ctx_ok &= eps["success"]
    qry_ok = (eps["demonstrator"] == "expert") & eps["success"] & (eps["length"] > 0)
    candidates = []
    for (env_id, level), group in eps.groupby(["env_id", "level"], sort=True):
        contexts = group.index[ctx_ok[group.index]].to_numpy()
        # Queries that leave at least one other context episode of their level.
        queries = np.asarray(
            [q for q in group.index[qry_ok[group.index]] if (contexts != q).any()], dtype=np.int64
        )
        others = (eps["env_id"] == env_id) & (eps["level"] != level) & ctx_ok
        if len(queries) and others.any():
            candidates.append((env_id, int(level), queries, contexts))
    if not candidates:
        raise TrajbenchError(
            "no level of the store can be analysed: each needs a successful expert episode (the "
            f"query), another {'/'.join(cfg.context_demonstrators)} episode of the same level "
            "(the context) and context episodes of another level of the family (replacements)"
        )
    order = rng.permutation(len(candidates))
    out = []
    for i in range(cfg.sequences):
        env_id, level, queries, contexts = candidates[order[i % len(candidates)]]
        q = int(queries[rng.integers(len(queries))])
        pool = contexts[contexts != q]
        replace = len(pool) < cfg.k
        ctx = rng.choice(pool, size=cfg.k, replace=replace)
        out.append(_Sequence(env_id, level, q, [int(c) for c in ctx]))
    return out


def _labels(store, eps: pd.DataFrame, rows: list[int]) -> tuple[dict[int, dict], int]:
    """Step kinds of the context episodes ``rows`` of ``eps`` (the store's episode table with a
    0..n-1 index); returns ``(labels by row, episodes that could not be replayed)``."""
    sticky = {}
    for meta in store.metas:
        sticky.setdefault(meta["env_id"], set()).add(float(meta["config"].get("sticky_p", 0.0)))
    out, unreplayable = {}, 0
    for row in rows:
        ep = eps.loc[row]
        s, n = int(ep["offset"]), int(ep["length"])
        obs = np.asarray(store.obs[s : s + n])
        actions = np.asarray(store.actions[s : s + n])
        rewards = np.asarray(store.rewards[s : s + n])
        off = None
        if ep["demonstrator"] != "expert":
            p = sticky.get(ep["env_id"], {0.0})
            off = off_plan_steps(
                ep["env_id"], int(ep["seed"]), int(ep["level"]), obs, actions, min(p)
            )
            unreplayable += off is None
        out[row] = step_kinds(obs, actions, rewards, store.encoding.name, off)
    return out, unreplayable


def importance(cfg: ImportanceConfig) -> ImportanceResult:
    """Run the analysis; returns its tables (nothing is written)."""
    from scipy.stats import spearmanr

    from trajbench.contexts import RowPlan, StepTable, assemble
    from trajbench.data import load
    from trajbench.device import resolve_device
    from trajbench.pipeline.policies import check_compatible, load_trained_policy
    from trajbench.pipeline.train import read_training_record
    from trajbench.rollout import episode_record, rollout
    from trajbench.vocab import shown_mission

    _validate(cfg)
    set_threads(cfg.threads)
    device = resolve_device(cfg.device)
    t0 = time.perf_counter()
    store = load(list(cfg.data))
    eps = store.episodes.reset_index(drop=True)
    pool = {e: sorted(eps.loc[eps.env_id == e, "mission"].unique()) for e in store.env_ids}
    policy, _ = load_trained_policy(cfg.model, device=device, seed=cfg.seed, mission_pool=pool)
    check_compatible(policy.model.encoding, store.encoding, cfg.model)
    if not policy.use_context:
        raise TrajbenchError(
            f"{cfg.model} was trained without context (mode none): there is no context to attribute"
        )
    model = policy.model
    n_actions = model.encoding.n_actions
    seqs = _select(cfg, eps)
    rng = np.random.default_rng([cfg.seed, 2])
    rnd = random.Random(cfg.seed)

    table = StepTable.from_episodes(
        np.asarray(store.obs),
        np.asarray(store.actions),
        np.asarray(store.rewards),
        eps["offset"].to_numpy(np.int64),
        eps["length"].to_numpy(np.int64),
        eps["level"].to_numpy(np.int64),
        eps["episode_id"].to_numpy(np.int64),
    )
    ctx_ok = eps["demonstrator"].isin(list(cfg.context_demonstrators)) & (eps["length"] > 0)
    if not cfg.allow_failed:
        ctx_ok &= eps["success"]

    def steps_of(row: int) -> list[int]:
        s = int(eps.at[row, "offset"])
        return list(range(s, s + int(eps.at[row, "length"])))

    shown: dict[str, list[int]] = {}  # per sequence: a mission is shown the same way throughout

    def words(env_id: str, mission: str) -> list[int]:
        if mission not in shown:
            text = shown_mission(mission, policy.instruction, pool.get(env_id, []), rnd)
            shown[mission] = policy.vocab.encode(text)
        return shown[mission]

    # Build every perturbed plan. A piece is (words, level, episode_id, steps).
    plans: list = []
    meta: list[tuple[int, str, int, int]] = []  # (sequence, perturbation, position, draw)
    replacements: dict[tuple[int, int], list[int]] = {}  # (sequence, piece) -> episode rows
    for si, seq in enumerate(seqs):
        shown.clear()
        other_rows = eps.index[
            ctx_ok & (eps["env_id"] == seq.env_id) & (eps["level"] != seq.level)
        ].to_numpy()
        other_steps = np.concatenate([steps_of(int(r)) for r in other_rows])
        pieces = [
            (
                words(seq.env_id, eps.at[c, "mission"]),
                seq.level,
                int(eps.at[c, "episode_id"]),
                steps_of(c),
            )
            for c in seq.context
        ]
        q = seq.query
        query_piece = (words(seq.env_id, eps.at[q, "mission"]), int(eps.at[q, "episode_id"]))

        def plan_of(pcs, _qp=query_piece, _q=q, _lv=seq.level):
            plan = RowPlan()
            for w, lv, ep, st in pcs:
                plan.add_words(w, lv, ep, query=False)
                plan.add_steps(st, query=False)
            plan.add_words(_qp[0], _lv, _qp[1], query=True)
            s = int(eps.at[_q, "offset"])
            plan.add_steps(range(s, s + int(eps.at[_q, "length"])), query=True)
            return plan

        plans.append(plan_of(pieces))
        meta.append((si, "base", -1, 0))
        pos = 0
        for j, (w, lv, ep, st) in enumerate(pieces):
            for t in range(len(st)):
                for d in range(cfg.replace_draws):
                    swapped = list(st)
                    swapped[t] = int(other_steps[rng.integers(len(other_steps))])
                    pcs = [*pieces[:j], (w, lv, ep, swapped), *pieces[j + 1 :]]
                    plans.append(plan_of(pcs))
                    meta.append((si, "step_replace", pos, d))
                pcs = [*pieces[:j], (w, lv, ep, st[:t] + st[t + 1 :]), *pieces[j + 1 :]]
                plans.append(plan_of(pcs))
                meta.append((si, "step_delete", pos, 0))
                pos += 1
        for j in range(len(pieces)):
            reps = [
                int(other_rows[rng.integers(len(other_rows))]) for _ in range(cfg.replace_draws)
            ]
            replacements[(si, j)] = reps
            for d, r in enumerate(reps):
                new = (
                    words(seq.env_id, eps.at[r, "mission"]),
                    int(eps.at[r, "level"]),
                    int(eps.at[r, "episode_id"]),
                    steps_of(r),
                )
                plans.append(plan_of([*pieces[:j], new, *pieces[j + 1 :]]))
                meta.append((si, "episode_replace", j, d))
            plans.append(plan_of([*pieces[:j], *pieces[j + 1 :]]))
            meta.append((si, "episode_delete", j, 0))

    longest = max(len(p) for p in plans)
    if longest > model.cfg.max_positions:
        raise TrajbenchError(
            f"sequences of up to {longest} tokens exceed the model's max_positions "
            f"({model.cfg.max_positions}); use a smaller --k"
        )

    # Teacher-forced query log-probabilities of every plan, in batches.
    from tqdm.auto import tqdm

    query_logits: list[torch.Tensor] = [None] * len(plans)  # type: ignore[list-item]
    order = np.argsort([len(p) for p in plans], kind="stable")  # similar lengths together
    chunks = [order[i : i + cfg.batch_rows] for i in range(0, len(order), cfg.batch_rows)]
    with torch.no_grad():
        for chunk in tqdm(chunks, desc="importance", disable=not cfg.progress, leave=False):
            batch = assemble([plans[i] for i in chunk], table, n_actions)
            logits, _ = model(batch.to_torch(device))
            logits = logits.float().cpu()
            mask = torch.from_numpy(batch.loss_mask)
            for r, i in enumerate(chunk):
                query_logits[i] = logits[r][mask[r]]

    base_of = {m[0]: i for i, m in enumerate(meta) if m[1] == "base"}
    kl = np.zeros(len(plans))
    flip = np.zeros(len(plans))
    for i, (si, _, _, _) in enumerate(meta):
        b = query_logits[base_of[si]]
        p = query_logits[i]
        kl[i] = float(kl_divergence(b, p).mean())
        flip[i] = float((b.argmax(-1) != p.argmax(-1)).double().mean())
    effects = pd.DataFrame(meta, columns=["sequence", "perturbation", "position", "draw"])
    effects["kl"], effects["flip"] = kl, flip
    mean_effect = effects.groupby(["sequence", "perturbation", "position"])[["kl", "flip"]].mean()

    # Attention received by each context step from the query's step tokens.
    attention: list[np.ndarray] = []
    attention_max: list[np.ndarray] = []
    with torch.no_grad():
        for si in range(len(seqs)):
            batch = assemble([plans[base_of[si]]], table, n_actions)
            _, att = forward_with_attention(model, batch.to_torch(device))
            qpos = torch.from_numpy(np.flatnonzero(batch.loss_mask[0])).to(att[0].device)
            # [layers, heads, T]: attention each token receives, averaged over the query steps.
            received = torch.stack([x[0][:, qpos].mean(1) for x in att]).cpu()
            ctx = (batch.kind[0] == STEP) & ~batch.is_query[0]
            attention.append(received.mean(dim=(0, 1)).numpy()[ctx])
            attention_max.append(received.flatten(0, 1).max(0).values.numpy()[ctx])

    # Per-step table.
    ctx_rows = sorted({c for s in seqs for c in s.context})
    labels, unreplayable = _labels(store, eps, ctx_rows)
    step_rows = []
    for si, seq in enumerate(seqs):
        pos = 0
        for j, c in enumerate(seq.context):
            n = int(eps.at[c, "length"])
            s = int(eps.at[c, "offset"])
            for t in range(n):
                rep = mean_effect.loc[(si, "step_replace", pos)]
                dele = mean_effect.loc[(si, "step_delete", pos)]
                step_rows.append(
                    {
                        "sequence": si,
                        "env_id": seq.env_id,
                        "level": seq.level,
                        "episode_pos": j,
                        "query_episode": int(eps.at[seq.query, "episode_id"]),
                        "context_episode": int(eps.at[c, "episode_id"]),
                        "demonstrator": eps.at[c, "demonstrator"],
                        "context_pos": pos,
                        "t": t,
                        "action": int(store.actions[s + t]),
                        "reward": float(store.rewards[s + t]),
                        **{k: bool(labels[c][k][t]) for k in KINDS},
                        "kl_replace": rep["kl"],
                        "kl_delete": dele["kl"],
                        "flip_replace": rep["flip"],
                        "flip_delete": dele["flip"],
                        "attention": float(attention[si][pos]),
                        "attention_max": float(attention_max[si][pos]),
                    }
                )
                pos += 1
    steps = pd.DataFrame(step_rows)

    # Per-episode table, with online success.
    ep_rows = []
    for si, seq in enumerate(seqs):
        for j, c in enumerate(seq.context):
            rep = mean_effect.loc[(si, "episode_replace", j)]
            dele = mean_effect.loc[(si, "episode_delete", j)]
            ep_rows.append(
                {
                    "sequence": si,
                    "env_id": seq.env_id,
                    "level": seq.level,
                    "episode_pos": j,
                    "query_episode": int(eps.at[seq.query, "episode_id"]),
                    "context_episode": int(eps.at[c, "episode_id"]),
                    "demonstrator": eps.at[c, "demonstrator"],
                    "length": int(eps.at[c, "length"]),
                    "kl_replace": rep["kl"],
                    "kl_delete": dele["kl"],
                    "flip_replace": rep["flip"],
                    "flip_delete": dele["flip"],
                }
            )
    episodes = pd.DataFrame(ep_rows)
    if cfg.online:
        online = _online(cfg, store, eps, seqs, replacements, policy, episode_record, rollout)
        episodes = episodes.merge(online, on=["sequence", "episode_pos"], how="left")

    sequences = _per_sequence(steps, cfg.top_fraction, spearmanr)
    kinds = kind_table(steps)
    about = {
        "model": cfg.model,
        "data": list(cfg.data),
        "env_ids": sorted({s.env_id for s in seqs}),
        "levels": len({(s.env_id, s.level) for s in seqs}),
        "sequences": len(seqs),
        "k": cfg.k,
        "context_steps": len(steps),
        "perturbed_sequences": len(plans) - len(seqs),
        "unreplayable_episodes": int(unreplayable),
        "train_k": read_training_record(cfg.model).config.context.k,
        "wall_s": time.perf_counter() - t0,
    }
    summary = _summary(steps, episodes, sequences, cfg)
    return ImportanceResult(steps, episodes, kinds, sequences, summary, about)


def _online(cfg, store, eps, seqs, replacements, policy, episode_record, rollout) -> pd.DataFrame:
    """Online success of every sequence's level with the unperturbed context, each context
    episode deleted, and each replaced (by its first replacement draw); paired start states."""
    rows = []
    for env_id in sorted({s.env_id for s in seqs}):
        idx = [i for i, s in enumerate(seqs) if s.env_id == env_id]
        missions = {seqs[i].level: str(eps.at[seqs[i].query, "mission"]) for i in idx}
        levels, contexts, keys = [], [], []
        for si in idx:
            seq = seqs[si]
            ctx = [episode_record(store, eps.loc[c]) for c in seq.context]
            variants = [("base", -1, ctx)]
            for j in range(len(ctx)):
                variants.append(("delete", j, ctx[:j] + ctx[j + 1 :]))
                new = episode_record(store, eps.loc[replacements[(si, j)][0]])
                variants.append(("replace", j, [*ctx[:j], new, *ctx[j + 1 :]]))
            for name, j, c in variants:
                levels.append(seq.level)
                contexts.append(c)
                keys.append((si, name, j))
        for s in range(cfg.online_seeds):
            recs = rollout(policy, env_id, levels, contexts, missions, 1, cfg.seed + s)
            if len(recs) != len(keys):
                raise TrajbenchError(f"rollout returned {len(recs)} records for {len(keys)} rows")
            for i, rec in enumerate(recs):
                rows.append((*keys[int(rec.get("row", i))], s, float(rec["success"])))
    frame = pd.DataFrame(rows, columns=["sequence", "variant", "episode_pos", "seed", "success"])
    mean = frame.groupby(["sequence", "variant", "episode_pos"])["success"].mean()
    out = []
    for (si, variant, j), value in mean.items():
        if variant == "base":
            continue
        base = mean.loc[(si, "base", -1)]
        out.append({"sequence": si, "episode_pos": j, variant: value, "base": base})
    merged = pd.DataFrame(out).groupby(["sequence", "episode_pos"]).first().reset_index()
    merged = merged.rename(
        columns={
            "base": "success_base",
            "delete": "success_delete",
            "replace": "success_replace",
        }
    )
    merged["dsuccess_delete"] = merged["success_delete"] - merged["success_base"]
    merged["dsuccess_replace"] = merged["success_replace"] - merged["success_base"]
    return merged


def _per_sequence(steps: pd.DataFrame, fraction: float, spearmanr) -> pd.DataFrame:
    rows = []
    for si, g in steps.groupby("sequence", sort=True):
        row = {"sequence": si, "level": int(g["level"].iloc[0]), "context_steps": len(g)}
        for m in STEP_MEASURES:
            row[f"top_share_{m}"] = top_share(g[m].to_numpy(), fraction)
        for a, b in AGREEMENT_PAIRS:
            row[f"spearman_{a}_{b}"] = spearman(g[a].to_numpy(), g[b].to_numpy(), spearmanr)
        rows.append(row)
    return pd.DataFrame(rows)


def spearman(x: np.ndarray, y: np.ndarray, spearmanr=None) -> float:
    """Spearman rank correlation; NaN with fewer than 3 values or a constant input."""
    if spearmanr is None:
        from scipy.stats import spearmanr
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(spearmanr(x, y).statistic)


def kind_table(steps: pd.DataFrame) -> pd.DataFrame:
    """Mean of each step measure on steps of each kind vs on all other steps.

    ``ratio_*`` is the kind's mean over the rest's mean (NaN when the rest's mean is 0).
    Kinds with no step are listed with ``n = 0``.
    """
    rows = []
    for kind in KINDS:
        mask = steps[kind].to_numpy(bool) if kind in steps else np.zeros(len(steps), bool)
        row = {"kind": kind, "n": int(mask.sum()), "share_of_steps": float(mask.mean())}
        for m in (*STEP_MEASURES, "flip_replace"):
            x = steps[m].to_numpy(float)
            inside = float(x[mask].mean()) if mask.any() else float("nan")
            rest = float(x[~mask].mean()) if (~mask).any() else float("nan")
            row[f"{m}_kind"] = inside
            row[f"{m}_rest"] = rest
            row[f"ratio_{m}"] = inside / rest if rest > 0 else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def _summary(steps, episodes, sequences, cfg) -> pd.DataFrame:
    rows = []

    def add(measure: str, value: float, description: str) -> None:
        rows.append({"measure": measure, "value": float(value), "description": description})

    for m in STEP_MEASURES:
        add(
            f"top_share_{m}",
            sequences[f"top_share_{m}"].mean(),
            f"mean over sequences of the share of {m} held by the top "
            f"{pct(cfg.top_fraction)} of context steps",
        )
    for col in [c for c in sequences if c.startswith("spearman_")]:
        vals = sequences[col].dropna()
        add(f"{col}_median", vals.median() if len(vals) else np.nan, "median over sequences")
        add(f"{col}_mean", vals.mean() if len(vals) else np.nan, "mean over sequences")
        add(f"{col}_positive", (vals > 0).mean() if len(vals) else np.nan, "share of sequences > 0")
        add(f"{col}_n", len(vals), "sequences with a defined correlation")
    for m in ("kl_replace", "kl_delete", "flip_replace", "flip_delete"):
        add(f"step_{m}_mean", steps[m].mean(), f"mean over context steps of {m}")
        add(f"episode_{m}_mean", episodes[m].mean(), f"mean over context episodes of {m}")
    if "success_base" in episodes:
        base = episodes.groupby("sequence")["success_base"].first()
        add("success_base", base.mean(), "online success with the unperturbed context")
        for v in ("delete", "replace"):
            add(
                f"dsuccess_{v}",
                episodes[f"dsuccess_{v}"].mean(),
                f"mean change in online success when one context episode is {v}d",
            )
    return pd.DataFrame(rows)


# -- report -------------------------------------------------------------------------------------
def render_markdown(result: ImportanceResult, cfg: ImportanceConfig) -> str:
    """The report: headline sentences generated from the numbers, then the tables."""
    about, s = result.about, result.summary.set_index("measure")["value"]
    steps, kinds, episodes = result.steps, result.kinds, result.episodes
    v = s.get
    lines = [
        "# Context-step importance",
        "",
        f"Model `{about['model']}` on `{', '.join(about['data'])}`: {about['sequences']} "
        f"held-out sequences over {about['levels']} level(s) of {', '.join(about['env_ids'])}, "
        f"each with k = {about['k']} context episode(s) "
        f"(the model trained with k = {about.get('train_k')}), {about['context_steps']} context "
        f"steps, {about['perturbed_sequences']} perturbed copies, {about['wall_s']:.1f} s.",
        "",
        "## Findings",
        "",
    ]
    frac = pct(cfg.top_fraction)
    tr, td, ta = v("top_share_kl_replace"), v("top_share_kl_delete"), v("top_share_attention")
    lines.append(
        f"- **Concentration.** The top {frac} of context steps hold {pct(tr)} of the replacement "
        f"effect and {pct(td)} of the deletion effect (equal effects would give {frac}), "
        f"versus {pct(ta)} of the attention. " + _concentration_word(tr, cfg.top_fraction)
    )
    top = kinds[(kinds["n"] > 0) & kinds["ratio_kl_replace"].notna()].sort_values(
        "ratio_kl_replace", ascending=False
    )
    if len(top):
        best = top.iloc[0]
        lines.append(
            f"- **Which steps.** `{best['kind']}` steps ({int(best['n'])} of {len(steps)}) have "
            f"{fmt(best['ratio_kl_replace'], 2)}x the mean replacement effect of other steps "
            f"({fmt(best['kl_replace_kind'])} vs {fmt(best['kl_replace_rest'])} nats)"
            + (
                f"; `{top.iloc[-1]['kind']}` steps the least "
                f"({fmt(top.iloc[-1]['ratio_kl_replace'], 2)}x)."
                if len(top) > 1
                else "."
            )
        )
    absent = kinds.loc[kinds["n"] == 0, "kind"].tolist()
    if absent:
        lines.append(f"- Kinds that never occur in these contexts: {', '.join(absent)}.")
    med, pos, n = (
        v("spearman_attention_kl_replace_median"),
        v("spearman_attention_kl_replace_positive"),
        v("spearman_attention_kl_replace_n"),
    )
    lines.append(
        f"- **Attention as a proxy.** Per sequence, attention ranks steps like the replacement "
        f"effect with a median Spearman rho of {fmt(med, 2)} (positive in {pct(pos)} of "
        f"{fmt(int(n or 0))} sequences; deletion: median {fmt(v('spearman_attention_kl_delete_median'), 2)}). "
        + _agreement_word(med)
        + " The most attentive single head does "
        + (
            "better"
            if (v("spearman_attention_max_kl_replace_median") or 0) > (med or 0)
            else "no better"
        )
        + f" (median rho {fmt(v('spearman_attention_max_kl_replace_median'), 2)}). Replacement "
        f"and deletion effects agree with median rho "
        f"{fmt(v('spearman_kl_replace_kl_delete_median'), 2)}."
    )
    lines.append(
        f"- **Whole episodes.** Replacing one context episode by one of another level moves the "
        f"query's action distribution by {fmt(v('episode_kl_replace_mean'))} nats "
        f"({pct(v('episode_flip_replace_mean'))} of the query's greedy actions change); deleting "
        f"it, by {fmt(v('episode_kl_delete_mean'))} nats ({pct(v('episode_flip_delete_mean'))}). "
        f"A single step: {fmt(v('step_kl_replace_mean'))} (replace) and "
        f"{fmt(v('step_kl_delete_mean'))} (delete) nats on average."
    )
    if "success_base" in s:
        lines.append(
            f"- **Online.** Success with the unperturbed context is {pct(v('success_base'))}; "
            f"deleting one context episode changes it by {_signed_pct(v('dsuccess_delete'))}, "
            f"replacing it by one of another level by {_signed_pct(v('dsuccess_replace'))} "
            f"({cfg.online_seeds} paired start states per sequence)."
        )
    if about.get("unreplayable_episodes"):
        lines.append(
            f"- {about['unreplayable_episodes']} non-expert context episode(s) could not be "
            "replayed from their seed: their off_plan/recovery labels are missing."
        )
    lines += ["", "## Step kinds", "", "Mean over context steps of each kind vs all other steps."]
    cols = ["kind", "n", "share_of_steps"]
    for m in ("kl_replace", "kl_delete", "attention"):
        cols += [f"{m}_kind", f"{m}_rest", f"ratio_{m}"]
    lines += ["", markdown_table(kinds[cols]), ""]
    lines += ["## Context episodes by position", ""]
    ep_cols = ["kl_replace", "kl_delete", "flip_replace", "flip_delete"]
    ep_cols += [c for c in ("success_base", "dsuccess_delete", "dsuccess_replace") if c in episodes]
    by_pos = episodes.groupby("episode_pos")[ep_cols].mean().reset_index()
    lines += [
        (
            f"Position 0 is the earliest context episode, {cfg.k - 1} the one just before the "
            "query."
            if cfg.k > 1
            else "The single context episode (position 0) comes just before the query."
        ),
        "",
        markdown_table(by_pos),
        "",
    ]
    lines += ["## Concentration and agreement", ""]
    summ = result.summary[
        result.summary["measure"].str.startswith(("top_share", "spearman"))
    ].reset_index(drop=True)
    lines += [markdown_table(summ[["measure", "value", "description"]]), ""]
    lines += [
        "## Definitions",
        "",
        "- kl_replace / kl_delete: KL(p_base || p_perturbed) of the query's action distribution "
        "(teacher-forced), averaged over the query's steps, in nats; replacements are steps or "
        f"episodes of another level of the family ({cfg.replace_draws} draws averaged).",
        "- attention: weight a context token receives, averaged over layers, heads and the "
        "query's step tokens (unperturbed sequence).",
        "- flip: share of query steps whose most likely action changes.",
        "- Step kinds: see `trajbench analyze importance --help` and the module documentation.",
        "",
        "Files: importance.csv (one row per context step), importance_episodes.csv, "
        "importance_kinds.csv, importance_sequences.csv, importance_summary.csv.",
        "",
    ]
    return "\n".join(lines)


def _signed_pct(value) -> str:
    if value is None or not np.isfinite(value):
        return "-"
    return f"{100 * value:+.0f} points"


def _concentration_word(share, fraction: float) -> str:
    if share is None or not np.isfinite(share):
        return "No step has any effect."
    ratio = share / fraction
    if ratio >= 4:
        return f"Importance is highly concentrated ({ratio:.1f}x the uniform share)."
    if ratio >= 2:
        return f"Importance is concentrated on a few steps ({ratio:.1f}x the uniform share)."
    return f"Importance is spread over many steps ({ratio:.1f}x the uniform share)."


def _agreement_word(rho) -> str:
    if rho is None or not np.isfinite(rho):
        return "The correlation is undefined (constant effects)."
    if rho >= 0.5:
        return "Attention is a good cheap proxy here."
    if rho >= 0.2:
        return "Attention is a weak proxy here."
    return "Attention is not a usable proxy here."


def render_plot(result: ImportanceResult, cfg: ImportanceConfig) -> bytes:
    from .internals import figure_png, pyplot

    plt = pyplot()
    steps, kinds = result.steps, result.kinds
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    # (a) step kinds
    k = kinds[kinds["n"] > 0]
    x = np.arange(len(k))
    axes[0].bar(x - 0.2, k["kl_replace_kind"], 0.4, label="steps of the kind")
    axes[0].bar(x + 0.2, k["kl_replace_rest"], 0.4, label="all other steps")
    axes[0].set_xticks(x, k["kind"], rotation=35, ha="right")
    axes[0].set_ylabel("mean KL when replaced (nats)")
    axes[0].set_title("Which steps carry the lesson")
    axes[0].legend(fontsize=8)
    # (b) concentration curve
    for m, style in zip(STEP_MEASURES, ("-", "--", ":", "-."), strict=True):
        curves = []
        grid = np.linspace(0, 1, 101)
        for _, g in steps.groupby("sequence"):
            vals = np.sort(g[m].to_numpy(float))[::-1]
            if vals.sum() <= 0:
                continue
            cum = np.concatenate([[0], np.cumsum(vals) / vals.sum()])
            frac = np.linspace(0, 1, len(cum))
            curves.append(np.interp(grid, frac, cum))
        if curves:
            axes[1].plot(grid, np.mean(curves, 0), style, label=m)
    axes[1].plot([0, 1], [0, 1], color="grey", lw=0.8, label="equal")
    axes[1].axvline(cfg.top_fraction, color="grey", lw=0.6, ls=":")
    axes[1].set_xlabel("fraction of context steps (largest first)")
    axes[1].set_ylabel("share of the total")
    axes[1].set_title("Concentration (mean over sequences)")
    axes[1].legend(fontsize=8)
    # (c) attention vs replacement effect
    axes[2].scatter(steps["attention"], steps["kl_replace"], s=6, alpha=0.5)
    axes[2].set_xlabel("attention received from the query")
    axes[2].set_ylabel("KL when replaced (nats)")
    if (steps["kl_replace"] > 0).any():
        axes[2].set_yscale("symlog", linthresh=max(1e-4, float(steps["kl_replace"].median())))
    rho = result.summary.set_index("measure")["value"].get("spearman_attention_kl_replace_median")
    axes[2].set_title(f"Attention vs effect (median rho {fmt(rho, 2)})")
    fig.tight_layout()
    return figure_png(fig)


def main(argv: list[str]) -> int:
    cfg = parse_config(ImportanceConfig, argv, prog="trajbench analyze importance")
    if cfg is None:
        return 0
    result = importance(cfg)
    markdown = render_markdown(result, cfg)
    png = render_plot(result, cfg)
    paths = write_outputs(
        cfg.out,
        NAME,
        result.steps,
        markdown,
        png,
        {
            "episodes": result.episodes,
            "kinds": result.kinds,
            "sequences": result.sequences,
            "summary": result.summary,
        },
    )
    print(markdown)
    print(f"written: {', '.join(str(p) for p in paths)}")
    return 0


__all__ = [
    "KINDS",
    "ImportanceConfig",
    "ImportanceResult",
    "importance",
    "kind_table",
    "main",
    "off_plan_steps",
    "spearman",
    "step_kinds",
]

"""Online rollouts of any :class:`~trajbench.policy.Policy` on held-out levels, batched across rows.

The evaluation protocol's building blocks: the expert demonstrations that fill a level's context
(:class:`Demonstrations`), the start-state seeds shared by every policy (:func:`reset_seed`, so
comparisons are paired), and :func:`rollout`, which plays episodes in many environments at once
and hands the policy one batch of observations per step.

Example:
    >>> import gymnasium as gym, trajbench
    >>> from trajbench.baselines import RandomPolicy
    >>> out = rollout(RandomPolicy(5, seed=0), "trajbench/DarkRoom-v0", levels=[3, 7],
    ...               contexts=[[], []], missions={3: "", 7: ""}, n_episodes=1, seed=0)
    >>> [(r["level"], r["length"]) for r in out]
    [(3, 20), (7, 20)]
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from .errors import TrajbenchError
from .policy import EpisodeRecord, Policy, RowContext


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

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

from trajbench.records import DECOY_SUCCESS

from .errors import TrajbenchError
from .policy import EpisodeRecord, Policy
from .privileged import AgentView, PrivilegedPolicy, PrivilegedRow


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
        if len(pool) < k:
            raise TrajbenchError(
                f"{k} distinct expert demonstrations of {support}-level support are needed for "
                f"{env_id} level {level}, the evaluation store holds {len(pool)}; collect more "
                "episodes per level"
            )
        if k == 0:
            return []
        order = np.random.default_rng([seed, level, support == "other"]).permutation(len(pool))
        return [self._record(int(pool[order[i]])) for i in range(k)]

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


def reset_seed(seed: int, level: int, episode: int, attempt: int = 0) -> int:
    """Start-state seed: shared across k, support, formats and policies, so comparisons are
    paired; ``attempt`` counts redraws of a start a demonstration already had."""
    key = [seed, level, episode] + ([attempt] if attempt else [])
    return int(np.random.SeedSequence(key).generate_state(1)[0])


#: Redraws of an episode's start before giving up on avoiding the demonstrations' starts.
MAX_START_ATTEMPTS = 50


def first_observations(demos: list[EpisodeRecord]) -> set[bytes]:
    """The first observations of whole demonstrations: starts an evaluation episode avoids."""
    return {np.asarray(d.obs[0], np.uint8).tobytes() for d in demos if len(d)}


def _reset(env, level: int, seed: int, episode: int, avoid: set[bytes]):
    """Reset ``env`` on ``level`` to the first seeded start whose observation is not in ``avoid``
    (a start a demonstration had: a context would then hold the query's own episode)."""
    for attempt in range(MAX_START_ATTEMPTS):
        obs, _ = env.reset(seed=reset_seed(seed, level, episode, attempt), options={"level": level})
        if env.unwrapped.encode_obs(obs).tobytes() not in avoid:
            break
    return obs


def rollout(
    policy: Policy | PrivilegedPolicy,
    env_id: str,
    levels: list[int],
    contexts: list[list[EpisodeRecord]],
    missions: dict[int, str],
    n_episodes: int,
    seed: int,
    envs: list | None = None,
    avoid_starts: list[set[bytes]] | None = None,
    own_episodes: bool = False,
    decoys: bool = False,
) -> list[dict]:
    """Play ``n_episodes`` episodes in every row, batched across rows.

    Row ``i`` plays level ``levels[i]`` (a level may appear in several rows, e.g. with different
    contexts) with ``contexts[i]`` in the policy's context. Episodes are independent (each sees only
    the context) unless ``own_episodes``, when the row's earlier episodes follow the context.
    ``envs`` (one per row, of ``env_id``) are reused if given, else made and closed here.
    A :class:`~trajbench.policy.Policy` is shown the protocol's view with the full mission
    (wrap it in an :class:`~trajbench.privileged.AgentView` to show another); only a
    :class:`~trajbench.privileged.PrivilegedPolicy` sees levels and environments.

    Args:
        avoid_starts: Per row, first observations an episode must not start from (redrawn until
            it does not; see :func:`first_observations`).
        decoys: Show every row a decoy mission of its level (families with ``draw_decoy``: the
            instruction ablation's conflict test) and record ``decoy_success``.

    Returns one dict per (row, episode) with ``row``, ``level``, ``episode``, ``return``,
    ``success``, ``length`` (and ``decoy_success``).
    """
    if not isinstance(policy, PrivilegedPolicy):
        policy = AgentView(policy)
    own_envs = envs is None
    if own_envs:
        envs = [gym.make(env_id, levels="all") for _ in levels]
    elif len(envs) < len(levels):
        raise ValueError(f"rollout needs {len(levels)} environments, got {len(envs)}")
    envs = list(envs[: len(levels)])
    avoid = avoid_starts or [set() for _ in levels]
    n_actions = int(envs[0].action_space.n)
    raw = [env.unwrapped for env in envs]
    own: list[list[EpisodeRecord]] = [[] for _ in levels]
    shown: list[str | None] = [None] * len(levels)
    out = []
    try:
        for e in range(n_episodes):
            obs = [
                _reset(env, lv, seed, e, avoid[i])
                for i, (env, lv) in enumerate(zip(envs, levels, strict=True))
            ]
            if decoys and e == 0:
                shown = [_decoy(raw[i], env_id, seed, lv) for i, lv in enumerate(levels)]
            policy.begin(
                [
                    PrivilegedRow(env_id, lv, missions[lv], ctx + own[i], shown[i])
                    for i, (lv, ctx) in enumerate(zip(levels, contexts, strict=True))
                ]
            )
            traj, success, decoy = _play(policy, envs, raw, obs, n_actions)
            for i, lv in enumerate(levels):
                o, a, r = traj[i]
                if own_episodes:
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
                record = {
                    "row": i,
                    "level": lv,
                    "episode": e,
                    "return": float(np.sum(r)),
                    "success": bool(success[i]),
                    "length": len(a),
                }
                if decoys:
                    record[DECOY_SUCCESS] = bool(decoy[i])
                out.append(record)
    finally:
        if own_envs:
            for env in envs:
                env.close()
    return out


def _decoy(env, env_id: str, seed: int, level: int) -> str:
    """Draw a decoy mission for ``env``'s current level (seeded by the evaluation and level)."""
    draw = getattr(env, "draw_decoy", None)
    if draw is None:
        raise TrajbenchError(
            f"{env_id} has no decoy missions; the wrong-instruction test needs one"
        )
    text = draw(np.random.default_rng([seed, level, 0xDEC0]))
    if text is None:
        raise TrajbenchError(f"{env_id} level {level} has no other object to name in a decoy")
    return text


def _play(policy: PrivilegedPolicy, envs: list, raw: list, obs: list, n_actions: int):
    """One episode in every row, until each terminates or truncates."""
    n = len(envs)
    active = np.arange(n)
    prev_a = np.full(n, n_actions, dtype=np.int64)
    prev_r = np.zeros(n, dtype=np.float32)
    traj = [([], [], []) for _ in range(n)]
    success = np.zeros(n, dtype=bool)
    decoy = np.zeros(n, dtype=bool)
    while len(active):
        enc = np.stack([raw[i].encode_obs(obs[i]) for i in active])
        actions = policy.act(enc, prev_a[active], prev_r[active], active, [envs[i] for i in active])
        finished = np.zeros(len(active), dtype=bool)
        for j, i in enumerate(active.tolist()):
            a = int(actions[j])
            o, r, term, trunc, info = envs[i].step(a)
            traj[i][0].append(enc[j])
            traj[i][1].append(a)
            traj[i][2].append(r)
            obs[i], prev_a[i], prev_r[i] = o, a, r
            success[i] = bool(info.get("success", False))
            decoy[i] = bool(info.get(DECOY_SUCCESS, False))
            finished[j] = term or trunc
        active = active[~finished]
    return traj, success, decoy

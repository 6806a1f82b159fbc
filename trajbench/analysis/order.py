"""Is the order still in a shuffled context? The chain decoder against the order-free oracle.

For an order family (the level is an order of hidden cells), three non-learning readers of K
expert demonstrations of a level, each then walking its plan with
:class:`~trajbench.baselines.DecoderPolicy`'s navigation:

- ``ordered``: whole demonstrations: the rewarded cells in the demonstrated order;
- ``shuffled``: the same steps pooled and permuted, read by the **chain decoder**
  (:func:`chain_order`): link step ``s`` to every step whose observation is
  ``move(o_s, a_s)``; each rewarded step names the cell it entered; for each pair of rewarded
  steps vote "i before j" when j is reachable from i along the links; take the order of the
  rewarded cells with the most net votes (ties: a seeded draw);
- ``oracle``: knows the set of cells and draws their order uniformly (what the set is worth).

With deterministic moves and observations that name the position, the links rebuild the paths,
so shuffling keeps the order (Dark Sequence). Where a family makes the steps' multiset the same
for every order (Dark Fetch: out-and-back spokes from a hub), no reader of shuffled steps can beat
the oracle.
"""

from __future__ import annotations

from collections import Counter
from itertools import permutations

import numpy as np

from trajbench.baselines import DecoderPolicy
from trajbench.baselines.demo_reading import dark_plan
from trajbench.contexts.modes import SHUFFLED
from trajbench.envs.dark_fetch import DarkFetchEnv, tour
from trajbench.envs.dark_grid import move
from trajbench.families import make_env, sample_levels
from trajbench.policy import EpisodeRecord
from trajbench.rollout import first_observations, rollout

from .common import expert_demos

ORDERED, ORACLE = "ordered", "oracle"
#: The readers: whole demonstrations, the chain decoder of shuffled steps, the order-free oracle.
READERS = (ORDERED, SHUFFLED, ORACLE)


def pooled_steps(demos: list[EpisodeRecord], rng: np.random.Generator) -> EpisodeRecord:
    """The demonstrations' steps in one random order (a ``shuffled`` context's content)."""
    obs = np.concatenate([d.obs for d in demos])
    actions = np.concatenate([d.actions for d in demos])
    rewards = np.concatenate([d.rewards for d in demos])
    p = rng.permutation(len(actions))
    return EpisodeRecord(obs[p], actions[p], rewards[p], demos[0].level)


def chain_order(
    steps: EpisodeRecord, size: int, rng: np.random.Generator, exclude: tuple = ()
) -> list[tuple[int, int]]:
    """The chain decoder's order of the distinct rewarded cells (``exclude`` left out).

    Example (one path 0 -> 1 -> 2 on a 1-row grid, rewarded entering (1, 0) then (2, 0)):
        >>> steps = EpisodeRecord(np.array([[1, 0], [0, 0]], np.uint8), np.array([4, 4]),
        ...                       np.array([1.0, 1.0], np.float32), level=0)
        >>> chain_order(steps, 3, np.random.default_rng(0))
        [(1, 0), (2, 0)]
    """
    pos = np.asarray(steps.obs[:, :2], dtype=np.int64)
    after = move(pos, np.asarray(steps.actions, dtype=np.int64), size)
    key = pos[:, 1] * size + pos[:, 0]
    at: dict[int, list[int]] = {}
    for s, k in enumerate(key.tolist()):
        at.setdefault(k, []).append(s)
    links = [at.get(int(c[1] * size + c[0]), []) for c in after]
    rewarded = [s for s in np.flatnonzero(np.asarray(steps.rewards) > 0).tolist()]
    cell = {s: (int(after[s][0]), int(after[s][1])) for s in rewarded}
    cells = sorted({c for c in cell.values() if c not in exclude})
    votes = Counter()
    for i in rewarded:
        seen, todo = {i}, [i]
        while todo:
            for t in links[todo.pop()]:
                if t not in seen:
                    seen.add(t)
                    todo.append(t)
        for j in rewarded:
            if j != i and j in seen and cell[i] != cell[j]:
                votes[cell[i], cell[j]] += 1
    scored = []
    for order in permutations(cells):
        net = sum(votes[a, b] - votes[b, a] for x, a in enumerate(order) for b in order[x + 1 :])
        scored.append((net, order))
    best = max(net for net, _ in scored)
    ties = [order for net, order in scored if net == best]
    return list(ties[int(rng.integers(len(ties)))])


def _plan(env, order: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """A plan visiting ``order``: the cells themselves, or a hub tour (Dark Fetch)."""
    if isinstance(env, DarkFetchEnv):
        return [tuple(c) for c in tour(env.hub, np.array(order)).tolist()]
    return order


def reader(kind: str, seed: int):
    """The ``read(env, row)`` of :class:`DecoderPolicy` for one of :data:`READERS`."""
    rng = np.random.default_rng(seed)

    def read(env, row):
        demos = row.episodes
        if kind == ORDERED:
            return dark_plan(demos, env.size)
        hub = (tuple(env.hub.tolist()),) if isinstance(env, DarkFetchEnv) else ()
        if kind == SHUFFLED:
            return _plan(env, chain_order(pooled_steps(demos, rng), env.size, rng, hub))
        cells = [c for c in dark_plan(demos, env.size) if c not in hub]
        cells = list(dict.fromkeys(cells))  # the set, in first-seen order
        return _plan(env, [cells[i] for i in rng.permutation(len(cells))])

    return read


def order_certificate(env_id: str, levels: int, ks: tuple[int, ...], seed: int = 0) -> dict:
    """Success of each reader of :data:`READERS` at each K on a sample of test levels (one
    episode per level, from a start no demonstration had)."""
    env = make_env(env_id, levels="all")
    try:
        lv = [int(v) for v in sample_levels(env, "test", levels)]
        demos = [expert_demos(env, level, max(ks), seed) for level in lv]
    finally:
        env.close()
    out: dict = {}
    for kind in READERS:
        for k in ks:
            records = rollout(
                DecoderPolicy(read=reader(kind, seed)),
                env_id,
                lv,
                [d[:k] for d in demos],
                dict.fromkeys(lv, ""),
                1,
                seed,
                avoid_starts=[first_observations(d) for d in demos],
            )
            out.setdefault(kind, {})[str(k)] = float(np.mean([r["success"] for r in records]))
    return {"levels": len(lv), **out}

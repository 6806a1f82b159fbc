"""Reference policies: random (the floor), expert (the ceiling), and the two copy baselines.

``random``, ``hashmap`` and ``replay`` see what any outside agent sees (:mod:`trajbench.policy`);
``expert`` is privileged (:mod:`trajbench.privileged`): it asks the level's planner.

The copy baselines are the bar a model must clear before it can claim in-context generalization
(they need no training and see the same contexts as the transformer):

- ``hashmap`` (Raparthy et al. 2023) answers "is this just lookup?": it copies the action taken
  in its context at an identical observation (the most frequent one, ties to the first seen) and
  otherwise acts at random;
- ``replay`` answers "is this just playback?": it plays the actions of one of its context's
  demonstrations, chosen at random, open-loop, and acts at random once they run out.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from trajbench.policy import Policy, RowContext
from trajbench.privileged import PrivilegedPolicy, PrivilegedRow
from trajbench.records import EXPERT, HASHMAP, RANDOM, REPLAY


class RandomPolicy(Policy):
    """Uniformly random actions (seeded)."""

    name = RANDOM

    def __init__(self, n_actions: int, seed: int = 0):
        self.n_actions = n_actions
        self.rng = np.random.default_rng(seed)

    def begin(self, rows: list[RowContext]) -> None:
        pass

    def act(self, obs, prev_action, prev_reward, rows) -> np.ndarray:
        return self.rng.integers(self.n_actions, size=len(rows))


class ExpertPolicy(PrivilegedPolicy):
    """The family's privileged expert: the upper bound."""

    name = EXPERT

    def begin(self, rows: list[PrivilegedRow]) -> None:
        pass

    def act(self, obs, prev_action, prev_reward, rows, envs) -> np.ndarray:
        return np.array([env.unwrapped.expert_action() for env in envs], dtype=np.int64)


class HashmapPolicy(Policy):
    """Copy the context's action at an identical observation, else act at random."""

    name = HASHMAP

    def __init__(self, n_actions: int, seed: int = 0):
        self.n_actions = n_actions
        self.rng = np.random.default_rng(seed)
        self.tables: list[dict[bytes, Counter]] = []

    def begin(self, rows: list[RowContext]) -> None:
        self.tables = []
        for row in rows:
            table: dict[bytes, Counter] = {}
            for ep in row.episodes:
                keys = np.ascontiguousarray(ep.obs, dtype=np.uint8)
                for o, a in zip(keys, ep.actions, strict=True):
                    table.setdefault(o.tobytes(), Counter())[int(a)] += 1
            self.tables.append(table)

    def act(self, obs, prev_action, prev_reward, rows) -> np.ndarray:
        out = self.rng.integers(self.n_actions, size=len(rows))
        for j, i in enumerate(rows):
            seen = self.tables[i].get(np.ascontiguousarray(obs[j], dtype=np.uint8).tobytes())
            if seen:
                out[j] = seen.most_common(1)[0][0]
        return out


class ReplayPolicy(Policy):
    """Play one random context demonstration's actions open-loop, then act at random."""

    name = REPLAY

    def __init__(self, n_actions: int, seed: int = 0):
        self.n_actions = n_actions
        self.rng = np.random.default_rng(seed)
        self.plans: list[np.ndarray] = []
        self.t = np.zeros(0, dtype=np.int64)

    def begin(self, rows: list[RowContext]) -> None:
        self.plans = []
        for row in rows:
            demos = [ep for ep in row.episodes if len(ep)]
            pick = demos[int(self.rng.integers(len(demos)))] if demos else None
            self.plans.append(np.zeros(0, np.int64) if pick is None else np.asarray(pick.actions))
        self.t = np.zeros(len(rows), dtype=np.int64)

    def act(self, obs, prev_action, prev_reward, rows) -> np.ndarray:
        out = self.rng.integers(self.n_actions, size=len(rows))
        for j, i in enumerate(rows):
            plan, t = self.plans[i], self.t[i]
            if t < len(plan):
                out[j] = plan[t]
        self.t[rows] += 1
        return out

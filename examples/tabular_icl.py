"""A tabular in-context learner: a policy written outside trajbench, scored by trajbench.

It learns only from its context. Before each episode it tabulates the context's demonstrations:
observation -> the actions taken there. Acting, it plays the most frequent action seen at the
current observation; at an observation the context never showed, it falls back to the action of
the nearest one it did show (``nearest``, L1 distance over the encoded features), to the context's
most frequent action (``majority``), or to a random action (``random``, which makes it the
``hashmap`` copy baseline). With an empty context it acts at random.

Copy this file to start your own policy: trajbench needs ``begin(rows)`` and
``act(obs, prev_action, prev_reward, rows)`` (see ``trajbench.policy.Policy``) and a factory
that returns the policy. Each row's context holds the mission as shown and the context's
encoded steps, nothing else (see docs/agent-view.md). From the repository root:

    trajbench collect --env trajbench/DarkRoom-v0 --levels test --episodes-per-level 6 --seed 1 --out data/dr-test
    trajbench evaluate --policy examples.tabular_icl:make_policy --data data/dr-test --out runs/tabular
    trajbench evaluate --policy examples.tabular_icl:make_policy --policy-kwargs '{"fallback": "majority"}' \\
        --data data/dr-test --out runs/tabular-majority

or from Python:

    import trajbench
    from trajbench.data import load
    from examples.tabular_icl import make_policy

    policy = make_policy(load("data/dr-test").encoding)
    result = trajbench.evaluate(policy, "data/dr-test", ks=(0, 1, 4), support="same")
    print(result.aggregates)
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from trajbench.policy import Policy, RowContext

__version__ = "2.0"  # 2.0: the trajbench 0.2 interface (act takes no envs)

FALLBACKS = ("nearest", "majority", "random")


class TabularICL(Policy):
    """Copy the context's action at this observation; otherwise fall back (see the module doc).

    Args:
        n_actions: Number of actions of the families it plays.
        fallback: ``nearest``, ``majority`` or ``random``.
        seed: Seed of its random actions.
    """

    def __init__(self, n_actions: int, fallback: str = "nearest", seed: int = 0):
        if fallback not in FALLBACKS:
            raise ValueError(f"fallback must be one of {FALLBACKS}, got {fallback!r}")
        self.n_actions, self.fallback = n_actions, fallback
        self.rng = np.random.default_rng(seed)
        self.tables: list[tuple[np.ndarray, np.ndarray, int | None]] = []

    def begin(self, rows: list[RowContext]) -> None:
        """Per row: its context's distinct observations, the action most taken at each (ties to
        the first taken), and the most taken action overall (None without a context)."""
        self.tables = []
        for row in rows:
            at: dict[bytes, Counter] = {}
            seen: dict[bytes, np.ndarray] = {}
            overall: Counter = Counter()
            for episode in row.episodes:
                for o, a in zip(np.asarray(episode.obs, np.uint8), episode.actions, strict=True):
                    seen.setdefault(o.tobytes(), o.astype(np.int64))
                    at.setdefault(o.tobytes(), Counter())[int(a)] += 1
                    overall[int(a)] += 1
            keys = list(seen)
            obs = np.stack([seen[k] for k in keys]) if keys else np.zeros((0, 0), np.int64)
            actions = np.array([at[k].most_common(1)[0][0] for k in keys], np.int64)
            majority = overall.most_common(1)[0][0] if overall else None
            self.tables.append((obs, actions, majority))

    def act(self, obs, prev_action, prev_reward, rows) -> np.ndarray:
        out = self.rng.integers(self.n_actions, size=len(rows))
        for j, i in enumerate(rows):
            seen, actions, majority = self.tables[i]
            if not len(seen):
                continue
            distance = np.abs(seen - obs[j].astype(np.int64)).sum(1)
            nearest = int(distance.argmin())  # the first of the closest
            if distance[nearest] == 0 or self.fallback == "nearest":
                out[j] = actions[nearest]
            elif self.fallback == "majority":
                out[j] = majority
        return out


def make_policy(encoding, seed: int = 0, fallback: str = "nearest") -> TabularICL:
    """The factory ``trajbench evaluate --policy examples.tabular_icl:make_policy`` calls:
    trajbench passes the evaluation data's observation ``encoding`` and the evaluation ``seed``;
    ``--policy-kwargs '{"fallback": "majority"}'`` passes the rest."""
    return TabularICL(int(encoding.n_actions), fallback=fallback, seed=seed)

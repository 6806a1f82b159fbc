"""Demonstrators: who produced an episode (``expert``, ``noisy`` or ``random``).

Every family exposes a closed-loop ``expert_action()`` on its unwrapped environment that reads the
privileged state and returns the optimal next action from wherever the agent is. ``noisy`` takes a
uniformly random action with probability ``epsilon`` and otherwise asks the expert, which then
recovers, so its trajectories hold dead ends and recoveries. ``random`` acts uniformly.

Example:
    >>> import gymnasium as gym, numpy as np, trajbench
    >>> from trajbench.envs.demonstrators import Demonstrator
    >>> env = gym.make("trajbench/DarkRoom-v0")
    >>> obs, _ = env.reset(seed=0, options={"level": 3})
    >>> demo = Demonstrator("noisy", env, np.random.default_rng(0), epsilon=0.2)
    >>> obs, r, term, trunc, info = env.step(demo.act())
"""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium as gym
import numpy as np

DEMONSTRATORS = ("expert", "noisy", "random")
DEFAULT_EPSILON = 0.25


class Demonstrator:
    """Chooses actions in ``env`` for one of :data:`DEMONSTRATORS`.

    Args:
        kind: ``"expert"``, ``"noisy"`` or ``"random"``.
        env: The (possibly wrapped) environment; its ``unwrapped`` must have ``expert_action()``.
        rng: Source of the demonstrator's own randomness (not the environment's).
        epsilon: Probability of a random action for ``noisy``.
    """

    def __init__(
        self, kind: str, env: gym.Env, rng: np.random.Generator, epsilon: float = DEFAULT_EPSILON
    ):
        if kind not in DEMONSTRATORS:
            raise ValueError(f"unknown demonstrator {kind!r}; expected one of {DEMONSTRATORS}")
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
        self.kind = kind
        self.env = env.unwrapped
        self.rng = rng
        self.epsilon = float(epsilon)
        self.n_actions = int(env.action_space.n)

    def act(self) -> int:
        """The next action for the environment's current state."""
        if self.kind == "random" or (self.kind == "noisy" and self.rng.random() < self.epsilon):
            return int(self.rng.integers(self.n_actions))
        return int(self.env.expert_action())


def copy_shares(episodes: Sequence[Sequence[Sequence[int]]], k: int = 4) -> tuple[float, float]:
    """How often the demonstrations of one level repeat each other's action sequences.

    A context of ``k`` demonstrations that holds the query's own action sequence can be copied
    instead of learned from; a level must fix the task, not the actions.

    Args:
        episodes: Per level, the action sequences of its episodes (at least ``k + 1`` of them).
        k: Demonstrations per context; the context of query ``i`` is the next ``k`` episodes of
            its level, cyclically (with ``k + 1`` episodes: all the others).

    Returns:
        ``(levels, pairs)``: the share of levels where two episodes have identical action
        sequences, and the share of (query, ``k``-demonstration context) pairs where a
        demonstration's action sequence equals the query's.

    Example:
        >>> copy_shares([[[1, 2], [1, 2], [0], [2], [2, 0]], [[0], [1], [2], [0, 0], [1, 1]]])
        (0.5, 0.2)
    """
    if not episodes:
        raise ValueError("no levels given")
    copied_levels, copied_pairs, pairs = 0, 0, 0
    for level in episodes:
        seqs = [tuple(int(a) for a in seq) for seq in level]
        n = len(seqs)
        if n < k + 1:
            raise ValueError(f"need at least k + 1 = {k + 1} episodes per level, got {n}")
        copied_levels += len(set(seqs)) < n
        for i, query in enumerate(seqs):
            context = [seqs[(i + j) % n] for j in range(1, k + 1)]
            copied_pairs += query in context
            pairs += 1
    return copied_levels / len(episodes), copied_pairs / pairs

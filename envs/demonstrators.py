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

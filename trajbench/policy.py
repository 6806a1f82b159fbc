"""The one interface evaluation drives for every policy.

Evaluation runs a batch of *rows*, one environment (one held-out level) per row. Before each
episode it calls :meth:`Policy.begin` with every row's context (K demonstrations, then the
policy's own earlier episodes on that level); then, until every row's episode ends, it calls
:meth:`Policy.act` with the rows still running. A row that is absent from a later ``act`` call has
finished its episode.

Example:
    >>> import numpy as np
    >>> from trajbench.baselines import RandomPolicy
    >>> from trajbench.policy import RowContext
    >>> policy = RandomPolicy(n_actions=5, seed=0)
    >>> policy.begin([RowContext("trajbench/DarkRoom-v0", level=3, mission="", episodes=[])])
    >>> policy.act(np.zeros((1, 2), np.uint8), np.array([5]), np.zeros(1), np.array([0]), envs=[None])
    array([4])
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np


@dataclass
class EpisodeRecord:
    """One episode's steps (or one context segment's): observations, actions, rewards."""

    obs: np.ndarray  # uint8 [L, F]
    actions: np.ndarray  # int [L]
    rewards: np.ndarray  # float32 [L]
    level: int
    episode_id: int = -1
    mission: str = ""

    def __len__(self) -> int:
        return len(self.actions)


@dataclass
class RowContext:
    """What a policy may see before acting in one row: the level's context episodes.

    ``shown_mission``: the mission text to show instead of the policy's own rendering of
    ``mission`` (evaluation's conflict test shows a decoy); None: the policy decides.
    """

    env_id: str
    level: int
    mission: str
    episodes: list[EpisodeRecord] = field(default_factory=list)
    shown_mission: str | None = None


class Policy(ABC):
    """A policy acting in a batch of rows (see the module docstring)."""

    name: str = "policy"

    @abstractmethod
    def begin(self, rows: list[RowContext]) -> None:
        """A new episode starts in every row; ``rows[i]`` is row ``i``'s context."""

    @abstractmethod
    def act(
        self,
        obs: np.ndarray,
        prev_action: np.ndarray,
        prev_reward: np.ndarray,
        rows: np.ndarray,
        envs: list,
    ) -> np.ndarray:
        """Actions for the running rows.

        Args:
            obs: ``[n, F]`` encoded observations of the running rows.
            prev_action: ``[n]`` previous actions (``n_actions`` = start of episode).
            prev_reward: ``[n]`` previous rewards (0 at the start).
            rows: ``[n]`` indices of the running rows (increasing; a subset of the last ``begin``).
            envs: The running rows' environments (only privileged baselines look at them).
        """

"""The interface every policy scored by trajbench implements: what an agent sees, and only that.

Evaluation runs a batch of *rows*, one held-out level per row. Before each episode it calls
:meth:`Policy.begin` with every row's context; then, until every row's episode ends, it calls
:meth:`Policy.act` with the encoded observations, previous actions and rewards of the rows still
running. A row that is absent from a later ``act`` call has finished its episode.

A row's context (:class:`RowContext`) is what the evaluation protocol shows: the mission as the
evaluation's instruction mode shows it (``""`` under ``empty``, a decoy under ``decoy``) and the
context segments as encoded steps in the evaluated format (whole demonstrations in order, or
transitions in random order, then the agent's own earlier episodes where the evaluation keeps
them). Nothing else: no environment, level number, seed, hidden state, family id or store path
(see ``docs/agent-view.md``). trajbench's privileged reference policies (``expert``) take another,
internal path that outside policies cannot reach (:mod:`trajbench.privileged`).

Example:
    >>> import numpy as np
    >>> from trajbench.baselines import RandomPolicy
    >>> from trajbench.policy import RowContext
    >>> policy = RandomPolicy(n_actions=5, seed=0)
    >>> policy.begin([RowContext(mission="", episodes=[])])
    >>> policy.act(np.zeros((1, 2), np.uint8), np.array([5]), np.zeros(1), np.array([0]))
    array([4])
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Steps:
    """One context segment as an agent sees it: encoded observations and the actions and rewards
    that followed them (a demonstration, a run of shuffled transitions, or an earlier episode)."""

    obs: np.ndarray  # uint8 [L, F]
    actions: np.ndarray  # int64 [L]
    rewards: np.ndarray  # float32 [L]

    def __len__(self) -> int:
        return len(self.actions)


@dataclass
class RowContext:
    """What a policy is shown before an episode in one row (see the module docstring)."""

    mission: str
    """The mission as shown ("" under the empty instruction, a decoy under decoy)."""
    episodes: list[Steps] = field(default_factory=list)
    """The context segments, in the order the evaluated format gives them."""


class Policy(ABC):
    """A policy acting in a batch of rows (see the module docstring)."""

    name: str = "policy"
    context_mode: str = "-"
    """The context mode whose structure the policy's *matched* format shows: ``-`` (none: the
    common format only, whole demonstrations in order), or an unordered mode (``shuffled``,
    ``isolated``) to be scored also on the same demonstrations' steps in random order. Records
    keep ``train_context`` ``-`` and name the format ``matched``."""

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
    ) -> np.ndarray:
        """Actions for the running rows.

        Args:
            obs: ``[n, F]`` encoded observations of the running rows.
            prev_action: ``[n]`` previous actions (``n_actions`` = start of episode).
            prev_reward: ``[n]`` previous rewards (0 at the start).
            rows: ``[n]`` indices of the running rows (increasing; a subset of the last ``begin``).
        """


@dataclass
class EpisodeRecord:
    """One episode's (or context segment's) steps as trajbench keeps them internally, with the
    level and episode id they came from; an outside policy is shown its :class:`Steps` only."""

    obs: np.ndarray  # uint8 [L, F]
    actions: np.ndarray  # int [L]
    rewards: np.ndarray  # float32 [L]
    level: int
    episode_id: int = -1
    mission: str = ""

    def __len__(self) -> int:
        return len(self.actions)

"""The internal path of trajbench's privileged reference policies; outside policies never take it.

:func:`trajbench.rollout.rollout` drives a :class:`PrivilegedPolicy`: it is shown each row's
family, level number and true mission (:class:`PrivilegedRow`) and is handed the running rows'
environments at every step. trajbench's ``expert`` needs the environments (it asks the level's
planner), the trained transformer needs the true mission (it shows it as it was trained: full,
template, empty or a wrong one), and any reference policy that needs the level plugs in here.

Every other policy -- one named ``--policy package.module:factory`` or given to
``trajbench.evaluate`` -- implements :class:`trajbench.policy.Policy` and runs behind an
:class:`AgentView`, which shows it the protocol's view (:class:`trajbench.policy.RowContext`)
and calls ``act`` without environments. The loaders refuse a :class:`PrivilegedPolicy` from
either outside path (:func:`trajbench.pipeline.policies.check_outside`), so a privileged policy
runs only under the names ``--policy`` reserves for it.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

from .policy import EpisodeRecord, Policy, RowContext, Steps
from .vocab import shown_mission


@dataclass
class PrivilegedRow:
    """Everything trajbench knows of a row before an episode (privileged policies only).

    ``shown_mission``: the mission text to show instead of the policy's own rendering of
    ``mission`` (evaluation's decoys); None: the policy decides.
    """

    env_id: str
    level: int
    mission: str
    episodes: list[EpisodeRecord] = field(default_factory=list)
    shown_mission: str | None = None


class PrivilegedPolicy(ABC):
    """A trajbench reference policy that may read the rows' levels and environments."""

    name: str = "privileged"

    @abstractmethod
    def begin(self, rows: list[PrivilegedRow]) -> None:
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
        """Actions for the running rows (as :meth:`trajbench.policy.Policy.act`), given also
        the running rows' environments."""


class AgentView(PrivilegedPolicy):
    """Runs an outside :class:`~trajbench.policy.Policy` on the protocol's view of each row.

    The mission is shown as ``instruction`` says (``full``, ``empty``, ``template`` or
    ``wrong``, the last drawn once per row and mission from ``mission_pool`` with ``seed``); a
    row's decoy replaces it. Context segments are shown as read-only :class:`Steps` (the same
    object each time the same segment is shown). ``act`` is called without the environments.

    Args:
        policy: The outside policy.
        instruction: How missions are shown.
        mission_pool: Missions of each family, the source of ``wrong`` missions.
        seed: Seed of the ``wrong`` missions.
    """

    def __init__(
        self,
        policy: Policy,
        instruction: str = "full",
        mission_pool: dict[str, list[str]] | None = None,
        seed: int = 0,
    ):
        self.policy, self.instruction = policy, instruction
        self.mission_pool = mission_pool or {}
        self.rnd = random.Random(seed)
        self._missions: dict[tuple, str] = {}
        self._steps: dict[int, tuple[EpisodeRecord, Steps]] = {}

    def _mission(self, i: int, row: PrivilegedRow) -> str:
        if row.shown_mission is not None:
            return row.shown_mission
        key = (i, row.env_id, row.level, row.mission)
        if key not in self._missions:
            pool = self.mission_pool.get(row.env_id, [])
            self._missions[key] = shown_mission(row.mission, self.instruction, pool, self.rnd)
        return self._missions[key]

    def _view(self, record: EpisodeRecord) -> Steps:
        seen = self._steps.get(id(record))
        if seen is None or seen[0] is not record:
            arrays = [
                np.array(record.obs, np.uint8),
                np.array(record.actions, np.int64),
                np.array(record.rewards, np.float32),
            ]
            for a in arrays:
                a.flags.writeable = False
            seen = self._steps[id(record)] = (record, Steps(*arrays))
        return seen[1]

    def begin(self, rows: list[PrivilegedRow]) -> None:
        self.policy.begin(
            [
                RowContext(self._mission(i, row), [self._view(ep) for ep in row.episodes])
                for i, row in enumerate(rows)
            ]
        )

    def act(self, obs, prev_action, prev_reward, rows, envs) -> np.ndarray:
        return self.policy.act(obs, prev_action, prev_reward, rows)

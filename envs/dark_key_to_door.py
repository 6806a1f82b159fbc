"""Dark Key-to-Door: find a hidden key, then a hidden door (Laskin et al. 2022).

The level fixes the key cell and the door cell: ``level = key_cell * size**2 + door_cell`` with
``cell = y * size + x`` (6561 levels on 9x9). The agent starts on a random cell and observes
``(x, y, has_key)``. Reaching the key gives reward 1 and the key; reaching the door with the key
gives reward 1 and ends the episode (success). Episodes are truncated after 50 steps.

Example:
    >>> import gymnasium as gym, trajbench
    >>> env = gym.make("trajbench/DarkKeyToDoor-v0")
    >>> obs, info = env.reset(seed=0, options={"level": 42})
    >>> obs, reward, terminated, truncated, info = env.step(env.unwrapped.expert_action())
"""

from __future__ import annotations

import numpy as np

from .dark_grid import DarkGridEnv, DarkGridVectorEnv, cell_of, step_toward
from .dark_render import DOOR, KEY, Mark


class DarkKeyToDoorEnv(DarkGridEnv):
    """Single Dark Key-to-Door; see the module docstring.

    ``render_mode="rgb_array"`` draws the grid and the agent; ``render_hidden=True`` adds
    the hidden key (until it is picked up) and door (see :mod:`trajbench.envs.dark_render`).
    """

    family = "DarkKeyToDoor-v0"
    expert_name = "shortest path to the key, then to the door"
    level_fixes = "the hidden key cell and the hidden door cell"
    episode_draws = "the agent's start cell: any cell"
    default_max_steps = 50
    encoding_name = "dark-key-to-door"
    demo_decoder = "ordered_cells"
    query_solver = "sweep"

    @classmethod
    def count_levels(cls, size: int) -> int:
        return size**4

    @classmethod
    def feature_sizes(cls, size: int) -> tuple[int, ...]:
        return (size, size, 2)  # (x, y, has_key)

    @classmethod
    def obs_text(cls, obs: np.ndarray) -> str:
        """The agent's cell and whether it holds the key.

        Example:
            >>> DarkKeyToDoorEnv.obs_text(np.array([3, 4, 1], np.uint8))
            'at (3, 4), holding the key'
        """
        held = "holding the key" if int(obs[2]) else "no key"
        return f"{super().obs_text(obs)}, {held}"

    def _set_level(self) -> None:
        key_cell, door_cell = divmod(int(self.level), self.size**2)
        self.key, self.door = cell_of(key_cell, self.size), cell_of(door_cell, self.size)
        self.has_key = False

    def _obs(self) -> np.ndarray:
        return np.array([self.pos[0], self.pos[1], int(self.has_key)], dtype=np.int64)

    def _task_step(self) -> tuple[float, bool, bool]:
        if not self.has_key and np.array_equal(self.pos, self.key):
            self.has_key = True
            return 1.0, False, False
        if self.has_key and np.array_equal(self.pos, self.door):
            return 1.0, True, True
        return 0.0, False, False

    def expert_action(self) -> int:
        return int(step_toward(self.pos, self.door if self.has_key else self.key))

    def _hidden_marks(self) -> list[Mark]:
        marks = [Mark(tuple(self.door), DOOR)]
        return marks if self.has_key else [*marks, Mark(tuple(self.key), KEY, inset=9)]

    def _carrying(self) -> tuple[int, int, int] | None:
        return KEY if self.has_key else None

    @classmethod
    def step_events(cls, obs, actions, rewards) -> dict[str, np.ndarray]:
        """``key_pickup``: the key reward (``has_key`` still 0 in the step's observation);
        ``door_opened`` and ``goal_reached``: the door reward (``has_key`` 1).

        Example:
            >>> obs = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 1]])
            >>> events = DarkKeyToDoorEnv.step_events(obs, [4, 2, 2], [0.0, 1.0, 1.0])
            >>> events["key_pickup"].tolist(), events["goal_reached"].tolist()
            ([False, True, False], [False, False, True])
        """
        rewarded = np.asarray(rewards) > 0
        has_key = np.asarray(obs)[:, 2] > 0
        door = rewarded & has_key
        return {"goal_reached": door, "key_pickup": rewarded & ~has_key, "door_opened": door.copy()}


class DarkKeyToDoorVectorEnv(DarkGridVectorEnv):
    """``N`` Dark Key-to-Door grids stepped in one numpy call."""

    single_env_cls = DarkKeyToDoorEnv

    def _reset_task(self, mask: np.ndarray) -> None:
        if not hasattr(self, "key"):
            self.key = np.zeros((self.num_envs, 2), dtype=np.int64)
            self.door = np.zeros((self.num_envs, 2), dtype=np.int64)
            self.has_key = np.zeros(self.num_envs, dtype=bool)
        key_cell, door_cell = np.divmod(self.level[mask], self.size**2)
        self.key[mask] = cell_of(key_cell, self.size)
        self.door[mask] = cell_of(door_cell, self.size)
        self.has_key[mask] = False

    def _task_step(self, live: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        got_key = live & ~self.has_key & (self.pos == self.key).all(axis=1)
        at_door = live & self.has_key & (self.pos == self.door).all(axis=1)
        self.has_key |= got_key
        reward = (got_key | at_door).astype(np.float64)
        return reward, at_door

    def _target(self) -> np.ndarray:
        return np.where(self.has_key[:, None], self.door, self.key)

    def _obs(self) -> np.ndarray:
        return np.concatenate([self.pos, self.has_key[:, None].astype(np.int64)], axis=1)

"""Dark Room: find a hidden goal cell from your position alone (Laskin et al. 2022).

The level is the goal cell (``level = y * size + x``, 81 levels on the default 9x9 grid). The agent
starts on a random cell, observes only its ``(x, y)``, and earns reward 1 on every step it ends on
the goal. Episodes last ``max_steps`` (20) steps and never terminate early; an episode is a
success when the goal was reached at least once.

Example:
    >>> import gymnasium as gym, trajbench
    >>> env = gym.make("trajbench/DarkRoom-v0", levels="test")
    >>> obs, info = env.reset(seed=0, options={"level": int(env.unwrapped.splits()["test"][0])})
    >>> obs, reward, terminated, truncated, info = env.step(env.unwrapped.expert_action())
"""

from __future__ import annotations

import numpy as np

from .dark_grid import DarkGridEnv, DarkGridVectorEnv, cell_of, step_toward
from .dark_render import GOAL, Mark


class DarkRoomEnv(DarkGridEnv):
    """Single Dark Room; see the module docstring.

    ``render_mode="rgb_array"`` draws the grid and the agent; ``render_hidden=True`` adds
    the hidden goal (see :mod:`trajbench.envs.dark_render`).
    """

    family = "DarkRoom-v0"
    expert_name = "shortest path to the goal, then stay"
    level_fixes = "the hidden goal cell"
    episode_draws = "the agent's start cell: any cell"
    default_max_steps = 20
    encoding_name = "dark-room"
    demo_decoder = "goal_cell"
    query_solver = "sweep"

    @classmethod
    def count_levels(cls, size: int) -> int:
        return size * size

    def _set_level(self) -> None:
        self.goal = cell_of(self.level, self.size)
        self.reached = False

    def _task_step(self) -> tuple[float, bool, bool]:
        reward = float(np.array_equal(self.pos, self.goal))
        self.reached = self.reached or reward > 0
        return reward, False, self.reached

    def expert_action(self) -> int:
        return int(step_toward(self.pos, self.goal))

    def _hidden_marks(self) -> list[Mark]:
        return [Mark(tuple(self.goal), GOAL)]


class DarkRoomVectorEnv(DarkGridVectorEnv):
    """``N`` Dark Rooms stepped in one numpy call (``gym.make_vec(..., "vector_entry_point")``).

    Example:
        >>> import gymnasium as gym, trajbench
        >>> envs = gym.make_vec("trajbench/DarkRoom-v0", num_envs=8, vectorization_mode="vector_entry_point")
        >>> obs, _ = envs.reset(seed=0)
        >>> obs, reward, terminated, truncated, _ = envs.step(envs.expert_actions())
    """

    single_env_cls = DarkRoomEnv

    def _reset_task(self, mask: np.ndarray) -> None:
        if not hasattr(self, "goal"):
            self.goal = np.zeros((self.num_envs, 2), dtype=np.int64)
            self.reached = np.zeros(self.num_envs, dtype=bool)
        self.goal[mask] = cell_of(self.level[mask], self.size)
        self.reached[mask] = False

    def _task_step(self, live: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        at_goal = live & (self.pos == self.goal).all(axis=1)
        self.reached |= at_goal
        return at_goal.astype(np.float64), np.zeros(self.num_envs, dtype=bool)

    def _target(self) -> np.ndarray:
        return self.goal

    def _obs(self) -> np.ndarray:
        return self.pos.copy()

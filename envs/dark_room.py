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

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from .dark_grid import N_ACTIONS, DarkGridVectorEnv, cell_of, move, step_toward
from .dark_render import GOAL, DarkRender, Mark
from .levels import LevelMixin, LevelsArg, ObsEncoding


class DarkRoomEnv(DarkRender, LevelMixin, gym.Env):
    """Single Dark Room; see the module docstring.

    ``render_mode="rgb_array"`` draws the grid and the agent; ``render_hidden=True`` adds
    the hidden goal (see :mod:`trajbench.envs.dark_render`).
    """

    family = "DarkRoom-v0"
    expert_name = "shortest path to the goal, then stay"
    level_fixes = "the hidden goal cell"
    episode_draws = "the agent's start cell: any cell"

    def __init__(
        self,
        levels: LevelsArg = "all",
        size: int = 9,
        max_steps: int | None = None,
        sticky_p: float = 0.0,
        render_mode: str | None = None,
        render_hidden: bool = False,
    ):
        if size < 2:
            raise ValueError(f"size must be >= 2, got {size}")
        self.size = size
        self.n_levels = size * size
        self.n_test_levels = max(1, round(0.2 * self.n_levels))
        self.max_steps = 20 if max_steps is None else int(max_steps)
        if self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        self.encoding = ObsEncoding("dark-room", (size, size), N_ACTIONS)
        self.observation_space = spaces.MultiDiscrete([size, size])
        self.action_space = spaces.Discrete(N_ACTIONS)
        self._init_levels(levels, sticky_p)
        self._init_render(render_mode, render_hidden)
        self.goal = cell_of(self.level, size)
        self.pos = np.zeros(2, dtype=np.int64)
        self.t = 0
        self.reached = False

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._select_level(options)
        self.goal = cell_of(self.level, self.size)
        self.pos = self.np_random.integers(self.size, size=2).astype(np.int64)
        self.t = 0
        self.reached = False
        return self.pos.copy(), {"level": self.level, "success": False}

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"invalid action {action!r}; expected an int in 0..{N_ACTIONS - 1}")
        action = self._sticky(int(action))
        self.pos = move(self.pos, action, self.size)
        self.t += 1
        reward = float(np.array_equal(self.pos, self.goal))
        self.reached = self.reached or reward > 0
        truncated = self.t >= self.max_steps
        return (
            self.pos.copy(),
            reward,
            False,
            truncated,
            {"level": self.level, "success": self.reached},
        )

    def encode_obs(self, obs) -> np.ndarray:
        return np.asarray(obs, dtype=np.uint8)

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

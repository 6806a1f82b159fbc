"""Shared machinery of the dark grid families (Dark Room, Dark Key-to-Door, Dark Sequence).

The agent walks a ``size x size`` grid with 5 actions and sees only its own position; what it must
reach is hidden and fixed by the level, so only demonstrations of the same level reveal it
(Laskin et al. 2022, Algorithm Distillation). Each family is a single-env class and a native
batched class that steps ``N`` grids in one numpy call; both share :func:`move` so they cannot
drift apart.
"""

from __future__ import annotations

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

#: Action ids: stay, up (y-1), down (y+1), left (x-1), right (x+1).
NOOP, UP, DOWN, LEFT, RIGHT = range(5)
N_ACTIONS = 5
_DELTAS = np.array([[0, 0], [0, -1], [0, 1], [-1, 0], [1, 0]], dtype=np.int64)


def move(pos: np.ndarray, action: np.ndarray | int, size: int) -> np.ndarray:
    """Positions ``[..., 2]`` (x, y) after ``action``, clipped to the grid."""
    return np.clip(pos + _DELTAS[action], 0, size - 1)


def step_toward(pos: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The expert's greedy move: close the x gap first, then y; stay when there.

    Works on single positions ``[2]`` or batches ``[N, 2]`` and returns int actions.
    """
    pos = np.asarray(pos)
    target = np.asarray(target)
    dx = target[..., 0] - pos[..., 0]
    dy = target[..., 1] - pos[..., 1]
    action = np.where(dy < 0, UP, np.where(dy > 0, DOWN, NOOP))
    action = np.where(dx < 0, LEFT, np.where(dx > 0, RIGHT, action))
    return action.astype(np.int64)


def cell_of(index: np.ndarray | int, size: int) -> np.ndarray:
    """Cell index ``y * size + x`` -> ``(x, y)``."""
    index = np.asarray(index)
    return np.stack([index % size, index // size], axis=-1).astype(np.int64)


class DarkGridVectorEnv(VectorEnv):
    """Base of the batched dark grid families; subclasses implement the task arrays.

    Autoreset follows Gymnasium's default (``NEXT_STEP``): the step after an episode ends resets
    that sub-environment, ignores its action and returns its first observation.
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP}
    single_env_cls: type

    def __init__(
        self,
        num_envs: int,
        levels="all",
        size: int = 9,
        max_steps: int | None = None,
        **family_kwargs,
    ):
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.num_envs = int(num_envs)
        self._single = self.single_env_cls(
            levels=levels, size=size, max_steps=max_steps, **family_kwargs
        )
        self.size = size
        self.max_steps = self._single.max_steps
        self.single_observation_space = self._single.observation_space
        self.single_action_space = self._single.action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.allowed_levels = self._single.allowed_levels
        self.level = np.zeros(self.num_envs, dtype=np.int64)
        self.pos = np.zeros((self.num_envs, 2), dtype=np.int64)
        self.t = np.zeros(self.num_envs, dtype=np.int64)
        self._needs_reset = np.zeros(self.num_envs, dtype=bool)

    def _draw_levels(self, mask: np.ndarray, options: dict | None) -> None:
        n = int(mask.sum())
        if options and options.get("level") is not None:
            lv = np.broadcast_to(np.asarray(options["level"], dtype=np.int64), (self.num_envs,))
            bad = lv[(lv < 0) | (lv >= self._single.n_levels)]
            if bad.size:
                raise ValueError(
                    f"level {int(bad[0])} is out of range for {self._single.family}: "
                    f"levels are 0..{self._single.n_levels - 1}"
                )
            self.level[mask] = lv[mask]
        else:
            self.level[mask] = self.allowed_levels[
                self.np_random.integers(len(self.allowed_levels), size=n)
            ]
        self.t[mask] = 0
        self._reset_task(mask)
        self.pos[mask] = self._draw_starts(mask)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        everything = np.ones(self.num_envs, dtype=bool)
        self._draw_levels(everything, options)
        self._needs_reset[:] = False
        return self._obs(), {}

    def step(self, actions):
        actions = np.asarray(actions, dtype=np.int64)
        resetting = self._needs_reset.copy()
        live = ~resetting
        self.pos[live] = move(self.pos[live], actions[live], self.size)
        self.t[live] += 1
        reward, terminated = self._task_step(live)
        truncated = live & ~terminated & (self.t >= self.max_steps)
        if resetting.any():
            self._draw_levels(resetting, None)
        self._needs_reset = terminated | truncated
        return self._obs(), reward, terminated, truncated, {}

    def expert_actions(self) -> np.ndarray:
        """The expert's action in every sub-environment."""
        return step_toward(self.pos, self._target())

    # -- task hooks -----------------------------------------------------------------------------
    def _draw_starts(self, mask: np.ndarray) -> np.ndarray:
        """Start positions ``[mask.sum(), 2]`` of the resetting sub-environments (any cell)."""
        return self.np_random.integers(self.size, size=(int(mask.sum()), 2))

    def _reset_task(self, mask: np.ndarray) -> None:
        raise NotImplementedError

    def _task_step(self, live: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _target(self) -> np.ndarray:
        raise NotImplementedError

    def _obs(self) -> np.ndarray:
        raise NotImplementedError

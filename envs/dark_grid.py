"""Shared machinery of the dark grid families (Dark Room, Dark Key-to-Door, Dark Sequence).

The agent walks a ``size x size`` grid with 5 actions and sees only its own position; what it must
reach is hidden and fixed by the level, so only demonstrations of the same level reveal it
(Laskin et al. 2022, Algorithm Distillation). Each family is a single-env class and a native
batched class that steps ``N`` grids in one numpy call; both share :func:`move` so they cannot
drift apart.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from .dark_render import DarkRender
from .levels import LevelMixin, LevelsArg, ObsEncoding

#: Action ids: stay, up (y-1), down (y+1), left (x-1), right (x+1).
NOOP, UP, DOWN, LEFT, RIGHT = range(5)
N_ACTIONS = 5
#: The actions in words, by action id (the text track's actions).
ACTION_WORDS = ("stay", "up", "down", "left", "right")
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


class DarkGridEnv(DarkRender, LevelMixin, gym.Env):
    """Base of the single-environment dark grid families: the grid, the moves, the level API.

    A family sets its class attributes and implements :meth:`_set_level` (the level's hidden
    cells), :meth:`_draw_start` (the episode's start cell, from ``self.np_random``),
    :meth:`_task_step` (reward, termination and success after a move), :meth:`_obs`,
    ``expert_action`` and ``_hidden_marks`` (for rendering).
    """

    #: Default episode cap.
    default_max_steps: int = 20
    #: Default side of the grid.
    default_size: int = 9
    #: Name of the observation encoding.
    encoding_name: str = ""
    action_words = ACTION_WORDS

    def __init__(
        self,
        levels: LevelsArg = "all",
        size: int | None = None,
        max_steps: int | None = None,
        sticky_p: float = 0.0,
        render_mode: str | None = None,
        render_hidden: bool = False,
    ):
        size = self.default_size if size is None else size
        self.size = size
        self._init_grid(
            levels,
            size,
            self.count_levels(size),
            max_steps,
            sticky_p,
            render_mode,
            render_hidden,
            self.encoding_name,
            self.feature_sizes(size),
        )

    @classmethod
    def count_levels(cls, size: int) -> int:
        """How many levels a grid of this side has: what this constructor needs of a family (one
        with a constructor of its own, as Dark Sequence, need not say)."""
        raise NotImplementedError(f"{cls.__name__} does not count its levels")

    @classmethod
    def feature_sizes(cls, size: int) -> tuple[int, ...]:
        """The observation's features: the agent's ``(x, y)`` (families add their own)."""
        return (size, size)

    def _init_grid(
        self,
        levels: LevelsArg,
        size: int,
        n_levels: int,
        max_steps: int | None,
        sticky_p: float,
        render_mode: str | None,
        render_hidden: bool,
        encoding: str,
        feature_sizes: tuple[int, ...],
    ) -> None:
        """Validate the shape, then set the spaces, levels and rendering (call from ``__init__``)."""
        if size < 2:
            raise ValueError(f"size must be >= 2, got {size}")
        self.size, self.n_levels = size, n_levels
        self.n_test_levels = max(1, round(0.2 * n_levels))
        self.max_steps = self.default_max_steps if max_steps is None else int(max_steps)
        if self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        self.encoding = ObsEncoding(encoding, feature_sizes, N_ACTIONS)
        self.observation_space = spaces.MultiDiscrete(list(feature_sizes))
        self.action_space = spaces.Discrete(N_ACTIONS)
        self._init_levels(levels, sticky_p)
        self._init_render(render_mode, render_hidden)
        self._set_level()
        self.pos = np.zeros(2, dtype=np.int64)
        self.t = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._select_level(options)
        self._set_level()
        self.pos = self._draw_start()
        self.t = 0
        return self._obs(), {"level": self.level, "success": False}

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"invalid action {action!r}; expected an int in 0..{N_ACTIONS - 1}")
        action = self._sticky(int(action))
        self.pos = move(self.pos, action, self.size)
        self.t += 1
        reward, terminated, success = self._task_step()
        truncated = not terminated and self.t >= self.max_steps
        info = {"level": self.level, "success": success}
        return self._obs(), reward, terminated, truncated, info

    def encode_obs(self, obs) -> np.ndarray:
        return np.asarray(obs, dtype=np.uint8)

    @classmethod
    def obs_text(cls, obs: np.ndarray) -> str:
        """The agent's cell as coordinates, ``at (x, y)`` (x grows rightwards, y downwards).

        Example:
            >>> DarkGridEnv.obs_text(np.array([3, 4], np.uint8))
            'at (3, 4)'
        """
        return f"at ({int(obs[0])}, {int(obs[1])})"

    def _draw_start(self) -> np.ndarray:
        """A uniformly random cell of the grid (families with constraints override this)."""
        return self.np_random.integers(self.size, size=2).astype(np.int64)

    def _obs(self) -> np.ndarray:
        return self.pos.copy()

    def _build_level(self, level: int) -> None:
        self._set_level()

    def _content_parts(self) -> list[bytes | str]:
        # The hidden cells in the level's initial state, in order (a sequence's order counts).
        return [repr([(tuple(map(int, m.cell)), m.color, m.label) for m in self._hidden_marks()])]

    # -- task hooks -----------------------------------------------------------------------------
    @abstractmethod
    def _set_level(self) -> None:
        """Build the task of ``self.level`` (its hidden cells and their state)."""

    @abstractmethod
    def _task_step(self) -> tuple[float, bool, bool]:
        """``(reward, terminated, success)`` of the step that just moved the agent."""


class DarkGridVectorEnv(VectorEnv, ABC):
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

    @abstractmethod
    def _reset_task(self, mask: np.ndarray) -> None:
        """Set up the tasks of the resetting sub-environments ``mask``."""

    @abstractmethod
    def _task_step(self, live: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(reward, terminated)`` of the sub-environments that just moved (``live``)."""

    def _target(self) -> np.ndarray:
        """The cell each sub-environment's expert heads for: what :meth:`expert_actions` needs of
        a family (one with an expert of its own, as Dark Sequence, need not say)."""
        raise NotImplementedError(f"{type(self).__name__} names no expert target")

    @abstractmethod
    def _obs(self) -> np.ndarray:
        """The batched observation."""

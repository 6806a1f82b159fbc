"""Level control and the shared observation encoding of the MiniGrid and BabyAI families.

A MiniGrid *level* is a generation seed: level ``L`` of family ``F`` is the grid, agent start and
mission that MiniGrid's own generator builds from ``np.random.default_rng([crc32(F), L])``. So
(family, level) always builds the same layout and mission, whatever the episode seed; the
episode's ``np_random`` (seeded by ``reset(seed=...)``) only draws the level and sticky actions.

Every family has ``n_levels = 10_000`` levels, split into 9,000 ``train`` and 1,000 ``test``
levels by :func:`trajbench.envs.levels.split_levels` (split version 1).

Observations stay MiniGrid's ``Dict`` (``image``: 7x7x3 partial egocentric view, ``direction``,
``mission``); :func:`encode_minigrid_obs` flattens one into the 148 features of
:data:`MINIGRID_ENCODING`, which every MiniGrid family shares.

Example:
    >>> import gymnasium as gym, trajbench
    >>> env = gym.make("trajbench/DoorKey-v0", levels="test")
    >>> obs, info = env.reset(seed=0)
    >>> info["level"] in set(env.unwrapped.splits()["test"].tolist())
    True
    >>> env.unwrapped.encode_obs(obs).shape
    (148,)
"""

from __future__ import annotations

import zlib
from typing import Any

import gymnasium as gym
import numpy as np
from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX, STATE_TO_IDX
from minigrid.core.roomgrid import RoomGrid
from minigrid.envs.babyai.core.roomgrid_level import RejectSampling

from .levels import LevelMixin, LevelsArg, ObsEncoding

#: Cells in MiniGrid's partial view (7x7).
VIEW_CELLS = 7 * 7
#: MiniGrid's action count (left, right, forward, pickup, drop, toggle, done).
N_MINIGRID_ACTIONS = 7
_CELL_SIZES = (len(OBJECT_TO_IDX), len(COLOR_TO_IDX), len(STATE_TO_IDX))

#: The one encoding of every MiniGrid/BabyAI family: per view cell (object, color, state)
#: indices of ``minigrid.core.constants``, then the agent direction (4 values).
MINIGRID_ENCODING = ObsEncoding("minigrid", _CELL_SIZES * VIEW_CELLS + (4,), N_MINIGRID_ACTIONS)


def encode_minigrid_obs(obs: dict[str, Any]) -> np.ndarray:
    """Flatten a MiniGrid observation into the 148 ``uint8`` features of :data:`MINIGRID_ENCODING`.

    Args:
        obs: MiniGrid ``Dict`` observation with ``image`` (7x7x3) and ``direction``.

    Returns:
        ``image.reshape(-1)`` (147 values, C order) followed by ``direction``.
    """
    out = np.empty(MINIGRID_ENCODING.n_features, dtype=np.uint8)
    out[:-1] = np.asarray(obs["image"]).reshape(-1)
    out[-1] = obs["direction"]
    return out


def level_rng(family: str, level: int) -> np.random.Generator:
    """The generator that builds ``level`` of ``family`` (independent of any episode seed)."""
    return np.random.default_rng([zlib.crc32(family.encode()), int(level)])


class MiniGridLevelMixin(LevelMixin):
    """Levels, sticky actions and ``info`` for a MiniGrid environment class.

    Mix in before the MiniGrid class (``class X(MiniGridLevelMixin, DoorKeyEnv)``) and set
    :attr:`family`, :attr:`default_max_steps` and :attr:`env_kwargs`.

    Args:
        levels: ``"train"``, ``"test"``, ``"all"`` or a list of level ints to draw from.
        sticky_p: Probability of repeating the previous action instead of the given one.
        max_steps: Episode cap (truncation); ``None`` means :attr:`default_max_steps`.
        render_mode: Passed to MiniGrid (``None``, ``"rgb_array"`` or ``"human"``).
    """

    n_levels = 10_000
    n_test_levels = 1_000
    encoding = MINIGRID_ENCODING
    #: Episode cap used when ``max_steps`` is not given.
    default_max_steps: int = 64
    #: Keyword arguments of the MiniGrid class that define the family (sizes, counts).
    env_kwargs: dict[str, Any] = {}
    #: Object that must be told every executed action (set by families whose expert is stateful).
    _tracker: Any = None

    def __init__(
        self,
        levels: LevelsArg = "all",
        sticky_p: float = 0.0,
        max_steps: int | None = None,
        render_mode: str | None = None,
    ):
        max_steps = self.default_max_steps if max_steps is None else max_steps
        if isinstance(max_steps, bool) or not isinstance(max_steps, int | np.integer):
            raise ValueError(f"max_steps must be an int, got {max_steps!r}")
        if max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        super().__init__(max_steps=int(max_steps), render_mode=render_mode, **self.env_kwargs)
        self._init_levels(levels, sticky_p)
        self._success = False

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        gym.Env.reset(self, seed=seed)
        level = self._select_level(options)
        obs = self._generate(level)
        self._success = False
        self._on_reset()
        return obs, {"level": level, "success": False}

    def _generate(self, level: int) -> dict[str, Any]:
        """Build ``level`` with the level's own generator; the episode generator is untouched."""
        episode_rng = self.np_random
        self._np_random = level_rng(self.family, level)
        try:
            obs, _ = super().reset()
        finally:
            self._np_random = episode_rng
        return obs

    def _on_reset(self) -> None:
        """Hook run at the end of ``reset`` (expert bookkeeping)."""

    def step(self, action):
        action = self._sticky(action)
        if self._tracker is not None:
            self._tracker.note(action)
        obs, reward, terminated, truncated, _ = super().step(action)
        if terminated and reward > 0:
            self._success = True
        return (
            obs,
            float(reward),
            terminated,
            truncated,
            {"level": self.level, "success": self._success},
        )

    def encode_obs(self, obs) -> np.ndarray:
        return encode_minigrid_obs(obs)

    @property
    def mission_text(self) -> str:
        return str(self.mission)


class BabyAILevelMixin(MiniGridLevelMixin):
    """:class:`MiniGridLevelMixin` for BabyAI ``RoomGridLevel`` classes.

    Generation is BabyAI's rejection sampling (resample the room and mission until the mission is
    valid), all drawn from the level's generator, minus the line BabyAI prints to stdout for every
    rejected sample.
    """

    has_mission = True

    def _gen_grid(self, width: int, height: int) -> None:
        # RoomGridLevel._gen_grid without its print() per rejected sample.
        while True:
            try:
                RoomGrid._gen_grid(self, width, height)
                self.gen_mission()
                self.validate_instrs(self.instrs)
            except (RecursionError, RejectSampling):
                continue
            break
        self.surface = self.instrs.surface(self)
        self.mission = self.surface

    def _restart_level(self) -> None:
        """Rebuild the current level in its initial state (same grid, mission, agent start)."""
        self._generate(self.level)

    def _base_step(self, action: int) -> None:
        """Execute ``action`` in the BabyAI environment itself: no sticky actions, no recording."""
        super(MiniGridLevelMixin, self).step(action)

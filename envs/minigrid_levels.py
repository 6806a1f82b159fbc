"""Level control, start poses and the shared observation encoding of the MiniGrid/BabyAI families.

A MiniGrid *level* is a generation seed: level ``L`` of family ``F`` is the grid, objects, doors and
mission that MiniGrid's own generator builds from ``np.random.default_rng([crc32(F-v0), L])``. So
(family, level) always builds the same layout and mission, whatever the episode seed.

An *episode* draws the agent's start pose (cell and direction) from its own ``np_random`` (seeded
by ``reset(seed=...)``): one draw, uniform over the poses the family allows (its
``_start_cells`` and ``_start_pose_ok``), never on an object or the goal. So the demonstrations of
one level differ, and a context of them cannot hold the query's own action sequence. These are the
``-v1`` ids. The ``-v0`` ids (``random_start=False``, what suite version 1 measured) keep the start
that the level's generator placed; ``-v1`` level ``L`` is ``-v0`` level ``L`` with the start
redrawn. The level generator has its own RNG, so the episode's stream never depends on how many
draws generation took.

Every family has ``n_levels = 10_000`` levels, split into 9,000 ``train`` and 1,000 ``test``
levels by :func:`trajbench.envs.levels.split_levels` (split version 1).

The ``-v2`` ids (suite version 3) and the families new in suite 3 (``content_split=True``) draw
their levels over distinct contents: level ``L`` is the first generation from
``level_rng(F, L, attempt)``, ``attempt = 0, 1, ...``, whose content hash
(:meth:`~trajbench.envs.levels.LevelMixin.content_hash`) falls on ``L``'s own side of the split
(:func:`~trajbench.envs.levels.content_is_test`). So every level number of one content lies on one
side, and no test level's content is a training level's. The ``-v0`` / ``-v1`` ids keep their
levels (and their repeats across the split) for the entries that measured them.

Observations stay MiniGrid's ``Dict`` (``image``: 7x7x3 partial egocentric view, ``direction``,
``mission``), except that the mission is a standard Gymnasium ``Text`` space
(:func:`~trajbench.envs.mission_space.mission_space`): MiniGrid's ``MissionSpace`` cannot live in
shared memory, so ``gym.make_vec(..., vectorization_mode="async")`` works with its defaults, and
Minari stores it.
:func:`encode_minigrid_obs` flattens one into the 148 features of :data:`MINIGRID_ENCODING`, which
every MiniGrid family shares.

Example:
    >>> import gymnasium as gym, trajbench
    >>> env = gym.make("trajbench/DoorKey-v1", levels="test")
    >>> obs, info = env.reset(seed=0)
    >>> info["level"] in set(env.unwrapped.splits()["test"].tolist())
    True
    >>> env.unwrapped.encode_obs(obs).shape
    (148,)
"""

from __future__ import annotations

import zlib
from abc import abstractmethod
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from minigrid.core.actions import Actions
from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX, STATE_TO_IDX
from minigrid.core.roomgrid import RoomGrid
from minigrid.envs.babyai.core.roomgrid_level import RejectSampling
from minigrid.envs.babyai.core.verifier import ObjDesc

from .levels import LevelMixin, LevelsArg, ObsEncoding, content_digest, content_is_test
from .minigrid_decoys import DecoyTracker, mission_chance
from .minigrid_strict import wrong_touch
from .minigrid_text import MINIGRID_ACTION_WORDS, minigrid_obs_text
from .mission_space import mission_space

#: Cells in MiniGrid's partial view (7x7).
VIEW_CELLS = 7 * 7
#: MiniGrid's action count (left, right, forward, pickup, drop, toggle, done).
N_MINIGRID_ACTIONS = 7
_CELL_SIZES = (len(OBJECT_TO_IDX), len(COLOR_TO_IDX), len(STATE_TO_IDX))

#: The one encoding of every MiniGrid/BabyAI family: per view cell (object, color, state)
#: indices of ``minigrid.core.constants``, then the agent direction (4 values).
MINIGRID_ENCODING = ObsEncoding("minigrid", _CELL_SIZES * VIEW_CELLS + (4,), N_MINIGRID_ACTIONS)

_SIDE = 7
# encode_minigrid_obs flattens image[x, y, channel] in C order; the agent sits at
# (side // 2, side - 1) looking towards y - 1. Its own cell shows what it carries.
_AGENT = ((_SIDE // 2) * _SIDE + _SIDE - 1) * 3
_FRONT = ((_SIDE // 2) * _SIDE + _SIDE - 2) * 3
_OBJ, _COLOR, _STATE = 0, 1, 2
_DIRECTION = VIEW_CELLS * 3
_KEY, _DOOR = OBJECT_TO_IDX["key"], OBJECT_TO_IDX["door"]
_NOTHING = OBJECT_TO_IDX["empty"]
_OPEN, _CLOSED, _LOCKED = STATE_TO_IDX["open"], STATE_TO_IDX["closed"], STATE_TO_IDX["locked"]
_PICKUP, _DROP, _TOGGLE = int(Actions.pickup), int(Actions.drop), int(Actions.toggle)


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


def level_rng(family: str, level: int, attempt: int | None = None) -> np.random.Generator:
    """The generator that builds ``level`` of ``family`` (independent of any episode seed);
    ``attempt`` numbers the draws of a content-split family (``None``: the ``-v0``/``-v1`` key)."""
    key = [zlib.crc32(family.encode()), int(level)]
    return np.random.default_rng(key if attempt is None else [*key, int(attempt)])


#: Generations tried for one content-split level before giving up (a side with no content).
MAX_CONTENT_ATTEMPTS = 10_000
#: (family, level) -> the attempt that gave its content, shared by every instance of a process.
_CONTENT_ATTEMPTS: dict[tuple[str, int], int] = {}


def content_split_id(family: str) -> str:
    """The content-split id of a ``-v1`` family id: ``"DoorKey-v1"`` -> ``"DoorKey-v2"``
    (ids of other versions, as a family new in suite 3, are their own)."""
    base, version = family.rsplit("-v", 1)
    return f"{base}-v2" if version == "1" else family


def fixed_start_id(family: str) -> str:
    """The ``-v0`` id of a family id: ``"DoorKey-v1"`` -> ``"DoorKey-v0"``."""
    return f"{family.rsplit('-v', 1)[0]}-v0"


def minigrid_step_events(obs, actions, rewards) -> dict[str, np.ndarray]:
    """``goal_reached``, ``key_pickup`` and ``door_opened`` of one stored MiniGrid episode.

    Decoded from the encoded view (:data:`MINIGRID_ENCODING`): the agent's own cell shows what it
    carries, the cell in front of it a door's state. A step picked up a key when the next view
    shows a key carried and this one shows nothing carried; it opened a door when the cell in front
    shows a closed or locked door now and an open one in the next view with the same direction (a
    shut door blocks ``forward``, so the agent did not move). Both read what happened, so they
    hold whatever sticky actions executed. The last step has no next view stored: it is decoded
    from its action instead (``pickup`` facing a key with nothing carried; ``toggle`` facing a
    closed door, or a locked one while carrying a key of its colour), which is exact unless sticky
    actions replaced that last action.

    Args:
        obs: ``[L, 148]`` encoded observations (``obs[t]`` is what action ``t`` was chosen on).
        actions: ``[L]`` stored actions.
        rewards: ``[L]`` rewards that followed them.

    Example:
        >>> obs = np.zeros((2, 148), dtype=np.uint8)
        >>> obs[:, _AGENT] = _NOTHING
        >>> obs[0, _FRONT] = _KEY
        >>> obs[1, _AGENT] = _KEY  # after the first step the agent carries a key
        >>> events = minigrid_step_events(obs, [3, 2], [0.0, 0.0])
        >>> events["key_pickup"].tolist(), events["door_opened"].tolist()
        ([True, False], [False, False])
    """
    obs = np.asarray(obs)
    a = np.asarray(actions)
    carried, carried_color = obs[:, _AGENT + _OBJ], obs[:, _AGENT + _COLOR]
    front, front_color = obs[:, _FRONT + _OBJ], obs[:, _FRONT + _COLOR]
    front_state, direction = obs[:, _FRONT + _STATE], obs[:, _DIRECTION]
    shut_door = (front == _DOOR) & ((front_state == _CLOSED) | (front_state == _LOCKED))

    key_pickup = np.zeros(len(a), dtype=bool)
    key_pickup[:-1] = (carried[:-1] == _NOTHING) & (carried[1:] == _KEY)
    door_opened = np.zeros(len(a), dtype=bool)
    door_opened[:-1] = (
        shut_door[:-1]
        & (front[1:] == _DOOR)
        & (front_state[1:] == _OPEN)
        & (direction[1:] == direction[:-1])
    )
    if len(a):
        key_pickup[-1] = a[-1] == _PICKUP and front[-1] == _KEY and carried[-1] == _NOTHING
        has_its_key = carried[-1] == _KEY and carried_color[-1] == front_color[-1]
        unlockable = front_state[-1] == _CLOSED or has_its_key
        door_opened[-1] = a[-1] == _TOGGLE and shut_door[-1] and unlockable
    return {
        "goal_reached": np.asarray(rewards) > 0,
        "key_pickup": key_pickup,
        "door_opened": door_opened,
    }


class MiniGridLevelMixin(LevelMixin):
    """Levels, start poses, sticky actions and ``info`` for a MiniGrid environment class.

    Mix in before the MiniGrid class (``class X(MiniGridLevelMixin, DoorKeyEnv)``), set
    :attr:`family` (the ``-v1`` id), :attr:`default_max_steps`, :attr:`env_kwargs`, the level
    facts, and implement :meth:`_start_cells`.

    Args:
        levels: ``"train"``, ``"test"``, ``"all"`` or a list of level ints to draw from.
        sticky_p: Probability of repeating the previous action instead of the given one.
        max_steps: Episode cap (truncation); ``None`` means :attr:`default_max_steps` (or
            :attr:`fixed_start_max_steps` without a random start).
        render_mode: Passed to MiniGrid (``None``, ``"rgb_array"`` or ``"human"``).
        random_start: Draw the start pose per episode (``-v1``); ``False`` keeps the level's own
            start (``-v0``, suite version 1).
        content_split: Draw the levels over distinct contents (``-v2`` and the families new in
            suite 3); ``None`` keeps the class's :attr:`content_split`.
    """

    n_levels = 10_000
    n_test_levels = 1_000
    encoding = MINIGRID_ENCODING
    interaction_actions = (_PICKUP, _DROP, _TOGGLE)
    action_words = MINIGRID_ACTION_WORDS
    obs_text = staticmethod(minigrid_obs_text)  # the text track's reading of the shared encoding
    demo_decoder = "goal_cell"
    query_solver = "explore"
    #: Episode cap used when ``max_steps`` is not given (random start).
    default_max_steps: int = 64
    #: Episode cap of the fixed-start ``-v0`` id when ``max_steps`` is not given (None: the same).
    fixed_start_max_steps: int | None = None
    #: Keyword arguments of the MiniGrid class that define the family (sizes, counts).
    env_kwargs: dict[str, Any] = {}
    #: Object that must be told every executed action (set by families whose expert is stateful).
    _tracker: Any = None
    #: Whether levels are drawn over distinct contents (see the module docstring).
    content_split: bool = False

    def __init__(
        self,
        levels: LevelsArg = "all",
        sticky_p: float = 0.0,
        max_steps: int | None = None,
        render_mode: str | None = None,
        random_start: bool = True,
        content_split: bool | None = None,
    ):
        if not isinstance(random_start, bool | np.bool_):
            raise ValueError(f"random_start must be a bool, got {random_start!r}")
        if content_split is not None:
            if not isinstance(content_split, bool | np.bool_):
                raise ValueError(f"content_split must be a bool, got {content_split!r}")
            self.content_split = bool(content_split)
        if self.content_split and not random_start:
            raise ValueError("content_split levels draw the start per episode (random_start=True)")
        if self.content_split:
            self.family = content_split_id(self.family)
        self.random_start = bool(random_start)
        if not self.random_start:
            self.family = fixed_start_id(self.family)
            self.level_fixes = f"{self.level_fixes}; the agent's start cell and direction"
            self.episode_draws = "nothing within a level: the level fixes the start"
            self.version_note = "suite 1 (fixed start)"
        if max_steps is None:
            fixed = self.fixed_start_max_steps
            max_steps = fixed if fixed is not None and not random_start else self.default_max_steps
        if isinstance(max_steps, bool) or not isinstance(max_steps, int | np.integer):
            raise ValueError(f"max_steps must be an int, got {max_steps!r}")
        if max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        super().__init__(max_steps=int(max_steps), render_mode=render_mode, **self.env_kwargs)
        self.observation_space = spaces.Dict(
            {**self.observation_space.spaces, "mission": mission_space()}
        )
        self._init_levels(levels, sticky_p)
        self._success = False
        self._start: tuple[tuple[int, int], int] | None = None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        gym.Env.reset(self, seed=seed)
        level = self._select_level(options)
        self._generate(level)
        self._start = self._draw_start() if self.random_start else None
        obs = self._place_start()
        self._success = False
        self._on_reset()
        return obs, {"level": level, "success": False}

    def _generate(self, level: int) -> None:
        """Build ``level`` with the level's own generator; the episode generator is untouched."""
        episode_rng = self.np_random
        try:
            if self.content_split:
                self._generate_on_side(level)
            else:
                # -v1 builds the -v0 levels: one generator key per family, whatever the version.
                self._np_random = level_rng(fixed_start_id(self.family), level)
                super().reset()
        finally:
            self._np_random = episode_rng

    def _generate_on_side(self, level: int) -> None:
        """The first generation of ``level`` whose content lies on the level's side of the split."""
        key = (self.family, int(level))
        known = _CONTENT_ATTEMPTS.get(key)
        attempts = range(MAX_CONTENT_ATTEMPTS) if known is None else (known,)
        test = bool(np.isin(level, self.splits()["test"]))
        for attempt in attempts:
            self._np_random = level_rng(self.family, level, attempt)
            super().reset()
            if known is not None or self._content_is_test() == test:
                _CONTENT_ATTEMPTS[key] = attempt
                return
        side = "test" if test else "train"
        raise RuntimeError(f"{self.family}: no content on the {side} side for level {level}")

    def _content_is_test(self) -> bool:
        digest = content_digest(self._content_parts())
        return content_is_test(digest, self.n_levels, self.n_test_levels)

    def _build_level(self, level: int) -> None:
        self._generate(level)

    def _content_parts(self) -> list[bytes | str]:
        grid = self.grid.encode()  # every cell's object, color and state; the agent is not a cell
        return [repr(grid.shape), grid.tobytes(), self._true_mission()]

    def _true_mission(self) -> str:
        """The mission the level fixes (what a family that withholds it still hashes)."""
        return str(self.mission)

    def _draw_start(self) -> tuple[tuple[int, int], int]:
        """One draw from the episode's RNG, uniform over the family's valid start poses."""
        poses = [
            (cell, d)
            for cell in self._start_cells()
            for d in range(4)
            if self._start_pose_ok(cell, d)
        ]
        if not poses:
            raise RuntimeError(f"{self.family} level {self.level} has no valid start pose")
        return poses[int(self.np_random.integers(len(poses)))]

    def _place_start(self) -> dict[str, Any]:
        """Put the agent on this episode's start pose (if drawn); the first observation."""
        if self._start is not None:
            self.agent_pos, self.agent_dir = self._start
        return self.gen_obs()

    @abstractmethod
    def _start_cells(self) -> list[tuple[int, int]]:
        """Cells an episode of the current level may start on (the family's constraint)."""

    def _start_pose_ok(self, cell: tuple[int, int], direction: int) -> bool:
        """Whether facing ``direction`` on ``cell`` is a valid start (families add rules)."""
        return True

    def _empty_cells(self, top: tuple[int, int], size: tuple[int, int]) -> list[tuple[int, int]]:
        """Cells holding nothing (no wall, object, door or goal) in a rectangle of the grid."""
        x0, y0 = max(top[0], 0), max(top[1], 0)
        x1, y1 = min(top[0] + size[0], self.grid.width), min(top[1] + size[1], self.grid.height)
        return [(x, y) for y in range(y0, y1) for x in range(x0, x1) if self.grid.get(x, y) is None]

    def _front_is_clear(self, cell: tuple[int, int], direction: int) -> bool:
        """RoomGrid's start rule: the agent does not start right in front of an object."""
        dx, dy = ((1, 0), (0, 1), (-1, 0), (0, -1))[direction]
        front = self.grid.get(cell[0] + dx, cell[1] + dy)
        return front is None or front.type == "wall"

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

    @classmethod
    def step_events(cls, obs, actions, rewards) -> dict[str, np.ndarray]:
        return minigrid_step_events(obs, actions, rewards)

    @property
    def mission_text(self) -> str:
        return str(self.mission)


class BabyAILevelMixin(MiniGridLevelMixin):
    """:class:`MiniGridLevelMixin` for BabyAI ``RoomGridLevel`` classes.

    Generation is BabyAI's rejection sampling (resample the room and mission until the mission is
    valid), all drawn from the level's generator, minus the line BabyAI prints to stdout for every
    rejected sample.

    A start pose is any empty cell of the level's room from which every object is reachable
    without moving another (BabyAI's ``check_objs_reachable``), not right in front of an object
    (RoomGrid's rule), from which the mission denotes the same objects as from the level's own
    start: "the ball on your left" is relative to the agent's start pose, and BabyAI's verifier
    reads it from there.

    With :attr:`content_split` (the ``-v2`` ids and the families new in suite 3) verification is
    strict (:mod:`trajbench.envs.minigrid_strict`): the first object the success rule touches
    ends the episode, a success only if the mission accepts it.
    """

    has_mission = True
    demo_decoder = "final_object"
    query_solver = "mission"
    _decoy: DecoyTracker

    def __init__(self, *args, **kwargs):
        self._decoy = DecoyTracker()
        super().__init__(*args, **kwargs)

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

    def _mission_objects(self) -> list[frozenset[int]]:
        """Per located object description of the mission, the objects it denotes from here."""
        # Only a description with a location ("on your left") depends on the agent's pose.
        descs = [d for d in vars(self.instrs).values() if isinstance(d, ObjDesc) and d.loc]
        # A fresh ObjDesc: find_matching_objs overwrites the description's tracked objects.
        return [
            frozenset(map(id, ObjDesc(d.type, d.color, d.loc).find_matching_objs(self)[0]))
            for d in descs
        ]

    def _draw_start(self) -> tuple[tuple[int, int], int]:
        self._level_mission_objects = self._mission_objects()
        return super()._draw_start()

    def _start_cells(self) -> list[tuple[int, int]]:
        room = self.room_from_pos(*self.agent_pos)
        cells = []
        for cell in self._empty_cells(room.top, room.size):
            self.agent_pos = cell
            if self.check_objs_reachable(raise_exc=False):
                cells.append(cell)
        return cells

    def _start_pose_ok(self, cell: tuple[int, int], direction: int) -> bool:
        if not self._front_is_clear(cell, direction):
            return False
        self.agent_pos, self.agent_dir = cell, direction
        return self._mission_objects() == self._level_mission_objects

    def _place_start(self) -> dict[str, Any]:
        obs = super()._place_start()
        if self._start is not None:
            self.instrs.reset_verifier(self)  # the verifier reads the mission from the start pose
        return obs

    @property
    def strict(self) -> bool:
        """Whether a wrong object ends the episode as a failure (strict verification)."""
        return self.content_split

    def _true_mission(self) -> str:
        return str(self.surface)

    def _on_reset(self) -> None:
        super()._on_reset()
        self._decoy.reset(self)

    def mission_chance(self) -> float:
        """The instruction ablation's random-guess reference for the current level: how likely an
        agent that acts on a uniformly random object of the room (a random pair for "put next
        to") satisfies the mission."""
        return mission_chance(self)

    def draw_decoy(self, rng: np.random.Generator) -> str | None:
        """Draw a decoy mission for the current level (see :mod:`trajbench.envs.minigrid_decoys`);
        from now on every episode of this level reports ``info["decoy_success"]``. Returns the
        decoy's text, or None when the level has no object to name."""
        return self._decoy.draw(self, rng)

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        reached = self._decoy.step(self._prev_action)
        if reached is not None:
            info["decoy_success"] = reached
        if self.strict and not terminated and wrong_touch(self, self.instrs):
            terminated, reward = True, 0.0
        return obs, reward, terminated, truncated, info

    def _restart_level(self) -> None:
        """Rebuild the current level in this episode's initial state (same grid, mission, start)."""
        self._generate(self.level)
        self._place_start()

    def _base_step(self, action: int) -> None:
        """Execute ``action`` in the BabyAI environment itself: no sticky actions, no recording."""
        super(MiniGridLevelMixin, self).step(action)

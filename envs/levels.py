"""Level control shared by every trajbench family.

A *level* is one fixed instance of a family (layout, hidden goal, mission) named by an integer in
``range(n_levels)``. The same (family, level) always builds the same instance; an *episode* draws
the rest (e.g. the agent's start) from its own RNG, seeded by ``reset(seed=...)``, so the
demonstrations of one level differ. Each family states both in words
(:attr:`LevelMixin.level_fixes`, :attr:`LevelMixin.episode_draws`) and decodes what a stored
episode achieved (:meth:`LevelMixin.step_events`). Each family splits its levels into ``train``
and ``test`` with :func:`split_levels`: a seeded permutation, versioned by :data:`SPLIT_VERSION`,
so the split never changes silently.

A level *is* its content: :meth:`LevelMixin.content_hash` hashes everything a level fixes (grid,
objects, doors, mission, hidden targets; never the start pose). A family whose level numbers
could name one content twice draws its levels so that a content's side of the split is a
function of the content itself (:func:`content_is_test`): no test level is a training level
under another number (see ``docs/levels.md``).

Every family class mixes in :class:`LevelMixin`, which gives it the ``levels=`` constructor
argument, ``reset(options={"level": L})``, ``env.unwrapped.level`` and sticky actions.
"""

from __future__ import annotations

import copy
import hashlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np

#: Bump when a split rule changes; recorded in datasets, results and leaderboard entries.
SPLIT_VERSION = 1
_SPLIT_SALT = 0x7B5E  # fixed salt so splits do not depend on any user seed

LevelsArg = str | Sequence[int]
#: The in-context decoders a family may name in ``demo_decoder``.
DEMO_DECODERS = ("goal_cell", "ordered_cells", "final_object")
#: The query-only solvers a family may name in ``query_solver``.
QUERY_SOLVERS = ("sweep", "explore", "mission")


def content_digest(parts: Sequence[bytes | str]) -> str:
    """MD5 hex digest of a level's content parts (each length-prefixed, so parts cannot blur).

    Example:
        >>> content_digest(["ab", "c"]) != content_digest(["a", "bc"])
        True
    """
    h = hashlib.md5()
    for part in parts:
        raw = part.encode() if isinstance(part, str) else bytes(part)
        h.update(len(raw).to_bytes(8, "little"))
        h.update(raw)
    return h.hexdigest()


def content_is_test(digest: str, n_levels: int, n_test: int) -> bool:
    """Whether a content belongs to the test side: its hash modulo ``n_levels`` is below
    ``n_test``, so the test side holds that share of all contents and every level number of
    one content lands on the same side.

    Example:
        >>> content_is_test("0" * 32, 10_000, 1_000), content_is_test("f" * 32, 10_000, 1_000)
        (True, False)
    """
    return int(digest[:15], 16) % n_levels < n_test


@dataclass(frozen=True)
class ObsEncoding:
    """How a family's observation becomes the flat integer vector stored and fed to models.

    Families that share an encoding (same name, feature sizes and action count) can be mixed in
    one training set, and a model trained on some of them can be evaluated on the others.

    Attributes:
        name: Encoding name, e.g. ``"dark"`` or ``"minigrid"``.
        feature_sizes: Number of distinct values of each feature (feature ``i`` lies in
            ``range(feature_sizes[i])``).
        n_actions: Size of the discrete action space.
    """

    name: str
    feature_sizes: tuple[int, ...]
    n_actions: int

    @property
    def n_features(self) -> int:
        return len(self.feature_sizes)


@cache
def split_levels(n_levels: int, n_test: int, version: int = SPLIT_VERSION) -> dict[str, np.ndarray]:
    """Deterministic, disjoint train/test split of ``range(n_levels)``.

    Args:
        n_levels: Number of levels of the family.
        n_test: How many of them are held out for testing.
        version: Split rule version (only ``1`` exists).

    Returns:
        ``{"train": sorted int array, "test": sorted int array, "all": arange}``.

    Example:
        >>> s = split_levels(81, 16)
        >>> len(s["train"]), len(s["test"]), set(s["train"]) & set(s["test"])
        (65, 16, set())
    """
    if version != 1:
        raise ValueError(f"unknown split version {version}; this trajbench knows version 1")
    if not 0 < n_test < n_levels:
        raise ValueError(f"n_test must be in 1..{n_levels - 1}, got {n_test}")
    perm = np.random.default_rng([_SPLIT_SALT, version, n_levels, n_test]).permutation(n_levels)
    test = np.sort(perm[:n_test])
    train = np.sort(perm[n_test:])
    for a in (test, train):
        a.setflags(write=False)
    everything = np.arange(n_levels)
    everything.setflags(write=False)
    return {"train": train, "test": test, "all": everything}


class LevelMixin(ABC):
    """Level selection, level reading and sticky actions for a family environment.

    Subclasses set the class attributes below and call :meth:`_init_levels` in ``__init__``,
    :meth:`_select_level` at the start of ``reset`` and :meth:`_sticky` at the start of ``step``.
    """

    #: Registered id without namespace, e.g. ``"DarkRoom-v0"``.
    family: str = ""
    #: Number of levels; valid levels are ``range(n_levels)``.
    n_levels: int = 0
    #: How many levels the test split holds.
    n_test_levels: int = 0
    #: Observation encoding shared with the episode store and the models.
    encoding: ObsEncoding
    #: Short description of the expert, shown by ``trajbench envs``.
    expert_name: str = ""
    #: Whether episodes carry a natural-language mission.
    has_mission: bool = False
    #: What a level fixes, in words (shown by ``trajbench envs``).
    level_fixes: str = ""
    #: What each episode draws from its own RNG, in words.
    episode_draws: str = ""
    #: A note shown next to the version by ``trajbench envs`` (e.g. an older suite's behaviour).
    version_note: str = ""
    #: Actions that interact with objects (pickup, drop, toggle); the others move or turn.
    interaction_actions: tuple[int, ...] = ()
    #: Every action in words, by action id (the text track's actions).
    action_words: tuple[str, ...] = ()
    #: How the family's in-context decoder (``trajbench.baselines.DecoderPolicy``) reads the
    #: demonstrations: ``"goal_cell"`` (walk to the cell where a demonstration succeeded),
    #: ``"ordered_cells"`` (visit the rewarded cells in the demonstrated order) or
    #: ``"final_object"`` (go to and act on the object the demonstrations ended at). Every family
    #: names one (:data:`DEMO_DECODERS`).
    demo_decoder: str = ""
    #: The family's best policy without context (``trajbench.baselines.QueryOnlyPolicy``):
    #: ``"sweep"`` (visit the nearest unvisited cell), ``"explore"`` (explore the view until the
    #: goal is seen, then go to it) or ``"mission"`` (the expert: the mission and view name the
    #: target). One of :data:`QUERY_SOLVERS`.
    query_solver: str = ""

    level: int

    def _init_levels(self, levels: LevelsArg = "all", sticky_p: float = 0.0) -> None:
        if not 0.0 <= float(sticky_p) < 1.0:
            raise ValueError(f"sticky_p must be in [0, 1), got {sticky_p}")
        self.sticky_p = float(sticky_p)
        self.allowed_levels = self.resolve_levels(levels)  # sorted: membership by binary search
        self.level = int(self.allowed_levels[0])
        self._prev_action: int | None = None

    def splits(self) -> dict[str, np.ndarray]:
        """The family's ``train`` / ``test`` / ``all`` level arrays."""
        return split_levels(self.n_levels, self.n_test_levels)

    def resolve_levels(self, levels: LevelsArg) -> np.ndarray:
        """Turn ``"train" | "test" | "all" | [ints]`` into a sorted array of valid levels.

        Raises:
            ValueError: unknown split name, empty list, or a level outside ``range(n_levels)``.
        """
        if isinstance(levels, str):
            splits = self.splits()
            if levels not in splits:
                raise ValueError(
                    f"unknown level split {levels!r}; expected 'train', 'test', 'all' or a list of ints"
                )
            return splits[levels]
        arr = np.asarray(list(levels))
        if arr.size == 0:
            raise ValueError("levels list is empty")
        if not np.issubdtype(arr.dtype, np.integer):
            raise ValueError(f"levels must be integers, got {list(levels)[:5]}")
        bad = arr[(arr < 0) | (arr >= self.n_levels)]
        if bad.size:
            raise ValueError(
                f"level {int(bad[0])} is out of range for {self.family}: levels are 0..{self.n_levels - 1}"
            )
        return np.unique(arr)

    def _select_level(self, options: dict | None) -> int:
        """Pick the level for this reset: ``options["level"]`` or a draw from ``self.np_random``."""
        if options and options.get("level") is not None:
            raw = options["level"]
            if isinstance(raw, bool) or not isinstance(raw, int | np.integer):
                raise ValueError(f"options['level'] must be an int, got {raw!r}")
            level = int(raw)
            if not 0 <= level < self.n_levels:
                raise ValueError(
                    f"level {level} is out of range for {self.family}: levels are 0..{self.n_levels - 1}"
                )
            i = int(np.searchsorted(self.allowed_levels, level))
            if i == len(self.allowed_levels) or self.allowed_levels[i] != level:
                raise ValueError(
                    f"level {level} of {self.family} is not among this environment's levels; "
                    "construct it with levels='all' (or the right split) to use it"
                )
        else:
            idx = int(self.np_random.integers(len(self.allowed_levels)))
            level = int(self.allowed_levels[idx])
        self.level = level
        self._prev_action = None
        return level

    def _sticky(self, action: int) -> int:
        """With probability ``sticky_p`` repeat the previous action instead of ``action``."""
        sticky = self.sticky_p > 0.0 and self._prev_action is not None
        if sticky and self.np_random.random() < self.sticky_p:
            action = self._prev_action
        self._prev_action = int(action)
        return int(action)

    @abstractmethod
    def encode_obs(self, obs) -> np.ndarray:
        """Flat ``uint8`` feature vector of ``obs`` under :attr:`encoding`."""

    @abstractmethod
    def expert_action(self) -> int:
        """The expert's next action from the current (privileged) state; closed loop."""

    @classmethod
    @abstractmethod
    def obs_text(cls, obs: np.ndarray) -> str:
        """One encoded observation (:meth:`encode_obs`'s output) in words, for the text track:
        short and deterministic; families that share an encoding read it alike."""

    def content_hash(self, level: int) -> str:
        """Hash of everything ``level`` fixes (its content); the start pose is not part of it.

        Builds the level on a shallow copy, so the current episode is untouched. Two level
        numbers with the same hash are the same level.

        Raises:
            ValueError: ``level`` is outside ``range(n_levels)``.
        """
        self.resolve_levels([level])
        scratch = copy.copy(self)
        scratch.level = int(level)
        scratch._build_level(int(level))
        return content_digest(scratch._content_parts())

    @abstractmethod
    def _build_level(self, level: int) -> None:
        """Build ``level``'s fixed content on this object (the episode's start is not drawn)."""

    @abstractmethod
    def _content_parts(self) -> list[bytes | str]:
        """What the built level fixes, as bytes or text (hashed by :meth:`content_hash`)."""

    @property
    def mission_text(self) -> str:
        """The current level's mission ('' for families without one)."""
        return ""

    @classmethod
    def step_events(cls, obs, actions, rewards) -> dict[str, np.ndarray]:
        """What each step of one stored episode achieved: boolean arrays of its length.

        Args:
            obs: ``[L, F]`` encoded observations (``obs[t]`` is what action ``t`` was chosen on;
                the observation after the last action is not stored).
            actions: ``[L]`` actions as stored (the demonstrator's choices).
            rewards: ``[L]`` rewards that followed them.

        Returns:
            ``{"goal_reached": ...}`` (a rewarded goal step); families add their own events
            (``key_pickup``, ``door_opened``, ...).

        Example:
            >>> LevelMixin.step_events(np.zeros((3, 2)), [0, 1, 2], [0.0, 0.0, 1.0])
            {'goal_reached': array([False, False,  True])}
        """
        return {"goal_reached": np.asarray(rewards) > 0}

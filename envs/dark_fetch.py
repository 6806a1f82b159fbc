"""Dark Fetch: fetch hidden waypoints back to a hub in a hidden order; shuffling loses the order.

A level is an ordered sequence of ``n_waypoints`` (3) distinct hidden cells of a ``size x size``
grid (default 7x7) around a *hub*, the centre cell. The agent observes only its ``(x, y)``. It must
reach the hub, then for each waypoint in order go out to it and come back to the hub: reward 1
for entering each of these targets in turn (hub, first waypoint, hub, second, hub, third, hub);
the last one ends the episode as a success. Entering a waypoint out of turn (one not visited yet
that is not the current target) ends the episode as a failure. A policy that knows the cells but
not their order succeeds ``1 / n_waypoints!`` of the time (:func:`oracle_success`).

**Why shuffling loses the order.** The expert's spokes are fixed paths: out from the hub along
``x`` then ``y``, back along the same cells reversed. A level's waypoints never lie on one
another's spoke (levels that would are skipped), so a spoke never depends on when it is walked.
An expert episode is then the start's walk to the hub followed by the three spokes, and the
*multiset* of its ``(observation, action, reward)`` steps is the same for every order of the same
waypoints. Shuffled steps carry the set, never the order: no decoder of shuffled contexts can beat
the order-free oracle, while whole demonstrations show it (tested in ``tests/test_dark_fetch.py``).
Dark Sequence, whose paths run one way, lets a chain decoder rebuild the order from shuffled
steps (see ``docs/certificates.md``).

Example:
    >>> import gymnasium as gym, trajbench
    >>> env = gym.make("trajbench/DarkFetch-v0", levels="test")
    >>> obs, info = env.reset(seed=0)
    >>> obs, reward, terminated, truncated, info = env.step(env.unwrapped.expert_action())
"""

from __future__ import annotations

from functools import cache

import gymnasium as gym
import numpy as np

from .dark_grid import DOWN, LEFT, NOOP, RIGHT, UP, DarkGridEnv, cell_of, step_toward
from .dark_render import GOAL, VISITED, WAYPOINT, Mark
from .levels import LevelsArg

#: Waypoints per level of the registered family.
DEFAULT_WAYPOINTS = 3


def spoke(hub: np.ndarray, end: np.ndarray) -> list[tuple[int, int]]:
    """The cells of the spoke from ``hub`` to ``end``: along ``x``, then ``y`` (hub excluded).

    Example:
        >>> spoke(np.array([1, 1]), np.array([3, 0]))
        [(2, 1), (3, 1), (3, 0)]
    """
    cells, pos = [], np.asarray(hub, dtype=np.int64).copy()
    while not np.array_equal(pos, end):
        pos = pos + np.eye(2, dtype=np.int64)[0 if pos[0] != end[0] else 1] * np.sign(end - pos)
        cells.append((int(pos[0]), int(pos[1])))
    return cells


def step_back(pos: np.ndarray, hub: np.ndarray) -> int:
    """The move back along a spoke: close the ``y`` gap first, then ``x`` (``spoke`` reversed)."""
    dx, dy = int(hub[0] - pos[0]), int(hub[1] - pos[1])
    if dy:
        return DOWN if dy > 0 else UP
    if dx:
        return RIGHT if dx > 0 else LEFT
    return NOOP


@cache
def fetch_levels(size: int, n_waypoints: int) -> np.ndarray:
    """``[n_levels, n_waypoints]`` cell indices of every level, in lexicographic order.

    A level is an ordered tuple of distinct cells other than the hub, none on another's spoke.
    """
    n = size * size
    hub = cell_of(n // 2, size) if size % 2 else np.array([size // 2, size // 2])
    hub_cell = int(hub[1] * size + hub[0])
    on_spoke = np.zeros((n, n), dtype=bool)  # on_spoke[w, c]: c lies on w's spoke before w
    for w in range(n):
        for x, y in spoke(hub, cell_of(w, size))[:-1]:
            on_spoke[w, y * size + x] = True
    tuples = np.indices((n,) * n_waypoints).reshape(n_waypoints, -1).T
    ok = (tuples != hub_cell).all(axis=1)
    for i in range(n_waypoints):
        for j in range(n_waypoints):
            if i != j:
                ok &= tuples[:, i] != tuples[:, j]
                ok &= ~on_spoke[tuples[:, i], tuples[:, j]]
    levels = tuples[ok].astype(np.int64)
    levels.setflags(write=False)
    return levels


class DarkFetchEnv(DarkGridEnv):
    """Single Dark Fetch; see the module docstring.

    Attributes:
        hub: ``(x, y)`` of the hub (the centre cell).
        waypoints: ``[n_waypoints, 2]`` the level's waypoints as ``(x, y)``, in order.
        stage: How many targets (hub, waypoint, hub, ...) have been reached.
    """

    family = "DarkFetch-v0"
    expert_name = "to the hub, then out along each spoke and back, in the level's order"
    n_waypoints = DEFAULT_WAYPOINTS
    level_fixes = f"the ordered sequence of {DEFAULT_WAYPOINTS} hidden waypoint cells"
    episode_draws = "the start cell (off the hub and waypoints, its walk to the hub avoiding them)"
    encoding_name = "dark-fetch"
    demo_decoder = "ordered_cells"
    query_solver = "sweep"
    #: Every order of a waypoint set gives the same multiset of expert steps: a bursty-vs-shuffled
    #: gap here is information (the chain decoder on shuffled steps is at the oracle).
    order_gap = "information"
    default_size = 7
    default_max_steps = 48

    def __init__(
        self,
        levels: LevelsArg = "all",
        size: int = 7,
        max_steps: int | None = None,
        sticky_p: float = 0.0,
        render_mode: str | None = None,
        render_hidden: bool = False,
    ):
        if size < 3 or size % 2 == 0:
            raise ValueError(f"size must be odd and >= 3 (the hub is the centre), got {size}")
        self.table = fetch_levels(size, self.n_waypoints)
        self.hub = np.array([size // 2, size // 2], dtype=np.int64)
        super().__init__(levels, size, max_steps, sticky_p, render_mode, render_hidden)

    @classmethod
    def count_levels(cls, size: int) -> int:
        return len(fetch_levels(size, cls.n_waypoints))

    def _set_level(self) -> None:
        self.waypoints = cell_of(self.table[self.level], self.size)
        self.targets = tour(self.hub, self.waypoints)
        self.stage = 0

    def _draw_start(self) -> np.ndarray:
        marked = {tuple(self.hub), *map(tuple, self.waypoints.tolist())}
        starts = [
            (x, y)
            for y in range(self.size)
            for x in range(self.size)
            if (x, y) not in marked
            and not marked.intersection(spoke(np.array([x, y]), self.hub)[:-1])
        ]
        return np.array(starts[int(self.np_random.integers(len(starts)))], dtype=np.int64)

    def _task_step(self) -> tuple[float, bool, bool]:
        pos = tuple(self.pos.tolist())
        if tuple(self.targets[self.stage].tolist()) == pos:
            self.stage += 1
            done = self.stage == len(self.targets)
            return 1.0, done, done
        ahead = self.waypoints[(self.stage + 1) // 2 :]  # not visited yet
        if any(tuple(w) == pos for w in ahead.tolist()):
            return 0.0, True, False  # a waypoint out of turn
        return 0.0, False, False

    def expert_action(self) -> int:
        return tour_action(self.pos, self.targets, self.stage)

    def _hidden_marks(self) -> list[Mark]:
        visited = self.stage // 2
        marks = [Mark(tuple(self.hub), GOAL)]
        return marks + [
            Mark(tuple(cell), VISITED if i < visited else WAYPOINT, label=i + 1)
            for i, cell in enumerate(self.waypoints)
        ]

    @classmethod
    def step_events(cls, obs, actions, rewards) -> dict[str, np.ndarray]:
        """``target``: the step entered the next target (hub or waypoint); ``goal_reached``: it
        completed the tour."""
        hit = np.asarray(rewards) > 0
        return {"target": hit, "goal_reached": hit & (np.cumsum(hit) == 2 * cls.n_waypoints + 1)}


def tour_action(pos: np.ndarray, targets: np.ndarray, stage: int) -> int:
    """The expert's move at ``stage`` of the tour ``targets`` (hub, waypoint, hub, ...): out
    along a spoke (``x`` first), back along it reversed (``y`` first); stay once done."""
    if stage >= len(targets):
        return NOOP
    if stage and stage % 2 == 0:
        return step_back(pos, targets[stage])
    return int(step_toward(pos, targets[stage]))


def tour(hub: np.ndarray, waypoints: np.ndarray) -> np.ndarray:
    """``[2 n + 1, 2]`` the targets of a tour: the hub, then each waypoint and the hub again."""
    return np.stack([hub, *[c for w in waypoints for c in (w, hub)]])


def oracle_success(env: gym.Env, episodes: int, seed: int = 0, knows_order: bool = False) -> float:
    """Success of the expert's tour over a guessed order of the level's waypoints (uniformly
    random, or the true one with ``knows_order``): what knowing the cells, not the order, is
    worth (``1 / n_waypoints!``).

    Example:
        >>> import gymnasium as gym, trajbench
        >>> env = gym.make("trajbench/DarkFetch-v0", levels="test")
        >>> oracle_success(env, episodes=20, knows_order=True)
        1.0
    """
    u = env.unwrapped
    rng = np.random.default_rng(seed)
    wins = 0
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed if episode == 0 else None)
        order = np.arange(u.n_waypoints) if knows_order else rng.permutation(u.n_waypoints)
        targets, stage = tour(u.hub, u.waypoints[order]), 0
        info, done = {}, False
        while not done:
            obs, _, terminated, truncated, info = env.step(tour_action(obs, targets, stage))
            stage += int(np.array_equal(obs, targets[min(stage, len(targets) - 1)]))
            done = terminated or truncated
        wins += bool(info["success"])
    return wins / episodes

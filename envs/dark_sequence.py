"""Dark Sequence: visit hidden waypoints in a hidden order; the order is the lesson.

A level is an ordered sequence of ``n_waypoints`` distinct hidden cells on a ``size x size`` grid
(default 7x7, 3 waypoints). The agent starts on a random cell off the waypoints and observes only
its ``(x, y)``. Entering the next waypoint gives reward 1; entering a *later* waypoint early ends
the episode as a failure; re-entering a visited waypoint does nothing. Visiting every waypoint in
order ends the episode as a success. Knowing the set of cells is not enough: a policy that knows
the set but guesses the order succeeds ``1 / n_waypoints!`` of the time (:func:`oracle_success`).

**What a bursty-vs-shuffled gap here measures.** Shuffled steps still hold the order: moves are
deterministic and the observation is the position, so each step ``(o, a)`` names the next
observation and the steps chain back into paths. The chain decoder of
:mod:`trajbench.analysis.order` reads the order from shuffled steps on most test levels (figures
and command in ``docs/certificates.md``), so a gap between ``bursty`` and ``shuffled`` training
here measures what a model learns more easily at equal information, not information. The family
where shuffling loses the order is Dark Fetch (:mod:`trajbench.envs.dark_fetch`).

Levels number the *solvable* sequences in lexicographic order of their cell indices
(``cell = y * size + x``), skipping those where some waypoint cannot be reached without entering a
later one (a corner whose two neighbours are later waypoints): 110,536 levels on 7x7 with 3
waypoints. The default ``max_steps`` is the expert's longest episode over every level and every
valid start, computed from the same distance fields the expert walks.

Example:
    >>> import gymnasium as gym, trajbench
    >>> env = gym.make("trajbench/DarkSequence-v0", levels="test")
    >>> obs, info = env.reset(seed=0)
    >>> obs, reward, terminated, truncated, info = env.step(env.unwrapped.expert_action())
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from math import comb

import gymnasium as gym
import numpy as np

from .dark_grid import N_ACTIONS, DarkGridEnv, DarkGridVectorEnv, cell_of, move
from .dark_render import VISITED, WAYPOINT, Mark
from .levels import LevelsArg

#: Waypoints per level of the registered family (``step_events`` reads stored episodes with it).
DEFAULT_WAYPOINTS = 3
#: Refuse instances whose distance tables would exceed this many cells (about 50 MB of int16).
MAX_TABLE_CELLS = 25_000_000


@cache
def _neighbours(size: int) -> np.ndarray:
    """``[cells, 5]``: the cell each action leads to from each cell (walls clip, as in ``move``)."""
    cells = np.arange(size * size)
    after = move(cell_of(cells, size)[:, None, :], np.arange(N_ACTIONS)[None, :], size)
    return after[..., 1] * size + after[..., 0]


def distance_fields(size: int, targets: np.ndarray, blocked: np.ndarray) -> np.ndarray:
    """BFS distances to each target over the grid minus its blocked cells.

    Args:
        size: Grid side.
        targets: ``[F]`` target cells.
        blocked: ``[F, m]`` cells that may not be entered (never a target).

    Returns:
        ``[F, size * size]`` int16 steps to the target; ``size * size`` (more than any path) where
        the target cannot be reached, blocked cells included.
    """
    n, far = len(targets), size * size
    rows = np.arange(n)
    # Cells lead, fields trail: the four shifts below then copy contiguous blocks.
    dist = np.full((far, n), far, dtype=np.int16)
    dist[targets, rows] = 0
    wall = np.zeros((far, n), dtype=np.int16)
    wall[blocked, rows[:, None]] = far
    dist, wall = dist.reshape(size, size, n), wall.reshape(size, size, n)  # [y, x, field]
    while True:
        step, new = dist + 1, dist.copy()
        np.minimum(new[1:], step[:-1], out=new[1:])
        np.minimum(new[:-1], step[1:], out=new[:-1])
        np.minimum(new[:, 1:], step[:, :-1], out=new[:, 1:])
        np.minimum(new[:, :-1], step[:, 1:], out=new[:, :-1])
        np.maximum(new, wall, out=new)
        if np.array_equal(new, dist):
            return np.ascontiguousarray(dist.reshape(far, n).T)
        dist = new


def cell_index(pos: np.ndarray, size: int) -> np.ndarray:
    """``(x, y)`` positions ``[..., 2]`` -> cell indices ``y * size + x`` (inverse of ``cell_of``)."""
    pos = np.asarray(pos)
    return pos[..., 1] * size + pos[..., 0]


def _keys(targets: np.ndarray, blocked: np.ndarray, n_cells: int) -> np.ndarray:
    """One int64 per (target, blocked set): target, then sorted blocked cells, base ``n_cells``."""
    key = np.asarray(targets, dtype=np.int64)
    for column in np.sort(np.asarray(blocked, dtype=np.int64), axis=1).T:
        key = key * n_cells + column
    return key


@dataclass(frozen=True, eq=False)
class SequenceTables:
    """Every level of one ``(size, n_waypoints)`` instance and the distance fields of its expert.

    Attributes:
        size: Grid side.
        waypoints: ``[n_levels, n_waypoints]`` cells of each level's sequence, in level order.
        longest_episode: The expert's longest episode over every level and valid start.
        keys: Per number ``m`` of blocked cells, the sorted keys of every (target, blocked set).
        fields: Per ``m``, the distance field of each key (rows aligned with ``keys[m]``).
    """

    size: int
    waypoints: np.ndarray
    longest_episode: int
    keys: tuple[np.ndarray, ...]
    fields: tuple[np.ndarray, ...]

    def field(self, targets: np.ndarray, blocked: np.ndarray) -> np.ndarray:
        """``[F, cells]`` distances to ``targets[F]`` avoiding ``blocked[F, m]``."""
        blocked = np.asarray(blocked).reshape(len(targets), -1)
        m = blocked.shape[1]
        rows = np.searchsorted(self.keys[m], _keys(targets, blocked, self.size**2))
        return self.fields[m][rows]

    def next_actions(self, targets: np.ndarray, blocked: np.ndarray, at: np.ndarray) -> np.ndarray:
        """``[F]`` first steps of shortest paths from ``at`` to ``targets`` avoiding ``blocked``.

        Ties go to the lowest action id (stay, up, down, left, right); stay only where there is
        no path.
        """
        ahead = _neighbours(self.size)[np.asarray(at)]
        return np.take_along_axis(self.field(targets, blocked), ahead, axis=1).argmin(axis=1)

    def start_cells(self, waypoints: np.ndarray) -> np.ndarray:
        """``[F, cells]`` bool: the valid starts of each sequence ``waypoints[F, n]``.

        A valid start is off the waypoints and reaches the first one without entering a later one
        (the rest of a solvable sequence then follows).
        """
        dist = self.field(waypoints[:, 0], waypoints[:, 1:])
        return (dist > 0) & (dist < self.size**2)


@cache
def sequence_tables(size: int, n_waypoints: int) -> SequenceTables:
    """Enumerate the solvable sequences of ``(size, n_waypoints)`` and their distance fields.

    Raises:
        ValueError: the instance is too small to hold a start, or too large to tabulate.
    """
    n, n_cells = n_waypoints, size * size
    if not 1 <= n < n_cells:
        raise ValueError(
            f"n_waypoints must be in 1..{n_cells - 1} on a {size}x{size} grid, got {n}"
        )
    table_cells = sum(n_cells * comb(n_cells - 1, m) * n_cells for m in range(n))
    if table_cells > MAX_TABLE_CELLS:
        raise ValueError(
            f"size={size}, n_waypoints={n} needs {table_cells:,} distance-table cells; the limit "
            f"is {MAX_TABLE_CELLS:,}: use a smaller grid or fewer waypoints"
        )
    tuples = np.indices((n_cells,) * n).reshape(n, -1).T  # every n-tuple, lexicographic
    distinct = np.ones(len(tuples), dtype=bool)
    for i in range(n):
        for j in range(i + 1, n):
            distinct &= tuples[:, i] != tuples[:, j]
    seqs = tuples[distinct]
    solvable = np.ones(len(seqs), dtype=bool)
    longest = np.zeros(len(seqs), dtype=np.int64)  # expert steps from the worst valid start
    keys, fields = [None] * n, [None] * n
    for stage in range(n):
        m = n - 1 - stage  # the later waypoints are blocked
        key = _keys(seqs[:, stage], seqs[:, stage + 1 :], n_cells)
        keys[m], first, inverse = np.unique(key, return_index=True, return_inverse=True)
        fields[m] = distance_fields(size, seqs[first, stage], seqs[first, stage + 1 :])
        if stage == 0:  # from the farthest cell that reaches the first waypoint
            steps = np.where(fields[m] < n_cells, fields[m], -1).max(axis=1)[inverse]
            solvable &= steps > 0
        else:  # from the previous waypoint
            steps = fields[m][inverse, seqs[:, stage - 1]]
            solvable &= steps < n_cells
        longest += steps
    if not solvable.any():
        raise ValueError(f"no solvable sequence of {n} waypoints on a {size}x{size} grid")
    for table in fields:
        table.setflags(write=False)
    waypoints = seqs[solvable].astype(np.int64)
    waypoints.setflags(write=False)
    return SequenceTables(size, waypoints, int(longest[solvable].max()), tuple(keys), tuple(fields))


def draw_starts(rng: np.random.Generator, valid: np.ndarray) -> np.ndarray:
    """One uniformly drawn cell per row of the bool mask ``valid[F, cells]``."""
    k = rng.integers(valid.sum(axis=1))
    return (valid.cumsum(axis=1) > k[:, None]).argmax(axis=1)


class DarkSequenceEnv(DarkGridEnv):
    """Single Dark Sequence; see the module docstring.

    ``render_mode="rgb_array"`` draws the grid and the agent; ``render_hidden=True`` adds
    the numbered waypoints (grey once visited) (see :mod:`trajbench.envs.dark_render`).

    Attributes:
        waypoints: ``[n_waypoints, 2]`` the level's waypoint cells as ``(x, y)``, in order.
        stage: How many waypoints have been visited.
    """

    family = "DarkSequence-v0"
    expert_name = "shortest path to the next waypoint avoiding the later ones"
    n_waypoints = DEFAULT_WAYPOINTS
    level_fixes = f"the ordered sequence of {DEFAULT_WAYPOINTS} hidden waypoint cells"
    episode_draws = "the start cell (off the waypoints, one the sequence is solvable from)"
    interaction_actions: tuple[int, ...] = ()
    encoding_name = "dark-sequence"
    demo_decoder = "ordered_cells"
    query_solver = "sweep"
    #: Positions are deterministic and unaliased, so each shuffled step (o, a) names the next
    #: observation and a chain decoder rebuilds the order (it succeeds on 0.89 of the test levels
    #: at K = 1, 0.85 at K = 4: docs/certificates.md): a bursty-vs-shuffled gap here is
    #: learnability at equal information.
    order_gap = "learnability"

    def __init__(
        self,
        levels: LevelsArg = "all",
        size: int = 7,
        n_waypoints: int = DEFAULT_WAYPOINTS,
        max_steps: int | None = None,
        sticky_p: float = 0.0,
        render_mode: str | None = None,
        render_hidden: bool = False,
    ):
        if size < 2:
            raise ValueError(f"size must be >= 2, got {size}")
        self.size, self.n_waypoints = size, int(n_waypoints)
        self.tables = sequence_tables(size, self.n_waypoints)
        self.default_max_steps = self.tables.longest_episode
        self.level_fixes = f"the ordered sequence of {self.n_waypoints} hidden waypoint cells"
        n_levels = len(self.tables.waypoints)
        self._init_grid(
            levels,
            size,
            n_levels,
            max_steps,
            sticky_p,
            render_mode,
            render_hidden,
            self.encoding_name,
            (size, size),
        )

    def _set_level(self) -> None:
        self._cells = self.tables.waypoints[self.level]
        self.waypoints = cell_of(self._cells, self.size)
        self.stage = 0

    def _draw_start(self) -> np.ndarray:
        start = draw_starts(self.np_random, self.tables.start_cells(self._cells[None]))
        return cell_of(start[0], self.size)

    def _task_step(self) -> tuple[float, bool, bool]:
        cell = cell_index(self.pos, self.size)
        reward, terminated = 0.0, False
        if self.stage < self.n_waypoints and cell == self._cells[self.stage]:
            self.stage += 1
            reward, terminated = 1.0, self.stage == self.n_waypoints
        elif cell in self._cells[self.stage + 1 :]:
            terminated = True  # a later waypoint, entered early
        return reward, terminated, self.stage == self.n_waypoints

    def expert_action(self) -> int:
        if self.stage == self.n_waypoints:
            return 0
        cells, at = self._cells[None], cell_index(self.pos[None], self.size)
        return int(
            self.tables.next_actions(cells[:, self.stage], cells[:, self.stage + 1 :], at)[0]
        )

    def _hidden_marks(self) -> list[Mark]:
        return [
            Mark(tuple(cell), VISITED if i < self.stage else WAYPOINT, label=i + 1)
            for i, cell in enumerate(self.waypoints)
        ]

    @classmethod
    def step_events(cls, obs, actions, rewards) -> dict[str, np.ndarray]:
        """What each step of one stored episode achieved: boolean arrays of its length.

        ``waypoint``: the step entered the next waypoint; ``goal_reached``: it completed the
        sequence (stored episodes come from the registered family, so ``cls.n_waypoints``).
        """
        waypoint = np.asarray(rewards) > 0
        return {
            "waypoint": waypoint,
            "goal_reached": waypoint & (np.cumsum(waypoint) == cls.n_waypoints),
        }


def oracle_success(env: gym.Env, episodes: int, seed: int = 0, knows_order: bool = False) -> float:
    """Success rate of a policy that knows the level's set of waypoints, and maybe their order.

    Each episode it guesses an order (uniformly at random, or the true one with ``knows_order``)
    and walks shortest paths to its next guess, never entering the other cells it has not
    visited yet. Without the order it succeeds about ``1 / n_waypoints!`` of the time: what
    knowing the cells, and not their order, is worth. Levels and starts come from ``env``.

    Example:
        >>> import gymnasium as gym, trajbench
        >>> env = gym.make("trajbench/DarkSequence-v0", levels="test")
        >>> oracle_success(env, episodes=50, knows_order=True)
        1.0
    """
    u = env.unwrapped
    rng = np.random.default_rng(seed)
    wins = 0
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed if episode == 0 else None)
        guess = u._cells if knows_order else rng.permutation(u._cells)
        visited, done, info = 0, False, {}
        while not done:
            at = cell_index(np.asarray(obs)[None], u.size)
            target, later = guess[visited : visited + 1], guess[None, visited + 1 :]
            obs, _, terminated, truncated, info = env.step(
                int(u.tables.next_actions(target, later, at)[0])
            )
            visited += int(cell_index(obs, u.size) == guess[visited])
            done = terminated or truncated
        wins += bool(info["success"])
    return wins / episodes


class DarkSequenceVectorEnv(DarkGridVectorEnv):
    """``N`` Dark Sequences stepped in one numpy call (``gym.make_vec(..., "vector_entry_point")``).

    Example:
        >>> import gymnasium as gym, trajbench
        >>> envs = gym.make_vec("trajbench/DarkSequence-v0", num_envs=8, vectorization_mode="vector_entry_point")
        >>> obs, _ = envs.reset(seed=0)
        >>> obs, reward, terminated, truncated, _ = envs.step(envs.expert_actions())
    """

    single_env_cls = DarkSequenceEnv

    def __init__(
        self,
        num_envs: int,
        levels: LevelsArg = "all",
        size: int = 7,
        n_waypoints: int = DEFAULT_WAYPOINTS,
        max_steps: int | None = None,
    ):
        super().__init__(num_envs, levels, size, max_steps, n_waypoints=n_waypoints)
        self.tables = self._single.tables
        self.n_waypoints = self._single.n_waypoints
        self.cells = np.zeros((self.num_envs, self.n_waypoints), dtype=np.int64)
        self.stage = np.zeros(self.num_envs, dtype=np.int64)

    def _reset_task(self, mask: np.ndarray) -> None:
        self.cells[mask] = self.tables.waypoints[self.level[mask]]
        self.stage[mask] = 0

    def _draw_starts(self, mask: np.ndarray) -> np.ndarray:
        start = draw_starts(self.np_random, self.tables.start_cells(self.cells[mask]))
        return cell_of(start, self.size)

    def _task_step(self, live: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = self.n_waypoints
        on = self.cells == cell_index(self.pos, self.size)[:, None]  # [N, n]
        order = np.arange(n)[None, :]
        hit = live & (on & (order == self.stage[:, None])).any(axis=1)
        early = live & (on & (order > self.stage[:, None])).any(axis=1)
        self.stage += hit
        return hit.astype(np.float64), early | (hit & (self.stage == n))

    def expert_actions(self) -> np.ndarray:
        """The expert's action in every sub-environment (stay where the sequence is done)."""
        actions = np.zeros(self.num_envs, dtype=np.int64)
        cell = cell_index(self.pos, self.size)
        for stage in range(self.n_waypoints):
            at = np.flatnonzero(self.stage == stage)
            if at.size:
                later = self.cells[at, stage + 1 :]
                actions[at] = self.tables.next_actions(self.cells[at, stage], later, cell[at])
        return actions

    def _obs(self) -> np.ndarray:
        return self.pos.copy()

"""Shortest action paths on a MiniGrid grid, for the planner experts of the MiniGrid families.

:class:`GridPlanner` reads the full (privileged) grid of a MiniGrid environment and answers "which
action brings the agent fastest to face one of these cells?". It searches over agent states
``(x, y, direction)`` with MiniGrid's costs: turning and moving forward cost one action, entering a
closed door costs two (``toggle`` then ``forward``; a locked door only when the agent carries the
key of its color). Walls, lava and objects (keys, balls, boxes) block; lava is never entered.

The distance field to a target set is computed once by a backward breadth-first search and cached
until a door, a key/ball/box or the carried object changes, so following it costs a dictionary
lookup per step; a recomputation takes well under a millisecond to a few milliseconds.

Example:
    >>> import gymnasium as gym, trajbench
    >>> from trajbench.envs.minigrid_planner import GridPlanner
    >>> from minigrid.core.actions import Actions
    >>> env = gym.make("trajbench/FourRooms-v0")
    >>> _ = env.reset(seed=0, options={"level": 7})
    >>> planner = GridPlanner(env.unwrapped)
    >>> planner.next_action(planner.find("goal"), Actions.forward) in (0, 1, 2)
    True
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from minigrid.core.actions import Actions

#: Cell classes of the search.
FREE, BLOCKED, DOOR = 0, 1, 2
_INF = 1 << 30
_LEFT, _RIGHT, _FORWARD, _TOGGLE = (
    int(Actions.left),
    int(Actions.right),
    int(Actions.forward),
    int(Actions.toggle),
)
_PASSABLE = frozenset({"goal", "floor"})
_DYNAMIC = frozenset({"door", "key", "ball", "box"})


def cell_class(cell: Any, carrying: Any) -> int:
    """Class of a grid cell for an agent carrying ``carrying``: FREE, BLOCKED or DOOR (openable).

    Args:
        cell: A MiniGrid ``WorldObj`` or ``None``.
        carrying: The carried ``WorldObj`` or ``None``.
    """
    if cell is None:
        return FREE
    kind = cell.type
    if kind == "door":
        if cell.is_open:
            return FREE
        if not cell.is_locked:
            return DOOR
        has_key = carrying is not None and carrying.type == "key" and carrying.color == cell.color
        return DOOR if has_key else BLOCKED
    return FREE if kind in _PASSABLE else BLOCKED


class GridPlanner:
    """Cached shortest-path planner over ``(x, y, direction)`` for one MiniGrid episode.

    Create it after ``reset`` (it records the episode's doors and movable objects); it stays valid
    for the whole episode whatever actions are taken.

    Args:
        env: The unwrapped MiniGrid environment.
    """

    def __init__(self, env: Any):
        self.env = env
        grid = env.grid
        self.width, self.height = grid.width, grid.height
        w = self.width
        # Flat-index offset of the cell in front for each direction (DIR_TO_VEC order).
        self._delta = (1, w, -1, -w)
        self._dynamic = [obj for obj in grid.grid if obj is not None and obj.type in _DYNAMIC]
        self._cache: dict[tuple, tuple[list[int], list[int]]] = {}

    def find(self, obj_type: str, color: str | None = None) -> frozenset[tuple[int, int]]:
        """Cells holding an object of ``obj_type`` (and ``color``, if given) right now."""
        grid = self.env.grid
        w = self.width
        return frozenset(
            (i % w, i // w)
            for i, obj in enumerate(grid.grid)
            if obj is not None and obj.type == obj_type and (color is None or obj.color == color)
        )

    def _signature(self) -> tuple:
        grid = self.env.grid.grid
        w = self.width
        sig: list[Any] = [id(self.env.carrying)]
        for obj in self._dynamic:
            if obj.type == "door":
                sig.append((obj.is_open, obj.is_locked))
            else:
                pos = obj.cur_pos
                on_grid = pos is not None and pos[0] >= 0 and grid[pos[1] * w + pos[0]] is obj
                sig.append((int(pos[0]), int(pos[1])) if on_grid else None)
        return tuple(sig)

    def _classes(self) -> list[int]:
        w, h = self.width, self.height
        carrying = self.env.carrying
        classes = [cell_class(cell, carrying) for cell in self.env.grid.grid]
        # The border is never walkable; marking it blocked keeps flat indices from wrapping.
        for x in range(w):
            classes[x] = classes[(h - 1) * w + x] = BLOCKED
        for y in range(h):
            classes[y * w] = classes[y * w + w - 1] = BLOCKED
        return classes

    def distances(self, targets: Iterable[tuple[int, int]]) -> tuple[list[int], list[int]]:
        """Cell classes and, per state ``4 * (y * width + x) + dir``, actions to face a target.

        The count excludes the final action taken while facing the target. Unreachable states hold
        a huge value (``>= 2**30``).
        """
        targets = frozenset(targets)
        key = (targets, self._signature())
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        classes = self._classes()
        dist = self._search(classes, targets)
        if len(self._cache) > 64:
            self._cache.clear()
        self._cache[key] = (classes, dist)
        return classes, dist

    def _search(self, classes: list[int], targets: frozenset[tuple[int, int]]) -> list[int]:
        w = self.width
        delta = self._delta
        dist = [_INF] * (4 * len(classes))
        buckets: list[list[int]] = [[]]
        for x, y in targets:
            t = y * w + x
            for d in range(4):
                c = t - delta[d]
                if 0 <= c < len(classes) and classes[c] != BLOCKED:
                    s = 4 * c + d
                    if dist[s]:
                        dist[s] = 0
                        buckets[0].append(s)
        k = 0
        while k < len(buckets):
            for s in buckets[k]:
                if dist[s] != k:
                    continue
                c, d = divmod(s, 4)
                relax = [(4 * c + (d + 1) % 4, k + 1), (4 * c + (d - 1) % 4, k + 1)]
                p = c - delta[d]
                if classes[p] != BLOCKED:
                    relax.append((4 * p + d, k + (1 if classes[c] == FREE else 2)))
                for t, nd in relax:
                    if nd < dist[t]:
                        dist[t] = nd
                        while len(buckets) <= nd:
                            buckets.append([])
                        buckets[nd].append(t)
            k += 1
        return dist

    def cells_reaching(self, targets: Iterable[tuple[int, int]]) -> frozenset[tuple[int, int]]:
        """Cells from which the agent can come to face a target (in some direction)."""
        _, dist = self.distances(targets)
        w = self.width
        return frozenset(
            (c % w, c // w) for c in range(len(dist) // 4) if min(dist[4 * c : 4 * c + 4]) < _INF
        )

    def next_action(self, targets: Iterable[tuple[int, int]], final_action: int) -> int | None:
        """The first action of a shortest path to face a target, then ``final_action``.

        Args:
            targets: Cells to face (e.g. the goal, a key, a door).
            final_action: Action to take once facing a target (``forward`` onto a goal,
                ``pickup`` a key, ``toggle`` a door).

        Returns:
            A MiniGrid action, or ``None`` when no target can be reached from the agent's state.
        """
        targets = frozenset(targets)
        if not targets:
            return None
        env = self.env
        x, y = int(env.agent_pos[0]), int(env.agent_pos[1])
        d = int(env.agent_dir)
        c = y * self.width + x
        f = c + self._delta[d]
        if (f % self.width, f // self.width) in targets:
            return int(final_action)
        classes, dist = self.distances(targets)
        best, action = _INF, None
        if classes[f] != BLOCKED:
            fwd = dist[4 * f + d] + (1 if classes[f] == FREE else 2)
            if fwd < best:
                best, action = fwd, _FORWARD if classes[f] == FREE else _TOGGLE
        for turn, nd in ((_LEFT, (d - 1) % 4), (_RIGHT, (d + 1) % 4)):
            cost = dist[4 * c + nd] + 1
            if cost < best:
                best, action = cost, turn
        return action

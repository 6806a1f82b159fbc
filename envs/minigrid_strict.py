"""Strict verification on the BabyAI families (suite 3), and the expert that keeps to it.

BabyAI's own verifiers only ever say "success": facing (``go to``) or picking up (``pick up``,
``put next to``) a wrong object changes nothing, so an agent that visits every object in turn
succeeds without reading the mission or the context. Under the strict rule *the first object
counts*: the episode ends at the first object the family's success rule touches, as a success if
the mission accepts it and as a failure otherwise. "Touches" is the family's own success rule:

- ``go to``: the object in front of the agent after a step (facing it);
- ``pick up`` and ``put next to``: the object the agent picked up (for ``put next to`` it must be
  one the mission says to move).

A decoy evaluation (:mod:`trajbench.envs.minigrid_decoys`) shows a mission naming another object;
the episode then ends at either object and ``info["decoy_success"]`` says whether it was the
decoy's.

:class:`StrictPath` is the expert's path on strict ``go to`` and ``pick up`` families: a shortest
path over ``(cell, direction)`` with MiniGrid's ``left`` / ``right`` / ``forward`` that moves no
other object and, for ``go to``, never faces one on its way (the BabyAI bot does neither: it
faces objects in passing and picks up ones in its way).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from minigrid.core.actions import Actions
from minigrid.envs.babyai.core.verifier import GoToInstr, PickupInstr, PutNextInstr

#: Object types the strict rule counts (what BabyAI's local levels place).
OBJECT_TYPES = frozenset({"ball", "box", "key"})
_LEFT, _RIGHT, _FORWARD = int(Actions.left), int(Actions.right), int(Actions.forward)
_DIR = ((1, 0), (0, 1), (-1, 0), (0, -1))


def _is_in(obj: Any, objs: list[Any]) -> bool:
    return any(o is obj for o in objs)


def accepted_objects(instr: Any) -> list[Any]:
    """The objects whose touch is a success (``put next to``: those the mission moves)."""
    if isinstance(instr, GoToInstr | PickupInstr):
        return list(instr.desc.obj_set)
    if isinstance(instr, PutNextInstr):
        return list(instr.desc_move.obj_set)
    raise ValueError(f"no strict rule for {type(instr).__name__} missions")


def touched_object(env: Any, instr: Any) -> Any | None:
    """The object ``env``'s current state touches under ``instr``'s success rule, or None."""
    if isinstance(instr, GoToInstr):
        obj = env.grid.get(*env.front_pos)
        return obj if obj is not None and obj.type in OBJECT_TYPES else None
    return env.carrying


def wrong_touch(env: Any, instr: Any) -> bool:
    """Whether the agent now touches an object ``instr`` does not accept (a strict failure)."""
    obj = touched_object(env, instr)
    return obj is not None and not _is_in(obj, accepted_objects(instr))


def accepted_cells(env: Any) -> set[tuple[int, int]]:
    """Cells of the objects ``env``'s mission accepts (see :func:`accepted_objects`)."""
    return {(int(o.cur_pos[0]), int(o.cur_pos[1])) for o in accepted_objects(env.instrs)}


def cells_next_to_fixed(env: Any) -> set[tuple[int, int]]:
    """Empty cells beside (not diagonally) an object a ``put next to`` mission names as fixed:
    dropping the moved object there succeeds."""
    cells = set()
    for obj in env.instrs.desc_fixed.obj_set:
        x, y = int(obj.cur_pos[0]), int(obj.cur_pos[1])
        for dx, dy in _DIR:
            if env.grid.get(x + dx, y + dy) is None:
                cells.add((x + dx, y + dy))
    return cells


def _successors(state: tuple[int, int, int], grid: Any) -> dict[int, tuple[int, int, int]]:
    """Where ``left``, ``right`` and ``forward`` (onto an empty cell) take a pose."""
    x, y, d = state
    succ = {_LEFT: (x, y, (d - 1) % 4), _RIGHT: (x, y, (d + 1) % 4)}
    fx, fy = x + _DIR[d][0], y + _DIR[d][1]
    if grid.get(fx, fy) is None:
        succ[_FORWARD] = (fx, fy, d)
    return succ


class StrictPath:
    """Distances to face an accepted object, for one episode, never moving another object and
    (``avoid_others``, for ``go to``) never facing one.

    The path moves no object, so one backward breadth-first search over ``(x, y, direction)`` at
    reset serves every step until the agent picks its object up.

    Args:
        env: The unwrapped BabyAI environment, its mission's verifier reset.
        avoid_others: Never face an object the mission does not accept (strict ``go to``).
        targets: A function of ``env`` giving the cells to face (default: the accepted objects').
    """

    def __init__(
        self,
        env: Any,
        avoid_others: bool = True,
        targets: Callable[[Any], set[tuple[int, int]]] | None = None,
    ):
        self.env, self.avoid_others = env, avoid_others
        self._targets = targets or accepted_cells
        self._search()

    def _search(self) -> None:
        """The backward search from the poses facing an accepted object (on the grid as is)."""
        env, avoid_others = self.env, self.avoid_others
        grid = env.grid
        accepted = self._targets(env)
        self.width, self.height = grid.width, grid.height

        def front(x: int, y: int, d: int) -> tuple[int, int]:
            return x + _DIR[d][0], y + _DIR[d][1]

        def free(cell: tuple[int, int]) -> bool:
            x, y = cell
            return 0 <= x < self.width and 0 <= y < self.height and grid.get(x, y) is None

        def facing_other(x: int, y: int, d: int) -> bool:
            if not avoid_others:
                return False
            cell = front(x, y, d)
            obj = grid.get(*cell)
            return obj is not None and obj.type in OBJECT_TYPES and cell not in accepted

        states = [
            (x, y, d)
            for x in range(self.width)
            for y in range(self.height)
            for d in range(4)
            if free((x, y)) and not facing_other(x, y, d)
        ]
        allowed = set(states)
        self.dist: dict[tuple[int, int, int], int] = {}
        queue: deque[tuple[int, int, int]] = deque()
        for s in states:
            if front(*s) in accepted:
                self.dist[s] = 0
                queue.append(s)
        while queue:  # backward: the allowed states one action away from s
            s = queue.popleft()
            x, y, d = s
            for p in (
                (x, y, (d + 1) % 4),
                (x, y, (d - 1) % 4),
                (x - _DIR[d][0], y - _DIR[d][1], d),
            ):
                if p in allowed and p not in self.dist and s in _successors(p, grid).values():
                    self.dist[p] = self.dist[s] + 1
                    queue.append(p)

    def reaches(self, cell: tuple[int, int], direction: int) -> bool:
        """Whether an accepted object can be faced from this pose without facing another."""
        return (int(cell[0]), int(cell[1]), int(direction)) in self.dist

    def action(self) -> int | None:
        """The next action of a shortest strict path from the agent's pose (None: no path)."""
        env = self.env
        state = (int(env.agent_pos[0]), int(env.agent_pos[1]), int(env.agent_dir))
        if state not in self.dist:  # off every path: an object moved or vanished (a toggled box)
            self._search()
        here = self.dist.get(state)
        if here is None or here == 0:
            return None
        for action, nxt in sorted(_successors(state, env.grid).items()):
            if self.dist.get(nxt) == here - 1:
                return action
        return None

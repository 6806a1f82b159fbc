"""The MiniGrid/BabyAI view as text: what the agent sees, relative to itself, in a few words.

:func:`minigrid_obs_text` reads one encoded observation (:data:`MINIGRID_ENCODING`: the 7x7
egocentric view, then the direction) and says, in this order:

- the direction the agent faces (``facing east``);
- what it carries, if anything (its own cell of the view: ``carrying a red key``);
- how far the first wall is straight ahead, to its left and to its right, where one is in sight
  (``wall 3 ahead, 2 left, 1 right``);
- every object in sight, nearest first, with where it is (``a red ball 2 ahead 1 left``, ``an
  open blue door 3 ahead``, ``goal 1 ahead 2 right``, ``lava 1 ahead``). Doors say their state.

A position is counted in cells from the agent: ``ahead`` along its heading, ``left``/``right``
across it. Unseen and empty cells are not mentioned, and neither are walls off the three lines
from the agent (the view's room outline): two views that differ only there read the same.
Everything else the encoding holds is said, so views that differ in anything listed above read
differently (tested).

Example:
    >>> view = np.zeros(148, np.uint8)
    >>> view[:-1].reshape(7, 7, 3)[:, :, 0] = OBJECT_TO_IDX["empty"]
    >>> view[:-1].reshape(7, 7, 3)[2, 4] = OBJECT_TO_IDX["ball"], COLOR_TO_IDX["red"], 0
    >>> minigrid_obs_text(view)
    'facing east; a red ball 2 ahead 1 left'
"""

from __future__ import annotations

import numpy as np
from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX, STATE_TO_IDX

#: MiniGrid's actions in words, by action id.
MINIGRID_ACTION_WORDS = ("turn left", "turn right", "forward", "pick up", "drop", "toggle", "done")

_SIDE = 7
_AGENT_X, _AGENT_Y = _SIDE // 2, _SIDE - 1  # the agent's cell in the view; it looks towards y - 1
_DIRECTIONS = ("east", "south", "west", "north")  # MiniGrid's direction ids 0..3
_OBJECT = {i: name for name, i in OBJECT_TO_IDX.items()}
_COLOR = {i: name for name, i in COLOR_TO_IDX.items()}
_STATE = {i: name for name, i in STATE_TO_IDX.items()}
_UNSEEN, _EMPTY, _WALL = OBJECT_TO_IDX["unseen"], OBJECT_TO_IDX["empty"], OBJECT_TO_IDX["wall"]
_DOOR = OBJECT_TO_IDX["door"]
_NO_COLOR = ("goal", "lava", "floor")  # always one colour: naming it adds nothing


def _thing(obj: int, color: int, state: int) -> str:
    """``a red ball``, ``a locked blue door``, ``goal``: one view cell's content in words."""
    name = _OBJECT.get(obj, f"object{obj}")
    if name in _NO_COLOR:
        return name
    words = [_COLOR.get(color, f"color{color}"), name]
    if obj == _DOOR:
        words.insert(0, _STATE.get(state, f"state{state}"))
    return ("an " if words[0][0] in "aeiou" else "a ") + " ".join(words)


def _where(ahead: int, side: int) -> str:
    """``2 ahead 1 left`` (cells from the agent; a zero part is left out)."""
    parts = [f"{ahead} ahead"] if ahead else []
    if side:
        parts.append(f"{abs(side)} {'right' if side > 0 else 'left'}")
    return " ".join(parts)


def _first_wall(objects: np.ndarray, cells: list[tuple[int, int]]) -> int | None:
    """Distance (1-based) to the first wall along ``cells``, or None where none is in sight."""
    for distance, (x, y) in enumerate(cells, start=1):
        if objects[x, y] == _WALL:
            return distance
    return None


def minigrid_obs_text(obs: np.ndarray) -> str:
    """One encoded MiniGrid observation (148 ``uint8`` features) in words (see the module)."""
    obs = np.asarray(obs)
    view = obs[:-1].reshape(_SIDE, _SIDE, 3).astype(np.int64)
    objects = view[:, :, 0]
    parts = [f"facing {_DIRECTIONS[int(obs[-1]) % 4]}"]
    carried = view[_AGENT_X, _AGENT_Y]
    if carried[0] not in (_UNSEEN, _EMPTY):
        parts.append(f"carrying {_thing(*carried)}")
    lines = {
        "ahead": [(_AGENT_X, y) for y in range(_AGENT_Y - 1, -1, -1)],
        "left": [(x, _AGENT_Y) for x in range(_AGENT_X - 1, -1, -1)],
        "right": [(x, _AGENT_Y) for x in range(_AGENT_X + 1, _SIDE)],
    }
    walls = [(name, _first_wall(objects, cells)) for name, cells in lines.items()]
    walls = [f"{d} {name}" for name, d in walls if d is not None]
    if walls:
        parts.append("wall " + ", ".join(walls))
    seen = []
    for x in range(_SIDE):
        for y in range(_SIDE):
            if (x, y) == (_AGENT_X, _AGENT_Y) or objects[x, y] in (_UNSEEN, _EMPTY, _WALL):
                continue
            ahead, side = _AGENT_Y - y, x - _AGENT_X
            seen.append(
                ((ahead + abs(side), ahead, side), f"{_thing(*view[x, y])} {_where(ahead, side)}")
            )
    parts += [text for _, text in sorted(seen)]
    return "; ".join(parts)

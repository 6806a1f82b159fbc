"""MiniGrid/BabyAI families where the demonstrations are needed (new in suite 3).

Each hides what the task depends on from the query, so only demonstrations of the same level
reveal it; MiniGrid's own generators build the levels, and the levels are drawn over distinct
contents (``content_split``, like the ``-v2`` ids).

- ``HiddenFourRooms-v0``: FourRooms whose goal is never drawn in the agent's view (its cell
  shows as empty floor); success is stepping onto the goal's cell.
- ``HiddenMultiRoom-v0``: MultiRoom N4-S5 whose goal, hidden the same way, lies on any empty cell
  of any room but the first (not only the last), so the doors alone do not lead to it.
- ``HiddenGoToLocal-v0``: BabyAI GoToLocal whose mission is withheld from the query (every
  episode shows :data:`WITHHELD_MISSION`); the level fixes the target, the demonstrations go to
  it, and strict verification (:mod:`trajbench.envs.minigrid_strict`) ends the episode at the
  first object faced.

Renders (``rgb_array``) still draw the goal: they are for people, not the agent.

Example:
    >>> import gymnasium as gym, trajbench
    >>> env = gym.make("trajbench/HiddenGoToLocal-v0", levels="test")
    >>> obs, info = env.reset(seed=0)
    >>> obs["mission"]
    'go to the object'
"""

from __future__ import annotations

from typing import Any

from minigrid.core.constants import OBJECT_TO_IDX
from minigrid.core.world_object import Goal

from .minigrid_families import FourRoomsLevels, GoToLocalLevels, MultiRoomLevels

#: The mission every episode of ``HiddenGoToLocal`` shows.
WITHHELD_MISSION = "go to the object"
_GOAL, _EMPTY = OBJECT_TO_IDX["goal"], OBJECT_TO_IDX["empty"]


class _HiddenGoal:
    """Draws the goal's cell in the agent's view as empty floor (mix in first)."""

    demo_decoder = "goal_cell"
    content_split = True

    def gen_obs(self) -> dict[str, Any]:
        obs = super().gen_obs()
        image = obs["image"]
        image[image[..., 0] == _GOAL] = (_EMPTY, 0, 0)
        return obs


class HiddenFourRoomsLevels(_HiddenGoal, FourRoomsLevels):
    """``HiddenFourRooms-v0``: ``FourRooms-v2`` with the goal left out of every observation.

    The query shows the four rooms but not where the goal is; the demonstrations of the level end
    on it. ``max_steps`` 64, as ``FourRooms``. Expert: shortest path (turns count) to the goal.
    """

    family = "HiddenFourRooms-v0"
    level_fixes = "the gap positions and the hidden goal"


class HiddenMultiRoomLevels(_HiddenGoal, MultiRoomLevels):
    """``HiddenMultiRoom-v0``: MultiRoom N4-S5, its goal hidden on any room but the first.

    An episode starts anywhere in the first room; the goal may be in the second, third or fourth
    room, so following the doors to the end does not find it. ``max_steps`` 64.
    Expert: shortest path, opening doors on the way.
    """

    family = "HiddenMultiRoom-v0"
    level_fixes = "the rooms, their doors and the hidden goal (in any room but the first)"

    def _gen_grid(self, width: int, height: int) -> None:
        super()._gen_grid(width, height)
        cells = [c for room in self.rooms[1:] for c in self._empty_cells(room.top, room.size)]
        self.grid.set(*self.goal_pos, None)
        cells = sorted(set(cells) | {tuple(self.goal_pos)})
        self.goal_pos = cells[self._rand_int(0, len(cells))]
        self.grid.set(*self.goal_pos, Goal())


class HiddenGoToLocalLevels(GoToLocalLevels):
    """``HiddenGoToLocal-v0``: BabyAI GoToLocal (8x8 room, 8 objects), the mission withheld.

    The level fixes the target (its true mission, hashed in the level's content); the query says
    only "go to the object". Strict: facing any other object first ends the episode as a failure,
    so a policy without the demonstrations is at chance (about one object in eight).
    ``max_steps`` 48. Expert: shortest path that faces no other object.
    """

    family = "HiddenGoToLocal-v0"
    content_split = True
    has_mission = False
    demo_decoder = "final_object"
    #: No mission to follow: the query-only solver explores, and the first object faced ends it.
    query_solver = "explore"
    level_fixes = "the room's objects and the target (its mission is withheld from the query)"

    def _gen_grid(self, width: int, height: int) -> None:
        super()._gen_grid(width, height)
        self.mission = WITHHELD_MISSION

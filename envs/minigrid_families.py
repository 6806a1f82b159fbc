"""Level-controlled MiniGrid and BabyAI families, each with a closed-loop expert.

Every family here is a MiniGrid (or BabyAI) environment class with
:class:`~trajbench.envs.minigrid_levels.MiniGridLevelMixin` mixed in: 10,000 levels (9,000 train,
1,000 test), MiniGrid's ``Dict`` observation (7x7x3 partial view, direction, mission), sticky
actions, and ``info["level"]`` / ``info["success"]``. They span

- navigation through layouts: ``FourRooms``, ``MultiRoom``, ``SimpleCrossing``,
  ``LavaCrossing`` (planner expert);
- doors and keys: ``DoorKey``, ``Unlock`` (planner expert with subgoals);
- language with distractors, where the mission matters: ``GoToLocal``, ``PickupLoc``,
  ``PutNextLocal`` (BabyAI bot expert).

Each is registered three times: ``-v1`` draws the agent's start pose per episode, under the
family's own constraint (its class says which); ``-v0`` (``random_start=False``) keeps the start
that the level fixes, as suite version 1 measured; ``-v2`` (``content_split=True``, suite 3) draws
the levels over distinct contents (see :mod:`trajbench.envs.minigrid_levels`), draws the goal cell
per level where MiniGrid's generator fixes it (DoorKey, Simple/LavaCrossing) and verifies BabyAI
missions strictly (:mod:`trajbench.envs.minigrid_strict`). A level fixes the rest; ``level_fixes``
and ``episode_draws`` say what, in words.

The expert succeeds on all 10,000 levels of every family, from a random start too (measured by
``benchmarks/expert_coverage.py``), and each ``max_steps`` default is at least 1.5x the expert's
longest episode over those levels while keeping evaluation contexts short; the class docstrings
give the expert's mean and longest episode lengths.

Example:
    >>> import gymnasium as gym, trajbench
    >>> env = gym.make("trajbench/PutNextLocal-v1", levels="train")
    >>> obs, info = env.reset(seed=1)
    >>> done = False
    >>> while not done:
    ...     obs, reward, terminated, truncated, info = env.step(env.unwrapped.expert_action())
    ...     done = terminated or truncated
    >>> info["success"]
    True
"""

from __future__ import annotations

from minigrid.core.actions import Actions
from minigrid.core.world_object import Goal, Lava, Wall
from minigrid.envs import CrossingEnv, DoorKeyEnv, FourRoomsEnv, MultiRoomEnv, UnlockEnv
from minigrid.envs.babyai import GoToLocal, PickupLoc, PutNextLocal

from .minigrid_bot import FALLBACK_ACTION, BotTracker
from .minigrid_levels import BabyAILevelMixin, MiniGridLevelMixin
from .minigrid_planner import GridPlanner
from .minigrid_strict import StrictPath, cells_next_to_fixed

_FORWARD, _PICKUP, _TOGGLE = int(Actions.forward), int(Actions.pickup), int(Actions.toggle)
_DROP = int(Actions.drop)


class _PlannerFamily(MiniGridLevelMixin):
    """A MiniGrid family whose expert is :class:`GridPlanner` on the full grid.

    By default an episode may start on any empty cell from which the goal can be reached.
    """

    expert_name = "shortest-path planner on the full grid"
    _planner: GridPlanner | None = None

    def _generate(self, level: int) -> None:
        super()._generate(level)
        self._planner = None  # a new grid; the start draw and the expert then share one planner

    def _plan(self) -> GridPlanner:
        if self._planner is None:
            self._planner = GridPlanner(self)
            self._goals = self._planner.find("goal")
        return self._planner

    def _start_cells(self) -> list[tuple[int, int]]:
        reaching = self._plan().cells_reaching(self._goals)
        cells = self._empty_cells((0, 0), (self.width, self.height))
        return [cell for cell in cells if cell in reaching]

    def expert_action(self) -> int:
        action = self._expert_step(self._plan())
        return FALLBACK_ACTION if action is None else action

    def _redraw_goal(self, cells: list[tuple[int, int]]) -> None:
        """Move the goal onto one of ``cells``, drawn from the level's generator (``-v2``)."""
        (old,) = _cells_holding(self.grid, "goal")
        self.grid.set(*old, None)
        cells = sorted(set(cells) | {old})
        cell = cells[self._rand_int(0, len(cells))]
        self.grid.set(*cell, Goal())
        self.goal_pos = cell

    def _expert_step(self, planner: GridPlanner) -> int | None:
        """Shortest path onto the goal, opening closed doors on the way."""
        return planner.next_action(self._goals, _FORWARD)


def _cells_holding(grid, kind: str) -> list[tuple[int, int]]:
    """Cells of ``grid`` holding an object of type ``kind``."""
    w = grid.width
    return [(i % w, i // w) for i, o in enumerate(grid.grid) if o is not None and o.type == kind]


def _reachable(grid, start: tuple[int, int]) -> list[tuple[int, int]]:
    """Empty cells connected to ``start`` through empty cells (4-neighbourhood)."""
    seen, todo = {start}, [start]
    while todo:
        x, y = todo.pop()
        for nxt in ((x + 1, y), (x - 1, y), (x, y + 1), (x, y - 1)):
            if nxt not in seen and grid.get(*nxt) is None:
                seen.add(nxt)
                todo.append(nxt)
    return sorted(seen)


class _BotFamily(BabyAILevelMixin):
    """A BabyAI family whose expert is the BabyAI bot, kept in sync by :class:`BotTracker`."""

    expert_name = "BabyAI bot (minigrid.utils.baby_ai_bot)"
    level_fixes = "the room's objects and the mission"
    episode_draws = (
        "the agent's start cell and direction: any empty cell of the room from which every "
        "object is reachable, not facing an object"
    )

    def _on_reset(self) -> None:
        super()._on_reset()
        self._tracker = BotTracker(self)

    def expert_action(self) -> int:
        return self._tracker.action()


class FourRoomsLevels(_PlannerFamily, FourRoomsEnv):
    """``FourRooms-v1``: reach the goal through four 19x19-grid rooms joined by gaps.

    Tests navigation through a layout: the level fixes the gap positions and the goal; an episode
    starts on any empty cell from which the goal is reachable, facing any direction.
    ``max_steps`` 64 (expert with random starts over all 10,000 levels: mean 16.0, longest 36;
    ``-v0``, fixed start: mean 16.1, longest 36). Expert: shortest path (turns count) to the goal.
    Mission: "reach the goal".
    """

    family = "FourRooms-v1"
    level_fixes = "the gap positions and the goal"
    episode_draws = (
        "the agent's start cell and direction: any empty cell from which the goal is reachable"
    )
    default_max_steps = 64


class MultiRoomLevels(_PlannerFamily, MultiRoomEnv):
    """``MultiRoom-v1``: MultiRoom N4-S5, four rooms of size <= 5 in a chain of closed doors.

    Tests navigation that needs interaction: each door must be toggled open on the way to the goal
    in the last room. An episode starts anywhere in the first room. ``max_steps`` 64 (expert with
    random starts: mean 20.4, longest 30; ``-v0``: mean 20.4, longest 31). Expert:
    shortest path where entering a closed door costs ``toggle`` + ``forward``.
    Mission: "traverse the rooms to get to the goal".
    """

    family = "MultiRoom-v1"
    expert_name = "shortest-path planner, opening doors on the way"
    level_fixes = "the rooms, their doors and the goal"
    episode_draws = "the agent's start cell and direction: any empty cell of the first room"
    default_max_steps = 64
    env_kwargs = {"minNumRooms": 4, "maxNumRooms": 4, "maxRoomSize": 5}

    def _start_cells(self) -> list[tuple[int, int]]:
        first = self.rooms[0]
        return self._empty_cells(first.top, first.size)


class SimpleCrossingLevels(_PlannerFamily, CrossingEnv):
    """``SimpleCrossing-v1``: 9x9 room crossed by three walls, each with openings (S9N3).

    Tests finding the openings to the goal in the bottom-right corner; an episode starts on any
    empty cell from which the goal can be reached. S9N3 rather than S9N1, whose 42 distinct
    layouts would leave the test split nothing new to hold out (the first 300 levels hold 231
    layouts). ``max_steps`` 56 (expert with random starts: mean 10.0, longest 35); ``-v0``, start
    top-left: ``max_steps`` 40 (over 300 levels: mean 16.4, longest 29). Expert: shortest path.
    Mission: "find the opening and get to the green goal square".
    """

    family = "SimpleCrossing-v1"
    level_fixes = "the walls, their openings and the goal"
    episode_draws = (
        "the agent's start cell and direction: any empty cell from which the goal is reachable"
    )
    default_max_steps = 56
    fixed_start_max_steps = 40
    env_kwargs = {"size": 9, "num_crossings": 3, "obstacle_type": Wall}

    def _gen_grid(self, width: int, height: int) -> None:
        super()._gen_grid(width, height)
        if self.content_split:  # -v2: the goal is any cell the generator's start reaches
            self._redraw_goal(_reachable(self.grid, tuple(self.agent_pos)))


class LavaCrossingLevels(_PlannerFamily, CrossingEnv):
    """``LavaCrossing-v1``: 9x9 room crossed by three lava rivers with gaps (S9N3).

    Like ``SimpleCrossing-v1`` but a wrong step into lava ends the episode without reward (not a
    success); an episode never starts on lava. S9N3 for the same reason. ``max_steps`` 56 (expert
    with random starts: mean 10.0, longest 35); ``-v0``: ``max_steps`` 40 (over 300 levels: mean
    16.7, longest 31). Expert: shortest path that never enters lava.
    Mission: "avoid the lava and get to the green goal square".
    """

    family = "LavaCrossing-v1"
    expert_name = "shortest-path planner avoiding lava"
    level_fixes = "the lava rivers, their gaps and the goal"
    episode_draws = (
        "the agent's start cell and direction: any cell free of lava from which the goal is "
        "reachable"
    )
    default_max_steps = 56
    fixed_start_max_steps = 40
    env_kwargs = {"size": 9, "num_crossings": 3, "obstacle_type": Lava}

    def _gen_grid(self, width: int, height: int) -> None:
        super()._gen_grid(width, height)
        if self.content_split:  # -v2: the goal is any cell the generator's start reaches
            self._redraw_goal(_reachable(self.grid, tuple(self.agent_pos)))


class DoorKeyLevels(_PlannerFamily, DoorKeyEnv):
    """``DoorKey-v1``: 8x8 room split by a wall with a locked door; the key is on the agent's side.

    Tests subgoals: pick up the key, unlock the door, reach the goal. An episode starts anywhere on
    the key's side of the wall. ``max_steps`` 64 (expert with random starts: mean 16.8,
    longest 29; ``-v0``: mean 16.8, longest 28). Expert:
    if the goal is reachable (door unlocked, or the key carried) take the shortest path to it,
    unlocking on the way; otherwise the shortest path to pick up the key.
    Mission: "use the key to open the door and then get to the goal".
    """

    family = "DoorKey-v1"
    expert_name = "shortest-path planner: key, then door, then goal"
    level_fixes = "the wall, its locked door, the key and the goal"
    episode_draws = (
        "the agent's start cell and direction: any empty cell on the key's side of the wall"
    )
    default_max_steps = 64
    env_kwargs = {"size": 8}

    def _gen_grid(self, width: int, height: int) -> None:
        super()._gen_grid(width, height)
        if self.content_split:  # -v2: the goal is any empty cell beyond the wall
            ((wall_x, _),) = _cells_holding(self.grid, "door")
            self._redraw_goal(self._empty_cells((wall_x + 1, 0), (width, height)))

    def _start_cells(self) -> list[tuple[int, int]]:
        (wall_x, _), *_ = self._plan().find("door")
        return self._empty_cells((0, 0), (wall_x, self.height))

    def _expert_step(self, planner: GridPlanner) -> int | None:
        action = planner.next_action(self._goals, _FORWARD)
        if action is None and self.carrying is None:
            action = planner.next_action(planner.find("key"), _PICKUP)
        return action


class UnlockLevels(_PlannerFamily, UnlockEnv):
    """``Unlock-v1``: two 6x6 rooms; open the locked door with the key of its color.

    Tests a two-step subgoal chain without navigation past the door. An episode starts anywhere in
    the key's room, not right in front of an object (MiniGrid's rule for room grids).
    ``max_steps`` 40 (expert with random starts: mean 9.5, longest 17; ``-v0``:
    mean 9.5, longest 17). Expert:
    shortest path to pick up the key of the door's color, then to face the door and toggle it.
    Mission: "open the door".
    """

    family = "Unlock-v1"
    demo_decoder = "final_object"
    query_solver = "mission"
    expert_name = "shortest-path planner: key, then door"
    level_fixes = "the rooms, the locked door and its key"
    episode_draws = (
        "the agent's start cell and direction: any empty cell of the key's room, not facing an "
        "object"
    )
    default_max_steps = 40

    def _start_cells(self) -> list[tuple[int, int]]:
        (key_cell,) = self._plan().find("key", self.door.color)
        room = self.room_from_pos(*key_cell)
        return self._empty_cells(room.top, room.size)

    def _start_pose_ok(self, cell: tuple[int, int], direction: int) -> bool:
        return self._front_is_clear(cell, direction)

    def _expert_step(self, planner: GridPlanner) -> int | None:
        door, carrying = self.door, self.carrying
        if carrying is None:
            return planner.next_action(planner.find("key", door.color), _PICKUP)
        if carrying.type == "key" and carrying.color == door.color:
            return planner.next_action({tuple(door.cur_pos)}, _TOGGLE)
        return None


class _StrictPathFamily(_BotFamily):
    """A BabyAI family whose strict ids (``-v2``) use :class:`StrictPath` as the expert instead of
    the bot, and start only where such a path exists; :attr:`final_action` ends it."""

    #: The action taken once the path faces the target (None: facing it is the success).
    final_action: int | None = None
    _strict_path: StrictPath | None = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.strict:
            rule = "facing another object" if self.final_action is None else "moving another"
            self.episode_draws = (
                f"{self.episode_draws}, from which the target can be reached without {rule}"
            )

    def _draw_start(self) -> tuple[tuple[int, int], int]:
        avoid = self.final_action is None
        self._strict_path = StrictPath(self, avoid) if self.strict else None
        return super()._draw_start()

    def _start_pose_ok(self, cell: tuple[int, int], direction: int) -> bool:
        ok = super()._start_pose_ok(cell, direction)
        return ok and (self._strict_path is None or self._strict_path.reaches(cell, direction))

    def expert_action(self) -> int:
        if self._strict_path is None:
            return super().expert_action()
        action = self._strict_expert()
        return FALLBACK_ACTION if action is None else action

    def _strict_expert(self) -> int | None:
        """The strict expert's next action (None: none found)."""
        action = self._strict_path.action()
        if action is None and self.final_action is not None and self.carrying is None:
            return self.final_action
        return action


class GoToLocalLevels(_StrictPathFamily, GoToLocal):
    """``GoToLocal-v1``: BabyAI GoToLocal, one 8x8 room with 8 objects; go to the one named.

    Tests grounding the mission among distractors (several objects may match, e.g. "go to a red
    ball"). ``max_steps`` 48 (expert with random starts: mean 5.3, longest 31); ``-v0``:
    ``max_steps`` 40 (mean 5.3, longest 24). Expert: BabyAI bot; on ``-v2`` (strict: facing
    another object first fails) a shortest path that faces no other object, and an episode starts
    only where one exists. Mission e.g. "go to the green key".
    """

    family = "GoToLocal-v1"
    default_max_steps = 48
    fixed_start_max_steps = 40
    env_kwargs = {"room_size": 8, "num_dists": 8}


class PickupLocLevels(_StrictPathFamily, PickupLoc):
    """``PickupLoc-v1``: BabyAI PickupLoc, one 8x8 room with 8 objects; pick up the one named.

    Objects may be named by their location relative to the agent's start ("on your left", "in
    front of you", "behind you"): an episode starts only on poses from which the mission names
    the same objects as from the level's own start. ``max_steps`` 40 (expert with random starts:
    mean 6.0, longest 24; ``-v0``: mean 6.1, longest 24). Expert: BabyAI bot; on ``-v2``
    (strict: picking up another object first fails; the bot picks up objects in its way) a
    shortest path that moves no other object, then ``pickup``.
    Mission e.g. "pick up the blue ball on your left".
    """

    family = "PickupLoc-v1"
    final_action = _PICKUP
    episode_draws = (
        f"{_BotFamily.episode_draws}, from which the mission names the same objects "
        "(its locations are relative to the start)"
    )
    default_max_steps = 40


class PutNextLocalLevels(_StrictPathFamily, PutNextLocal):
    """``PutNextLocal-v1``: BabyAI PutNextLocal, one 8x8 room with 8 distinct objects.

    Tests a two-object mission: carry one named object next to another. ``max_steps`` 72
    (expert with random starts: mean 12.0, longest 45); ``-v0``: ``max_steps`` 64 (mean 12.0,
    longest 42). Expert: BabyAI bot; on ``-v2`` (strict: picking up an object the mission does not
    move fails; the bot picks up objects in its way) a shortest path to the object to move that
    moves no other, ``pickup``, a shortest path to face an empty cell beside the fixed object,
    ``drop``. Mission e.g. "put the red box next to the grey ball".
    """

    family = "PutNextLocal-v1"
    default_max_steps = 72
    fixed_start_max_steps = 64
    env_kwargs = {"room_size": 8, "num_objs": 8}
    final_action = _PICKUP
    _drop_path: StrictPath | None = None

    def _on_reset(self) -> None:
        super()._on_reset()
        self._drop_path = None

    def _strict_expert(self) -> int | None:
        if self.carrying is None:
            return super()._strict_expert()
        if self._drop_path is None:  # carrying the object to move: face a cell beside the fixed one
            self._drop_path = StrictPath(self, avoid_others=False, targets=cells_next_to_fixed)
        action = self._drop_path.action()
        return (
            _DROP
            if action is None and self._drop_path.reaches(self.agent_pos, self.agent_dir)
            else action
        )

"""Level-controlled MiniGrid and BabyAI families, each with a closed-loop expert.

Every family here is a MiniGrid (or BabyAI) environment class with
:class:`~trajbench.envs.minigrid_levels.MiniGridLevelMixin` mixed in: 10,000 levels (9,000 train,
1,000 test), MiniGrid's ``Dict`` observation (7x7x3 partial view, direction, mission), sticky
actions, and ``info["level"]`` / ``info["success"]``. They span

- navigation through layouts: ``FourRooms-v0``, ``MultiRoom-v0``, ``SimpleCrossing-v0``,
  ``LavaCrossing-v0`` (planner expert);
- doors and keys: ``DoorKey-v0``, ``Unlock-v0`` (planner expert with subgoals);
- language with distractors, where the mission matters: ``GoToLocal-v0``, ``PickupLoc-v0``,
  ``PutNextLocal-v0`` (BabyAI bot expert).

The expert succeeds on all 10,000 levels of every family (measured), and each ``max_steps``
default is at least 1.5x the expert's longest episode over those levels while keeping evaluation
contexts short; the class docstrings give the expert's mean and longest episode lengths.

Example:
    >>> import gymnasium as gym, trajbench
    >>> env = gym.make("trajbench/PutNextLocal-v0", levels="train")
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
from minigrid.core.world_object import Lava, Wall
from minigrid.envs import CrossingEnv, DoorKeyEnv, FourRoomsEnv, MultiRoomEnv, UnlockEnv
from minigrid.envs.babyai import GoToLocal, PickupLoc, PutNextLocal

from .minigrid_bot import FALLBACK_ACTION, BotTracker
from .minigrid_levels import BabyAILevelMixin, MiniGridLevelMixin
from .minigrid_planner import GridPlanner

_FORWARD, _PICKUP, _TOGGLE = int(Actions.forward), int(Actions.pickup), int(Actions.toggle)


class _PlannerFamily(MiniGridLevelMixin):
    """A MiniGrid family whose expert is :class:`GridPlanner` on the full grid."""

    expert_name = "shortest-path planner on the full grid"
    _planner: GridPlanner | None = None

    def _on_reset(self) -> None:
        self._planner = None

    def _plan(self) -> GridPlanner:
        if self._planner is None:
            self._planner = GridPlanner(self)
            self._goals = self._planner.find("goal")
        return self._planner

    def expert_action(self) -> int:
        action = self._expert_step(self._plan())
        return FALLBACK_ACTION if action is None else action

    def _expert_step(self, planner: GridPlanner) -> int | None:
        """Shortest path onto the goal, opening closed doors on the way."""
        return planner.next_action(self._goals, _FORWARD)


class _BotFamily(BabyAILevelMixin):
    """A BabyAI family whose expert is the BabyAI bot, kept in sync by :class:`BotTracker`."""

    expert_name = "BabyAI bot (minigrid.utils.baby_ai_bot)"

    def _on_reset(self) -> None:
        self._tracker = BotTracker(self)

    def expert_action(self) -> int:
        return self._tracker.action()


class FourRoomsLevels(_PlannerFamily, FourRoomsEnv):
    """``FourRooms-v0``: reach the goal through four 19x19-grid rooms joined by gaps.

    Tests navigation through a layout: the level fixes the gap positions, the agent's start and
    the goal. ``max_steps`` 64 (expert: mean 16.1, longest 36 actions). Expert: shortest path
    (turns count) to the goal.
    Mission: "reach the goal".
    """

    family = "FourRooms-v0"
    default_max_steps = 64


class MultiRoomLevels(_PlannerFamily, MultiRoomEnv):
    """``MultiRoom-v0``: MultiRoom N4-S5, four rooms of size <= 5 in a chain of closed doors.

    Tests navigation that needs interaction: each door must be toggled open on the way to the goal
    in the last room. ``max_steps`` 64 (expert: mean 20.4, longest 31). Expert: shortest path
    where entering a closed door costs ``toggle`` + ``forward``.
    Mission: "traverse the rooms to get to the goal".
    """

    family = "MultiRoom-v0"
    expert_name = "shortest-path planner, opening doors on the way"
    default_max_steps = 64
    env_kwargs = {"minNumRooms": 4, "maxNumRooms": 4, "maxRoomSize": 5}


class SimpleCrossingLevels(_PlannerFamily, CrossingEnv):
    """``SimpleCrossing-v0``: 9x9 room crossed by three walls, each with openings (S9N3).

    Tests finding the openings: the agent starts top-left, the goal is bottom-right. S9N3 rather
    than S9N1, whose 42 distinct layouts would leave the test split nothing new to hold out (the
    first 300 levels hold 231 layouts). ``max_steps`` 40 (expert over 300 levels: mean 16.4,
    longest 29). Expert: shortest path.
    Mission: "find the opening and get to the green goal square".
    """

    family = "SimpleCrossing-v0"
    default_max_steps = 40
    env_kwargs = {"size": 9, "num_crossings": 3, "obstacle_type": Wall}


class LavaCrossingLevels(_PlannerFamily, CrossingEnv):
    """``LavaCrossing-v0``: 9x9 room crossed by three lava rivers with gaps (S9N3).

    Like ``SimpleCrossing-v0`` but a wrong step into lava ends the episode without reward (not a
    success). S9N3 for the same reason. ``max_steps`` 40 (expert over 300 levels: mean 16.7,
    longest 31). Expert: shortest path that never enters lava.
    Mission: "avoid the lava and get to the green goal square".
    """

    family = "LavaCrossing-v0"
    expert_name = "shortest-path planner avoiding lava"
    default_max_steps = 40
    env_kwargs = {"size": 9, "num_crossings": 3, "obstacle_type": Lava}


class DoorKeyLevels(_PlannerFamily, DoorKeyEnv):
    """``DoorKey-v0``: 8x8 room split by a wall with a locked door; the key is on the agent's side.

    Tests subgoals: pick up the key, unlock the door, reach the goal. ``max_steps`` 64 (expert:
    mean 16.8, longest 28). Expert:
    if the goal is reachable (door unlocked, or the key carried) take the shortest path to it,
    unlocking on the way; otherwise the shortest path to pick up the key.
    Mission: "use the key to open the door and then get to the goal".
    """

    family = "DoorKey-v0"
    expert_name = "shortest-path planner: key, then door, then goal"
    default_max_steps = 64
    env_kwargs = {"size": 8}

    def _expert_step(self, planner: GridPlanner) -> int | None:
        action = planner.next_action(self._goals, _FORWARD)
        if action is None and self.carrying is None:
            action = planner.next_action(planner.find("key"), _PICKUP)
        return action


class UnlockLevels(_PlannerFamily, UnlockEnv):
    """``Unlock-v0``: two 6x6 rooms; open the locked door with the key of its color.

    Tests a two-step subgoal chain without navigation past the door. ``max_steps`` 40 (expert:
    mean 9.5, longest 17). Expert:
    shortest path to pick up the key of the door's color, then to face the door and toggle it.
    Mission: "open the door".
    """

    family = "Unlock-v0"
    expert_name = "shortest-path planner: key, then door"
    default_max_steps = 40

    def _expert_step(self, planner: GridPlanner) -> int | None:
        door, carrying = self.door, self.carrying
        if carrying is None:
            return planner.next_action(planner.find("key", door.color), _PICKUP)
        if carrying.type == "key" and carrying.color == door.color:
            return planner.next_action({tuple(door.cur_pos)}, _TOGGLE)
        return None


class GoToLocalLevels(_BotFamily, GoToLocal):
    """``GoToLocal-v0``: BabyAI GoToLocal, one 8x8 room with 8 objects; go to the one named.

    Tests grounding the mission among distractors (several objects may match, e.g. "go to a red
    ball"). ``max_steps`` 40 (expert: mean 5.3, longest 24). Expert: BabyAI bot.
    Mission e.g. "go to the green key".
    """

    family = "GoToLocal-v0"
    default_max_steps = 40
    env_kwargs = {"room_size": 8, "num_dists": 8}


class PickupLocLevels(_BotFamily, PickupLoc):
    """``PickupLoc-v0``: BabyAI PickupLoc, one 8x8 room with 8 objects; pick up the one named.

    Objects may be named by their location relative to the agent's start ("on your left", "in
    front of you", "behind you"). ``max_steps`` 40 (expert: mean 6.1, longest 24). Expert:
    BabyAI bot.
    Mission e.g. "pick up the blue ball on your left".
    """

    family = "PickupLoc-v0"
    default_max_steps = 40


class PutNextLocalLevels(_BotFamily, PutNextLocal):
    """``PutNextLocal-v0``: BabyAI PutNextLocal, one 8x8 room with 8 distinct objects.

    Tests a two-object mission: carry one named object next to another. ``max_steps`` 64
    (expert: mean 12.0, longest 42). Expert: BabyAI bot.
    Mission e.g. "put the red box next to the grey ball".
    """

    family = "PutNextLocal-v0"
    default_max_steps = 64
    env_kwargs = {"room_size": 8, "num_objs": 8}

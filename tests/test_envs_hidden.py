"""The families where the demonstrations are needed (suite 3): hidden goal, withheld mission.

What every family shares (check_env, render, determinism, splits, experts on sampled levels) runs
from the registry in ``test_envs_families.py``; the content-distinct splits are tested for every
content-split family in ``test_envs_contents.py``.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from minigrid.core.constants import OBJECT_TO_IDX

import trajbench  # noqa: F401  (registers the families)
from trajbench.envs import family_class
from trajbench.envs.demonstrators import Demonstrator
from trajbench.envs.minigrid_hidden import WITHHELD_MISSION
from trajbench.families import subset

HIDDEN_GOAL = ["HiddenFourRooms-v0", "HiddenMultiRoom-v0"]
FAMILIES = [*HIDDEN_GOAL, "HiddenGoToLocal-v0"]
_GOAL = OBJECT_TO_IDX["goal"]


def make(env_id: str, **kwargs) -> gym.Env:
    return gym.make(f"trajbench/{env_id}", **kwargs)


def episode(env: gym.Env, level: int, seed: int, kind: str = "expert") -> tuple[list, dict, int]:
    obs, info = env.reset(seed=seed, options={"level": level})
    demo = Demonstrator(kind, env, np.random.default_rng(seed))
    observations, done, steps = [obs], False, 0
    while not done:
        obs, _, terminated, truncated, info = env.step(demo.act())
        observations.append(obs)
        steps += 1
        done = terminated or truncated
    return observations, info, steps


@pytest.mark.parametrize("env_id", FAMILIES)
def test_expert_succeeds_from_every_sampled_start(env_id):
    """Sampled test and train levels, 12 start draws each, within the family's ``max_steps``."""
    env = make(env_id)
    u = env.unwrapped
    levels = [*subset(u.splits()["test"], 3, env_id), *subset(u.splits()["train"], 3, env_id)]
    for level in levels:
        starts = set()
        for seed in range(12):
            _, info, steps = episode(env, int(level), seed)
            assert info["success"], (env_id, level, seed)
            assert steps <= u.max_steps
            env.reset(seed=seed, options={"level": int(level)})
            starts.add((tuple(u.agent_pos), u.agent_dir))
        assert len(starts) > 1


@pytest.mark.filterwarnings("ignore:The system font:UserWarning")  # pygame, in render checks
@pytest.mark.parametrize("env_id", FAMILIES)
def test_check_env_and_facts(env_id):
    u = make(env_id).unwrapped
    check_env(u)
    assert u.content_split and u.random_start
    assert u.demo_decoder in ("goal_cell", "final_object")
    assert u.family == env_id and family_class(env_id) is type(u)
    with pytest.raises(ValueError, match="random_start"):
        make(env_id, random_start=False)


@pytest.mark.parametrize("env_id", HIDDEN_GOAL)
def test_the_goal_is_never_in_the_view_but_ends_the_episode(env_id):
    env = make(env_id)
    u = env.unwrapped
    seen_cells = 0
    for level in range(6):
        for kind in ("expert", "random"):
            observations, info, _ = episode(env, level, level, kind)
            assert not any((o["image"][..., 0] == _GOAL).any() for o in observations)
            seen_cells += sum(int((o["image"][..., 0] > 1).sum()) for o in observations)
            if kind == "expert":  # the goal is in the grid: stepping onto it is the success
                assert info["success"] and u.grid.get(*u.agent_pos).type == "goal"
    assert seen_cells > 0  # the views show walls and doors: only the goal is hidden


def test_the_visible_families_show_their_goal():
    """The same check on FourRooms-v2 finds the goal in a view: the hiding is what differs."""
    env = make("FourRooms-v2")
    found = any(
        (o["image"][..., 0] == _GOAL).any()
        for level in range(6)
        for o in episode(env, level, level)[0]
    )
    assert found


def test_hidden_multiroom_goal_is_beyond_the_first_room_and_not_always_in_the_last():
    u = make("HiddenMultiRoom-v0").unwrapped
    rooms_of_goal = []
    for level in range(40):
        u.reset(seed=0, options={"level": level})
        (goal,) = [
            (x, y)
            for x in range(u.width)
            for y in range(u.height)
            if (c := u.grid.get(x, y)) is not None and c.type == "goal"
        ]

        def inside(room, cell=goal):
            return all(room.top[i] < cell[i] < room.top[i] + room.size[i] - 1 for i in (0, 1))

        (index,) = [i for i, room in enumerate(u.rooms) if inside(room)]
        rooms_of_goal.append(index)
    assert 0 not in rooms_of_goal
    assert len(set(rooms_of_goal)) >= 2


def test_withheld_mission_shows_nothing_of_the_target():
    env = make("HiddenGoToLocal-v0")
    u = env.unwrapped
    targets = set()
    for level in range(10):
        observations, info, _ = episode(env, level, level)
        assert {o["mission"] for o in observations} == {WITHHELD_MISSION}
        assert u.mission_text == WITHHELD_MISSION and not u.has_mission
        assert info["success"]
        targets.add(u.surface)
    assert len(targets) > 5  # the levels fix different targets behind the same mission

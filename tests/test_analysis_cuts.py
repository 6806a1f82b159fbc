"""Where an episode went wrong: the cut point and the expert's distance along recorded episodes."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest

import trajbench  # noqa: F401  (registers the families)
from trajbench.analysis import cuts as C
from trajbench.errors import TrajbenchError

DR = "trajbench/DarkRoom-v0"


# -- the cut point on hand-made distance sequences ----------------------------------------------
def test_cut_of_a_successful_episode_is_its_first_step_away():
    assert (
        C.cut_point([4, 3, 3, 4, 3, 2, 1, 0, 0], success=True) == 2
    )  # a no-op (3 -> 3) is not wrong
    assert C.cut_point([2, 3, 2, 1, 0], success=True) == 0
    assert C.cut_point([3, 2, 1, 0, 0], success=True) is None


def test_cut_of_a_failed_episode_is_its_last_closest_approach():
    # closest approach 1 at steps 3 and 5; after step 5 it never gets back: keep steps 0..4
    assert C.cut_point([4, 3, 2, 1, 2, 1, 2, 3, 4], success=False) == 5
    # unrecoverable (infinite distance) after step 2
    assert C.cut_point([3, 2, 1, math.inf, math.inf], success=False) == 2
    # closest at the very end: it only ran out of time, nothing to cut
    assert C.cut_point([5, 4, 4, 3], success=False) is None


def test_cut_point_rejects_bad_distances():
    with pytest.raises(TrajbenchError):
        C.cut_point([], success=True)
    with pytest.raises(TrajbenchError):
        C.cut_point([1.0, float("nan")], success=False)


# -- the expert's distance along recorded episodes ----------------------------------------------
def _dark_room_start(level: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    env = gym.make(DR)
    obs, _ = env.reset(seed=seed, options={"level": level})
    goal = np.array([level % 9, level // 9])
    env.close()
    return np.asarray(obs), goal


def test_dark_room_distances_are_manhattan_and_the_cut_finds_the_detour():
    level, goal = 40, np.array([4, 4])
    for seed in range(100):  # a start off the border and off the goal, so the detour is real
        start, _ = _dark_room_start(level, seed)
        if 0 < start[0] < 8 and not np.array_equal(start, goal):
            break
    # One step away from the goal along x, a no-op, then straight to the goal (x first, then y).
    away = (
        3 if start[0] <= goal[0] else 4
    )  # left if the goal is to the right (or level), else right
    actions, pos = [away, 0], start.copy()
    pos[0] += -1 if away == 3 else 1
    while pos[0] != goal[0]:
        a = 4 if goal[0] > pos[0] else 3
        pos[0] += 1 if a == 4 else -1
        actions.append(a)
    while pos[1] != goal[1]:
        a = 2 if goal[1] > pos[1] else 1
        pos[1] += 1 if a == 2 else -1
        actions.append(a)
    actions += [0] * (20 - len(actions))
    d = C.expert_distances(DR, level, seed, actions)
    manhattan = int(np.abs(start - goal).sum())
    expected = [manhattan, manhattan + 1, manhattan + 1]
    expected += list(range(manhattan, -1, -1))
    expected += [0] * (len(actions) + 1 - len(expected))
    np.testing.assert_array_equal(d, expected)
    assert C.cut_point(d, success=True) == 0


def test_replay_that_does_not_match_the_stored_observations_is_refused():
    start, _ = _dark_room_start(3, 1)
    obs = np.tile(start.astype(np.uint8), (2, 1))
    obs[1] = (obs[1] + 1) % 9  # not where the action leads
    with pytest.raises(TrajbenchError, match="does not reproduce"):
        C.expert_distances(DR, 3, 1, [0, 0], obs)


def test_gotolocal_expert_episode_counts_down_to_zero():
    env = gym.make("trajbench/GoToLocal-v0")
    env.reset(seed=0, options={"level": 9004})
    actions, done = [], False
    while not done:
        a = env.unwrapped.expert_action()
        _, _, term, trunc, _ = env.step(a)
        actions.append(a)
        done = term or trunc
    env.close()
    d = C.expert_distances("trajbench/GoToLocal-v0", 9004, 0, actions)
    np.testing.assert_array_equal(d, np.arange(len(actions), -1, -1))
    assert C.cut_point(d, success=True) is None

"""Step labels: importance's step kinds and phases' routine/decision split."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import trajbench  # noqa: F401  (registers the environments)
from trajbench.analysis.steps import KINDS, family_events, is_decision, off_plan_steps, step_kinds
from trajbench.errors import TrajbenchError

DARK_ROOM = "trajbench/DarkRoom-v0"
NOOP, UP, DOWN, LEFT, RIGHT = range(5)


def test_dark_room_step_kinds_on_a_hand_made_episode():
    # Walk right twice, down once onto the goal, stay twice.
    obs = np.array([[0, 0], [1, 0], [2, 0], [2, 1], [2, 1]], np.uint8)
    actions = np.array([RIGHT, RIGHT, DOWN, NOOP, NOOP])
    rewards = np.array([0, 0, 1, 1, 1], np.float32)
    k = step_kinds(obs, actions, rewards, "trajbench/DarkRoom-v0")
    assert set(k) == set(KINDS)
    assert k["goal_reached"].tolist() == [False, False, True, True, True]
    assert k["goal_arrival"].tolist() == [False, False, True, False, False]
    assert k["turning_point"].tolist() == [False, False, True, True, False]
    assert k["episode_start"].tolist() == [True, False, False, False, False]
    assert k["episode_end"].tolist() == [False, False, False, False, True]
    assert not k["off_plan"].any() and not k["recovery"].any()
    assert not k["key_pickup"].any() and not k["door_opened"].any()
    # With a plan: step 1 left it, step 2 came back.
    k = step_kinds(
        obs, actions, rewards, "trajbench/DarkRoom-v0", off_plan=[False, True, False, False, False]
    )
    assert k["off_plan"].tolist() == [False, True, False, False, False]
    assert k["recovery"].tolist() == [False, False, True, False, False]
    with pytest.raises(TrajbenchError):
        step_kinds(obs, actions, rewards[:3], "trajbench/DarkRoom-v0")


def test_key_to_door_step_kinds():
    # obs (x, y, has_key); the key reward at step 1, the door reward at step 3.
    obs = np.array([[0, 0, 0], [1, 0, 0], [2, 0, 1], [2, 1, 1]], np.uint8)
    actions = np.array([RIGHT, RIGHT, DOWN, DOWN])
    rewards = np.array([0, 1, 0, 1], np.float32)
    k = step_kinds(obs, actions, rewards, "trajbench/DarkKeyToDoor-v0")
    assert k["key_pickup"].tolist() == [False, True, False, False]
    assert k["door_opened"].tolist() == [False, False, False, True]
    assert k["goal_reached"].tolist() == [False, False, False, True]


def _minigrid_obs(agent_obj: int, front_obj: int, front_state: int) -> np.ndarray:
    from minigrid.core.constants import OBJECT_TO_IDX

    o = np.zeros(148, np.uint8)
    o[0:147:3] = OBJECT_TO_IDX["wall"]
    # image[x, y, c] flattened in C order: the agent's cell is (3, 6), the one in front (3, 5).
    o[(3 * 7 + 6) * 3] = agent_obj
    o[(3 * 7 + 5) * 3] = front_obj
    o[(3 * 7 + 5) * 3 + 2] = front_state
    return o


def test_minigrid_step_kinds_on_hand_made_views():
    from minigrid.core.actions import Actions
    from minigrid.core.constants import OBJECT_TO_IDX, STATE_TO_IDX

    empty, key, door = OBJECT_TO_IDX["empty"], OBJECT_TO_IDX["key"], OBJECT_TO_IDX["door"]
    opened, locked = STATE_TO_IDX["open"], STATE_TO_IDX["locked"]
    obs = np.stack(
        [
            _minigrid_obs(empty, key, 0),  # facing the key: pickup succeeds
            _minigrid_obs(key, door, locked),  # carrying it, facing a locked door: toggle
            _minigrid_obs(key, door, opened),  # the door is open now: forward
            _minigrid_obs(key, empty, 0),  # toggle on nothing
            _minigrid_obs(key, door, locked),  # a failed toggle: the door stays locked
            _minigrid_obs(key, door, locked),
        ]
    )
    a = [Actions.pickup, Actions.toggle, Actions.forward, Actions.toggle, Actions.toggle, 2]
    rewards = np.array([0, 0, 0, 0, 0, 0.9], np.float32)
    k = step_kinds(obs, np.array([int(x) for x in a]), rewards, "trajbench/DoorKey-v1")
    assert k["key_pickup"].tolist() == [True, False, False, False, False, False]
    assert k["door_opened"].tolist() == [False, True, False, False, False, False]
    assert k["goal_reached"].tolist() == [False] * 5 + [True]
    # A pickup facing a key that does not end up carried (hands full with a ball) is not one.
    ball = OBJECT_TO_IDX["ball"]
    obs2 = np.stack([_minigrid_obs(ball, key, 0), _minigrid_obs(ball, key, 0)])
    k2 = step_kinds(obs2, np.array([int(Actions.pickup)] * 2), np.zeros(2), "trajbench/DoorKey-v1")
    assert not k2["key_pickup"].any()


def test_a_real_door_key_episode_has_one_pickup_and_one_opening():
    env = gym.make("trajbench/DoorKey-v0", levels="test")
    obs, _ = env.reset(seed=3)
    raw = env.unwrapped
    o, a, r = [], [], []
    done = False
    while not done:
        o.append(raw.encode_obs(obs))
        action = raw.expert_action()
        obs, reward, term, trunc, _ = env.step(action)
        a.append(action)
        r.append(reward)
        done = term or trunc
    env.close()
    k = step_kinds(np.stack(o), np.array(a), np.array(r, np.float32), "trajbench/DoorKey-v1")
    assert k["key_pickup"].sum() == 1
    assert k["door_opened"].sum() == 1
    assert k["goal_reached"].sum() == 1 and k["goal_reached"][-1]
    assert np.flatnonzero(k["key_pickup"])[0] < np.flatnonzero(k["door_opened"])[0]


def test_off_plan_steps_replays_an_episode_and_finds_its_detours():
    env = gym.make(DARK_ROOM, levels="all")
    level, seed = 40, 11
    obs, _ = env.reset(seed=seed, options={"level": level})
    raw = env.unwrapped
    detours = {1, 2, 6}
    o, a, expected = [], [], []
    for t in range(12):
        o.append(raw.encode_obs(obs))
        best = raw.expert_action()
        action = (best + 1) % 5 if t in detours else best
        expected.append(action != best)
        obs, *_ = env.step(action)
        a.append(action)
    env.close()
    o = np.stack(o)
    off = off_plan_steps(DARK_ROOM, seed, level, o, np.array(a))
    assert off.tolist() == expected
    k = step_kinds(o, np.array(a), np.zeros(12), "trajbench/DarkRoom-v0", off)
    assert np.flatnonzero(k["recovery"]).tolist() == [3, 7]
    wrong = o.copy()
    wrong[5, 0] = (wrong[5, 0] + 1) % 9
    assert off_plan_steps(DARK_ROOM, seed, level, wrong, np.array(a)) is None


def test_routine_and_decision_labels():
    start = 5  # start_action of a 5-action family
    actions = [RIGHT, RIGHT, RIGHT, DOWN, DOWN, NOOP, NOOP]
    prev = [start, RIGHT, RIGHT, RIGHT, DOWN, DOWN, NOOP]
    assert is_decision(actions, prev, 5, "trajbench/DarkRoom-v0").tolist() == [
        True,  # first step: the plan is chosen
        False,
        False,
        True,  # turn
        False,
        True,  # arrive: stop moving
        False,  # stay
    ]
    # MiniGrid: forward along a corridor is routine, a repeated toggle is still a decision.
    fwd, toggle = 2, 5
    got = is_decision([fwd, fwd, toggle, toggle], [7, fwd, fwd, toggle], 7, "trajbench/DoorKey-v1")
    assert got.tolist() == [True, False, True, True]
    # A family without interactions: a repeated action is routine.
    assert not is_decision([3], [3], 5, "trajbench/DarkRoom-v0")[0]
    with pytest.raises(TrajbenchError):
        is_decision([1, 2], [1], 5, "trajbench/DarkRoom-v0")


def test_family_events_are_the_family_specific_part_of_the_kinds():
    obs = np.array([[0, 0, 0], [1, 0, 0], [2, 0, 1], [2, 1, 1]], np.uint8)
    actions, rewards = np.array([RIGHT, RIGHT, DOWN, DOWN]), np.array([0, 1, 0, 1], np.float32)
    events = family_events(obs, actions, rewards, "trajbench/DarkKeyToDoor-v0")
    kinds = step_kinds(obs, actions, rewards, "trajbench/DarkKeyToDoor-v0")
    assert set(events) == {"goal_reached", "key_pickup", "door_opened", "waypoint"}
    for name, labels in events.items():
        assert labels.tolist() == kinds[name].tolist()
    assert events["key_pickup"].tolist() == [False, True, False, False]
    # The order family names its waypoints; a family without keys never has one.
    seq = family_events(obs[:, :2], actions, rewards, "trajbench/DarkSequence-v0")
    assert seq["waypoint"].tolist() == [False, True, False, True]
    assert not seq["key_pickup"].any() and not seq["door_opened"].any()

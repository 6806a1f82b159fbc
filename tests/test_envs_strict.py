"""Strict verification on the BabyAI families (suite 3): the first object counts.

The tour below ignores the mission and the context: it walks (BFS over cell and direction with
left / right / forward) to face the nearest object it has not faced yet, and on a pick-up family
picks up each object it faces. Under BabyAI's own verification (``-v1``) it succeeds almost always
on GoToLocal; under strict verification it must score at most chance + 0.1.
"""

from __future__ import annotations

from collections import deque

import gymnasium as gym
import numpy as np
import pytest
from minigrid.core.actions import Actions

import trajbench  # noqa: F401  (registers the families)
from trajbench.families import subset

STRICT = ["GoToLocal-v2", "PickupLoc-v2", "PutNextLocal-v2", "HiddenGoToLocal-v0"]
_DIR = ((1, 0), (0, 1), (-1, 0), (0, -1))
_OBJECTS = ("ball", "box", "key")
pytestmark = pytest.mark.filterwarnings("ignore:.*is out of date:DeprecationWarning")


def make(env_id: str, **kwargs) -> gym.Env:
    return gym.make(f"trajbench/{env_id}", **kwargs)


def objects(u) -> list:
    return [o for o in u.grid.grid if o is not None and o.type in _OBJECTS]


def path_to_face(u, cell: tuple[int, int]) -> list[int] | None:
    """Shortest left/right/forward actions that end facing ``cell`` (BFS over poses)."""
    start = (int(u.agent_pos[0]), int(u.agent_pos[1]), int(u.agent_dir))
    prev = {start: None}
    queue = deque([start])
    while queue:
        x, y, d = state = queue.popleft()
        if (x + _DIR[d][0], y + _DIR[d][1]) == cell:
            actions = []
            while prev[state] is not None:
                state, action = prev[state]
                actions.append(action)
            return actions[::-1]
        fx, fy = x + _DIR[d][0], y + _DIR[d][1]
        moves = [(Actions.left, (x, y, (d - 1) % 4)), (Actions.right, (x, y, (d + 1) % 4))]
        if u.grid.get(fx, fy) is None:
            moves.append((Actions.forward, (fx, fy, d)))
        for action, nxt in moves:
            if nxt not in prev:
                prev[nxt] = (state, int(action))
                queue.append(nxt)
    return None


def tour(env: gym.Env, level: int, seed: int, pick_up: bool) -> dict:
    """One episode of the mission-free, context-free tour; the last ``info`` and who was faced."""
    env.reset(seed=seed, options={"level": level})
    u = env.unwrapped
    faced: set[int] = set()
    info: dict = {"success": False}
    while True:
        paths = [
            (len(p), i, p)
            for i, o in enumerate(objects(u))
            if id(o) not in faced and (p := path_to_face(u, tuple(o.cur_pos))) is not None
        ]
        if not paths:
            return info
        _, i, path = min(paths)
        target = objects(u)[i]
        for action in path + ([int(Actions.pickup), int(Actions.drop)] if pick_up else []):
            _, _, terminated, truncated, info = env.step(action)
            if terminated or truncated:
                return info
        faced.add(id(target))


def chance(u) -> float:
    """Share of the room's objects whose touch the mission accepts (by its object sets)."""
    instr = u.instrs
    accepted = instr.desc_move.obj_set if hasattr(instr, "desc_move") else instr.desc.obj_set
    objs = objects(u)
    return sum(any(a is o for a in accepted) for o in objs) / len(objs)


def tour_score(env_id: str, n: int = 40) -> tuple[float, float]:
    env = make(env_id, levels="test")
    levels = subset(env.unwrapped.splits()["test"], n, env_id, "tour")
    wins, chances = [], []
    for i, level in enumerate(levels):
        info = tour(env, int(level), i, pick_up="Pickup" in env_id or "PutNext" in env_id)
        wins.append(bool(info["success"]))
        env.reset(seed=i, options={"level": int(level)})
        chances.append(chance(env.unwrapped))
    return float(np.mean(wins)), float(np.mean(chances))


@pytest.mark.parametrize("env_id", STRICT)
def test_the_tour_is_at_chance_under_strict_verification(env_id):
    score, at_chance = tour_score(env_id)
    assert score <= at_chance + 0.1, (score, at_chance)


def test_the_tour_succeeds_under_babyai_verification():
    """The same tour on GoToLocal-v1 (BabyAI's own rule): what strict verification removes."""
    score, at_chance = tour_score("GoToLocal-v1", n=20)
    assert score >= 0.9 > at_chance + 0.1


def _face(env: gym.Env, obj) -> tuple[float, bool, dict]:
    reward, terminated, info = 0.0, False, {}
    for action in path_to_face(env.unwrapped, tuple(obj.cur_pos)):
        _, reward, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            break
    return reward, terminated, info


def _accepted(u) -> list:
    return list(u.instrs.desc.obj_set)


@pytest.mark.parametrize("env_id", ["GoToLocal-v2", "HiddenGoToLocal-v0"])
def test_facing_a_wrong_object_ends_the_episode_as_a_failure(env_id):
    env = make(env_id)
    u = env.unwrapped
    for level in range(12):
        env.reset(seed=level, options={"level": level})
        wrong = [o for o in objects(u) if not any(o is a for a in _accepted(u))]
        reward, terminated, info = _face(env, wrong[0])
        facing = u.grid.get(*u.front_pos)
        if facing is wrong[0]:  # reached without facing another object first
            assert terminated and reward == 0 and info["success"] is False
        else:  # it faced another object on the way: that one counted
            assert terminated and (facing in _accepted(u)) == info["success"]


def test_picking_up_a_wrong_object_ends_the_episode_as_a_failure():
    env = make("PickupLoc-v2")
    u = env.unwrapped
    env.reset(seed=0, options={"level": 0})
    wrong = [o for o in objects(u) if not any(o is a for a in _accepted(u))]
    for obj in wrong:
        env.reset(seed=0, options={"level": 0})
        obj = next(o for o in objects(u) if tuple(o.cur_pos) == tuple(obj.cur_pos))
        path = path_to_face(u, tuple(obj.cur_pos))
        for action in path:
            env.step(action)
        _, reward, terminated, _, info = env.step(int(Actions.pickup))
        assert u.carrying is obj
        assert terminated and reward == 0 and info["success"] is False
        return
    pytest.fail("level 0 has no wrong object")


def test_v1_keeps_babyai_verification():
    env = make("GoToLocal-v1")
    u = env.unwrapped
    env.reset(seed=0, options={"level": 0})
    wrong = [o for o in objects(u) if not any(o is a for a in _accepted(u))]
    _, terminated, _ = _face(env, wrong[0])
    assert not terminated or u.grid.get(*u.front_pos) in _accepted(u)


def test_a_decoy_evaluation_ends_at_either_object_and_records_which():
    env = make("GoToLocal-v2")
    u = env.unwrapped
    seen = {"decoy": 0, "target": 0}
    for level in range(30):
        env.reset(seed=level, options={"level": level})
        if u.draw_decoy(np.random.default_rng(level)) is None:
            continue
        for goal in ("decoy", "target"):
            env.reset(seed=level, options={"level": level})
            objs = u._decoy.instr.desc.obj_set if goal == "decoy" else _accepted(u)
            _, terminated, info = _face(env, objs[0])
            front = u.grid.get(*u.front_pos)
            if front is not objs[0]:
                continue  # another object came first; the first object counts
            seen[goal] += 1
            assert terminated
            assert info["decoy_success"] is (goal == "decoy")
            assert info["success"] is (goal == "target")
    assert min(seen.values()) >= 5

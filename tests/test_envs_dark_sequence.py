"""Dark Sequence: levels, dynamics, the expert, the order-free oracle and the batched env."""

from __future__ import annotations

import itertools
import math
from collections import deque

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import trajbench  # noqa: F401  (registers the families)
from trajbench.envs import env_ids, split_levels
from trajbench.envs.dark_grid import DOWN, LEFT, RIGHT, UP
from trajbench.envs.dark_sequence import (
    DarkSequenceEnv,
    DarkSequenceVectorEnv,
    oracle_success,
)
from trajbench.envs.demonstrators import Demonstrator

ENV_ID = "trajbench/DarkSequence-v0"


# -- an independent reference: plain BFS over (x, y) cells ------------------------------------
def bfs(size: int, target: int, blocked) -> dict[int, int]:
    """Steps from every cell that reaches ``target`` without entering ``blocked``."""
    dist, queue = {target: 0}, deque([target])
    while queue:
        cell = queue.popleft()
        x, y = cell % size, cell // size
        for nx, ny in ((x, y - 1), (x, y + 1), (x - 1, y), (x + 1, y)):
            nxt = ny * size + nx
            if 0 <= nx < size and 0 <= ny < size and nxt not in dist and nxt not in blocked:
                dist[nxt] = dist[cell] + 1
                queue.append(nxt)
    return dist


def reference_starts(size: int, seq) -> dict[int, int]:
    """Valid start cell -> the shortest episode that visits ``seq`` in order from it."""
    rest = sum(
        bfs(size, seq[k], seq[k + 1 :]).get(seq[k - 1], math.inf) for k in range(1, len(seq))
    )
    first = bfs(size, seq[0], seq[1:])
    return {s: d + rest for s, d in first.items() if d > 0 and rest < math.inf}


def reference_levels(size: int, n: int) -> list[tuple[int, ...]]:
    """The solvable sequences in lexicographic order (``itertools.permutations`` order)."""
    return [p for p in itertools.permutations(range(size * size), n) if reference_starts(size, p)]


def level_of(env, cells) -> int:
    """The level whose waypoint cells are ``cells``, in order."""
    (found,) = np.flatnonzero((env.tables.waypoints == np.asarray(cells)).all(axis=1))
    return int(found)


def cell(env, obs) -> int:
    return int(obs[1]) * env.size + int(obs[0])


def expert_episode(env, level: int, seed: int, start: int | None = None):
    obs, info = env.reset(seed=seed, options={"level": level})
    u = env.unwrapped
    if start is not None:
        u.pos = np.array([start % u.size, start // u.size])
        obs = u.pos.copy()
    observations, rewards, done = [obs.tolist()], [], False
    while not done:
        obs, reward, terminated, truncated, info = env.step(u.expert_action())
        observations.append(obs.tolist())
        rewards.append(reward)
        done = terminated or truncated
    return observations, rewards, bool(info["success"]), terminated


# -- API --------------------------------------------------------------------------------------
def test_check_env_both_make_forms_and_facts():
    check_env(gym.make(ENV_ID).unwrapped, skip_render_check=True)
    env = gym.make(f"trajbench:{ENV_ID}").unwrapped
    assert env.family == "DarkSequence-v0" and ENV_ID in env_ids()
    assert env.observation_space == gym.spaces.MultiDiscrete([7, 7])  # the position, nothing else
    assert env.encoding.name == "dark-sequence" and env.encoding.feature_sizes == (7, 7)
    assert not env.has_mission and env.interaction_actions == () and env.expert_name
    assert "3 hidden waypoint" in env.level_fixes and "start" in env.episode_draws
    assert "2 hidden waypoint" in DarkSequenceEnv(size=4, n_waypoints=2).level_fixes
    vec = gym.make_vec(ENV_ID, num_envs=3, vectorization_mode="vector_entry_point", size=5)
    assert isinstance(vec.unwrapped, DarkSequenceVectorEnv) and vec.unwrapped.size == 5


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"size": 1}, "size"),
        ({"size": 2, "n_waypoints": 4}, "n_waypoints must be in 1..3"),
        ({"n_waypoints": 0}, "n_waypoints"),
        ({"size": 12}, "limit"),
        ({"max_steps": 0}, "max_steps"),
        ({"sticky_p": 1.0}, "sticky_p"),
    ],
)
def test_bad_constructor_arguments_are_clear_value_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DarkSequenceEnv(**kwargs)


# -- levels -----------------------------------------------------------------------------------
def test_levels_are_the_solvable_sequences_in_lexicographic_order():
    for size, n in [(3, 3), (4, 3), (4, 2)]:
        expected = reference_levels(size, n)
        got = DarkSequenceEnv(size=size, n_waypoints=n).tables.waypoints
        assert [tuple(row) for row in got.tolist()] == expected, (size, n)
    corner_trap = (0, 1, 4)  # corner (0, 0), its two neighbours the later waypoints
    small = DarkSequenceEnv(size=4).tables.waypoints.tolist()
    assert list(corner_trap) not in small and [1, 0, 4] in small


def test_default_levels_are_every_ordered_triple_but_the_corner_traps():
    env = DarkSequenceEnv()
    waypoints = env.tables.waypoints
    assert env.n_levels == math.perm(49, 3) - 4 * 2  # 4 corners x 2 orders of their neighbours
    assert len(np.unique(waypoints, axis=0)) == env.n_levels
    assert (np.diff(np.sort(waypoints, axis=1), axis=1) > 0).all()  # distinct cells
    assert (waypoints == DarkSequenceEnv().tables.waypoints).all()
    for corner, a, b in [(0, 1, 7), (6, 5, 13), (42, 35, 43), (48, 41, 47)]:
        for trap in ((corner, a, b), (corner, b, a)):
            assert not (waypoints == trap).all(axis=1).any(), trap


def test_level_builds_the_same_sequence_in_every_env():
    a, b = gym.make(ENV_ID), gym.make(ENV_ID, levels="test")
    level = int(b.unwrapped.splits()["test"][5])
    a.reset(seed=1, options={"level": level})
    b.reset(seed=2, options={"level": level})
    assert a.unwrapped.waypoints.tolist() == b.unwrapped.waypoints.tolist()
    assert a.unwrapped.level == level


def test_splits_are_disjoint_deterministic_and_restrict_draws():
    env = gym.make(ENV_ID, levels="test")
    u = env.unwrapped
    splits = u.splits()
    train, test = set(splits["train"].tolist()), set(splits["test"].tolist())
    assert not train & test and len(train | test) == u.n_levels
    assert len(test) == round(0.2 * u.n_levels)
    assert splits["test"].tolist() == split_levels(u.n_levels, u.n_test_levels)["test"].tolist()
    for seed in range(30):
        env.reset(seed=seed)
        assert u.level in test
    with pytest.raises(ValueError, match="not among"):
        env.reset(options={"level": int(splits["train"][0])})


@pytest.mark.parametrize("bad", [-1, 110_536])
def test_level_out_of_range_is_a_value_error_naming_the_range(bad):
    with pytest.raises(ValueError, match=r"out of range .* levels are 0\.\.110535"):
        gym.make(ENV_ID).reset(options={"level": bad})
    with pytest.raises(ValueError, match="out of range"):
        gym.make(ENV_ID, levels=[0, bad])
    vec = gym.make_vec(ENV_ID, num_envs=2, vectorization_mode="vector_entry_point")
    with pytest.raises(ValueError, match="out of range"):
        vec.reset(options={"level": bad})


# -- episodes ---------------------------------------------------------------------------------
def test_starts_are_exactly_the_valid_cells():
    env = gym.make(ENV_ID, size=4)
    u = env.unwrapped
    for seq in [(0, 5, 4), (5, 1, 4), (0, 1, 2)]:  # (5, 1, 4) cuts off corner 0
        level = level_of(u, seq)
        seen = {cell(u, env.reset(seed=s, options={"level": level})[0]) for s in range(300)}
        assert seen == set(reference_starts(4, seq)), seq


def test_same_seed_same_episode():
    env = gym.make(ENV_ID)
    a = expert_episode(env, 7, seed=3)
    b = expert_episode(gym.make(ENV_ID), 7, seed=3)
    assert a == b
    starts = {tuple(expert_episode(env, 7, seed=s)[0][0]) for s in range(10)}
    assert len(starts) > 1  # the start is drawn per episode


def test_rewards_order_failure_and_success():
    env = gym.make(ENV_ID, size=5).unwrapped
    seq = (12, 14, 2)  # (2, 2) -> (4, 2) -> (2, 0)
    level = level_of(env, seq)

    def walk(start, actions):
        env.reset(seed=0, options={"level": level})
        env.pos = np.array([start % 5, start // 5])
        return [env.step(a) for a in actions]

    # straight into the last waypoint: the episode fails at once
    (obs, reward, terminated, _, info), *_ = walk(7, [UP])
    assert cell(env, obs) == 2 and reward == 0 and terminated and not info["success"]
    # the first waypoint, off and on it again (nothing), the second, over the first (nothing)
    steps = walk(11, [RIGHT, LEFT, RIGHT, RIGHT, RIGHT, LEFT, LEFT, UP])
    assert [s[1] for s in steps] == [1, 0, 0, 0, 1, 0, 0, 0]
    assert not any(s[2] or s[3] for s in steps) and env.stage == 2
    # the last waypoint, now in order: success
    obs, reward, terminated, _, info = env.step(UP)
    assert cell(env, obs) == 2 and reward == 1 and terminated and info["success"]
    obs, reward, _, _, info = env.step(DOWN)  # a step past the end is harmless
    assert reward == 0 and info["success"]


def test_truncation_at_max_steps():
    env = gym.make(ENV_ID, max_steps=3)
    env.reset(seed=0, options={"level": 0})
    ends = [env.step(0)[3] for _ in range(3)]
    assert ends == [False, False, True]


def test_sticky_actions_repeat_the_previous_action():
    for sticky_p in (0.0, 0.5):
        env = gym.make(ENV_ID, sticky_p=sticky_p).unwrapped
        env.reset(seed=1, options={"level": level_of(env, (0, 6, 42))})  # corners, off row 3
        env.pos = np.array([3, 3])
        effective, repeats = None, 0
        for action in [LEFT, RIGHT] * 12:  # along row 3, where no waypoint lies
            before = int(env.pos[0])
            x = int(env.step(action)[0][0])
            landing = {a: min(max(before + (1 if a == RIGHT else -1), 0), 6) for a in (LEFT, RIGHT)}
            if x == landing[action]:
                effective = action
            else:
                assert x == landing[effective]
                repeats += 1
        assert (repeats > 0) == (sticky_p > 0) and env.pos[1] == 3


def test_step_events():
    env = gym.make(ENV_ID)
    obs, rewards, success, _ = expert_episode(env, 11, seed=0)
    events = DarkSequenceEnv.step_events(np.array(obs[:-1]), np.zeros(len(rewards)), rewards)
    assert success and events["waypoint"].sum() == 3
    assert events["goal_reached"].tolist() == [False] * (len(rewards) - 1) + [True]
    failed = DarkSequenceEnv.step_events(np.zeros((3, 2)), np.zeros(3), [1.0, 0.0, 0.0])
    assert failed["waypoint"].tolist() == [True, False, False] and not failed["goal_reached"].any()


# -- expert and oracle -----------------------------------------------------------------------
def test_expert_walks_shortest_paths_from_every_start_of_every_small_level():
    """Every level of 4x4 with 3 waypoints, every valid start (batched env, checked against BFS)."""
    size = 4
    levels = DarkSequenceEnv(size=size).tables.waypoints
    pairs = [
        (level, start, steps)
        for level, seq in enumerate(levels.tolist())
        for start, steps in reference_starts(size, seq).items()
    ]
    level, start, shortest = (np.array(col) for col in zip(*pairs, strict=True))
    vec = DarkSequenceVectorEnv(len(pairs), size=size)
    vec.reset(seed=0, options={"level": level})
    vec.pos[:] = np.stack([start % size, start // size], axis=1)
    running = np.ones(len(pairs), dtype=bool)
    length, total = np.zeros(len(pairs), int), np.zeros(len(pairs))
    succeeded = np.zeros(len(pairs), dtype=bool)
    while running.any():
        _, reward, terminated, truncated, _ = vec.step(vec.expert_actions())
        length += running
        total += np.where(running, reward, 0)
        succeeded |= running & terminated & (vec.stage == 3)
        running &= ~(terminated | truncated)
    assert succeeded.all() and (total == 3).all()
    assert (length == shortest).all()
    assert vec.max_steps == shortest.max()  # the default max_steps is the longest expert episode


def test_single_expert_succeeds_from_every_start_of_every_3x3_level():
    env = gym.make(ENV_ID, size=3)
    for level, seq in enumerate(env.unwrapped.tables.waypoints.tolist()):
        for start, shortest in reference_starts(3, seq).items():
            _, rewards, success, _ = expert_episode(env, level, 0, start=start)
            assert success and len(rewards) == shortest, (level, start)


def test_expert_succeeds_from_every_start_on_sampled_train_and_test_levels():
    env = gym.make(ENV_ID)
    splits = env.unwrapped.splits()
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for level in rng.choice(splits[split], size=8, replace=False).tolist():
            seq = env.unwrapped.tables.waypoints[level].tolist()
            for start, shortest in reference_starts(7, seq).items():
                _, rewards, success, _ = expert_episode(env, level, 0, start=start)
                assert success and sum(rewards) == 3 and len(rewards) == shortest
                assert len(rewards) <= env.unwrapped.max_steps


@pytest.mark.parametrize(("n", "episodes"), [(3, 2000), (2, 1000)])
def test_order_free_oracle_succeeds_one_in_n_factorial(n, episodes):
    env = gym.make(ENV_ID, n_waypoints=n)
    p = 1 / math.factorial(n)
    rate = oracle_success(env, episodes, seed=0)
    print(f"order-free oracle, {n} waypoints, {episodes} episodes: {rate:.4f} (1/{n}! = {p:.4f})")
    assert abs(rate - p) < 4 * math.sqrt(p * (1 - p) / episodes)
    assert oracle_success(env, 200, seed=1, knows_order=True) == 1.0


def test_noisy_demonstrator_mostly_succeeds_and_random_rarely():
    env = gym.make(ENV_ID)
    wins = dict.fromkeys(("noisy", "random"), 0)
    for kind in wins:
        for i in range(40):
            env.reset(seed=i)
            demo = Demonstrator(kind, env, np.random.default_rng(i), epsilon=0.25)
            done = False
            while not done:
                _, _, terminated, truncated, info = env.step(demo.act())
                done = terminated or truncated
            wins[kind] += info["success"]
    assert wins["noisy"] >= 0.8 * 40 and wins["random"] < wins["noisy"]


# -- batched ----------------------------------------------------------------------------------
def test_batched_env_matches_the_single_env():
    n = 32
    vec = gym.make_vec(ENV_ID, num_envs=n, vectorization_mode="vector_entry_point")
    u = vec.unwrapped
    singles = [gym.make(ENV_ID).unwrapped for _ in range(n)]
    levels = np.linspace(0, singles[0].n_levels - 1, n).astype(int)
    obs, _ = vec.reset(seed=0, options={"level": levels})
    for i, env in enumerate(singles):  # put each single env in the same state
        env.reset(seed=0, options={"level": int(levels[i])})
        env.pos = obs[i].copy()
        assert env.tables.start_cells(env._cells[None])[0, cell(env, obs[i])]
    rng = np.random.default_rng(0)
    running = np.ones(n, dtype=bool)
    ended = {"success": 0, "failure": 0}
    while running.any():
        expert = u.expert_actions()
        actions = np.where(rng.random(n) < 0.3, rng.integers(5, size=n), expert)
        obs, rewards, terms, truncs, _ = vec.step(actions)
        for i in np.flatnonzero(running):  # after its episode ends, a sub-env autoresets
            env = singles[i]
            assert int(expert[i]) == env.expert_action()
            o, r, term, trunc, info = env.step(int(actions[i]))
            assert o.tolist() == obs[i].tolist() and r == rewards[i]
            assert (term, trunc) == (terms[i], truncs[i]) and env.stage == u.stage[i]
            if term:
                ended["success" if info["success"] else "failure"] += 1
        ended_now = running & (terms | truncs)
        running &= ~(terms | truncs)
    assert ended["success"] and ended["failure"]  # both endings were compared
    obs, *_ = vec.step(np.zeros(n, dtype=np.int64))  # the step after an episode ends resets
    assert (u.t[ended_now] == 0).all() and (u.stage[ended_now] == 0).all()
    valid = u.tables.start_cells(u.cells[ended_now])
    assert valid[np.arange(ended_now.sum()), obs[ended_now, 1] * 7 + obs[ended_now, 0]].all()

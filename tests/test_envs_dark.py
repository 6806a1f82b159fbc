"""Dark Room and Dark Key-to-Door: API, levels, splits, experts and the batched implementations."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import trajbench  # noqa: F401  (registers the families)
from trajbench.envs import env_ids, split_levels
from trajbench.envs.demonstrators import Demonstrator

DARK = ["trajbench/DarkRoom-v0", "trajbench/DarkKeyToDoor-v0"]


def expert_episode(env, level: int, seed: int) -> tuple[list, list, bool]:
    obs, info = env.reset(seed=seed, options={"level": level})
    observations, rewards, done = [obs.tolist()], [], False
    while not done:
        obs, reward, terminated, truncated, info = env.step(env.unwrapped.expert_action())
        observations.append(obs.tolist())
        rewards.append(reward)
        done = terminated or truncated
    return observations, rewards, bool(info["success"])


@pytest.mark.parametrize("env_id", DARK)
def test_check_env_and_both_make_forms(env_id):
    check_env(gym.make(env_id).unwrapped, skip_render_check=True)
    assert gym.make(f"trajbench:{env_id}").unwrapped.family == env_id.split("/")[1]
    assert env_id in env_ids()


def test_expert_succeeds_on_every_dark_room_level():
    env = gym.make("trajbench/DarkRoom-v0")
    for level in range(81):
        for seed in range(3):
            _, rewards, success = expert_episode(env, level, seed)
            assert success, (level, seed)
            assert len(rewards) == 20


def test_expert_succeeds_on_sampled_key_to_door_levels():
    env = gym.make("trajbench/DarkKeyToDoor-v0")
    levels = np.random.default_rng(0).choice(env.unwrapped.n_levels, size=200, replace=False)
    for level in levels:
        _, rewards, success = expert_episode(env, int(level), int(level))
        assert success and sum(rewards) == 2.0, level


@pytest.mark.parametrize("env_id", DARK)
def test_same_level_and_seed_same_episode(env_id):
    a = expert_episode(gym.make(env_id), 7, seed=3)
    b = expert_episode(gym.make(env_id), 7, seed=3)
    c = expert_episode(gym.make(env_id), 7, seed=4)
    assert a == b
    assert a[0][0] != c[0][0] or a[0][0][:2] == c[0][0][:2]  # another seed: another start (usually)


def test_goal_is_the_level_and_is_hidden():
    env = gym.make("trajbench/DarkRoom-v0").unwrapped
    env.reset(seed=0, options={"level": 5 * 9 + 2})
    assert env.goal.tolist() == [2, 5]
    obs, *_ = env.step(0)
    assert obs.shape == (2,)  # only the position is observed


@pytest.mark.parametrize("env_id", DARK)
def test_splits_are_disjoint_deterministic_and_restrict_draws(env_id):
    env = gym.make(env_id, levels="test")
    splits = env.unwrapped.splits()
    train, test = set(splits["train"].tolist()), set(splits["test"].tolist())
    assert not train & test and len(train | test) == env.unwrapped.n_levels
    assert (
        splits["test"].tolist()
        == split_levels(env.unwrapped.n_levels, env.unwrapped.n_test_levels)["test"].tolist()
    )
    for seed in range(30):
        env.reset(seed=seed)
        assert env.unwrapped.level in test
    with pytest.raises(ValueError, match="not among"):
        env.reset(options={"level": int(splits["train"][0])})


@pytest.mark.parametrize("env_id", DARK)
@pytest.mark.parametrize("bad", [-1, 10**6])
def test_level_out_of_range_is_a_clear_value_error(env_id, bad):
    with pytest.raises(ValueError, match="out of range"):
        gym.make(env_id).reset(options={"level": bad})
    with pytest.raises(ValueError, match="out of range"):
        gym.make(env_id, levels=[0, bad])


def test_sticky_actions_repeat_the_previous_action():
    plain = gym.make("trajbench/DarkRoom-v0", sticky_p=0.0)
    sticky = gym.make("trajbench/DarkRoom-v0", sticky_p=0.9)
    actions = [4, 2, 3, 1] * 5
    traces = []
    for env in (plain, sticky):
        env.reset(seed=1, options={"level": 40})
        traces.append([env.step(a)[0].tolist() for a in actions])
    assert traces[0] != traces[1]
    with pytest.raises(ValueError):
        gym.make("trajbench/DarkRoom-v0", sticky_p=1.0)


@pytest.mark.parametrize("env_id", DARK)
def test_noisy_demonstrator_mostly_succeeds_and_random_rarely(env_id):
    env = gym.make(env_id)
    results = {}
    for kind in ("noisy", "random"):
        wins = 0
        for i in range(40):
            env.reset(seed=i, options={"level": i})
            demo = Demonstrator(kind, env, np.random.default_rng(i), epsilon=0.25)
            done = False
            while not done:
                _, _, term, trunc, info = env.step(demo.act())
                done = term or trunc
            wins += info["success"]
        results[kind] = wins / 40
    assert results["noisy"] >= 0.8
    assert results["random"] < results["noisy"]


@pytest.mark.parametrize("env_id", DARK)
def test_batched_env_matches_the_single_env(env_id):
    n = 16
    vec = gym.make_vec(env_id, num_envs=n, vectorization_mode="vector_entry_point")
    singles = [gym.make(env_id).unwrapped for _ in range(n)]
    levels = np.arange(n) * 3
    obs, _ = vec.reset(seed=0, options={"level": levels})
    for i, env in enumerate(singles):  # put each single env in the same state
        env.reset(seed=0, options={"level": int(levels[i])})
        env.pos = np.asarray(obs[i][:2], dtype=np.int64).copy()
    running = np.ones(n, dtype=bool)
    while running.any():
        actions = vec.unwrapped.expert_actions()
        obs, rewards, terms, truncs, _ = vec.step(actions)
        for i in np.flatnonzero(running):  # after its episode ends, a sub-env autoresets
            env = singles[i]
            assert int(actions[i]) == env.expert_action()
            o, r, term, trunc, _ = env.step(int(actions[i]))
            assert o.tolist() == obs[i].tolist() and r == rewards[i]
            assert (term, trunc) == (terms[i], truncs[i])
        ended_now = running & (terms | truncs)
        running &= ~(terms | truncs)
    vec.step(np.zeros(n, dtype=np.int64))  # the step after an episode ends resets that sub-env
    assert (vec.unwrapped.t[ended_now] == 0).all()

"""Dark Room and Dark Key-to-Door: experts, hidden goals, step events and the batched implementations.

What every family shares (API, determinism, levels, splits) is in ``test_envs_families.py``.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import trajbench  # noqa: F401  (registers the families)
from trajbench.envs.dark_key_to_door import DarkKeyToDoorEnv
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


def test_key_to_door_step_events_follow_the_key_bit_and_rewards():
    env = gym.make("trajbench/DarkKeyToDoor-v0")
    for level in (0, 42, 6000):
        observations, rewards, _ = expert_episode(env, level, seed=level)
        obs = np.asarray(observations[:-1])  # as stored: the observation each action was chosen on
        events = DarkKeyToDoorEnv.step_events(obs, np.zeros(len(rewards), int), rewards)
        key_step = int(np.flatnonzero(np.asarray(observations)[1:, 2])[0])  # has_key turns on
        assert np.flatnonzero(events["key_pickup"]).tolist() == [key_step]
        assert np.flatnonzero(events["door_opened"]).tolist() == [len(rewards) - 1]
        assert events["goal_reached"].tolist() == events["door_opened"].tolist()


def test_goal_is_the_level_and_is_hidden():
    env = gym.make("trajbench/DarkRoom-v0").unwrapped
    env.reset(seed=0, options={"level": 5 * 9 + 2})
    assert env.goal.tolist() == [2, 5]
    obs, *_ = env.step(0)
    assert obs.shape == (2,)  # only the position is observed


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

"""Every registered family: API, determinism, level API, splits, experts, facts and step events.

These tests iterate over the registry (:data:`trajbench.envs.FAMILIES`), so a new family is
covered by its registration line alone; family-specific behaviour is tested in its own file.
"""

from __future__ import annotations

import os

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # check_env opens a "human" render window

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import trajbench  # noqa: F401  (registers the families)
from trajbench.collect import rollout
from trajbench.envs import FAMILIES, NAMESPACE, env_ids, family_class, split_levels
from trajbench.envs.dark_room import DarkRoomEnv
from trajbench.envs.demonstrators import Demonstrator
from trajbench.envs.levels import LevelMixin
from trajbench.envs.minigrid_families import FourRoomsLevels
from trajbench.envs.minigrid_levels import MiniGridLevelMixin

IDS = env_ids()
pytestmark = pytest.mark.filterwarnings("ignore:.*is out of date:DeprecationWarning")


def episode(env: gym.Env, level: int, seed: int, kind: str = "expert", epsilon: float = 0.25):
    """One episode of ``level`` from ``reset(seed=seed)`` by a ``kind`` demonstrator."""
    return rollout(env, Demonstrator(kind, env, np.random.default_rng(seed), epsilon), level, seed)


def test_registry_lists_every_id_once():
    assert len(IDS) == len(set(IDS)) == len(FAMILIES)
    assert all(i.startswith(f"{NAMESPACE}/") for i in IDS)


@pytest.mark.parametrize("env_id", IDS)
def test_both_make_forms_and_family_class(env_id):
    u = gym.make(f"trajbench:{env_id}").unwrapped
    assert u.family == env_id.split("/")[1]
    assert type(u) is family_class(env_id) is family_class(env_id.split("/")[1])
    assert isinstance(u, LevelMixin)


def test_a_family_without_its_expert_or_encoding_fails_when_made():
    """The hooks every family must give are abstract: leaving one out fails at construction,
    not in the middle of a collection."""

    class NoExpert(DarkRoomEnv):
        expert_action = LevelMixin.expert_action

    class NoStartCells(FourRoomsLevels):
        _start_cells = MiniGridLevelMixin._start_cells

    class NoText(DarkRoomEnv):
        obs_text = LevelMixin.obs_text

    with pytest.raises(TypeError, match="expert_action"):
        NoExpert()
    with pytest.raises(TypeError, match="_start_cells"):
        NoStartCells()
    with pytest.raises(TypeError, match="obs_text"):
        NoText()


def test_family_class_of_an_unknown_id():
    with pytest.raises(KeyError, match="unknown trajbench family"):
        family_class("trajbench/NoSuchFamily-v0")


@pytest.mark.filterwarnings("ignore:The system font:UserWarning")  # pygame, in render checks
@pytest.mark.parametrize("env_id", IDS)
def test_check_env(env_id):
    check_env(gym.make(env_id).unwrapped)


@pytest.mark.filterwarnings("ignore:The system font:UserWarning")
@pytest.mark.parametrize("env_id", IDS)
def test_rgb_array_frames_follow_the_episode(env_id):
    env = gym.make(env_id, render_mode="rgb_array")
    check_env(env.unwrapped)  # with a render mode, check_env checks the frames too
    env.reset(seed=3, options={"level": 2})
    frames = [env.render()]
    for _ in range(3):
        env.step(env.unwrapped.expert_action())
        frames.append(env.render())
    for frame in frames:
        assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3
        assert frame.shape == frames[0].shape and frame.min() < frame.max()
    assert any(not np.array_equal(frames[0], f) for f in frames[1:])


def vector_steps(env_id: str, mode: str, steps: int = 12) -> list:
    """Observations, rewards and levels of two sub-environments under ``mode``, seeded."""
    envs = gym.make_vec(env_id, num_envs=2, vectorization_mode=mode)
    try:
        obs, info = envs.reset(seed=5)
        envs.action_space.seed(5)
        out = [(obs, info["level"])]
        for _ in range(steps):
            obs, reward, terminated, truncated, info = envs.step(envs.action_space.sample())
            out.append((obs, reward, terminated, truncated))
    finally:
        envs.close()
    return out


def same(a, b) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, tuple | list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return np.array_equal(a, b)


@pytest.mark.parametrize("env_id", IDS)
def test_make_vec_async_and_sync_with_their_defaults(env_id):
    """Shared memory included: missions are a standard Text space, read at every step."""
    sync, async_ = vector_steps(env_id, "sync"), vector_steps(env_id, "async")
    assert same(sync, async_)
    if isinstance(sync[0][0], dict):
        missions = [step[0]["mission"] for step in async_]
        assert all(isinstance(m, tuple) and len(m) == 2 and all(m) for m in missions)
        single = gym.make(env_id)  # sub-environment i is reset with seed 5 + i
        assert missions[0] == tuple(single.reset(seed=5 + i)[0]["mission"] for i in range(2))
        assert isinstance(single.observation_space["mission"], gym.spaces.Text)


@pytest.mark.parametrize("env_id", IDS)
def test_facts_are_stated(env_id):
    u = gym.make(env_id).unwrapped
    assert u.level_fixes and u.episode_draws and u.expert_name
    assert set(u.interaction_actions) <= set(range(u.encoding.n_actions))
    assert u.encoding.n_actions == u.action_space.n


@pytest.mark.parametrize("env_id", IDS)
def test_same_level_and_seed_same_episode(env_id):
    level = 123 % gym.make(env_id).unwrapped.n_levels
    runs = [episode(gym.make(env_id, sticky_p=0.2), level, 7, "noisy") for _ in range(2)]
    a, b = runs
    np.testing.assert_array_equal(a.obs, b.obs)
    np.testing.assert_array_equal(a.actions, b.actions)
    np.testing.assert_array_equal(a.rewards, b.rewards)
    assert (a.mission, a.success) == (b.mission, b.success)


@pytest.mark.parametrize("env_id", IDS)
def test_episode_seed_draws_the_start_within_a_level(env_id):
    env = gym.make(env_id)
    u = env.unwrapped
    firsts = {u.encode_obs(env.reset(seed=s, options={"level": 5})[0]).tobytes() for s in range(8)}
    assert (len(firsts) == 1) == (u.episode_draws.startswith("nothing"))


@pytest.mark.parametrize("env_id", IDS)
def test_split_draws_stay_in_split(env_id):
    u = gym.make(env_id).unwrapped
    splits = u.splits()
    train, test = set(splits["train"].tolist()), set(splits["test"].tolist())
    assert not train & test and len(train | test) == u.n_levels == len(splits["all"])
    assert len(test) == u.n_test_levels
    assert splits["test"].tolist() == split_levels(u.n_levels, u.n_test_levels)["test"].tolist()
    for split, allowed in (("train", train), ("test", test)):
        env = gym.make(env_id, levels=split)
        drawn = set()
        for seed in range(20):
            _, info = env.reset(seed=seed)
            assert info["level"] in allowed and env.unwrapped.level == info["level"]
            drawn.add(info["level"])
        assert len(drawn) > min(10, len(allowed) // 2)  # draws spread over the split


@pytest.mark.parametrize("env_id", IDS)
def test_bad_levels_and_arguments(env_id):
    env = gym.make(env_id)
    u = env.unwrapped
    for bad in (u.n_levels, -1):
        with pytest.raises(ValueError, match="out of range"):
            env.reset(options={"level": bad})
    with pytest.raises(ValueError, match="out of range"):
        gym.make(env_id, levels=[3, u.n_levels])
    with pytest.raises(ValueError, match="not among"):
        gym.make(env_id, levels="train").reset(options={"level": int(u.splits()["test"][0])})
    with pytest.raises(ValueError, match="unknown level split"):
        gym.make(env_id, levels="validation")
    with pytest.raises(ValueError):
        gym.make(env_id, sticky_p=1.0)
    with pytest.raises(ValueError):
        gym.make(env_id, max_steps=0)


@pytest.mark.parametrize("env_id", IDS)
def test_expert_succeeds_on_sampled_levels_and_starts(env_id):
    env = gym.make(env_id)
    splits = env.unwrapped.splits()
    rng = np.random.default_rng(2024)
    levels = [*rng.choice(splits["train"], 4), *rng.choice(splits["test"], 4)]
    for level in levels:
        for seed in range(3):
            assert episode(env, int(level), seed).success, (env_id, level, seed)


@pytest.mark.parametrize("env_id", IDS)
def test_step_events_are_boolean_arrays_of_the_episode_length(env_id):
    cls, env = family_class(env_id), gym.make(env_id)
    for level in range(3):
        r = episode(env, level, seed=level, kind="noisy", epsilon=0.3)
        events = cls.step_events(r.obs, r.actions, r.rewards)
        assert "goal_reached" in events
        for name, flags in events.items():
            assert flags.dtype == bool and flags.shape == r.actions.shape, name
        assert not (events["goal_reached"] & (r.rewards <= 0)).any()
        assert events["goal_reached"].any() == r.success

"""MiniGrid and BabyAI families: API, levels, determinism, experts, sticky actions, quietness."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # check_env opens a "human" render window

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from minigrid.core.actions import Actions
from minigrid.envs.babyai import PutNextLocal

import trajbench  # noqa: F401  (registers the families)
from trajbench.envs import FAMILIES
from trajbench.envs.demonstrators import Demonstrator
from trajbench.envs.minigrid_bot import QuietBot
from trajbench.envs.minigrid_levels import MINIGRID_ENCODING, encode_minigrid_obs, level_rng

PLANNER = ["FourRooms", "MultiRoom", "SimpleCrossing", "LavaCrossing", "DoorKey", "Unlock"]
BABYAI = ["GoToLocal", "PickupLoc", "PutNextLocal"]
FAMILY_NAMES = PLANNER + BABYAI


def make(name: str, **kwargs) -> gym.Env:
    return gym.make(f"trajbench/{name}-v0", **kwargs)


def layout(env: gym.Env) -> tuple:
    """Everything a level fixes: full grid encoding, agent start, mission."""
    u = env.unwrapped
    return (
        u.grid.encode().tobytes(),
        tuple(int(v) for v in u.agent_pos),
        int(u.agent_dir),
        u.mission,
    )


def run_episode(env: gym.Env, level: int, seed: int, kind: str = "expert", epsilon: float = 0.25):
    obs, info = env.reset(seed=seed, options={"level": level})
    assert info == {"level": level, "success": False}
    demo = Demonstrator(kind, env, np.random.default_rng(seed), epsilon=epsilon)
    observations, actions, rewards = [env.unwrapped.encode_obs(obs)], [], []
    done = False
    while not done:
        action = demo.act()
        obs, reward, terminated, truncated, info = env.step(action)
        assert info["level"] == level
        observations.append(env.unwrapped.encode_obs(obs))
        actions.append(action)
        rewards.append(reward)
        done = terminated or truncated
    return np.stack(observations), actions, rewards, info


def test_all_families_registered_with_one_encoding():
    for name in FAMILY_NAMES:
        assert f"{name}-v0" in FAMILIES
        u = make(name).unwrapped
        assert u.encoding == MINIGRID_ENCODING
        assert (u.n_levels, u.n_test_levels) == (10_000, 1_000)
        assert u.has_mission == (name in BABYAI)
    assert MINIGRID_ENCODING.n_features == 148
    assert MINIGRID_ENCODING.feature_sizes[:3] == (11, 6, 3)
    assert MINIGRID_ENCODING.feature_sizes[-1] == 4


@pytest.mark.filterwarnings("ignore:The system font:UserWarning")  # pygame, in render checks
@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_check_env(name):
    check_env(make(name).unwrapped)


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_encode_obs(name):
    env = make(name)
    obs, _ = env.reset(seed=3)
    enc = env.unwrapped.encode_obs(obs)
    assert enc.dtype == np.uint8 and enc.shape == (148,)
    np.testing.assert_array_equal(enc[:147], obs["image"].reshape(-1))
    assert enc[147] == obs["direction"]
    assert (enc < np.array(MINIGRID_ENCODING.feature_sizes)).all()
    assert obs["mission"] == env.unwrapped.mission_text != ""


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_same_level_and_seed_same_expert_episode(name):
    level = 123
    a = run_episode(make(name), level, seed=7, kind="noisy")
    b = run_episode(make(name), level, seed=7, kind="noisy")
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1:] == b[1:]


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_level_fixes_layout_and_mission(name):
    env = make(name)
    env.reset(seed=1, options={"level": 42})
    first = layout(env)
    env.reset(seed=999, options={"level": 42})
    assert layout(env) == first
    other = make(name)
    other.reset(seed=5, options={"level": 42})
    assert layout(other) == first
    layouts = set()
    for level in range(10):
        env.reset(seed=0, options={"level": level})
        layouts.add(layout(env))
    assert len(layouts) >= 8


def test_level_generation_leaves_episode_rng_alone():
    a, b = make("DoorKey"), make("DoorKey")
    a.reset(seed=11, options={"level": 1})
    b.reset(seed=11, options={"level": 2})
    assert a.unwrapped.np_random.random() == b.unwrapped.np_random.random()


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_split_draws_stay_in_split(name):
    for split in ("train", "test"):
        env = make(name, levels=split)
        allowed = set(env.unwrapped.splits()[split].tolist())
        drawn = set()
        for seed in range(20):
            _, info = env.reset(seed=seed)
            assert info["level"] in allowed and env.unwrapped.level == info["level"]
            drawn.add(info["level"])
        assert len(drawn) > 10
    splits = make(name).unwrapped.splits()
    assert len(splits["train"]) == 9_000 and len(splits["test"]) == 1_000
    assert not set(splits["train"].tolist()) & set(splits["test"].tolist())


@pytest.mark.parametrize("name", ["DoorKey", "PickupLoc"])
def test_bad_levels_and_arguments(name):
    env = make(name)
    for bad in (10_000, -1):
        with pytest.raises(ValueError, match="out of range"):
            env.reset(options={"level": bad})
    with pytest.raises(ValueError, match="out of range"):
        make(name, levels=[3, 10_000])
    with pytest.raises(ValueError, match="not among"):
        make(name, levels="train").reset(options={"level": int(env.unwrapped.splits()["test"][0])})
    with pytest.raises(ValueError):
        make(name, sticky_p=1.0)
    with pytest.raises(ValueError):
        make(name, max_steps=0)


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_expert_succeeds_on_sampled_train_and_test_levels(name):
    env = make(name)
    splits = env.unwrapped.splits()
    rng = np.random.default_rng(2024)
    levels = [*rng.choice(splits["train"], 5), *rng.choice(splits["test"], 5)]
    for i, level in enumerate(levels):
        _, actions, rewards, info = run_episode(env, int(level), seed=i)
        assert info["success"], (name, level)
        assert rewards[-1] > 0 and len(actions) < env.unwrapped.max_steps


@pytest.mark.parametrize("name", FAMILY_NAMES)
def test_noisy_demonstrator_recovers(name):
    env = make(name)
    results = [run_episode(env, level, seed=level, kind="noisy") for level in range(100, 110)]
    assert sum(info["success"] for *_, info in results) >= 8
    # The episodes hold random detours, and are longer than the expert's on the same levels.
    noisy_len = sum(len(actions) for _, actions, _, _ in results)
    expert_len = sum(len(run_episode(env, level, seed=level)[1]) for level in range(100, 110))
    assert noisy_len > expert_len


def test_lava_death_is_not_success():
    env = make("LavaCrossing")
    env.reset(seed=0, options={"level": 0})
    u = env.unwrapped
    lava = [
        (x, y)
        for x in range(1, 8)
        for y in range(1, 8)
        if (c := u.grid.get(x, y)) and c.type == "lava"
    ]
    x, y = lava[0]
    # Stand west or north of the lava cell, facing it, on a free cell.
    if u.grid.get(x - 1, y) is None:
        u.agent_pos, u.agent_dir = (x - 1, y), 0
    else:
        u.agent_pos, u.agent_dir = (x, y - 1), 1
    _, reward, terminated, _, info = env.step(Actions.forward)
    assert terminated and reward == 0 and info["success"] is False


def test_babyai_bot_tracking_matches_the_bot_replanned_every_step():
    """Interleaved random actions: the lazily fed bot suggests what the canonical loop would."""
    compared = 0
    for name in BABYAI:
        for ep in range(4):
            rng = np.random.default_rng(ep)
            env, ref = make(name).unwrapped, make(name).unwrapped
            env.reset(seed=ep, options={"level": ep})
            ref.reset(seed=ep, options={"level": ep})
            bot = QuietBot(ref)
            suggestion = bot.replan(None)
            # Start with two random actions so the tracker must replay the episode start.
            for t in range(30):
                if t < 2 or rng.random() < 0.4:
                    action = int(
                        rng.integers(3)
                    )  # left/right/forward: never makes a task impossible
                else:
                    action = env.expert_action()
                    assert action == suggestion
                    compared += 1
                _, _, terminated, truncated, _ = env.step(action)
                ref.step(action)
                if terminated or truncated:
                    break
                suggestion = bot.replan(action)
    assert compared > 50


def test_expert_action_is_idempotent_between_steps():
    env = make("PutNextLocal")
    env.reset(seed=0, options={"level": 5})
    for _ in range(5):
        a = env.unwrapped.expert_action()
        assert env.unwrapped.expert_action() == a
        env.step(a)


@pytest.mark.parametrize("name", ["DoorKey", "GoToLocal"])
def test_sticky_actions(name):
    actions = [Actions.left, Actions.right] * 20  # turning never ends an episode

    def directions(sticky_p: float, seed: int) -> list[int]:
        env = make(name, sticky_p=sticky_p, max_steps=100)
        env.reset(seed=seed, options={"level": 9})
        return [int(env.step(a)[0]["direction"]) for a in actions]

    start = make(name)
    start.reset(options={"level": 9})
    d0 = int(start.unwrapped.agent_dir)
    exact = [(d0 - 1) % 4 if i % 2 == 0 else d0 for i in range(len(actions))]
    assert directions(0.0, 0) == directions(0.0, 1) == exact
    sticky = [directions(0.5, seed) for seed in range(3)]
    assert all(s != exact for s in sticky)
    assert sticky[0] != sticky[1]
    assert directions(0.5, 0) == sticky[0]


def test_nothing_printed_to_stdout(capsys):
    # The stock BabyAI generator prints a line per rejected sample on these levels.
    stock = PutNextLocal()
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        for level in range(5):
            stock._np_random = level_rng("PutNextLocal-v0", level)
            stock.reset()
    assert "rejected" in buf.getvalue()

    for name in FAMILY_NAMES:
        env = make(name, levels="train")
        for level in range(5):
            run_episode(env, level, seed=level, kind="noisy", epsilon=0.5)
        env.close()
    assert capsys.readouterr().out == ""


def test_encode_minigrid_obs_layout():
    image = np.arange(147, dtype=np.uint8).reshape(7, 7, 3) % 3
    enc = encode_minigrid_obs({"image": image, "direction": 2, "mission": "x"})
    assert enc.tolist() == [*image.reshape(-1).tolist(), 2]


def test_import_and_use_print_nothing_in_a_fresh_process():
    code = (
        "import gymnasium as gym, trajbench\n"
        f"for name in {FAMILY_NAMES!r}:\n"
        "    env = gym.make(f'trajbench/{name}-v0')\n"
        "    env.reset(seed=0)\n"
        "    env.step(env.unwrapped.expert_action())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout == ""

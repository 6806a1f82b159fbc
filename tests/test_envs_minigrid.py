"""MiniGrid and BabyAI families: encoding, levels vs episodes, start poses, experts, step events.

What every family shares (check_env, determinism, level API, splits, experts on sampled levels) is
in ``test_envs_families.py``; this file tests what is specific to the MiniGrid/BabyAI families.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import subprocess
import sys
from collections import deque

import gymnasium as gym
import numpy as np
import pytest
from minigrid.core.actions import Actions
from minigrid.envs.babyai import PutNextLocal
from minigrid.envs.babyai.core.verifier import ObjDesc

import trajbench  # noqa: F401  (registers the families)
from trajbench.collect import episode_seeds, rollout
from trajbench.envs import env_ids, family_class
from trajbench.envs.demonstrators import Demonstrator, copy_shares
from trajbench.envs.minigrid_bot import QuietBot
from trajbench.envs.minigrid_levels import (  # _AGENT, _FRONT: the view's two decoded cells
    _AGENT,
    _FRONT,
    MINIGRID_ENCODING,
    BabyAILevelMixin,
    MiniGridLevelMixin,
    encode_minigrid_obs,
    level_rng,
    minigrid_step_events,
)

MINIGRID = [i for i in env_ids() if issubclass(family_class(i), MiniGridLevelMixin)]
V1 = [i for i in MINIGRID if i.endswith("-v1")]
BABYAI = [i for i in MINIGRID if issubclass(family_class(i), BabyAILevelMixin)]
#: Strict families whose expert follows a StrictPath rather than the BabyAI bot.
STRICT_PATH = [
    *(f"trajbench/{name}-v2" for name in ("GoToLocal", "PickupLoc", "PutNextLocal")),
    "trajbench/HiddenGoToLocal-v0",
]
pytestmark = pytest.mark.filterwarnings("ignore:.*is out of date:DeprecationWarning")


def make(env_id: str, **kwargs) -> gym.Env:
    return gym.make(env_id if "/" in env_id else f"trajbench/{env_id}", **kwargs)


def layout(env: gym.Env) -> tuple:
    """What a level fixes: full grid encoding and mission."""
    u = env.unwrapped
    return u.grid.encode().tobytes(), u.mission


def start_pose(env: gym.Env) -> tuple[int, int, int]:
    u = env.unwrapped
    return (*map(int, u.agent_pos), int(u.agent_dir))


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


def test_every_family_has_a_fixed_start_v0_a_random_start_v1_and_a_content_split_v2():
    hidden = [i for i in MINIGRID if "/Hidden" in i]
    assert len(V1) >= 9 and len(MINIGRID) == 3 * len(V1) + len(hidden)
    for v1 in V1:
        v0, v2 = v1.replace("-v1", "-v0"), v1.replace("-v1", "-v2")
        assert family_class(v0) is family_class(v1) is family_class(v2)
        old, new, split = make(v0).unwrapped, make(v1).unwrapped, make(v2).unwrapped
        assert (old.random_start, new.random_start, split.random_start) == (False, True, True)
        assert (old.content_split, new.content_split, split.content_split) == (False, False, True)
        assert split.family == v2.split("/")[1] and split.max_steps == new.max_steps
        assert old.version_note == "suite 1 (fixed start)" and new.version_note == ""
        assert old.episode_draws.startswith("nothing") and "start" in new.episode_draws
        for u in (old, new):
            assert u.encoding == MINIGRID_ENCODING
            assert (u.n_levels, u.n_test_levels) == (10_000, 1_000)
            assert u.has_mission == (v1 in BABYAI)
            assert u.interaction_actions == (Actions.pickup, Actions.drop, Actions.toggle)
        cls = family_class(v1)
        fixed = cls.fixed_start_max_steps
        assert old.max_steps == (cls.default_max_steps if fixed is None else fixed)
        assert new.max_steps == cls.default_max_steps
    assert MINIGRID_ENCODING.n_features == 148
    assert MINIGRID_ENCODING.feature_sizes[:3] == (11, 6, 3)
    assert MINIGRID_ENCODING.feature_sizes[-1] == 4
    with pytest.raises(ValueError, match="random_start"):
        make(V1[0], random_start="no")
    with pytest.raises(ValueError, match="content_split"):
        make(V1[0], content_split="yes")


@pytest.mark.parametrize("env_id", V1)
def test_encode_obs(env_id):
    env = make(env_id)
    obs, _ = env.reset(seed=3)
    enc = env.unwrapped.encode_obs(obs)
    assert enc.dtype == np.uint8 and enc.shape == (148,)
    np.testing.assert_array_equal(enc[:147], obs["image"].reshape(-1))
    assert enc[147] == obs["direction"]
    assert (enc < np.array(MINIGRID_ENCODING.feature_sizes)).all()
    assert obs["mission"] == env.unwrapped.mission_text != ""


@pytest.mark.parametrize("env_id", V1)
def test_level_fixes_layout_and_mission_an_episode_draws_the_start(env_id):
    env, other, old = make(env_id), make(env_id), make(env_id.replace("-v1", "-v0"))
    poses, old_poses = set(), set()
    for seed in range(12):
        env.reset(seed=seed, options={"level": 42})
        other.reset(seed=seed, options={"level": 42})
        old.reset(seed=seed, options={"level": 42})
        assert start_pose(other) == start_pose(env)  # same (level, seed): same start
        # v1 builds v0's level: same layout and mission; only the start is redrawn
        assert layout(env) == layout(other) == layout(old)
        poses.add(start_pose(env))
        old_poses.add(start_pose(old))
    assert len(poses) >= 6 and len(old_poses) == 1
    layouts = set()
    for level in range(10):
        env.reset(seed=0, options={"level": level})
        layouts.add(layout(env))
    assert len(layouts) >= 8


@pytest.mark.parametrize("env_id", ["DoorKey-v0", "DoorKey-v1", "PickupLoc-v1"])
def test_level_generation_leaves_episode_rng_alone(env_id):
    a, b = make(env_id), make(env_id)
    a.reset(seed=11, options={"level": 1})
    b.reset(seed=11, options={"level": 2})
    assert a.unwrapped.np_random.random() == b.unwrapped.np_random.random()


def goal_reachable(u, cell: tuple[int, int]) -> bool:
    """Breadth-first search over free cells and unlocked doors, from ``cell`` to the goal."""
    seen, queue = {cell}, deque([cell])
    while queue:
        x, y = queue.popleft()
        for nxt in ((x + 1, y), (x - 1, y), (x, y + 1), (x, y - 1)):
            obj = u.grid.get(*nxt)
            if obj is not None and obj.type == "goal":
                return True
            passable = obj is None or (obj.type == "door" and not obj.is_locked)
            if passable and nxt not in seen:
                seen.add(nxt)
                queue.append(nxt)
    return False


def front_is_clear(u) -> bool:
    front = u.grid.get(*u.front_pos)
    return front is None or front.type == "wall"


def located_objects(u) -> list[list[tuple[int, int]]]:
    """Where each object description of the mission points, seen from the agent's pose."""
    descs = [d for d in vars(u.instrs).values() if isinstance(d, ObjDesc)]
    return [sorted(ObjDesc(d.type, d.color, d.loc).find_matching_objs(u)[1]) for d in descs]


def follows_start_rule(u, old) -> bool:
    """The family's own start rule (``old``: the same level with its fixed start)."""
    x, y = cell = tuple(map(int, u.agent_pos))
    kind = type(u).__name__
    if kind in ("FourRoomsLevels", "SimpleCrossingLevels", "LavaCrossingLevels"):
        return goal_reachable(u, cell)
    if kind == "MultiRoomLevels":
        (tx, ty), (w, h) = u.rooms[0].top, u.rooms[0].size
        return tx < x < tx + w - 1 and ty < y < ty + h - 1
    if kind == "DoorKeyLevels":
        door_x = next(i % u.width for i, o in enumerate(u.grid.grid) if o and o.type == "door")
        return x < door_x
    if kind == "UnlockLevels":
        key = next(o for o in u.grid.grid if o and o.type == "key")
        return u.room_from_pos(*cell) is u.room_from_pos(*key.cur_pos) and front_is_clear(u)
    assert isinstance(u, BabyAILevelMixin), kind
    return (
        front_is_clear(u)
        and u.check_objs_reachable(raise_exc=False)
        and located_objects(u) == located_objects(old)
    )


@pytest.mark.parametrize("env_id", V1)
def test_start_poses_follow_the_family_rule(env_id):
    env, old = make(env_id), make(env_id.replace("-v1", "-v0"))
    cells, directions = set(), set()
    for level in range(0, 10_000, 500):
        old.reset(seed=0, options={"level": level})
        for seed in range(4):
            env.reset(seed=seed, options={"level": level})
            u = env.unwrapped
            assert u.grid.get(*u.agent_pos) is None, (level, seed)  # not on an object or the goal
            assert follows_start_rule(u, old.unwrapped), (env_id, level, seed)
            cells.add((level, *map(int, u.agent_pos)))
            directions.add(int(u.agent_dir))
    assert len(cells) > 20 * 2 and directions == {0, 1, 2, 3}


def expert_runs(env: gym.Env, level: int, n: int = 5) -> list[tuple[tuple, tuple]]:
    """(start pose, actions) of ``n`` expert episodes of ``level``, seeded as a collection is."""
    runs = []
    for i in range(n):
        env_seed, rng = episode_seeds(0, level, i)
        env.reset(seed=env_seed, options={"level": level})
        start = start_pose(env)
        actions = rollout(env, Demonstrator("expert", env, rng), level, env_seed).actions
        runs.append((start, tuple(actions.tolist())))
    return runs


@pytest.mark.parametrize("env_id", V1)
def test_expert_episodes_of_a_level_rarely_repeat_each_other(env_id):
    """The copy measure: a context of 4 expert demonstrations of the query's level rarely holds
    the query's action sequence (with a fixed start, ``-v0``, it always does)."""
    levels = np.random.default_rng(0).choice(10_000, 30, replace=False).tolist()
    runs = [expert_runs(make(env_id), level) for level in levels]
    level_share, pair_share = copy_shares([[actions for _, actions in r] for r in runs])
    # Nearly every copy is one start pose drawn twice, which a small start region (MultiRoom's
    # first room: 16 to 36 poses) makes common; benchmarks/expert_coverage.py measures both on
    # 1,000 levels per family.
    assert level_share < 0.55 and pair_share < 0.3, (level_share, pair_share)
    other_starts = [
        any(a[1] == b[1] and a[0] != b[0] for a, b in itertools.combinations(r, 2)) for r in runs
    ]
    assert np.mean(other_starts) < 0.2  # short BabyAI episodes from two starts can coincide
    old = make(env_id.replace("-v1", "-v0"))
    old_runs = [[actions for _, actions in expert_runs(old, level)] for level in levels[:3]]
    assert copy_shares(old_runs) == (1.0, 1.0)


@pytest.mark.parametrize("env_id", MINIGRID)
def test_noisy_demonstrator_recovers(env_id):
    env = make(env_id)
    results = [run_episode(env, level, seed=level, kind="noisy") for level in range(100, 110)]
    assert sum(info["success"] for *_, info in results) >= 8
    # The episodes hold random detours, and are longer than the expert's on the same levels.
    noisy_len = sum(len(actions) for _, actions, _, _ in results)
    expert_len = sum(len(run_episode(env, level, seed=level)[1]) for level in range(100, 110))
    assert noisy_len > expert_len


def test_lava_death_is_not_success():
    env = make("LavaCrossing-v1")
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


@pytest.mark.parametrize("env_id", [i for i in BABYAI if i not in STRICT_PATH])
def test_babyai_bot_tracking_matches_the_bot_replanned_every_step(env_id):
    """Interleaved random actions: the lazily fed bot suggests what the canonical loop would."""
    compared = 0
    for ep in range(8):
        rng = np.random.default_rng(ep)
        env, ref = make(env_id).unwrapped, make(env_id).unwrapped
        env.reset(seed=ep, options={"level": ep})
        ref.reset(seed=ep, options={"level": ep})
        bot = QuietBot(ref)
        suggestion = bot.replan(None)
        # Start with two random actions so the tracker must replay the episode from its start.
        for t in range(30):
            if t < 2 or rng.random() < 0.4:
                action = int(rng.integers(3))  # left/right/forward: never makes a task impossible
            else:
                action = env.expert_action()
                assert action == suggestion
                compared += 1
            _, _, terminated, truncated, _ = env.step(action)
            ref.step(action)
            if terminated or truncated:
                break
            suggestion = bot.replan(action)
    assert compared > 12


@pytest.mark.parametrize("env_id", [i for i in BABYAI if i.endswith("-v1")])
def test_restart_level_restores_the_episode_start(env_id):
    env = make(env_id)
    u = env.unwrapped
    env.reset(seed=3, options={"level": 8})
    start, grid = start_pose(env), u.grid.encode().tobytes()
    for action in (Actions.left, Actions.forward, Actions.forward, Actions.right):
        env.step(action)
    u._restart_level()
    assert start_pose(env) == start and u.grid.encode().tobytes() == grid


def test_expert_action_is_idempotent_between_steps():
    env = make("PutNextLocal-v1")
    env.reset(seed=0, options={"level": 5})
    for _ in range(5):
        a = env.unwrapped.expert_action()
        assert env.unwrapped.expert_action() == a
        env.step(a)


@pytest.mark.parametrize("env_id", ["DoorKey-v1", "GoToLocal-v1"])
def test_sticky_actions(env_id):
    actions = [Actions.left, Actions.right] * 20  # turning never ends an episode

    def directions(sticky_p: float, seed: int) -> tuple[list[int], list[int]]:
        env = make(env_id, sticky_p=sticky_p, max_steps=100)
        env.reset(seed=seed, options={"level": 9})
        d0 = int(env.unwrapped.agent_dir)
        exact = [(d0 - 1) % 4 if i % 2 == 0 else d0 for i in range(len(actions))]
        return [int(env.step(a)[0]["direction"]) for a in actions], exact

    for seed in (0, 1):
        seen, exact = directions(0.0, seed)
        assert seen == exact
    sticky = [directions(0.5, seed) for seed in range(3)]
    assert all(seen != exact for seen, exact in sticky)
    assert sticky[0][0] != sticky[1][0]
    assert directions(0.5, 0) == sticky[0]


#: Families with keys or doors -> the events their noisy episodes must show.
EVENT_FAMILIES = {
    "DoorKey-v1": ("key_pickup", "door_opened"),
    "Unlock-v1": ("key_pickup", "door_opened"),
    "MultiRoom-v1": ("door_opened",),
    "PickupLoc-v1": ("key_pickup",),
    "PutNextLocal-v1": ("key_pickup",),
}


@pytest.mark.parametrize("sticky_p", [0.0, 0.3])
@pytest.mark.parametrize("env_id", EVENT_FAMILIES)
def test_step_events_match_what_happened(env_id, sticky_p):
    """Decoded from the stored views only, the events equal what the environment did."""
    env = make(env_id, sticky_p=sticky_p)
    u = env.unwrapped
    happened = {"key_pickup": 0, "door_opened": 0}
    for level in range(12):
        obs, _ = env.reset(seed=level, options={"level": level})
        demo = Demonstrator("noisy", env, np.random.default_rng(level), epsilon=0.3)
        stored, actions, rewards, executed = [], [], [], []
        truth: dict[str, list[bool]] = {"key_pickup": [], "door_opened": []}
        done = False
        while not done:
            stored.append(u.encode_obs(obs))
            action = demo.act()
            carried = u.carrying
            doors = [(o, o.is_open) for o in u.grid.grid if o is not None and o.type == "door"]
            obs, reward, terminated, truncated, _ = env.step(action)
            actions.append(action)
            rewards.append(reward)
            executed.append(u._prev_action)
            picked = carried is None and u.carrying is not None and u.carrying.type == "key"
            truth["key_pickup"].append(picked)
            truth["door_opened"].append(any(o.is_open and not was for o, was in doors))
            done = terminated or truncated
        events = family_class(env_id).step_events(np.stack(stored), actions, rewards)
        assert events["goal_reached"].tolist() == [r > 0 for r in rewards]
        # The last step is decoded from its stored action: exact when that action was executed.
        n = len(actions) if executed[-1] == actions[-1] else len(actions) - 1
        for name, flags in truth.items():
            assert events[name][:n].tolist() == flags[:n], (name, level)
            happened[name] += sum(flags)
    assert all(happened[name] > 0 for name in EVENT_FAMILIES[env_id]), happened


def test_step_events_of_a_locked_door_need_its_key():
    obs = np.zeros((1, 148), dtype=np.uint8)
    obs[0, _FRONT : _FRONT + 3] = (4, 4, 2)  # a locked yellow door in front
    obs[0, _AGENT : _AGENT + 3] = (5, 4, 0)  # carrying a yellow key
    assert minigrid_step_events(obs, [Actions.toggle], [1.0])["door_opened"].tolist() == [True]
    obs[0, _AGENT + 1] = 0  # a red key opens nothing
    assert minigrid_step_events(obs, [Actions.toggle], [0.0])["door_opened"].tolist() == [False]
    assert minigrid_step_events(obs, [Actions.pickup], [0.0])["key_pickup"].tolist() == [False]


def test_nothing_printed_to_stdout(capsys):
    # The stock BabyAI generator prints a line per rejected sample on these levels.
    stock = PutNextLocal()
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        for level in range(5):
            stock._np_random = level_rng("PutNextLocal-v0", level)
            stock.reset()
    assert "rejected" in buf.getvalue()

    for env_id in MINIGRID:
        env = make(env_id, levels="train")
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
        f"for env_id in {MINIGRID!r}:\n"
        "    env = gym.make(env_id)\n"
        "    env.reset(seed=0)\n"
        "    env.step(env.unwrapped.expert_action())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout == ""

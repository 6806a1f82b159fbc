"""Levels are their content: content hashes, and splits drawn over distinct contents.

The full check over every level of every family is ``benchmarks/level_contents.py`` (figures in
``docs/levels.md``); these tests sample it.
"""

from __future__ import annotations

import hashlib

import gymnasium as gym
import numpy as np
import pytest

import trajbench  # noqa: F401  (registers the families)
from trajbench.envs import FAMILIES, env_ids, family_class
from trajbench.envs.level_contents import DISTINCT_CONTENTS, distinct_contents
from trajbench.envs.registration import FamilySpec
from trajbench.families import subset

CONTENT_SPLIT = [
    i
    for i in env_ids()
    if FamilySpec(*FAMILIES[i.split("/")[1]]).kwargs.get(
        "content_split", getattr(family_class(i), "content_split", False)
    )
]
pytestmark = pytest.mark.filterwarnings("ignore:.*is out of date:DeprecationWarning")


def hashes(env: gym.Env, levels) -> dict[int, str]:
    return {int(level): env.unwrapped.content_hash(int(level)) for level in levels}


def test_every_suite3_minigrid_family_is_content_split():
    names = {i.split("/")[1] for i in CONTENT_SPLIT}
    assert {f"{n[:-3]}-v2" for n in FAMILIES if n.endswith("-v1")} <= names
    assert {"HiddenFourRooms-v0", "HiddenMultiRoom-v0", "HiddenGoToLocal-v0"} <= names


@pytest.mark.parametrize("env_id", CONTENT_SPLIT)
def test_each_sampled_level_lies_on_its_contents_side(env_id):
    """The rule that makes the split a split of contents: a level's side is its hash's side
    (computed here from the hex digest: the first 15 hex digits modulo the level count)."""
    env = gym.make(env_id)
    u = env.unwrapped
    test = set(u.splits()["test"].tolist())
    levels = [
        *subset(u.splits()["test"], 15, env_id, "t"),
        *subset(u.splits()["train"], 15, env_id),
    ]
    for level, digest in hashes(env, levels).items():
        assert (int(digest[:15], 16) % u.n_levels < u.n_test_levels) == (level in test)


@pytest.mark.parametrize("family", ["DoorKey", "Unlock"])
def test_a_sample_that_finds_v1s_repeats_finds_none_in_v2(family):
    """DoorKey-v1 and Unlock-v1 hold a few hundred layouts in 10,000 levels, so a sample of test
    levels repeats training levels; the same sample of -v2 levels repeats none."""
    leaks = {}
    for version in ("v1", "v2"):
        env = gym.make(f"trajbench/{family}-{version}")
        splits = env.unwrapped.splits()
        train = set(hashes(env, subset(splits["train"], 600, family)).values())
        test = hashes(env, subset(splits["test"], 60, family))
        leaks[version] = sum(h in train for h in test.values())
    assert leaks["v1"] > 30
    assert leaks["v2"] == 0


def test_dark_families_name_one_content_per_level():
    for name in ("DarkRoom-v0", "DarkKeyToDoor-v0"):
        env = gym.make(f"trajbench/{name}")
        contents = hashes(env, range(env.unwrapped.n_levels))
        assert len(set(contents.values())) == env.unwrapped.n_levels == DISTINCT_CONTENTS[name]


def test_content_hash_ignores_the_start_and_leaves_the_episode_alone():
    env = gym.make("trajbench/GoToLocal-v2")
    u = env.unwrapped
    env.reset(seed=0, options={"level": 5})
    first = (tuple(u.agent_pos), u.agent_dir, u.mission)
    digest = u.content_hash(5)
    other = u.content_hash(6)
    assert (tuple(u.agent_pos), u.agent_dir, u.mission) == first  # the episode is untouched
    starts = set()
    for seed in range(6):
        env.reset(seed=seed, options={"level": 5})
        starts.add((tuple(u.agent_pos), u.agent_dir))
        assert u.content_hash(5) == digest
    assert len(starts) > 1 and other != digest


@pytest.mark.parametrize("env_id", ["PickupLoc-v2", "HiddenGoToLocal-v0", "DoorKey-v2"])
def test_content_hash_covers_the_grid_and_the_true_mission(env_id):
    """Recomputed here from the level's full grid encoding and its true mission (which
    HiddenGoToLocal withholds from the query but still fixes)."""
    env = gym.make(f"trajbench/{env_id}")
    u = env.unwrapped
    env.reset(seed=0, options={"level": 11})
    grid = u.grid.encode()
    mission = getattr(u, "surface", u.mission)
    h = hashlib.md5()
    for p in [repr(grid.shape).encode(), grid.tobytes(), str(mission).encode()]:
        h.update(len(p).to_bytes(8, "little") + p)
    assert u.content_hash(11) == h.hexdigest()
    if env_id.startswith("Hidden"):
        assert u.mission != mission  # the query's mission is not the one hashed


def test_distinct_contents_table_reads_v0_from_v1():
    assert distinct_contents("DoorKey-v0") == DISTINCT_CONTENTS["DoorKey-v1"]
    assert distinct_contents("NoSuchFamily-v0") is None
    assert all(np.isscalar(v) and v > 0 for v in DISTINCT_CONTENTS.values())

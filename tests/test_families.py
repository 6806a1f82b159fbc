"""Looking up families, level specs and seeded level subsets."""

from __future__ import annotations

import numpy as np
import pytest

import trajbench  # noqa: F401  (registers the families)
from trajbench.errors import TrajbenchError
from trajbench.families import make_env, parse_levels, resolve_env_id, sample_levels, subset

KEY_TO_DOOR = "trajbench/DarkKeyToDoor-v0"


def key_cells(levels: np.ndarray, size: int = 9) -> np.ndarray:
    """(x, y) of each Dark Key-to-Door level's key: level = key_cell * size**2 + door_cell."""
    key = np.asarray(levels) // size**2
    return np.stack([key % size, key // size], 1)


def test_a_subset_spreads_over_the_family_unlike_the_first_levels():
    env = make_env(KEY_TO_DOOR)
    drawn = sample_levels(env, "test", 100)
    first = env.unwrapped.resolve_levels("test")[:100]
    keys = key_cells(drawn)
    assert len(set(keys[:, 1])) >= 7 and len(set(keys[:, 0])) >= 7  # rows and columns of the 9x9
    assert len(set(key_cells(first)[:, 1])) == 1  # the old rule: every key in the top row
    assert set(drawn) <= set(env.unwrapped.resolve_levels("test").tolist())
    assert len(set(drawn.tolist())) == 100 and list(drawn) == sorted(drawn)


def test_a_subset_depends_only_on_family_split_and_size():
    env = make_env(KEY_TO_DOOR)
    assert np.array_equal(sample_levels(env, "test", 50), sample_levels(env, "test", 50))
    assert not np.array_equal(sample_levels(env, "test", 50), sample_levels(env, "train", 50)[:50])
    assert np.array_equal(sample_levels(env, "test", 0), env.unwrapped.resolve_levels("test"))
    assert np.array_equal(subset([5, 1, 3], 10, "x"), [1, 3, 5])
    assert not np.array_equal(subset(range(1000), 10, "a"), subset(range(1000), 10, "b"))


def test_ids_and_level_specs():
    assert resolve_env_id("DarkRoom-v0") == "trajbench/DarkRoom-v0"
    with pytest.raises(TrajbenchError, match="unknown environment"):
        resolve_env_id("Nope-v0")
    env = make_env("trajbench/DarkRoom-v0")
    assert parse_levels("3,1,3", env)[0] == "1,3"
    with pytest.raises(TrajbenchError, match="out of range"):
        parse_levels("1,999", env)

"""The in-context decoder and the query-only solver: what they read, and what they score."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import trajbench  # noqa: F401  (registers the families)
from trajbench.analysis.common import expert_demos
from trajbench.baselines import DecoderPolicy, QueryOnlyPolicy
from trajbench.baselines.demo_reading import localize, rewarded_cells
from trajbench.envs import FAMILIES, family_class
from trajbench.envs.levels import DEMO_DECODERS, QUERY_SOLVERS
from trajbench.policy import EpisodeRecord
from trajbench.rollout import first_observations, rollout


def _score(policy, env_id: str, levels: list[int], contexts: list, episodes: int = 2) -> float:
    out = rollout(
        policy,
        env_id,
        levels,
        contexts,
        dict.fromkeys(levels, ""),
        episodes,
        seed=3,
        avoid_starts=[first_observations(c) for c in contexts],
    )
    return float(np.mean([r["success"] for r in out]))


def _test_levels(env_id: str, n: int) -> tuple[gym.Env, list[int]]:
    env = gym.make(env_id, levels="all")
    return env, [int(v) for v in env.unwrapped.splits()["test"][:n]]


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_every_family_names_its_decoder_and_query_solver(name):
    cls = family_class(name)
    assert cls.demo_decoder in DEMO_DECODERS
    assert cls.query_solver in QUERY_SOLVERS


@pytest.mark.parametrize("env_id", ["trajbench/DarkRoom-v0", "trajbench/DarkSequence-v0"])
def test_decoder_solves_dark_test_levels_from_one_demonstration(env_id):
    env, levels = _test_levels(env_id, 16)
    contexts = [expert_demos(env, lv, 1, seed=0) for lv in levels]
    assert _score(DecoderPolicy(), env_id, levels, contexts) == 1.0


@pytest.mark.parametrize("env_id", ["trajbench/DarkRoom-v0", "trajbench/DarkSequence-v0"])
def test_decoder_reads_only_the_demonstrations(env_id):
    """Handing each level another level's demonstration makes it fail: the target comes from them."""
    env, levels = _test_levels(env_id, 16)
    contexts = [expert_demos(env, lv, 1, seed=0) for lv in levels]
    shifted = contexts[1:] + contexts[:1]
    # Dark Sequence: a wrong waypoint order fails; Dark Room: 20 steps rarely pass the true goal.
    assert _score(DecoderPolicy(), env_id, levels, shifted) <= 0.4


def test_decoder_without_context_is_the_query_only_solver():
    env_id = "trajbench/DarkKeyToDoor-v0"
    _, levels = _test_levels(env_id, 12)
    empty = [[] for _ in levels]
    assert _score(DecoderPolicy(), env_id, levels, empty) == _score(
        QueryOnlyPolicy(), env_id, levels, empty
    )


def test_query_only_ignores_the_context():
    env_id = "trajbench/DarkRoom-v0"
    env, levels = _test_levels(env_id, 10)
    demos = [expert_demos(env, lv, 2, seed=0) for lv in levels]
    # The same starts in both runs (avoid the demonstrations' starts in both).
    out = []
    for contexts in (demos, [[] for _ in levels]):
        records = rollout(
            QueryOnlyPolicy(),
            env_id,
            levels,
            contexts,
            dict.fromkeys(levels, ""),
            2,
            seed=5,
            avoid_starts=[first_observations(d) for d in demos],
        )
        out.append([(r["success"], r["length"], r["return"]) for r in records])
    assert out[0] == out[1]


def test_sweep_visits_every_cell_of_a_small_grid():
    """The sweep stays once, then walks to the nearest cell no step ended on: on a 3x3 Dark Room
    it ends a step on all 9 cells within 1 + 8 + 8 steps (each move at most 2 apart), so with 20
    steps it never misses the goal."""
    env = gym.make("trajbench/DarkRoom-v0", size=3, levels="all")
    wins = []
    policy = QueryOnlyPolicy()
    for level in range(9):
        obs, _ = env.reset(seed=level, options={"level": level})
        policy.begin([None])
        info = {}
        for _ in range(20):
            a = policy.act(np.asarray(obs)[None], None, None, np.array([0]), [env])[0]
            obs, _, _, _, info = env.step(int(a))
        wins.append(info["success"])
    assert all(wins)


def test_rewarded_cells_are_where_rewarded_moves_land():
    # Key at (2, 0), door at (0, 1) on a 3x3 grid; observation (x, y, has_key).
    obs = np.array([[0, 0, 0], [1, 0, 0], [2, 0, 1], [1, 0, 1], [0, 0, 1]], np.uint8)
    ep = EpisodeRecord(
        obs, np.array([4, 4, 3, 3, 2]), np.array([0, 1, 0, 0, 1], np.float32), level=0
    )
    assert rewarded_cells(ep, size=3) == [(2, 0), (0, 1)]


def test_minigrid_decoder_localizes_its_demonstration_and_not_another_levels():
    env_id = "trajbench/FourRooms-v1"
    env, levels = _test_levels(env_id, 2)
    a, b = (expert_demos(env, lv, 1, seed=0)[0] for lv in levels)
    env.reset(seed=0, options={"level": levels[0]})
    sim = localize(env.unwrapped, a)
    assert sim is not None
    assert sim.grid.get(*sim.agent_pos).type == "goal"  # the demonstration ended on the goal
    assert localize(env.unwrapped, b) is None


def test_minigrid_decoder_reaches_the_demonstrated_goal():
    env_id = "trajbench/DoorKey-v1"
    env, levels = _test_levels(env_id, 3)
    contexts = [expert_demos(env, lv, 1, seed=0) for lv in levels]
    assert _score(DecoderPolicy(), env_id, levels, contexts, episodes=1) == 1.0


def test_decoder_counts_a_cell_only_where_a_step_ends_on_it():
    """On a 3x3 Dark Key-to-Door many episodes start on the key, whose reward needs a step that
    ends there: the decoder stays once instead of taking the key as found."""
    env_id = "trajbench/DarkKeyToDoor-v0"
    envs = [gym.make(env_id, size=3, levels="all") for _ in range(81)]
    levels = list(range(81))
    contexts = [expert_demos(envs[0], lv, 1, seed=0) for lv in levels]
    out = rollout(
        DecoderPolicy(), env_id, levels, contexts, dict.fromkeys(levels, ""), 3, seed=1, envs=envs
    )
    assert all(r["success"] for r in out)

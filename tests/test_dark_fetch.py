"""Dark Fetch: shuffled steps carry the waypoint set, never the order; whole demonstrations do."""

from __future__ import annotations

from itertools import permutations

import gymnasium as gym
import numpy as np
import pytest

import trajbench  # noqa: F401  (registers the families)
from trajbench.analysis.order import order_certificate
from trajbench.envs.dark_fetch import fetch_levels, oracle_success, spoke

ENV_ID = "trajbench/DarkFetch-v0"


def _expert_steps(env, level: int, seed: int) -> tuple[bytes, list[tuple]]:
    """The first observation, and the expert episode's steps as a sorted list: what a shuffled
    context holds, order forgotten."""
    obs, _ = env.reset(seed=seed, options={"level": level})
    first, steps, done = np.asarray(obs).tobytes(), [], False
    while not done:
        action = env.unwrapped.expert_action()
        new, reward, terminated, truncated, _ = env.step(action)
        steps.append((tuple(np.asarray(obs).tolist()), int(action), float(reward)))
        obs, done = new, terminated or truncated
    return first, sorted(steps)


def test_every_order_of_a_waypoint_set_gives_the_same_shuffled_steps():
    """The six orders of one set: the expert's steps from the same start are one multiset, so no
    reader of shuffled steps can tell the orders apart (it scores the oracle's 1/6)."""
    env = gym.make(ENV_ID, levels="all")
    table = fetch_levels(7, 3)
    index = {tuple(row): i for i, row in enumerate(table.tolist())}
    rng = np.random.default_rng(0)
    for level in rng.choice(len(table), size=15, replace=False):
        twins = [index[p] for p in permutations(table[level].tolist())]
        assert len(twins) == 6  # a level's orders are levels too
        for seed in range(3):
            runs = [_expert_steps(env, twin, seed) for twin in twins]
            assert all(sum(r for *_, r in steps) == 7 for _, steps in runs)  # hub + 3 out-and-back
            assert all(run == runs[0] for run in runs[1:])  # same start, same multiset of steps


def test_no_waypoint_lies_on_another_waypoints_spoke():
    table = fetch_levels(7, 3)
    hub = np.array([3, 3])
    for row in table[np.random.default_rng(1).choice(len(table), 300, replace=False)]:
        cells = [(c % 7, c // 7) for c in row.tolist()]
        assert (3, 3) not in cells and len(set(cells)) == 3
        for w in cells:
            on = set(spoke(hub, np.array(w))[:-1])
            assert not on & set(cells)


def test_the_oracle_that_knows_only_the_cells_scores_one_in_six():
    env = gym.make(ENV_ID, levels="test")
    assert oracle_success(env, 60, seed=0, knows_order=True) == 1.0
    # 1 / 3! = 0.167; 1,200 episodes give a standard error of 0.011.
    assert abs(oracle_success(env, 1200, seed=2) - 1 / 6) < 0.035


@pytest.mark.parametrize("k", [1, 2])
def test_chain_decoder_order_certificate(k):
    """Whole demonstrations: the chain decoder reads the order (>= 0.95); shuffled: at most the
    oracle + 0.05 (measured on 600 test levels, one episode each; seeded)."""
    cert = order_certificate(ENV_ID, levels=600, ks=(k,), seed=0)
    assert cert["ordered"][str(k)] >= 0.95
    assert cert["shuffled"][str(k)] <= 1 / 6 + 0.05
    assert cert["shuffled"][str(k)] <= cert["oracle"][str(k)] + 0.05


def test_dark_sequence_keeps_its_order_when_shuffled():
    """The contrast: Dark Sequence's one-way paths chain back together."""
    cert = order_certificate("trajbench/DarkSequence-v0", levels=100, ks=(1,), seed=0)
    assert cert["ordered"]["1"] >= 0.95
    assert cert["shuffled"]["1"] >= 0.6 > cert["oracle"]["1"] + 0.3

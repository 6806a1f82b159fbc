"""The reference policies: random, expert, and the copy baselines hashmap and replay."""

from __future__ import annotations

import numpy as np

from trajbench.baselines import HashmapPolicy, RandomPolicy, ReplayPolicy
from trajbench.policy import RowContext, Steps

N_ACTIONS = 5


def demo(actions: list[int]) -> Steps:
    obs = np.arange(2 * len(actions), dtype=np.uint8).reshape(-1, 2)
    return Steps(obs, np.asarray(actions), np.zeros(len(actions), np.float32))


def act(policy, n_rows: int, steps: int) -> np.ndarray:
    """The policy's actions over ``steps`` steps in ``n_rows`` rows that all keep running."""
    obs = np.zeros((n_rows, 2), np.uint8)
    prev = np.full(n_rows, N_ACTIONS)
    rows = np.arange(n_rows)
    return np.stack([policy.act(obs, prev, np.zeros(n_rows), rows) for _ in range(steps)], 1)


def test_replay_plays_one_context_demonstration_then_acts_at_random():
    policy = ReplayPolicy(N_ACTIONS, seed=0)
    a, b = [1, 1, 4, 2], [3, 0, 0]
    policy.begin([RowContext("", [demo(a), demo(b)]) for _ in range(40)])
    played = act(policy, 40, 8)
    starts = {tuple(row[:3]) for row in played}
    assert starts == {tuple(a[:3]), tuple(b)}  # each row replays one of the two, both occur
    for row in played:
        chosen = a if tuple(row[:3]) == tuple(a[:3]) else b
        assert list(row[: len(chosen)]) == chosen
    tails = np.concatenate([row[len(a) :] for row in played])
    assert len(set(tails.tolist())) > 2  # after the plan: random actions


def test_replay_restarts_its_plan_every_episode_and_only_advances_running_rows():
    policy = ReplayPolicy(N_ACTIONS, seed=1)
    policy.begin([RowContext("", [demo([2, 3, 4])]), RowContext("", [])])
    obs, prev, r = np.zeros((2, 2), np.uint8), np.full(2, N_ACTIONS), np.zeros(2)
    assert policy.act(obs, prev, r, np.array([0, 1]))[0] == 2
    assert policy.act(obs[:1], prev[:1], r[:1], np.array([0]))[0] == 3  # row 1 finished
    policy.begin([RowContext("", [demo([2, 3, 4])])])
    assert list(act(policy, 1, 3)[0]) == [2, 3, 4]


def test_without_context_replay_and_hashmap_act_like_random():
    for policy in (ReplayPolicy(N_ACTIONS, seed=5), HashmapPolicy(N_ACTIONS, seed=5)):
        policy.begin([RowContext("", []) for _ in range(8)])
        got = act(policy, 8, 50)
        ref = RandomPolicy(N_ACTIONS, seed=5)
        assert np.array_equal(got, act(ref, 8, 50))


def test_hashmap_copies_the_action_seen_at_an_identical_observation():
    policy = HashmapPolicy(N_ACTIONS, seed=0)
    policy.begin([RowContext("", [demo([4, 1, 2])])])
    seen = demo([4, 1, 2]).obs
    got = [
        int(policy.act(seen[t : t + 1], np.zeros(1), np.zeros(1), np.array([0]))[0])
        for t in range(3)
    ]
    assert got == [4, 1, 2]

"""What :func:`trajbench.rollout.rollout` shows a policy and what it records, step by step.

Scripted policies on Dark Room (numpy, no model): the environments are wrapped in a logger, so
every observation, action, reward and ``info`` an episode went through is known here, apart
from the rollout; what the policy was shown at each step (the current observation, the previous
action and reward, the running rows and their environments, the rows' contexts) and the records
(return, length, success) are checked against that log. Rows have different episode lengths
(``max_steps``), so rows stop at different steps.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import trajbench  # noqa: F401  (registers the families)
from trajbench.errors import TrajbenchError
from trajbench.policy import EpisodeRecord, Policy
from trajbench.privileged import PrivilegedPolicy, PrivilegedRow
from trajbench.rollout import rollout

DARK_ROOM = "trajbench/DarkRoom-v0"
N_ACTIONS = 5  # Dark Room's actions; the "no previous action" token is their number
LEVELS = [3, 40, 3]  # a level may appear in two rows
MAX_STEPS = [16, 7, 5]  # rows end at different steps (16: row 0 reaches its goal)
MISSIONS = {3: "find three", 40: "find forty"}


class Logged(gym.Wrapper):
    """Keeps every reset and step of an environment: ``("reset", obs)`` and ``("step", action,
    obs, reward, info)``."""

    def __init__(self, env):
        super().__init__(env)
        self.events: list[tuple] = []

    def reset(self, *, seed=None, options=None):
        obs, info = self.env.reset(seed=seed, options=options)
        self.events.append(("reset", np.asarray(obs, np.uint8).copy()))
        return obs, info

    def step(self, action):
        obs, reward, term, trunc, info = self.env.step(action)
        self.events.append(("step", int(action), np.asarray(obs, np.uint8).copy(), reward, info))
        return obs, reward, term, trunc, info


class Script(PrivilegedPolicy):
    """Row 0 walks to its goal (its reward shows up), the others cycle through the actions; keeps
    every ``begin`` and ``act`` call."""

    def __init__(self):
        self.begins: list[list[PrivilegedRow]] = []
        self.calls: list[tuple] = []

    def begin(self, rows):
        self.begins.append(list(rows))

    def act(self, obs, prev_action, prev_reward, rows, envs):
        self.calls.append((obs.copy(), prev_action.copy(), prev_reward.copy(), rows.copy(), envs))
        step = len(self.calls)
        return np.array(
            [
                env.unwrapped.expert_action() if i == 0 else (step + i) % N_ACTIONS
                for i, env in zip(rows.tolist(), envs, strict=True)
            ]
        )


def episodes_of(env: Logged) -> list[list[tuple]]:
    """The logged episodes of one environment: each the steps after its last reset (a start
    redrawn to avoid a demonstration's start is a reset without steps)."""
    out = []
    for event in env.events:
        if event[0] == "reset":
            if out and not out[-1][1]:
                out.pop()  # redrawn start
            out.append((event[1], []))
        else:
            out[-1][1].append(event[1:])
    return out


def shown_to(policy: Script, row: int) -> list[tuple]:
    """(observation, previous action, previous reward, environment) the policy was shown for
    ``row`` at each of its steps, in order."""
    out = []
    for obs, prev_a, prev_r, rows, envs in policy.calls:
        assert len(obs) == len(prev_a) == len(prev_r) == len(rows) == len(envs)
        for j, i in enumerate(rows.tolist()):
            if i == row:
                out.append((obs[j], int(prev_a[j]), float(prev_r[j]), envs[j]))
    return out


def play(n_episodes=3, **kw):
    envs = [Logged(gym.make(DARK_ROOM, levels="all", max_steps=m)) for m in MAX_STEPS]
    contexts = [[context_episode(lv)] for lv in LEVELS]
    policy = Script()
    out = rollout(
        policy, DARK_ROOM, LEVELS, contexts, MISSIONS, n_episodes, seed=5, envs=envs, **kw
    )
    return policy, envs, contexts, out


def context_episode(level: int) -> EpisodeRecord:
    obs = np.array([[1, 2], [1, 3]], np.uint8)
    return EpisodeRecord(obs, np.array([3, 4]), np.array([0.0, 1.0], np.float32), level, 9, "m")


@pytest.fixture
def played():
    return play()


def test_the_policy_sees_each_rows_observation_and_its_previous_action_and_reward(played):
    policy, envs, _, _ = played
    for i, env in enumerate(envs):
        seen = shown_to(policy, i)
        want = []
        for start, steps in episodes_of(env):
            obs, prev_a, prev_r = start, N_ACTIONS, 0.0  # nothing before the first step
            for action, next_obs, reward, _ in steps:
                want.append((obs, prev_a, prev_r))
                obs, prev_a, prev_r = next_obs, action, reward
        assert len(seen) == len(want) == 3 * MAX_STEPS[i]
        for (obs, prev_a, prev_r, e), (w_obs, w_a, w_r) in zip(seen, want, strict=True):
            assert np.array_equal(obs, w_obs) and (prev_a, prev_r) == (w_a, w_r)
            assert e is env  # the running row's own environment


def test_rows_stop_being_asked_when_their_episode_ends(played):
    policy, _, _, _ = played
    # Episode by episode, step t asks the rows whose episode is longer than t.
    per_episode = max(MAX_STEPS)
    asked = [rows.tolist() for _, _, _, rows, _ in policy.calls]
    want = [[i for i, m in enumerate(MAX_STEPS) if t < m] for t in range(per_episode)]
    assert asked == want * 3


def test_records_hold_each_episodes_return_length_and_success(played):
    _, envs, _, out = played
    got = {(r["row"], r["episode"]): r for r in out}
    assert len(out) == len(got) == 3 * len(LEVELS)
    successes = 0
    for i, env in enumerate(envs):
        for e, (_, steps) in enumerate(episodes_of(env)):
            r = got[(i, e)]
            assert r["level"] == LEVELS[i]
            assert r["return"] == pytest.approx(sum(s[2] for s in steps))
            assert r["length"] == len(steps) == MAX_STEPS[i]
            assert r["success"] is bool(steps[-1][3]["success"])
            assert "decoy_success" not in r
            successes += r["success"]
    # Row 0 walks to its goal (some episodes), the cycling rows do not always: both outcomes.
    assert 0 < successes < len(out)


def test_every_episode_shows_the_rows_context_only_by_default(played):
    policy, _, contexts, _ = played
    assert len(policy.begins) == 3
    for rows in policy.begins:
        assert [(r.env_id, r.level, r.mission, r.shown_mission) for r in rows] == [
            (DARK_ROOM, lv, MISSIONS[lv], None) for lv in LEVELS
        ]
        for r, ctx in zip(rows, contexts, strict=True):
            assert len(r.episodes) == 1 and r.episodes[0] is ctx[0]


def test_own_episodes_follow_the_context_as_played():
    policy, envs, contexts, _ = play(own_episodes=True)
    for e, rows in enumerate(policy.begins):
        for i, (r, env) in enumerate(zip(rows, envs, strict=True)):
            assert r.episodes[0] is contexts[i][0] and len(r.episodes) == 1 + e
            for earlier, (start, steps) in zip(r.episodes[1:], episodes_of(env), strict=False):
                shown = [start, *(s[1] for s in steps[:-1])]
                assert earlier.obs.dtype == np.uint8
                assert np.array_equal(earlier.obs, np.stack(shown))
                assert earlier.actions.dtype == np.int64
                assert earlier.actions.tolist() == [s[0] for s in steps]
                assert earlier.rewards.dtype == np.float32
                assert earlier.rewards.tolist() == [s[2] for s in steps]
                want = (LEVELS[i], -1, MISSIONS[LEVELS[i]])
                assert (earlier.level, earlier.episode_id, earlier.mission) == want


def test_a_start_a_demonstration_had_is_redrawn_and_the_rest_stay_paired(played):
    _, before, _, _ = played
    first_start = episodes_of(before[1])[0][0]
    _, envs, _, _ = play(avoid_starts=[set(), {first_start.tobytes()}, set()])
    redrawn = episodes_of(envs[1])
    assert not np.array_equal(redrawn[0][0], first_start)
    assert sum(ev[0] == "reset" for ev in envs[1].events) == 4  # one redraw
    # Every other start is the one drawn without the avoided start.
    for i in range(len(LEVELS)):
        for e, (start, _) in enumerate(episodes_of(envs[i])):
            if (i, e) != (1, 0):
                assert np.array_equal(start, episodes_of(before[i])[e][0])


class Outside(Policy):
    """An outside policy: it must be shown the protocol's view, never an environment."""

    def __init__(self):
        self.shown = []

    def begin(self, rows):
        self.shown.append(rows)

    def act(self, obs, prev_action, prev_reward, rows):
        return np.zeros(len(rows), np.int64)


def test_an_outside_policy_is_shown_the_protocols_view_in_environments_made_for_it():
    policy = Outside()
    ctx = context_episode(40)
    out = rollout(policy, DARK_ROOM, [40, 0], [[ctx], []], {40: "a", 0: "b"}, 1, seed=0)
    assert [(r["row"], r["level"], r["length"]) for r in out] == [(0, 40, 20), (1, 0, 20)]
    ((first, second),) = policy.shown
    assert (first.mission, second.mission, second.episodes) == ("a", "b", [])
    (steps,) = first.episodes
    assert np.array_equal(steps.obs, ctx.obs) and steps.actions.tolist() == [3, 4]


def test_bad_calls_say_what_is_wrong():
    one = [gym.make(DARK_ROOM, levels="all")]
    with pytest.raises(ValueError, match="rollout needs 2 environments, got 1"):
        rollout(Script(), DARK_ROOM, [3, 40], [[], []], MISSIONS, 1, seed=0, envs=one)
    with pytest.raises(ValueError):  # a context per row
        rollout(Script(), DARK_ROOM, [3, 40], [[]], MISSIONS, 1, seed=0)
    with pytest.raises(TrajbenchError, match=f"{DARK_ROOM} has no decoy missions"):
        rollout(Script(), DARK_ROOM, [3], [[]], MISSIONS, 1, seed=0, decoys=True)

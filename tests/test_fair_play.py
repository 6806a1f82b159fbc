"""Fair play: a policy scored through ``--policy module:factory`` or ``trajbench.evaluate`` sees
what the protocol shows (encoded steps, the mission as shown) and nothing else.

Each cheating policy below tries one leak and records what it found. Against the interface of
trajbench 0.1 (``act(..., envs)``, ``RowContext.level``, ``RowContext.env_id``, the true mission
under every instruction) each of them scored 1.00 at k = 0 on Dark Room, where an honest policy is
at chance (see docs/agent-view.md); here each finds nothing to read. Two more read across rows
(a row's index; another row's demonstrations, found by the start state rows of one level share):
with every condition batched together they scored 1.00 and 0.91 at k = 0; an outside policy now
plays isolated streams of rows (:mod:`trajbench.pipeline.streams`), and they are at chance.
"""

from __future__ import annotations

import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest

import trajbench
from trajbench.baselines import ExpertPolicy
from trajbench.data import load
from trajbench.envs.dark_grid import cell_of, step_toward
from trajbench.errors import TrajbenchError
from trajbench.pipeline import evaluate as evaluate_cli

pytest_plugins = ["pipeline_support"]  # dr_test, goto_test

DARK = "trajbench/DarkRoom-v0"
SIZE = 9  # Dark Room's default grid: level = y * 9 + x is the goal cell
FOUND: dict[str, list] = {}  # what the CLI-made cheats found, by cheat name


class Cheat:
    """A policy that moves toward whatever goal its leak gives, else at random."""

    name = "cheat"

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.goals: list = []
        self.found: list = []

    def goal_of(self, row) -> np.ndarray | None:
        return None

    def begin(self, rows) -> None:
        self.goals = [self.goal_of(row) for row in rows]

    def act(self, obs, prev_action, prev_reward, rows, *given) -> np.ndarray:
        out = self.rng.integers(5, size=len(rows))
        for j, i in enumerate(rows):
            if self.goals[i] is not None:
                out[j] = step_toward(np.asarray(obs[j], np.int64), self.goals[i])
        return out


class EnvReader(Cheat):
    """Asks the environments it is handed for the expert's action."""

    def act(self, obs, prev_action, prev_reward, rows, *given) -> np.ndarray:
        envs = given[0] if given else None
        if envs:
            self.found.append("envs")
            return np.array([env.unwrapped.expert_action() for env in envs], np.int64)
        return self.rng.integers(5, size=len(rows))


class LevelReader(Cheat):
    """Reads the level number (the goal cell on Dark Room)."""

    def goal_of(self, row) -> np.ndarray | None:
        level = getattr(row, "level", None)
        if level is None:
            return None
        self.found.append(level)
        return cell_of(level, SIZE)


def _given(obj) -> list:
    """Every value reachable from the attributes of ``obj`` (and of its episodes)."""
    values = list(vars(obj).values()) if hasattr(obj, "__dict__") else []
    for episode in getattr(obj, "episodes", ()):
        values += list(vars(episode).values()) if hasattr(episode, "__dict__") else []
    return values


class Remaker(Cheat):
    """Makes the environment again with ``gym.make`` from an id and a level it was given, and
    reads the hidden goal off its copy."""

    def goal_of(self, row) -> np.ndarray | None:
        values = _given(row)
        ids = [v for v in values if isinstance(v, str) and v in gym.registry]
        levels = [v for v in values if isinstance(v, (int, np.integer)) and 0 <= v < SIZE * SIZE]
        if not ids or not levels:
            return None
        env = gym.make(ids[0], levels="all")
        env.reset(seed=0, options={"level": int(levels[0])})
        self.found.append((ids[0], int(levels[0])))
        goal = np.asarray(env.unwrapped.goal)
        env.close()
        return goal


class StoreReader(Cheat):
    """Opens the evaluation store at a path it can see (anything it was given, and the command
    line) and looks its level up there by a key it was given (a level or an episode id)."""

    def __init__(self, seed: int = 0, **given):
        super().__init__(seed)
        self.paths = [v for v in given.values() if isinstance(v, (str, Path))]

    def goal_of(self, row) -> np.ndarray | None:
        for path in [*self.paths, *sys.argv, *_given(row)]:
            if not isinstance(path, (str, Path)) or not (Path(path) / "meta.json").is_file():
                continue
            eps = load(path).episodes
            level = getattr(row, "level", None)
            ids = [getattr(e, "episode_id", None) for e in getattr(row, "episodes", ())]
            if level is None and ids and ids[0] is not None:
                level = int(eps.loc[eps.episode_id == ids[0], "level"].iloc[0])
            if level is None:
                continue
            one = load(path)
            first = eps[(eps.level == level) & eps.success].iloc[0]
            self.found.append((str(path), int(level)))
            return np.asarray(one.obs[int(first.offset) + int(first.length) - 1], np.int64)
        return None


def make_store_reader(**given) -> StoreReader:
    """The factory ``--policy test_fair_play:make_store_reader`` names; it keeps every argument
    trajbench passes it (the store reader searches them for paths)."""
    policy = StoreReader(**given)
    FOUND["store"] = policy.found
    return policy


def _k0_success(records: pd.DataFrame) -> float:
    return float(records.loc[records.k == 0, "success"].mean())


@pytest.mark.parametrize("cheat", [EnvReader, LevelReader, Remaker], ids=lambda c: c.__name__)
def test_a_cheat_through_the_api_finds_nothing_to_read(cheat, dr_test):
    policy = cheat()
    result = trajbench.evaluate(policy, dr_test, ks=(0,), episodes=4, offline=False)
    assert policy.found == []
    # at chance: an honest policy's k = 0 success on Dark Room (the expert's is 1.0)
    assert _k0_success(result.records) < 0.5


def test_a_store_reader_run_from_the_command_line_finds_no_key(dr_test, tmp_path, monkeypatch):
    argv = ["--policy", "test_fair_play:make_store_reader", "--data", dr_test, "--ks", "0"]
    argv += ["--episodes", "4", "--out", str(tmp_path / "out"), "--no-progress"]
    monkeypatch.setattr(sys, "argv", ["trajbench", "evaluate", *argv])
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    assert evaluate_cli.main(argv) == 0
    assert FOUND["store"] == []
    assert _k0_success(pd.read_parquet(tmp_path / "out" / "records.parquet")) < 0.5


class RowOrder(Cheat):
    """Takes row ``i`` of an evaluation of every test level to be level ``split[i % n]``."""

    SPLIT = sorted(int(x) for x in gym.make(DARK).unwrapped.splits()["test"])

    def begin(self, rows) -> None:
        self.goals = [cell_of(self.SPLIT[i % len(self.SPLIT)], SIZE) for i in range(len(rows))]


class Pairing(Cheat):
    """A row without demonstrations borrows the goal (where a demonstration ends) of a row with
    the same start state: rows of one level start alike."""

    def begin(self, rows) -> None:
        self.goals = [
            np.asarray(r.episodes[0].obs[-1], np.int64) if r.episodes else None for r in rows
        ]
        self.shown, self.first = list(self.goals), True

    def act(self, obs, prev_action, prev_reward, rows, *given) -> np.ndarray:
        if self.first:  # every running row's start, at once
            starts = {
                obs[j].tobytes(): self.shown[i]
                for j, i in enumerate(rows)
                if self.shown[i] is not None
            }
            for j, i in enumerate(rows):
                if self.goals[i] is None and obs[j].tobytes() in starts:
                    self.goals[i] = starts[obs[j].tobytes()]
                    self.found.append(int(i))
            self.first = False
        return super().act(obs, prev_action, prev_reward, rows)


@pytest.mark.parametrize("cheat", [RowOrder, Pairing], ids=lambda c: c.__name__)
def test_a_cheat_across_rows_plays_at_chance(cheat, dr_test):
    result = trajbench.evaluate(cheat(), dr_test, ks=(0, 4), support="same", episodes=4)
    assert _k0_success(result.records) < 0.5
    if cheat is Pairing:  # where its row shows demonstrations, it reads them
        assert result.records.loc[result.records.k == 4, "success"].mean() > 0.9


class OldInterface:
    """A policy written for trajbench 0.1: ``act`` requires the environments."""

    def begin(self, rows) -> None:
        pass

    def act(self, obs, prev_action, prev_reward, rows, envs) -> np.ndarray:
        return np.array([env.unwrapped.expert_action() for env in envs], np.int64)


def test_a_policy_that_requires_the_environments_is_refused_with_the_reason(dr_test):
    with pytest.raises(TrajbenchError, match="envs"):
        trajbench.evaluate(OldInterface(), dr_test, ks=(0,), episodes=1)


def test_the_privileged_expert_is_out_of_reach_of_outside_paths(dr_test, tmp_path):
    with pytest.raises(TrajbenchError, match="privileged"):
        trajbench.evaluate(ExpertPolicy(), dr_test, ks=(0,), episodes=1)
    argv = ["--policy", "trajbench.baselines:ExpertPolicy", "--data", dr_test, "--ks", "0"]
    with pytest.raises(TrajbenchError, match="privileged"):
        evaluate_cli.main([*argv, "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


class Recorder:
    """Records every mission and context it is shown."""

    def __init__(self):
        self.shown: list = []

    def begin(self, rows) -> None:
        self.shown += [(row.mission, row.episodes) for row in rows]

    def act(self, obs, prev_action, prev_reward, rows) -> np.ndarray:
        return np.zeros(len(rows), np.int64)


@pytest.mark.parametrize("instruction", ["full", "empty", "template", "decoy", "train"])
def test_an_outside_policy_is_shown_the_mission_the_instruction_says(goto_test, instruction):
    policy = Recorder()
    trajbench.evaluate(
        policy, goto_test, ks=(0,), episodes=1, instruction=instruction, offline=False
    )
    true = set(load(goto_test).episodes["mission"])
    shown = {mission for mission, _ in policy.shown}
    if instruction == "empty":
        assert shown == {""}
    elif instruction in ("full", "train"):  # an outside policy has no training mode: full
        assert shown <= true and len(shown) > 1
    elif instruction == "template":
        assert not shown & true and all("<" in m for m in shown)
    else:  # decoy: another object of the level, never the true mission
        assert shown and not shown & true


def test_the_context_is_the_demonstrations_steps_and_nothing_more(dr_test):
    policy = Recorder()
    trajbench.evaluate(policy, dr_test, ks=(2,), support="same", episodes=1, formats=("common",))
    store = load(dr_test)
    steps = {
        (
            np.asarray(store.obs[s : s + n], np.uint8).tobytes(),
            np.asarray(store.actions[s : s + n], np.int64).tobytes(),
        )
        for s, n in zip(store.episodes.offset, store.episodes.length, strict=True)
    }
    for _, episodes in policy.shown:
        assert len(episodes) == 2
        for ep in episodes:
            assert set(vars(ep)) == {"obs", "actions", "rewards"}
            key = (
                np.asarray(ep.obs, np.uint8).tobytes(),
                np.asarray(ep.actions, np.int64).tobytes(),
            )
            assert key in steps  # a demonstration of the store, unchanged

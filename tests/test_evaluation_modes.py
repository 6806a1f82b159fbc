"""Evaluation modes checked by what they do, not by their labels: what a model is shown in the
common and in its matched format, what a decoy evaluation records when a scripted policy walks to
the decoy's object or to the true target, and how often partial cuts reach an episode's end."""

from __future__ import annotations

from collections import Counter, deque
from itertools import pairwise

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
from contexts_support import Facts, View, make_store, vocab_of
from minigrid.core.constants import COLOR_NAMES
from minigrid.envs.babyai.core.verifier import ObjDesc
from pipeline_support import DARK_ROOM, collected, tiny_model

import trajbench.pipeline.evaluate as evaluation
from trajbench.baselines.transformer_policy import TransformerPolicy
from trajbench.contexts import ContextBuilder, ContextConfig
from trajbench.data import load
from trajbench.errors import TrajbenchError
from trajbench.pipeline.evaluate import EvalConfig, evaluate, evaluate_policy
from trajbench.pipeline.policies import PolicyInfo
from trajbench.policy import Policy, RowContext
from trajbench.privileged import PrivilegedPolicy, PrivilegedRow
from trajbench.records import TRAIN_CONTEXT

#: dr_test, goto_test: expert episodes of held-out Dark Room and GoToLocal levels.
pytest_plugins = ["pipeline_support"]


# -- formats ---------------------------------------------------------------------------------------
def steps_of(episodes) -> list[tuple[bytes, int, float]]:
    """Every context step as (observation, action, reward), in the order shown."""
    return [
        (np.asarray(e.obs[t], np.uint8).tobytes(), int(e.actions[t]), float(e.rewards[t]))
        for e in episodes
        for t in range(len(e))
    ]


def test_the_matched_format_shows_the_demonstrations_steps_as_the_model_trained(
    dr_test, tmp_path_factory, monkeypatch
):
    """A model trained on ``shuffled`` is shown, for every (level, k, support), one context of
    whole expert episodes of the store in order (common) and one of the same steps in other
    orders poured into segments of the same lengths (matched), as its training contexts are."""
    env = gym.make(DARK_ROOM)
    train_levels = ",".join(str(int(x)) for x in env.unwrapped.splits()["train"][:4])
    env.close()
    train_data = collected(tmp_path_factory, "dr-train", DARK_ROOM, train_levels, 4)
    model = tiny_model(
        train_data, tmp_path_factory.mktemp("m") / "run", ContextConfig("shuffled", k=2)
    )
    shown: list[RowContext] = []
    begin = TransformerPolicy.begin

    def recording(self, rows):
        shown.extend(rows)
        return begin(self, rows)

    monkeypatch.setattr(TransformerPolicy, "begin", recording)
    online, _ = evaluate(
        EvalConfig(
            policy=model,
            data=(dr_test,),
            out=str(tmp_path_factory.mktemp("e")),
            ks=(0, 3),
            episodes=1,
            offline=False,
            progress=False,
        )
    )
    store = load(dr_test)
    eps = store.episodes
    whole = {}  # the store's expert episodes, as steps
    for row in eps[eps.demonstrator == "expert"].itertuples():
        s, n = int(row.offset), int(row.length)
        key = tuple(
            (
                np.asarray(store.obs[t], np.uint8).tobytes(),
                int(store.actions[t]),
                float(store.rewards[t]),
            )
            for t in range(s, s + n)
        )
        whole[key] = int(row.level)
    levels = sorted(online["level"].unique())
    assert len(shown) == len(online)  # one begin per row and episode (E = 1)
    by_level: dict[int, list[RowContext]] = {}
    for row in shown:
        by_level.setdefault(row.level, []).append(row)
    assert sorted(by_level) == levels
    adjacent = []
    for level, rows in by_level.items():
        with_context = [r for r in rows if r.episodes]
        assert len(rows) - len(with_context) == 1  # k = 0
        kinds = []
        for r in with_context:
            segments = [tuple(steps_of([e])) for e in r.episodes]
            kinds.append(all(seg in whole for seg in segments))
        # common: same and other support; matched: the same two again
        assert sorted(kinds) == [False, False, True, True], level
        ordered = [r for r, k in zip(with_context, kinds, strict=True) if k]
        for r in ordered:
            sources = [whole[tuple(steps_of([e]))] for e in r.episodes]
            assert len(r.episodes) == 3
            assert all(s == level for s in sources) or all(s != level for s in sources)
        for r, k in zip(with_context, kinds, strict=True):
            if k:
                continue
            twins = [
                o
                for o in ordered
                if Counter(steps_of(o.episodes)) == Counter(steps_of(r.episodes))
                and [len(e) for e in o.episodes] == [len(e) for e in r.episodes]
            ]
            assert len(twins) == 1, "matched rows hold a common row's steps, segment for segment"
            # How often a step is followed by its successor in a demonstration (common: always).
            successor = {a: b for demo in twins[0].episodes for a, b in pairwise(steps_of([demo]))}
            for seg in r.episodes:
                adjacent += [successor.get(a) == b for a, b in pairwise(steps_of([seg]))]
    # Whole demonstrations: 1; steps in a uniformly random order: mostly chance coincidences.
    assert len(adjacent) > 200 and np.mean(adjacent) < 0.5
    # The model's training contexts (the prompt builder in its mode) have the same structure: the
    # steps of whole episodes of the query's level, in segments of those episodes' lengths.
    builder = ContextBuilder(store, mode="shuffled", k=3, seed=0, vocab=vocab_of(store))
    view = View(store, builder.sample(64, seed=0))
    f = Facts(store)
    for r in view.rows:
        sources = sorted({e for e, _ in r.ctx_steps})
        lengths = sorted(int(f.length[f.row(e)]) for e in sources)
        assert len(sources) == 3 and sorted(r.lengths) == lengths
        assert {int(f.level[f.row(e)]) for e in sources} == {int(f.level[f.row(r.query_ep)])}
        assert sorted(r.ctx_steps) == [(e, t) for e in sources for t in range(f.length[f.row(e)])]


class Recorder(Policy):
    """An outside policy that asks for a context mode and records every context it is shown."""

    def __init__(self, context_mode: str):
        self.context_mode, self.shown = context_mode, []

    def begin(self, rows: list[RowContext]) -> None:
        self.shown.extend(rows)

    def act(self, obs, prev_action, prev_reward, rows) -> np.ndarray:
        return np.zeros(len(rows), dtype=np.int64)


def test_an_outside_policy_asking_for_shuffled_is_also_shown_its_demonstrations_shuffled(dr_test):
    """``context_mode = "shuffled"``: every (level, k, support) is shown once whole and once as
    the same steps in another order in segments of the same lengths; ``-``: whole only."""
    policy = Recorder("shuffled")
    result = evaluate_policy(policy, dr_test, ks=(3,), episodes=1, support="same", max_levels=4)
    records = result.records
    assert sorted(records["format"].unique()) == ["common", "matched"]
    assert (records[TRAIN_CONTEXT] == "-").all()  # an outside policy, not a trained mode
    whole, shuffled = policy.shown[: len(policy.shown) // 2], policy.shown[len(policy.shown) // 2 :]
    assert len(whole) == len(shuffled) == 4
    moved = 0
    for w in whole:
        twins = [
            s
            for s in shuffled
            if Counter(steps_of(s.episodes)) == Counter(steps_of(w.episodes))
            and [len(e) for e in s.episodes] == [len(e) for e in w.episodes]
        ]
        assert len(twins) == 1
        moved += steps_of(twins[0].episodes) != steps_of(w.episodes)
    assert moved == len(whole)
    plain = Recorder("-")
    records = evaluate_policy(plain, dr_test, ks=(3,), episodes=1, support="same", max_levels=4)
    assert set(records.records["format"]) == {"common"} and len(plain.shown) == 4
    with pytest.raises(TrajbenchError, match="not a context mode"):
        evaluate_policy(Recorder("sorted"), dr_test, ks=(3,), episodes=1, max_levels=1)


# -- decoys ----------------------------------------------------------------------------------------
_DIRS = ((1, 0), (0, 1), (-1, 0), (0, -1))  # MiniGrid's DIR_TO_VEC
LEFT, RIGHT, FORWARD, DONE = 0, 1, 2, 6


def positions(env, mission: str) -> set[tuple[int, int]]:
    """Cells of the objects a "go to the <color> <type>" mission names."""
    words = mission.split()
    color = words[-2] if words[-2] in COLOR_NAMES else None
    _, poss = ObjDesc(words[-1], color).find_matching_objs(env)
    return {tuple(int(v) for v in p) for p in poss}


def plan(env, goal: set, avoid: set) -> int:
    """The first action of a shortest walk until the agent faces a cell of ``goal``, never
    facing a cell of ``avoid`` on the way (breadth-first over cell and direction)."""
    start = (*map(int, env.agent_pos), int(env.agent_dir))

    def front(s):
        return (s[0] + _DIRS[s[2]][0], s[1] + _DIRS[s[2]][1])

    if front(start) in goal:
        return DONE
    first = {start: None}
    queue = deque([start])
    while queue:
        s = queue.popleft()
        x, y, d = s
        nexts = [((x, y, (d - 1) % 4), LEFT), ((x, y, (d + 1) % 4), RIGHT)]
        fx, fy = front(s)
        cell = env.grid.get(fx, fy)
        if cell is None or cell.can_overlap():
            nexts.append(((fx, fy, d), FORWARD))
        for t, a in nexts:
            if t in first or front(t) in avoid:
                continue
            first[t] = a if first[s] is None else first[s]
            if front(t) in goal:
                return first[t]
            queue.append(t)
    raise AssertionError("no walk to the goal")


class Walker(PrivilegedPolicy):
    """Walks to the objects the decoy names (``to="decoy"``) or the true mission names, never
    facing the other ones; then stays put. It reads the environments to navigate: a privileged
    reference policy, as trajbench's expert is."""

    def __init__(self, to: str):
        self.to = to

    def begin(self, rows: list[PrivilegedRow]) -> None:
        self.rows = rows

    def act(self, obs, prev_action, prev_reward, rows, envs) -> np.ndarray:
        out = []
        for i, env in zip(rows, envs, strict=True):
            env = env.unwrapped
            row = self.rows[i]
            assert row.shown_mission is not None and row.shown_mission != row.mission
            decoy, true = positions(env, row.shown_mission), positions(env, row.mission)
            goal, avoid = (decoy, true) if self.to == "decoy" else (true, decoy)
            out.append(plan(env, goal, avoid))
        return np.asarray(out, np.int64)


def test_a_decoy_evaluation_records_the_object_the_agent_walked_to(
    goto_test, tmp_path, monkeypatch
):
    """The evaluation a run makes of a reference policy with ``instruction="decoy"``, with the
    policy it loads replaced by the scripted walker."""

    def run(to: str) -> pd.DataFrame:
        walker = Walker(to)
        monkeypatch.setattr(
            evaluation,
            "load_policy",
            lambda *a, **kw: (walker, PolicyInfo(policy="walker")),
        )
        cfg = EvalConfig(
            policy="walker",
            data=(str(goto_test),),
            out=str(tmp_path / to),
            ks=(0,),
            support="same",
            formats=("common",),
            instruction="decoy",
            episodes=2,
            offline=False,
            progress=False,
        )
        return evaluate(cfg)[0]

    to_decoy, to_goal = run("decoy"), run("goal")
    assert len(to_decoy) == len(to_goal) == 8 * 2
    assert set(to_decoy["eval_instruction"]) == set(to_goal["eval_instruction"]) == {"decoy"}
    assert to_decoy["decoy_success"].astype(bool).all() and not to_decoy["success"].any()
    assert to_goal["success"].all() and not to_goal["decoy_success"].astype(bool).any()


# -- partial cuts ----------------------------------------------------------------------------------
def test_partial_pieces_start_and_end_as_documented():
    """A piece of an L-step episode starts at a uniform step and ends at a uniform step from
    there on, so it holds the first step with probability 1/L and the last with H_L / L."""
    store = make_store(seed=3, n_levels=6, experts=(6, 8), min_len=1, max_len=12)
    builder = ContextBuilder(store, mode="bursty", k=2, partial=True, seed=0, vocab=vocab_of(store))
    view = View(store, builder.sample(1500, seed=1))
    f = Facts(store)
    first = last = 0
    p_first, p_last = [], []
    for r in view.rows:
        for seg in r.segments:
            n = int(f.length[f.row(seg[0][0])])
            first += seg[0][1] == 0
            last += seg[-1][1] == n - 1
            p_first.append(1.0 / n)
            p_last.append(sum(1.0 / j for j in range(1, n + 1)) / n)
    for seen, p in ((first, np.array(p_first)), (last, np.array(p_last))):
        sd = np.sqrt((p * (1 - p)).sum())
        assert abs(seen - p.sum()) < 4 * sd, (seen, p.sum(), sd)
    whole = ContextBuilder(store, mode="bursty", k=2, seed=0, vocab=vocab_of(store))
    for r in View(store, whole.sample(200, seed=1)).rows:
        for seg in r.segments:
            assert seg[0][1] == 0 and seg[-1][1] == f.length[f.row(seg[0][0])] - 1

"""Evaluation modes checked by what they do, not by their labels: what a model is shown in the
common and in its matched format, what a decoy evaluation records when a scripted policy walks to
the decoy's object or to the true target, and how often partial cuts reach an episode's end."""

from __future__ import annotations

import dataclasses
from collections import Counter, deque
from itertools import pairwise

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
from contexts_support import Facts, View, make_store, vocab_of
from minigrid.core.constants import COLOR_NAMES
from minigrid.envs.babyai.core.verifier import ObjDesc
from pipeline_support import DARK_ROOM, GOTO, collected, tiny_model

import trajbench.pipeline.evaluate as evaluation
from trajbench.baselines.transformer_policy import TransformerPolicy
from trajbench.contexts import ContextBuilder, ContextConfig
from trajbench.contexts.formats import in_structure
from trajbench.data import load
from trajbench.errors import TrajbenchError
from trajbench.pipeline.evaluate import EvalConfig, evaluate, evaluate_policy
from trajbench.pipeline.policies import PolicyInfo
from trajbench.policy import EpisodeRecord, Policy, RowContext
from trajbench.privileged import PrivilegedPolicy, PrivilegedRow
from trajbench.records import TRAIN_CONTEXT

#: dr_test, goto_test: expert episodes of held-out Dark Room and GoToLocal levels.
pytest_plugins = ["pipeline_support"]


def expert_return(store_path) -> dict[int, float]:
    """Mean return of each level's successful expert episodes in a store: the normalizer."""
    eps = load(store_path).episodes
    expert = eps[(eps.demonstrator == "expert") & eps.success]
    return expert.groupby("level")["return"].mean().to_dict()


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
    # The normalized return: the episode's return over its level's mean expert return.
    ref = expert_return(goto_test)
    for df in (to_decoy, to_goal):
        want = df["return"] / df["level"].map(ref)
        assert np.allclose(df["normalized_return"], want, rtol=1e-12, atol=0)
    assert to_goal["normalized_return"].nunique() > 2  # not a 0/1 mark


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


# -- what evaluation hands the rollout -------------------------------------------------------------
class Still(PrivilegedPolicy):
    """Always action 0 (valid in every family); keeps the rows it is shown."""

    def __init__(self):
        self.rows: list[PrivilegedRow] = []

    def begin(self, rows):
        self.rows += rows

    def act(self, obs, prev_action, prev_reward, rows, envs):
        return np.zeros(len(rows), np.int64)


#: A second BabyAI family (the observation encoding of GoToLocal-v1: one evaluation store).
PICKUP = "trajbench/PickupLoc-v1"


def evaluated(monkeypatch, out, data, train_context="shuffled", **kw):
    """Records of an evaluation of :class:`Still` as a model trained on ``train_context`` (seed
    3), and every call evaluation made to the rollout (its arguments)."""
    calls, policy = [], Still()
    play = evaluation.rollout

    def recording(*args, **kwargs):
        calls.append((args, kwargs))
        return play(*args, **kwargs)

    monkeypatch.setattr(evaluation, "rollout", recording)
    info = PolicyInfo(policy="still", train_context=train_context, train_seed=3)
    monkeypatch.setattr(evaluation, "load_policy", lambda *a, **k: (policy, info))
    cfg = EvalConfig(policy="still", data=tuple(map(str, data)), out=str(out), offline=False)
    cfg = dataclasses.replace(cfg, **{"progress": False, **kw})
    return evaluate(cfg)[0], calls, policy


def test_evaluation_hands_each_family_its_rows_environments_and_avoided_starts(
    goto_test, tmp_path_factory, monkeypatch
):
    """Two families in one evaluation: each rollout plays one family's rows in that family's
    environments, avoiding the starts of the K=2 same-level demonstrations it shows (the
    common-format contexts of those rows, read here from what was passed); records carry the
    model's training seed and every (K, support, format) asked for."""
    env = gym.make(PICKUP)
    levels = ",".join(str(int(x)) for x in env.unwrapped.splits()["test"][:3])
    env.close()
    pickup = collected(tmp_path_factory, "pickup-test", PICKUP, levels, 3)
    online, calls, policy = evaluated(
        monkeypatch,
        tmp_path_factory.mktemp("e"),
        (goto_test, pickup),
        ks=(0, 2),
        episodes=1,
        max_levels=3,
        own_episodes=True,
    )
    assert set(zip(online["k"], online["support"], online["format"], strict=True)) == {
        (0, "same", "common"),
        (2, "same", "common"),
        (2, "same", "matched"),
        (2, "other", "common"),
        (2, "other", "matched"),
    }
    assert (online["seed"] == 3).all() and set(online["family"]) == {GOTO, PICKUP}
    starts: dict[tuple[str, int], set[bytes]] = {}
    for (_, env_id, levels, contexts, *_), kw in calls:
        assert kw["own_episodes"] is True
        assert all(env.spec.id == env_id for env in kw["envs"])
        for lv, ctx in zip(levels, contexts, strict=True):
            if len(ctx) == 2 and all(e.episode_id >= 0 and e.level == lv for e in ctx):
                starts[(env_id, lv)] = {np.asarray(e.obs[0], np.uint8).tobytes() for e in ctx}
    assert len(starts) == 2 * 3
    for (_, env_id, levels, *_), kw in calls:
        for lv, avoid in zip(levels, kw["avoid_starts"], strict=True):
            assert avoid == starts[(env_id, lv)]
    assert {(r.env_id, r.level) for r in policy.rows} == set(starts)


def test_the_matched_format_is_drawn_the_same_in_every_run(dr_test, tmp_path, monkeypatch):
    def shown(out):
        _, _, policy = evaluated(
            monkeypatch,
            out,
            (dr_test,),
            ks=(2,),
            support="same",
            formats=("matched",),
            episodes=1,
            max_levels=3,
        )
        return [np.concatenate([e.obs.ravel() for e in r.episodes]) for r in policy.rows]

    first, again = shown(tmp_path / "a"), shown(tmp_path / "b")
    assert len(first) == 3
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))


def test_a_model_of_an_ordered_mode_has_no_matched_format(dr_test, tmp_path, monkeypatch):
    online, _, _ = evaluated(
        monkeypatch, tmp_path / "a", (dr_test,), "bursty", ks=(2,), episodes=1, max_levels=2
    )
    assert set(online["format"]) == {"common"}
    with pytest.raises(
        TrajbenchError,
        match="still: nothing to evaluate in the matched format only; its context mode 'bursty' "
        "keeps whole episodes, so matched is the common format",
    ):
        evaluated(monkeypatch, tmp_path / "b", (dr_test,), "bursty", formats=("matched",))


def test_a_shuffled_segment_keeps_the_level_its_steps_share_and_its_slots_mission():
    """Demonstrations of levels 4, 4 and 9 (each step's observation says its level), shuffled:
    a segment stands for the demonstration in its slot (its length and mission), holds steps of
    one level or of several (level -1), and is no stored episode (id -1)."""

    def demo(level, n, mission):
        obs = np.full((n, 2), level, np.uint8)
        return EpisodeRecord(obs, np.arange(n), np.zeros(n, np.float32), level, 7, mission)

    demos = [demo(4, 3, "four a"), demo(4, 2, "four b"), demo(9, 4, "nine")]
    mixed = single = 0
    for seed in range(20):
        out = in_structure(demos, ordered=False, rng=np.random.default_rng(seed))
        assert [len(s) for s in out] == [3, 2, 4]
        for seg, d in zip(out, demos, strict=True):
            assert (seg.mission, seg.episode_id) == (d.mission, -1)
            levels = set(seg.obs[:, 0].tolist())
            assert seg.level == (levels.pop() if len(levels) == 1 else -1)
            mixed += seg.level == -1
            single += seg.level != -1
    assert mixed and single

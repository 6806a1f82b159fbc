"""Tests of token assembly (``trajbench.contexts.tokens``): the step table, row plans, and
``assemble``, which rebuilds any batch of the builder from its runs."""

from __future__ import annotations

from dataclasses import fields

import numpy as np
from contexts_support import PROPS, View, build, in_order, knobs, make_store, seeds, store_params
from hypothesis import given
from hypothesis import strategies as st

from trajbench.batch import IGNORE, PAD, STEP, WORD, Batch
from trajbench.contexts import MODE_NAMES, ContextBuilder, RowPlan, StepTable, assemble
from trajbench.contexts import tokens as tokens_module


def small_table() -> StepTable:
    """Episode 70 (level 7) at steps 0-2, episode 80 (level 8) at 3-5."""
    return StepTable.from_episodes(
        np.arange(12, dtype=np.uint8).reshape(6, 2),
        np.array([0, 1, 2, 3, 0, 1], np.uint8),
        np.arange(6, dtype=np.float32),
        [0, 3],
        [3, 3],
        [7, 8],
        [70, 80],
    )


def test_step_table_bookkeeping():
    # Episodes out of order, and a step (index 2) that belongs to none.
    actions = np.array([1, 2, 3, 0, 1, 2], np.uint8)
    table = StepTable.from_episodes(
        np.zeros((6, 1), np.uint8), actions, np.zeros(6), [3, 0], [3, 2], [5, 9], [1, 0]
    )
    assert table.t.tolist() == [0, 1, -1, 0, 1, 2]
    assert table.level.tolist() == [9, 9, -1, 5, 5, 5]
    assert table.episode_id.tolist() == [0, 0, -1, 1, 1, 1]
    lk = table.lookups(4)
    assert lk is table.lookups(4), "the gather tables are computed once per action count"
    assert lk is not table.lookups(5)
    # prev_action: the start action at t = 0, never the last action of the episode before.
    assert lk.prev_action[:6].tolist() == [4, 1, 4, 4, 0, 1]
    assert lk.prev_action[6:].tolist() == [4, 0]  # the word and padding sentinels


def test_row_plan_views():
    plan = RowPlan()
    plan.add_words([], level=1, episode_id=1, query=False)  # an empty run adds nothing
    plan.add_steps(range(2, 2), query=False)
    plan.add_words([1], level=-1, episode_id=-1, query=False)
    plan.add_steps([5, 1], query=False)
    plan.add_words([1, 4], level=8, episode_id=80, query=True)
    plan.add_steps(range(3, 5), query=True)
    assert len(plan) == 7 and len(plan.segments) == 4
    assert plan.kind == [WORD, STEP, STEP, WORD, WORD, STEP, STEP]
    assert plan.word == [1, 0, 0, 1, 4, 0, 0]
    assert plan.step == [-1, 5, 1, -1, -1, 3, 4]
    assert plan.query == [False] * 3 + [True] * 4
    assert plan.level == [-1, -1, -1, 8, 8, -1, -1]
    assert plan.episode == [-1, -1, -1, 80, 80, -1, -1]


def test_assemble_handles_word_only_rows_and_explicit_steps():
    table = small_table()
    a, b, c = RowPlan(), RowPlan(), RowPlan()
    a.add_words([1, 5], level=7, episode_id=70, query=False)
    a.add_steps(range(0, 3), query=False)
    a.add_words([1], level=8, episode_id=-1, query=True)
    b.add_steps([5, 1], query=False)
    b.add_words([1, 4], level=8, episode_id=80, query=True)
    b.add_steps(range(3, 5), query=True)
    c.add_words([1], level=3, episode_id=-1, query=True)
    batch = assemble([a, b, c], table, n_actions=4)
    assert batch.shape == (3, 6)
    assert batch.kind.tolist() == [[1, 1, 2, 2, 2, 1], [2, 2, 1, 1, 2, 2], [1, 0, 0, 0, 0, 0]]
    assert batch.t.tolist() == [[-1, -1, 0, 1, 2, -1], [2, 1, -1, -1, 0, 1], [-1] * 6]
    assert batch.prev_action.tolist() == [  # context steps: hidden (5); query steps: a_{t-1}
        [4, 4, 5, 5, 5, 4],
        [5, 5, 4, 4, 4, 3],
        [4, 0, 0, 0, 0, 0],
    ]
    assert batch.shown_action.tolist()[1] == [1, 1, 5, 5, 5, 5]
    assert batch.target.tolist()[1] == [IGNORE, IGNORE, IGNORE, IGNORE, 3, 0]
    assert batch.obs[1, 0].tolist() == [10, 11] and batch.obs[1, 2].tolist() == [0, 0]
    assert batch.level.tolist()[2] == [3, -1, -1, -1, -1, -1]
    assert batch.episode_id.tolist()[1] == [80, 70, 80, 80, 80, 80]
    assert batch.loss_mask.tolist()[1] == [False] * 4 + [True] * 2
    assert (batch.pad == (batch.kind == PAD)).all()
    empty = StepTable.from_episodes(
        np.zeros((0, 2), np.uint8), np.zeros(0, np.uint8), np.zeros(0, np.float32), [], [], [], []
    )
    only = assemble([c, c], empty, n_actions=4, pad_to=3)
    assert only.kind.tolist() == [[1, 0, 0]] * 2 and only.obs.shape == (2, 3, 2)


def test_a_range_across_two_episodes_is_read_step_by_step():
    # Steps 1..4 cross from episode 70 into episode 80: each token keeps its own episode.
    plan = RowPlan()
    plan.add_steps(range(1, 5), query=True)
    batch = assemble([plan], small_table(), n_actions=4)
    assert batch.episode_id.tolist() == [[70, 70, 80, 80]]
    assert batch.level.tolist() == [[7, 7, 8, 8]]
    assert batch.t.tolist() == [[1, 2, 0, 1]]
    assert batch.prev_action.tolist() == [[0, 1, 4, 3]]  # query steps show a_{t-1} of their own


def test_actions_beyond_uint8_and_pad_to():
    # 255 actions stored as uint8: the start (255) and hidden (256) ids must not wrap.
    table = StepTable.from_episodes(
        np.zeros((2, 1), np.uint8), np.array([254, 7], np.uint8), [0.5, 1.0], [0], [2], [0], [0]
    )
    plan = RowPlan()
    plan.add_words([1], level=0, episode_id=0, query=True)
    plan.add_steps(range(0, 2), query=True)
    batch = assemble([plan], table, n_actions=255, pad_to=5)
    assert batch.shape == (1, 5)
    assert batch.prev_action.tolist() == [[255, 255, 254, 0, 0]]
    assert batch.shown_action.tolist() == [[256] * 5]
    assert batch.target.tolist() == [[IGNORE, 254, 7, IGNORE, IGNORE]]
    assert batch.prev_reward.tolist() == [[0.0, 0.0, 0.5, 0.0, 0.0]]
    assert assemble([plan], table, n_actions=255, pad_to=1).shape == (1, 3)  # never cuts


def test_large_observation_tables_are_gathered_in_place(monkeypatch):
    """Tables over the copy limit are gathered clipped, then the non-step cells zeroed: the same
    batch as the copied path."""
    store = make_store(5, n_levels=5, experts=(4, 6))
    copied = ContextBuilder(store, mode="shuffled", k=3, seed=0).sample(16, seed=1)
    monkeypatch.setattr(tokens_module, "_OBS_COPY_LIMIT", 0)
    builder = ContextBuilder(store, mode="shuffled", k=3, seed=0)
    assert builder.index.lookups.obs_clip
    clipped = builder.sample(16, seed=1, pad_to=copied.shape[1] + 3)
    for f in fields(Batch):
        assert np.array_equal(
            getattr(clipped, f.name)[:, : copied.shape[1]], getattr(copied, f.name)
        )
    assert (clipped.obs[:, copied.shape[1] :] == 0).all()


def plans_of(batch: Batch, view: View) -> list[RowPlan]:
    """Each row of a batch as a RowPlan: word runs, and step runs (a ``range`` where the steps
    run in order through one episode)."""
    plans = []
    for i in range(batch.shape[0]):
        plan, j, n = RowPlan(), 0, int((~batch.pad[i]).sum())
        while j < n:
            e = j
            while e < n and batch.kind[i, e] == batch.kind[i, j]:
                e += 1
            query = bool(batch.is_query[i, j])
            if batch.kind[i, j] == WORD:
                plan.add_words(batch.word[i, j:e], batch.level[i, j], batch.episode_id[i, j], query)
            else:
                ids, t = batch.episode_id[i, j:e], batch.t[i, j:e]
                g = view.f.offset[view.f.row_of[ids]] + t
                if in_order(list(zip(ids.tolist(), t.tolist(), strict=True))):
                    plan.add_steps(range(int(g[0]), int(g[-1]) + 1), query)
                else:
                    plan.add_steps(g.tolist(), query)
            j = e
        assert len(plan) == n and plan.kind == batch.kind[i, :n].tolist()
        plans.append(plan)
    return plans


@PROPS
@given(store_params, st.sampled_from(MODE_NAMES), knobs, seeds)
def test_assemble_of_row_plans_rebuilds_the_builders_batch(params, mode, kw, seed):
    store = make_store(**params)
    builder = build(store, mode=mode, seed=0, **kw)
    if builder is None:
        return
    batch = builder.sample(6, seed=seed)
    plans = plans_of(batch, View(store, batch))
    again = assemble(plans, builder.table, builder.n_actions, pad_to=batch.shape[1])
    for f in fields(Batch):
        assert np.array_equal(getattr(again, f.name), getattr(batch, f.name)), f.name

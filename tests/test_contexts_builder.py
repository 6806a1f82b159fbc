"""Tests of the prompt builder (``trajbench.contexts.builder``, its module docstring is the spec):
hypothesis properties over random in-memory stores, stores built to force the rare paths, and
small collected stores of every registered family."""

from __future__ import annotations

from collections import Counter
from dataclasses import fields
from itertools import pairwise

import gymnasium as gym
import numpy as np
import pytest
from contexts_support import (
    PROPS,
    View,
    build,
    check_contract,
    check_mode,
    check_one_property_at_a_time,
    collected_store,
    knobs,
    make_store,
    sample_modes,
    seeds,
    store_of,
    store_params,
    valid_queries,
    vocab_of,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare

import trajbench  # noqa: F401  (registers the families in Gymnasium)
from trajbench.contexts import MODE_NAMES, ContextBuilder, ContextConfig
from trajbench.envs.registration import env_ids
from trajbench.errors import TrajbenchError
from trajbench.vocab import CONTENT_WORDS, INSTRUCTIONS, mission_key, template

CONTEXT_MODES = tuple(m for m in MODE_NAMES if m != "none")
COMPARED = ("kind", "word", "obs", "level", "episode_id", "t", "target", "shown_action")


def same_batches(a, b, names=COMPARED) -> bool:
    return a.shape == b.shape and all(np.array_equal(getattr(a, f), getattr(b, f)) for f in names)


# -- every mode, one property at a time -----------------------------------------------------------
@settings(PROPS, max_examples=80)  # the central property: more examples
@given(store_params, knobs, seeds)
def test_modes_differ_in_one_property_at_a_time(params, kw, seed):
    store = make_store(**params)
    batches = sample_modes(store, MODE_NAMES, 8, seed, **kw)
    if batches is None:
        return
    cfg = ContextConfig(**kw)
    vocab = vocab_of(store)
    for mode, batch in batches.items():
        check_mode(check_contract(store, batch, vocab), mode, cfg)
    views = check_one_property_at_a_time(store, batches)
    valid = valid_queries(store, cfg)
    assert {r.query_ep for r in views["none"].rows} <= valid


@PROPS
@given(store_params, st.integers(1, 4), seeds)
def test_unordered_modes_permute_their_twins_steps(params, k, seed):
    store = make_store(**{**params, "max_len": 10})
    batches = sample_modes(store, CONTEXT_MODES, 64, seed, k=k)
    if batches is None:
        return
    views = check_one_property_at_a_time(store, batches)
    for mode in ("shuffled", "isolated"):
        pairs = [
            a[0] == b[0] and b[1] == a[1] + 1
            for r in views[mode].rows
            for seg in r.segments
            for a, b in pairwise(seg)
        ]
        if len(pairs) >= 200:  # consecutive steps of one episode survive only by chance
            assert np.mean(pairs) < 0.5, mode


@PROPS
@given(store_params, knobs, seeds)
def test_queries_are_exactly_the_valid_ones(params, kw, seed):
    cfg = ContextConfig(**kw)
    store = make_store(**{**params, "experts": (2, 4)})
    builder = build(store, mode="none", **kw)
    if builder is None:
        return
    batch = builder.sample(1500, seed=seed)
    drawn = set(batch.episode_id[np.arange(1500), np.argmax(batch.is_query, 1)].tolist())
    assert drawn == valid_queries(store, cfg)  # each has probability >= 1 / 48: none is missed


# -- same-level support ----------------------------------------------------------------------------
def test_context_never_holds_a_copy_of_the_querys_action_sequence():
    # Level 0: episodes 0-2 share one action sequence, 3-4 another; level 1 fills other levels.
    a, b = [1, 2, 3], [3, 2, 1, 0]
    level0 = [a, a, a, b, b]
    level1 = _distinct(10, 3)
    store = store_of(
        [dict(env_id="test/F-v0", level=0, actions=x) for x in level0]
        + [dict(env_id="test/F-v0", level=1, actions=x) for x in level1]
    )
    builder = ContextBuilder(store, mode="bursty", k=2, levels=[0], seed=0)
    view = check_contract(store, builder.sample(200, seed=1), builder.vocab)
    check_mode(view, "bursty", builder.config)
    for r in view.rows:
        shown = {e for e, _ in r.ctx_steps}
        if r.query_ep < 3:  # a's: the context is b's two episodes
            assert shown == {3, 4}
        else:  # b's: two of a's three
            assert len(shown) == 2 and shown < {0, 1, 2}
    assert {r.query_ep for r in view.rows} == set(range(5))
    # With k = 3, a's episodes have only b's two besides their copies: only b's serve.
    builder = ContextBuilder(store, mode="bursty", k=3, levels=[0], seed=0)
    assert {r.query_ep for r in View(store, builder.sample(100)).rows} == {3, 4}


def test_a_query_whose_only_same_level_episode_is_itself_is_never_drawn():
    # Level lv: one expert and one noisy success; queries may be either, contexts experts only.
    store = make_store(3, n_levels=3, experts=(2, 2), others=(0, 0), min_len=4)
    eps = store.episodes
    lv = eps["level"].iloc[0]
    first = eps.index[eps["level"] == lv][0]
    eps.loc[first, "demonstrator"] = "noisy"
    b = ContextBuilder(store, mode="bursty", k=1, query_demonstrators=("expert", "noisy"), seed=0)
    view = check_contract(store, b.sample(300), b.vocab)
    queries = {r.query_ep for r in view.rows}
    assert int(eps.loc[first, "episode_id"]) in queries  # the noisy one serves, with the expert
    lone_expert = int(eps[(eps["level"] == lv) & (eps.index != first)]["episode_id"].iloc[0])
    assert lone_expert not in queries  # its only same-level context would be itself
    assert queries == valid_queries(store, b.config)


@pytest.mark.parametrize("pool", [5, 20, 90])  # sorted random keys, and Floyd's draws (> 64)
def test_same_level_episodes_are_drawn_uniformly(pool):
    # One level with ``pool + 1`` expert episodes (so ``pool`` besides the query); long random
    # action sequences make copies vanishingly rare.
    store = make_store(4, n_levels=4, experts=(pool + 1, pool + 1), others=(0, 0), min_len=6)
    k = 24 if pool > 64 else 4  # (a large k makes any bias of the first place show)
    batch = ContextBuilder(store, mode="bursty", k=k, seed=0).sample(3000, seed=1)
    view = View(store, batch)
    level = view.f.level[0]
    first, seen = Counter(), Counter()
    for r in view.rows:
        if view.f.level[view.f.row(r.query_ep)] != level:
            continue
        eps = [seg[0][0] for seg in r.segments]
        assert len(set(eps)) == k and r.query_ep not in eps
        first[eps[0]] += 1
        seen.update(eps)
    assert len(seen) == pool + 1 and sum(seen.values()) > 1000
    # Each query excludes only itself, so by symmetry every episode is equally likely to be
    # shown and to come first.
    for counts in (first, seen):
        observed = [counts[e] for e in seen]
        assert chisquare(observed).pvalue > 1e-4, observed


# -- other-level support ---------------------------------------------------------------------------
def _family(levels: dict[int, list[list[int]]]):
    return store_of(
        [
            dict(env_id="test/F-v0", level=level, actions=acts)
            for level, episodes in levels.items()
            for acts in episodes
        ]
    )


def _distinct(n: int, length: int, first: int = 0) -> list[list[int]]:
    """``n`` distinct action sequences of ``length`` actions (base-5 digits of first + i)."""
    return [[(first + i) // 5**j % 5 for j in range(length)] for i in range(n)]


def test_other_level_episodes_are_drawn_uniformly_among_the_long_enough():
    # Query level 0 (episodes 6 steps long); levels 1 and 2 hold 6 episodes of 6 steps and 6 of
    # 3 steps: segments of 6 steps must come from the 12 long ones, evenly.
    store = _family({0: _distinct(4, 6), 1: _distinct(6, 6) + _distinct(6, 3), 2: _distinct(12, 6)})
    builder = ContextBuilder(store, mode="trajectories", k=2, levels=[0], seed=0)
    view = check_contract(store, builder.sample(3000, seed=2), builder.vocab)
    check_mode(view, "trajectories", builder.config)
    counts = Counter(seg[0][0] for r in view.rows for seg in r.segments)
    long_ = {int(e) for e in store.episodes.query("level > 0 and length == 6")["episode_id"]}
    assert set(counts) == long_
    assert chisquare(list(counts.values())).pvalue > 1e-4, counts


def test_other_level_segments_fall_back_to_distinct_episodes_end_to_end():
    # The query level's episodes are 10 steps long; the other level's only 2: no single one fits
    # a segment, so each segment lays 5 of them end to end, and the two segments use 10 distinct.
    store = _family({0: _distinct(3, 10), 1: _distinct(16, 2)})
    for mode in ("trajectories", "isolated"):
        builder = ContextBuilder(store, mode=mode, k=2, levels=[0], seed=0)
        view = check_contract(store, builder.sample(50, seed=3), builder.vocab)
        check_mode(view, mode, builder.config)
        for r in view.rows:
            assert r.lengths == [10, 10]
            assert len({e for e, _ in r.ctx_steps}) == 10 and len(r.ctx_steps) == 20
    batches = sample_modes(store, CONTEXT_MODES, 50, 3, k=2, levels=[0])
    check_one_property_at_a_time(store, batches)
    # 24 short steps cannot be relied on to fill two segments of 10 steps with distinct episodes
    # (a first segment of 2 steps may have taken a 10-step episode): the level cannot be a query.
    short = _family({0: _distinct(3, 10), 1: _distinct(12, 2)})
    assert valid_queries(short, ContextConfig(k=2), [0]) == set()
    for mode in MODE_NAMES:
        with pytest.raises(TrajbenchError, match="could fill k segments"):
            ContextBuilder(short, mode=mode, k=2, levels=[0], seed=0)


def test_other_level_segments_fall_back_only_when_nothing_fits():
    # Most episodes long enough for a segment are of the query's own level: a draw among them
    # misses the two other-level ones often, yet every segment must find one whole.
    store = _family({0: _distinct(30, 8), 1: _distinct(2, 8, 50) + _distinct(20, 1, 100)})
    builder = ContextBuilder(store, mode="trajectories", k=2, levels=[0], seed=0)
    view = check_contract(store, builder.sample(300, seed=4), builder.vocab)
    check_mode(view, "trajectories", builder.config)
    long_ = {int(e) for e in store.episodes.query("level == 1 and length == 8")["episode_id"]}
    assert all({seg[0][0] for seg in r.segments} == long_ for r in view.rows)
    # One long other-level episode: the first segment takes it whole, the next falls back.
    store = _family({0: _distinct(3, 8), 1: _distinct(1, 8, 50) + _distinct(30, 1, 100)})
    builder = ContextBuilder(store, mode="trajectories", k=2, levels=[0], seed=0)
    view = check_contract(store, builder.sample(100, seed=5), builder.vocab)
    check_mode(view, "trajectories", builder.config)


# -- knobs -----------------------------------------------------------------------------------------
@PROPS
@given(store_params, knobs, seeds)
def test_p_bursty_zero_and_one_are_the_two_modes(params, kw, seed):
    store = make_store(**params)
    for p, mode in ((1.0, "bursty"), (0.0, "trajectories")):
        for base in ("bursty", "trajectories"):
            mixed = build(store, mode=base, p_bursty=p, seed=3, **kw)
            if mixed is None:
                return
            pure = ContextBuilder(store, mode=mode, seed=3, **kw)
            assert same_batches(mixed.sample(8, seed=seed), pure.sample(8, seed=seed)), (p, base)


@PROPS
@given(store_params, knobs, seeds)
def test_p_bursty_mixes_the_two_modes_per_row(params, kw, seed):
    store = make_store(**params)
    p, n = 0.3, 400
    builder = build(store, mode="trajectories", p_bursty=p, seed=0, **kw)
    if builder is None:
        return
    view = check_contract(store, builder.sample(n, seed=seed), builder.vocab)
    bursty = View(store, ContextBuilder(store, mode="bursty", seed=0, **kw).sample(n, seed=seed))
    cfg = ContextConfig(**kw)
    same_level = []
    for r, b in zip(view.rows, bursty.rows, strict=True):
        qlevel = view.f.level[view.f.row(r.query_ep)]
        same = {bool(view.f.level[view.f.row(e)] == qlevel) for e, _ in r.ctx_steps}
        assert len(same) == 1, "a row is wholly bursty or wholly trajectories"
        same_level.append(same.pop())
        assert r.query_ep == b.query_ep and r.lengths == b.lengths
        if same_level[-1]:
            assert r.segments == b.segments, "a bursty row is the bursty mode's row"
    for mode, keep in (("bursty", same_level), ("trajectories", np.logical_not(same_level))):
        if np.any(keep):
            check_mode(View(store, view.batch[np.flatnonzero(keep)]), mode, cfg)
    assert p - 0.1 < np.mean(same_level) < p + 0.1  # 400 rows: sd 0.023


@PROPS
@given(store_params, st.sampled_from(CONTEXT_MODES), st.integers(1, 4), seeds)
def test_partial_pieces_are_contiguous_and_really_partial(params, mode, k, seed):
    store = make_store(**{**params, "max_len": 10, "n_levels": 4})
    builder = build(store, mode=mode, k=k, partial=True, seed=2)
    if builder is None:
        return
    view = check_contract(store, builder.sample(48, seed=seed), builder.vocab)
    check_mode(view, mode, builder.config)
    if mode in ("bursty", "trajectories"):
        starts_late = ends_early = 0
        for r in view.rows:
            for seg in r.segments:
                starts_late += seg[0][1] > 0
                ends_early += seg[-1][1] + 1 < view.f.length[view.f.row(seg[0][0])]
        if (store.episodes["length"] >= 4).mean() > 0.5:  # pieces of long episodes: both cuts
            assert starts_late > 0 and ends_early > 0


@PROPS
@given(store_params, knobs, st.integers(1, 12), seeds)
def test_context_steps_caps_the_budget_keeping_the_latest_steps(params, kw, cap, seed):
    store = make_store(**params)
    kw = {**kw, "context_steps": None}
    free = sample_modes(store, CONTEXT_MODES, 10, seed, **kw)
    if free is None:
        return
    capped = sample_modes(store, CONTEXT_MODES, 10, seed, **{**kw, "context_steps": cap})
    cfg = ContextConfig(**{**kw, "context_steps": cap})
    for mode in CONTEXT_MODES:
        view = check_contract(store, capped[mode], vocab_of(store))
        check_mode(view, mode, cfg)
        for a, b in zip(View(store, free[mode]).rows, view.rows, strict=True):
            kept = len(b.ctx_steps)
            assert kept == min(cap, len(a.ctx_steps))
            # the latest steps: the free segment lengths, trimmed from the front
            lengths = np.asarray(a.lengths)
            later = np.cumsum(lengths[::-1])[::-1] - lengths
            trimmed = np.clip(cap - later, 0, lengths)
            assert b.lengths == [int(x) for x in trimmed if x]
            if mode == "bursty":
                assert b.ctx_steps == a.ctx_steps[len(a.ctx_steps) - kept :]


@pytest.mark.parametrize("zipf", [0.0, 1.5])
def test_zipf_exponent_skews_level_frequencies(zipf):
    # Levels hold very different numbers of episodes; the query level is drawn per level.
    store = make_store(11, n_levels=10, experts=(3, 12), min_len=4)
    n = 40_000
    batch = ContextBuilder(store, mode="none", k=2, zipf=zipf, seed=3).sample(n)
    levels = batch.level[np.arange(n), np.argmax(batch.is_query, axis=1)]
    counts = np.sort(np.bincount(np.unique(levels, return_inverse=True)[1]))[::-1]
    assert len(counts) == 10
    expected = np.arange(1, 11, dtype=float) ** -zipf
    expected /= expected.sum()
    # sd of a frequency <= 0.0025 here; sorting the observed ones moves them by less.
    assert np.abs(counts / n - expected).max() < 0.015, (counts / n, expected)
    if zipf:
        assert counts[0] > 10 * counts[-1]  # (expected ratio 10 ** 1.5 = 31.6)
    else:
        assert chisquare(counts).pvalue > 1e-4


@PROPS
@given(
    st.integers(0, 2**20),
    st.sampled_from(MODE_NAMES),
    st.sampled_from([("expert",), ("noisy",), ("expert", "noisy"), ("expert", "noisy", "random")]),
    st.sampled_from([("expert",), ("noisy",), ("expert", "random")]),
    st.booleans(),
)
def test_demonstrator_and_failure_filters(seed, mode, ctx_demos, qry_demos, allow_failed):
    # Every level has two successful episodes of every demonstrator, and failed ones.
    store = make_store(seed, n_levels=4, experts=(2, 3), others=(6, 10), p_fail=0.4, min_each=2)
    cfg = ContextConfig(
        mode=mode,
        k=2,
        context_demonstrators=ctx_demos,
        query_demonstrators=qry_demos,
        allow_failed=allow_failed,
    )
    builder = build(store, seed=6, **vars(cfg))
    if builder is None:
        return
    view = check_contract(store, builder.sample(80, seed=seed), builder.vocab)
    check_mode(view, mode, cfg)  # context demonstrators, and failures only if allowed
    f = view.f
    assert {r.query_ep for r in view.rows} <= valid_queries(store, cfg)  # query demonstrators
    shown = [f.row(e) for r in view.rows for e, _ in r.ctx_steps]
    pool = store.episodes[store.episodes["demonstrator"].isin(ctx_demos)]
    if mode != "none" and allow_failed and (~pool["success"]).mean() > 0.1:
        assert not all(f.success[shown]), "failed episodes never show up"  # 80 rows: p < 1e-6


@PROPS
@given(store_params, st.sampled_from(MODE_NAMES), knobs, seeds)
def test_sample_is_a_pure_function_of_its_seed(params, mode, kw, seed):
    store = make_store(**params)
    a = build(store, mode=mode, seed=1, **kw)
    if a is None:
        return
    b = ContextBuilder(store, mode=mode, seed=2, **kw)  # (the builder seed orders Zipf's levels)
    b.sample(5)  # advance b's own stream: a seeded sample must not care
    x, y, x2 = a.sample(9, seed=seed), b.sample(9, seed=seed), a.sample(9, seed=seed)
    assert same_batches(x, y, [f.name for f in fields(x)])
    assert same_batches(x, x2, [f.name for f in fields(x)])
    # The unseeded stream is reproducible from the builder seed and moves on.
    c, d = (ContextBuilder(store, mode=mode, seed=1, **kw) for _ in range(2))
    c1 = c.sample(9)
    assert same_batches(c1, d.sample(9))
    if len(valid_queries(store, ContextConfig(**kw))) > 3:
        assert not same_batches(c1, c.sample(9))


def test_different_seeds_give_different_batches():
    store = make_store(0, n_levels=5, experts=(3, 6))
    for mode in MODE_NAMES:
        b = ContextBuilder(store, mode=mode, k=2, seed=0)
        first = b.sample(16, seed=1)
        assert not same_batches(first, b.sample(16, seed=2)), mode
        assert not same_batches(first, b.sample(16)), mode


def test_pad_to_and_levels_restriction():
    store = make_store(1, n_levels=5, experts=(3, 6))
    b = ContextBuilder(store, mode="bursty", k=2, seed=0)
    batch = b.sample(4, pad_to=200)
    assert batch.shape == (4, 200)
    check_contract(store, batch, b.vocab)
    short = b.sample(4, pad_to=1)  # pad_to never cuts
    assert short.shape[1] == int((~short.pad).sum(1).max()) > 1
    keep = sorted(store.episodes["level"].unique())[:2]
    b = ContextBuilder(store, mode="isolated", k=2, levels=keep, seed=0)
    view = check_contract(store, b.sample(64), b.vocab)
    check_mode(view, "isolated", b.config)
    assert {view.f.level[view.f.row(r.query_ep)] for r in view.rows} == set(keep)


def test_config_and_keyword_knobs_merge():
    store = make_store(2, experts=(3, 6))
    b = ContextBuilder(store, config=ContextConfig(mode="shuffled", k=3), k=2, seed=0)
    assert (b.config.mode, b.config.k) == ("shuffled", 2)
    b = ContextBuilder(store, context_demonstrators=["expert", "noisy"], k=1)
    assert b.config.context_demonstrators == ("expert", "noisy")


# -- bad knobs and impossible stores ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("knob", "message"),
    [
        (dict(mode="bursti"), "unknown context mode 'bursti'"),
        (dict(k=0), "k must be >= 1"),
        (dict(k=-1), "k must be >= 1"),
        (dict(mode="none", k=-1), "k must be >= 1"),
        (dict(k=1.5), "k must be an integer"),
        (dict(k=True), "k must be an integer"),
        (dict(context_steps=0), "context_steps"),
        (dict(context_steps=2.5), "context_steps"),
        (dict(p_bursty=1.5), "p_bursty must be in"),
        (dict(p_bursty=float("nan")), "p_bursty must be in"),
        (dict(mode="shuffled", p_bursty=0.5), "p_bursty mixes"),
        (dict(mode="none", p_bursty=0.5), "p_bursty mixes"),
        (dict(zipf=-1.0), "zipf"),
        (dict(zipf=float("nan")), "zipf"),
        (dict(zipf=float("inf")), "zipf"),
        (dict(instruction="none"), "unknown instruction mode"),
        (dict(context_demonstrators=()), "context_demonstrators must name"),
        (dict(query_demonstrators="expert"), "query_demonstrators must be a sequence"),
        (dict(contex_steps=4), "unknown prompt-builder knob"),
        (dict(seed=-1), "seed must be a non-negative integer"),
        (dict(seed=1.5), "seed must be a non-negative integer"),
        (
            dict(levels=[12345]),
            r"no level of the store can serve as a query among levels \[12345\]",
        ),
    ],
)
def test_bad_knobs_raise(knob, message):
    store = make_store(0, experts=(3, 6))
    with pytest.raises(TrajbenchError, match=message):
        ContextBuilder(store, **knob)


def test_bad_sample_arguments_raise():
    b = ContextBuilder(make_store(0, experts=(3, 6)), mode="bursty", k=1)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(TrajbenchError, match="batch_size"):
            b.sample(bad)
    with pytest.raises(TrajbenchError, match="pad_to"):
        b.sample(2, pad_to=-1)
    with pytest.raises(TrajbenchError, match="seed"):
        b.sample(2, seed=-5)


def test_impossible_stores_raise():
    no_query = "no level of the store can serve as a query"
    # One level: no other-level support, and every mode accepts the same queries.
    one_level = make_store(0, n_levels=1, experts=(6, 6), min_len=4)
    for mode in MODE_NAMES:
        with pytest.raises(TrajbenchError, match=no_query):
            ContextBuilder(one_level, mode=mode, k=2)
    # Two experts a level: each has one other episode of its level, fewer than k = 2.
    pairs = make_store(0, n_levels=3, experts=(2, 2), others=(0, 0), min_len=4)
    ContextBuilder(pairs, mode="bursty", k=1)
    with pytest.raises(TrajbenchError, match=no_query):
        ContextBuilder(pairs, mode="trajectories", k=2)
    # Every level repeats one action sequence: no episode may serve (its context would be copies).
    copies = _family({level: [[level, 1, 2]] * 4 for level in range(3)})
    for mode in MODE_NAMES:
        with pytest.raises(TrajbenchError, match=no_query):
            ContextBuilder(copies, mode=mode, k=1)
    # Only failed or non-query episodes.
    failed = make_store(0, experts=(3, 3), others=(0, 0), min_len=4)
    failed.episodes["success"] = False
    with pytest.raises(TrajbenchError, match=no_query):
        ContextBuilder(failed, k=1)
    empty = make_store(0)
    empty.episodes = empty.episodes.iloc[:0]
    with pytest.raises(TrajbenchError, match="empty"):
        ContextBuilder(empty)


# -- instructions ----------------------------------------------------------------------------------
@PROPS
@given(store_params, seeds)
def test_instruction_modes(params, seed):
    store = make_store(**params)
    family_missions = store.episodes.groupby("env_id")["mission"].agg(set).to_dict()
    no_wrong = any(
        all(mission_key(o) == mission_key(m) for o in ms)
        for ms in family_missions.values()
        for m in ms
    )
    vocab = vocab_of(store)
    content = {vocab.stoi[w] for w in CONTENT_WORDS if w in vocab.stoi}
    shown_by = {}
    for instruction in INSTRUCTIONS:
        if instruction == "wrong" and no_wrong:
            if valid_queries(store, ContextConfig(k=2)):
                with pytest.raises(TrajbenchError, match="'wrong' instruction needs another"):
                    ContextBuilder(store, instruction="wrong", k=2)
            continue
        batches = sample_modes(store, MODE_NAMES, 10, seed, k=2, instruction=instruction)
        if batches is None:
            return
        for batch in batches.values():
            check_contract(store, batch, vocab)  # context words are <bos> alone
        views = check_one_property_at_a_time(store, batches)  # the same words in every mode
        for r in views["bursty"].rows:
            x = views["bursty"].f.row(r.query_ep)
            true, ids = views["bursty"].f.mission[x], r.query_words
            if instruction == "full":
                assert ids == vocab.encode(true)
            elif instruction == "empty":
                assert ids == [vocab.bos_id]
            elif instruction == "template":
                assert ids == vocab.encode(template(true))
                assert not content & set(ids), "template shows a content word"
            else:
                shown = vocab.decode(ids[1:])
                assert shown in family_missions[views["bursty"].f.env_id[x]]
                assert mission_key(shown) != mission_key(true), "a wrong mission says the same"
        shown_by[instruction] = views
    # The instruction changes the query's words, nothing else.
    for instruction, views in shown_by.items():
        for mode, view in views.items():
            for x, y in zip(view.rows, shown_by["full"][mode].rows, strict=True):
                assert x.segments == y.segments and x.query_steps == y.query_steps, instruction


def test_wrong_missions_differ_in_more_than_articles():
    say = ["go to the red ball", "go to a red ball", "go to the blue key", "go to a grey box"]
    store = store_of(
        [
            dict(env_id="test/F-v0", level=level, actions=acts, mission=say[level])
            for level in range(4)
            for acts in _distinct(3, 4, 10 * level)
        ]
    )
    builder = ContextBuilder(store, mode="bursty", k=2, instruction="wrong", seed=0)
    view = View(store, builder.sample(400, seed=0))
    shown: dict[str, set[str]] = {}
    for r in view.rows:
        true = view.f.mission[view.f.row(r.query_ep)]
        shown.setdefault(true, set()).add(builder.vocab.decode(r.query_words[1:]))
    assert shown["go to the red ball"] == shown["go to a red ball"] == {say[2], say[3]}
    assert shown["go to the blue key"] == {say[0], say[1], say[3]}
    articles_only = store_of(
        [
            dict(env_id="test/F-v0", level=level, actions=acts, mission=say[level])
            for level in range(2)
            for acts in _distinct(5, 4, 10 * level)
        ]
    )
    with pytest.raises(TrajbenchError, match="differs in more than its articles"):
        ContextBuilder(articles_only, k=2, instruction="wrong")
    # A mission two families share is wronged within each family.
    two = store_of(
        [
            dict(env_id=f"test/F{f}-v0", level=level, actions=acts, mission=mission)
            for f, missions in enumerate([(say[0], say[2]), (say[0], say[3])])
            for level, mission in enumerate(missions)
            for acts in _distinct(5, 4, 10 * level)
        ]
    )
    builder = ContextBuilder(two, mode="none", k=2, instruction="wrong", seed=0)
    view = View(two, builder.sample(200, seed=0))
    shown = {}
    for r in view.rows:
        x = view.f.row(r.query_ep)
        key = (view.f.env_id[x], view.f.mission[x])
        shown.setdefault(key, set()).add(builder.vocab.decode(r.query_words[1:]))
    assert shown == {
        ("test/F0-v0", say[0]): {say[2]},
        ("test/F0-v0", say[2]): {say[0]},
        ("test/F1-v0", say[0]): {say[3]},
        ("test/F1-v0", say[3]): {say[0]},
    }


# -- collected stores of every registered family ---------------------------------------------------
@pytest.fixture(scope="module", params=env_ids())
def family_store(request, tmp_path_factory):
    return collected_store(tmp_path_factory, request.param)


def test_every_mode_and_instruction_on_a_collected_store(family_store):
    store = family_store
    missions = sorted(set(store.episodes["mission"]))
    wrong_ok = all(any(mission_key(o) != mission_key(m) for o in missions) for m in missions)
    for instruction in INSTRUCTIONS:
        kw = dict(k=2, instruction=instruction, context_demonstrators=("expert", "noisy"))
        if instruction == "wrong" and not wrong_ok:
            with pytest.raises(TrajbenchError, match="'wrong' instruction"):
                ContextBuilder(store, **kw)
            continue
        for partial in (False, True):
            batches = sample_modes(store, MODE_NAMES, 8, 3, partial=partial, **kw)
            assert batches is not None, "a collected store serves no query"
            cfg = ContextConfig(partial=partial, **kw)
            vocab = vocab_of(store)
            for mode, batch in batches.items():
                check_mode(check_contract(store, batch, vocab), mode, cfg)
            check_one_property_at_a_time(store, batches)


def test_expert_contexts_need_a_family_that_draws_episodes(family_store):
    """Expert-only contexts: a family whose episodes draw something (the start pose) serves
    queries; one whose level fixes everything repeats one action sequence per level, and the
    builder refuses it (a context would hold copies of the query)."""
    store = family_store
    (env,) = store.env_ids
    fixed = gym.make(env).unwrapped.episode_draws.startswith("nothing")
    cfg = ContextConfig(k=2)
    valid = valid_queries(store, cfg)
    assert bool(valid) != fixed
    if valid:
        b = ContextBuilder(store, config=cfg, seed=0)
        assert {r.query_ep for r in View(store, b.sample(200)).rows} == valid
    else:
        with pytest.raises(TrajbenchError, match="no level of the store can serve as a query"):
            ContextBuilder(store, config=cfg)

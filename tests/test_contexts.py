"""Tests of the prompt builder: hypothesis properties over random in-memory stores, the token
contract checked token by token against the store, and end-to-end runs on collected stores."""

from __future__ import annotations

import json
from collections import Counter
from itertools import pairwise
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import trajbench  # noqa: F401  (registers the families in Gymnasium)
from trajbench.batch import IGNORE, PAD, STEP, WORD, hidden_action, start_action
from trajbench.contexts import (
    MODE_NAMES,
    ContextBuilder,
    ContextConfig,
    RowPlan,
    StepTable,
    assemble,
)
from trajbench.envs.levels import ObsEncoding
from trajbench.errors import TrajbenchError
from trajbench.vocab import (
    CONTENT_WORDS,
    MASKS,
    SPECIALS,
    MissionVocab,
    shown_mission,
    template,
)

CONTEXT_MODES = ("bursty", "trajectories", "shuffled", "isolated")
N_ACTIONS = 5
COLORS = ["red", "green", "blue", "purple", "yellow", "grey"]
OBJECTS = ["ball", "box", "key"]
PROPS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)


# -- random in-memory stores ----------------------------------------------------------------------
def make_store(
    seed: int,
    n_families: int = 1,
    n_levels: int = 4,
    experts: tuple[int, int] = (2, 6),
    others: tuple[int, int] = (0, 3),
    max_len: int = 8,
    n_missions: int = 6,
    demonstrators: tuple[str, ...] = ("noisy", "random"),
    p_fail: float = 0.3,
    min_each: int = 0,
):
    """An episode store in memory with the columns, arrays and encoding the builder reads.

    Every level of every family gets between ``experts[0]`` and ``experts[1]`` successful expert
    episodes, plus ``others`` episodes by the other ``demonstrators`` that fail with probability
    ``p_fail`` (experts never fail), plus ``min_each`` successful episodes of each of those
    demonstrators. Episode ids are unique across families, rows are shuffled
    (so offsets, not row order, locate the steps) and level numbers repeat across families.
    """
    rng = np.random.default_rng(seed)
    missions = sorted({f"go to the {c} {o}" for c in COLORS for o in OBJECTS})
    missions = [missions[i] for i in rng.permutation(len(missions))[: max(2, n_missions)]]
    rows, offset = [], 0
    for f in range(n_families):
        env_id = f"test/Family{f}-v0"
        for level in rng.choice(100, size=n_levels, replace=False).tolist():
            mission = missions[rng.integers(len(missions))]
            demos = ["expert"] * int(rng.integers(experts[0], experts[1] + 1))
            demos += [
                demonstrators[rng.integers(len(demonstrators))]
                for _ in range(int(rng.integers(others[0], others[1] + 1)))
            ]
            sure = len(demos)
            demos += [d for d in demonstrators for _ in range(min_each)]
            for n, demo in enumerate(demos):
                length = int(rng.integers(1, max_len + 1))
                success = demo == "expert" or n >= sure or bool(rng.random() >= p_fail)
                rows.append(
                    dict(
                        episode_id=len(rows),
                        env_id=env_id,
                        level=level,
                        split="train",
                        demonstrator=demo,
                        length=length,
                        success=success,
                        mission=mission,
                        seed=0,
                        offset=offset,
                    )
                )
                offset += length
    episodes = pd.DataFrame(rows).sample(frac=1.0, random_state=seed).reset_index(drop=True)
    n = offset
    obs = np.stack(
        [rng.integers(0, 7, n), rng.integers(0, 7, n), rng.integers(0, 3, n)], axis=1
    ).astype(np.uint8)
    return SimpleNamespace(
        episodes=episodes,
        obs=obs,
        actions=rng.integers(0, N_ACTIONS, n).astype(np.uint8),
        rewards=rng.random(n).astype(np.float32),
        encoding=ObsEncoding("test", (7, 7, 3), N_ACTIONS),
    )


store_params = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 2**20),
        "n_families": st.integers(1, 2),
        "n_levels": st.integers(2, 5),
        "experts": st.sampled_from([(2, 2), (2, 4), (3, 8)]),
        "max_len": st.integers(1, 10),
        "n_missions": st.integers(2, 6),
    }
)
knobs = st.fixed_dictionaries(
    {
        "k": st.integers(1, 5),
        "partial": st.booleans(),
        "context_steps": st.none() | st.integers(1, 30),
    }
)


# -- reading a batch back --------------------------------------------------------------------------
class View:
    """A batch read back against its store: per-token episode rows and per-row structure."""

    def __init__(self, store, batch, vocab: MissionVocab | None = None):
        eps = store.episodes
        self.store, self.batch, self.vocab = store, batch, vocab
        self.row_of = np.full(int(eps["episode_id"].max()) + 1, -1)
        self.row_of[eps["episode_id"].to_numpy()] = np.arange(len(eps))
        self.offset = eps["offset"].to_numpy()
        self.length = eps["length"].to_numpy()
        self.level = eps["level"].to_numpy()
        self.family = pd.factorize(eps["env_id"])[0]
        self.demo = eps["demonstrator"].to_numpy()
        self.success = eps["success"].to_numpy(bool)
        self.mission = eps["mission"].to_numpy()

    def rows(self):
        return [self.parse(i) for i in range(self.batch.shape[0])]

    def parse(self, i: int) -> SimpleNamespace:
        """Row ``i`` as context blocks (a word run, then a step run) and the query block."""
        b = self.batch
        n = int((~b.pad[i]).sum())
        q0 = int(np.argmax(b.is_query[i]))
        blocks, cur = [], None
        for j in range(q0):
            if b.kind[i, j] == WORD and (cur is None or cur["steps"]):
                cur = dict(words=[], word_level=[], word_ep=[], steps=[])
                blocks.append(cur)
            if cur is None:  # steps with no words before them (shuffled, isolated)
                cur = dict(words=[], word_level=[], word_ep=[], steps=[])
                blocks.append(cur)
            if b.kind[i, j] == WORD:
                cur["words"].append(int(b.word[i, j]))
                cur["word_level"].append(int(b.level[i, j]))
                cur["word_ep"].append(int(b.episode_id[i, j]))
            else:
                cur["steps"].append((int(b.episode_id[i, j]), int(b.t[i, j])))
        qk = b.kind[i, q0:n]
        n_words = int((qk == WORD).sum())
        query = SimpleNamespace(
            words=b.word[i, q0 : q0 + n_words].tolist(),
            ep=int(b.episode_id[i, q0]),
            steps=list(
                zip(b.episode_id[i, q0 + n_words : n], b.t[i, q0 + n_words : n], strict=True)
            ),
        )
        steps = [s for blk in blocks for s in blk["steps"]]
        return SimpleNamespace(blocks=blocks, query=query, ctx_steps=steps, q0=q0, n=n)

    def ep_row(self, ep: int) -> int:
        return int(self.row_of[ep])


def check_contract(store, batch, vocab: MissionVocab | None = None) -> View:
    """Every field of every token agrees with the store and with the Batch contract."""
    B, T = batch.shape
    n_actions = int(store.encoding.n_actions)
    for name, dtype in dict(
        kind=np.int8,
        word=np.int64,
        obs=np.uint8,
        prev_action=np.int64,
        prev_reward=np.float32,
        shown_action=np.int64,
        shown_reward=np.float32,
        target=np.int64,
        loss_mask=bool,
        is_query=bool,
        pad=bool,
        level=np.int64,
        episode_id=np.int64,
        t=np.int64,
    ).items():
        a = getattr(batch, name)
        assert a.dtype == dtype, name
        assert a.shape[:2] == (B, T), name
    assert batch.obs.shape == (B, T, store.encoding.n_features)
    kind, q = batch.kind, batch.is_query
    step, word, pad = kind == STEP, kind == WORD, kind == PAD
    assert (step | word | pad).all()
    assert np.array_equal(pad, batch.pad)
    assert (np.diff(pad.astype(np.int8), axis=1) >= 0).all(), "padding is only at the end"
    assert (~pad[:, 0]).all(), "every row has tokens"

    view = View(store, batch, vocab)
    # Step tokens: everything comes from the store at (episode, t).
    rows = view.row_of[batch.episode_id[step]]
    assert (rows >= 0).all()
    t = batch.t[step]
    assert ((t >= 0) & (t < view.length[rows])).all()
    g = view.offset[rows] + t
    assert np.array_equal(batch.level[step], view.level[rows])
    assert np.array_equal(batch.obs[step], np.asarray(store.obs)[g])
    actions = np.asarray(store.actions).astype(np.int64)
    rewards = np.asarray(store.rewards)
    has_prev = t > 0
    gp = np.where(has_prev, g - 1, 0)
    assert np.array_equal(batch.prev_action[step], np.where(has_prev, actions[gp], n_actions))
    assert np.array_equal(batch.prev_reward[step], np.where(has_prev, rewards[gp], 0))
    ctx, qry = step & ~q, step & q
    assert np.array_equal(
        batch.shown_action[ctx],
        actions[view.offset[view.row_of[batch.episode_id[ctx]]] + batch.t[ctx]],
    )
    assert np.array_equal(
        batch.shown_reward[ctx],
        rewards[view.offset[view.row_of[batch.episode_id[ctx]]] + batch.t[ctx]],
    )
    assert np.array_equal(
        batch.target[qry], actions[view.offset[view.row_of[batch.episode_id[qry]]] + batch.t[qry]]
    )
    assert (batch.shown_action[~ctx] == hidden_action(n_actions)).all()
    assert (batch.shown_reward[~ctx] == 0).all()
    assert (batch.target[~qry] == IGNORE).all()
    assert np.array_equal(batch.loss_mask, qry)
    # Word and padding tokens carry no step data.
    assert (batch.obs[~step] == 0).all()
    assert (batch.t[~step] == -1).all()
    assert (batch.prev_action[word] == start_action(n_actions)).all()
    assert (batch.prev_reward[~step] == 0).all()
    assert (batch.word[~word] == 0).all()
    assert (batch.prev_action[pad] == 0).all()
    assert (batch.level[pad] == -1).all() and (batch.episode_id[pad] == -1).all()
    assert not q[pad].any()
    if vocab is not None:
        assert ((batch.word[word] > 0) & (batch.word[word] < len(vocab))).all()
    # Per row: the context, then one whole query episode that starts with its <bos>.
    for i in range(B):
        r = view.parse(i)
        assert q[i, r.q0 : r.n].all() and not q[i, : r.q0].any()
        assert batch.kind[i, r.q0] == WORD
        row = view.ep_row(r.query.ep)
        assert [int(x) for _, x in r.query.steps] == list(range(view.length[row]))
        assert {int(e) for e, _ in r.query.steps} == {r.query.ep}
        assert (batch.episode_id[i, r.q0 : r.n] == r.query.ep).all()
        assert (batch.level[i, r.q0 : r.n] == view.level[row]).all()
        assert view.success[row]
        if vocab is not None:
            assert r.query.words[0] == vocab.bos_id and vocab.bos_id not in r.query.words[1:]
        for blk in r.blocks:
            if blk["words"]:  # a context episode: <bos> + mission, labelled with its episode
                assert blk["steps"], "a word run is followed by that episode's steps"
                eps = {e for e, _ in blk["steps"]}
                assert set(blk["word_ep"]) == eps and len(eps) == 1
                assert set(blk["word_level"]) == {int(view.level[view.ep_row(eps.pop())])}
                if vocab is not None:
                    assert blk["words"][0] == vocab.bos_id
                    assert vocab.bos_id not in blk["words"][1:]
    return view


def in_order(steps) -> bool:
    """Steps of one episode, each t one more than the last."""
    return len({e for e, _ in steps}) == 1 and all(b[1] == a[1] + 1 for a, b in pairwise(steps))


def check_mode(view: View, mode: str, cfg: ContextConfig) -> None:
    """The structural property of ``mode`` on every row."""
    for r in view.rows():
        qrow = view.ep_row(r.query.ep)
        ctx_rows = [view.ep_row(e) for e, _ in r.ctx_steps]
        ctx_eps = {e for e, _ in r.ctx_steps}
        assert r.query.ep not in ctx_eps, "the query episode is in its own context"
        same = [view.level[x] == view.level[qrow] for x in ctx_rows]
        assert all(view.family[x] == view.family[qrow] for x in ctx_rows)
        for x in set(ctx_rows):
            assert view.demo[x] in cfg.context_demonstrators
            assert cfg.allow_failed or view.success[x]
        if cfg.context_steps is not None:
            assert len(r.ctx_steps) <= cfg.context_steps
        if mode == "none":
            assert not r.blocks
            continue
        assert r.ctx_steps, "a context mode shows at least one step"
        if mode in ("bursty", "trajectories"):
            assert all(blk["words"] for blk in r.blocks)
            for n, blk in enumerate(r.blocks):
                assert in_order(blk["steps"]), "steps run in order within an episode"
                e, t0 = blk["steps"][0]
                length = view.length[view.ep_row(e)]
                end = blk["steps"][-1][1] + 1
                capped_front = cfg.context_steps is not None and n == 0
                cut_end = mode == "trajectories" and n == len(r.blocks) - 1
                if not cfg.partial:  # whole episodes, up to the cap and the budget's last cut
                    assert t0 == 0 or capped_front
                    assert end == length or cut_end
        else:
            assert len(r.blocks) == 1 and not r.blocks[0]["words"], "transitions come bare"
        if mode in ("bursty", "shuffled"):
            assert all(same), "a same-level mode shows another level"
        else:
            assert not any(same), "an other-level mode shows the query's level"


def sample_all(store, n: int, seed: int, **kw) -> dict:
    """One batch of every mode, same knobs, same sample seed."""
    return {
        mode: ContextBuilder(store, mode=mode, seed=7, **kw).sample(n, seed=seed)
        for mode in MODE_NAMES
    }


# -- properties -----------------------------------------------------------------------------------
@PROPS
@given(store_params, knobs, st.integers(0, 2**31 - 1))
def test_every_mode_keeps_its_property_and_the_budget(params, kw, seed):
    store = make_store(**params)
    vocab = MissionVocab.build(store.episodes["mission"])
    cfg = ContextConfig(**kw)
    batches = sample_all(store, 12, seed, vocab=vocab, **kw)
    views = {}
    for mode, batch in batches.items():
        views[mode] = check_contract(store, batch, vocab)
        check_mode(views[mode], mode, cfg)
    parsed = {mode: views[mode].rows() for mode in MODE_NAMES}
    for i in range(12):
        # Same seed: the same query everywhere, and the same context budget in every mode.
        assert len({parsed[m][i].query.ep for m in MODE_NAMES}) == 1
        budgets = {m: len(parsed[m][i].ctx_steps) for m in CONTEXT_MODES}
        assert len(set(budgets.values())) == 1, budgets
        # shuffled shows exactly bursty's steps, only in another order.
        assert Counter(parsed["shuffled"][i].ctx_steps) == Counter(parsed["bursty"][i].ctx_steps)
        b = parsed["bursty"][i]
        if len(set(b.ctx_steps)) >= 12:  # a permutation this long is in order with p < 1e-8
            assert parsed["shuffled"][i].ctx_steps != b.ctx_steps
        # bursty draws k distinct episodes of the level when it has k others (then cut/capped).
        qrow = views["bursty"].ep_row(b.query.ep)
        if not kw["partial"] and kw["context_steps"] is None:
            others = [
                x
                for x in range(len(store.episodes))
                if views["bursty"].level[x] == views["bursty"].level[qrow]
                and views["bursty"].family[x] == views["bursty"].family[qrow]
                and views["bursty"].demo[x] == "expert"
                and x != qrow
            ]
            eps = [blk["steps"][0][0] for blk in b.blocks]
            assert len(eps) == kw["k"]
            if len(others) >= kw["k"]:
                assert len(set(eps)) == kw["k"]


@PROPS
@given(store_params, st.integers(1, 5), st.integers(0, 2**31 - 1))
def test_shuffled_breaks_the_order(params, k, seed):
    store = make_store(**{**params, "max_len": 10})
    for mode, rate in (("bursty", 1.0), ("shuffled", 0.5)):
        batch = ContextBuilder(store, mode=mode, k=k, seed=1).sample(64, seed=seed)
        view = check_contract(store, batch)
        pairs = [
            (a[0] == b[0]) and (b[1] == a[1] + 1)
            for r in view.rows()
            for a, b in pairwise(r.ctx_steps)
        ]
        consecutive = np.mean(pairs) if pairs else 1.0
        if mode == "bursty":  # only episode boundaries break the chain
            n_blocks = sum(len(r.blocks) for r in view.rows())
            assert sum(pairs) == len(pairs) - (n_blocks - 64)
        elif len(pairs) >= 200:
            assert consecutive < rate


@PROPS
@given(store_params, knobs, st.integers(0, 2**31 - 1))
def test_p_bursty_zero_and_one_are_the_two_modes(params, kw, seed):
    store = make_store(**params)
    for p, mode in ((1.0, "bursty"), (0.0, "trajectories")):
        mixed = ContextBuilder(store, mode="bursty", p_bursty=p, seed=3, **kw).sample(8, seed=seed)
        pure = ContextBuilder(store, mode=mode, seed=3, **kw).sample(8, seed=seed)
        for f in ("kind", "word", "obs", "level", "episode_id", "t", "target", "shown_action"):
            assert np.array_equal(getattr(mixed, f), getattr(pure, f)), (p, f)
        check_mode(check_contract(store, mixed), mode, ContextConfig(**kw))


@PROPS
@given(store_params, knobs, st.integers(0, 2**31 - 1))
def test_p_bursty_mixes_the_two_modes_per_sequence(params, kw, seed):
    store = make_store(**params)
    p = 0.3
    batch = ContextBuilder(store, mode="trajectories", p_bursty=p, seed=0, **kw).sample(
        400, seed=seed
    )
    view = check_contract(store, batch)
    pure = {
        mode: View(store, ContextBuilder(store, mode=mode, seed=0, **kw).sample(400, seed=seed))
        for mode in ("bursty", "trajectories")
    }
    kinds = []
    for i, r in enumerate(view.rows()):
        qlevel = view.level[view.ep_row(r.query.ep)]
        same = {view.level[view.ep_row(e)] == qlevel for e, _ in r.ctx_steps}
        assert len(same) == 1, "a sequence is wholly bursty or wholly trajectories"
        kinds.append(same.pop())
        # The same query and budget as either pure mode; a bursty row is the bursty row.
        b = pure["bursty"].parse(i)
        assert r.query.ep == b.query.ep and len(r.ctx_steps) == len(b.ctx_steps)
        if kinds[-1]:
            assert r.ctx_steps == b.ctx_steps
    for mode, rows in (("bursty", kinds), ("trajectories", [not k for k in kinds])):
        sub = View(store, batch[np.flatnonzero(rows)]) if any(rows) else None
        if sub is not None:
            check_mode(sub, mode, ContextConfig(**kw))
    assert p - 0.1 < np.mean(kinds) < p + 0.1  # 400 rows: sd 0.023


@PROPS
@given(store_params, st.sampled_from(MODE_NAMES), st.integers(0, 2**31 - 1))
def test_instruction_modes(params, mode, seed):
    store = make_store(**params)
    vocab = MissionVocab.build(store.episodes["mission"])
    mission_of = dict(zip(store.episodes["episode_id"], store.episodes["mission"], strict=True))
    family_missions = store.episodes.groupby("env_id")["mission"].agg(set).to_dict()
    env_of = dict(zip(store.episodes["episode_id"], store.episodes["env_id"], strict=True))
    content = {vocab.stoi[w] for w in CONTENT_WORDS if w in vocab.stoi}
    single = any(len(m) < 2 for m in family_missions.values())
    for instruction in ("full", "empty", "template", "wrong"):
        if instruction == "wrong" and single:
            with pytest.raises(TrajbenchError, match="wrong"):
                ContextBuilder(store, mode=mode, instruction=instruction, vocab=vocab)
            continue
        builder = ContextBuilder(
            store, mode=mode, instruction=instruction, vocab=vocab, k=2, seed=4
        )
        batch = builder.sample(10, seed=seed)
        view = check_contract(store, batch, vocab)
        for r in view.rows():
            runs = [(blk["words"], blk["word_ep"][0]) for blk in r.blocks if blk["words"]]
            runs.append((r.query.words, r.query.ep))
            shown_for: dict[str, list[int]] = {}
            for ids, ep in runs:
                true = mission_of[ep]
                if instruction == "full":
                    assert ids == vocab.encode(true)
                elif instruction == "empty":
                    assert ids == [vocab.bos_id]
                elif instruction == "template":
                    assert ids == vocab.encode(template(true))
                    assert not content & set(ids), "template shows a content word"
                    assert {vocab.itos[i] for i in ids} & set(MASKS)
                else:
                    assert ids != vocab.encode(true), "a wrong mission equals the true one"
                    shown = vocab.decode(ids[1:])
                    assert shown in family_missions[env_of[ep]] - {true}
                    # one wrong mission per true mission within a sequence
                    assert shown_for.setdefault(true, ids) == ids


@PROPS
@given(store_params, st.sampled_from(CONTEXT_MODES), st.integers(1, 4), st.integers(0, 2**31 - 1))
def test_partial_pieces_are_contiguous_and_really_partial(params, mode, k, seed):
    store = make_store(**{**params, "max_len": 10})
    batch = ContextBuilder(store, mode=mode, k=k, partial=True, seed=2).sample(48, seed=seed)
    view = check_contract(store, batch)
    check_mode(view, mode, ContextConfig(mode=mode, k=k, partial=True))
    if mode in ("bursty", "trajectories"):
        starts_late = ends_early = 0
        for r in view.rows():
            for blk in r.blocks:
                e, t0 = blk["steps"][0]
                starts_late += t0 > 0
                ends_early += blk["steps"][-1][1] + 1 < view.length[view.ep_row(e)]
        long_eps = (store.episodes["length"] >= 4).mean()
        if long_eps > 0.5:  # with pieces of long episodes, both kinds of cut show up
            assert starts_late > 0 and ends_early > 0


@PROPS
@given(store_params, knobs, st.integers(1, 12), st.integers(0, 2**31 - 1))
def test_context_steps_caps_the_budget_keeping_the_latest_steps(params, kw, cap, seed):
    store = make_store(**params)
    kw = {**kw, "context_steps": None}
    for mode in CONTEXT_MODES:
        free = ContextBuilder(store, mode=mode, seed=5, **kw).sample(10, seed=seed)
        capped = ContextBuilder(store, mode=mode, seed=5, **{**kw, "context_steps": cap})
        capped = capped.sample(10, seed=seed)
        view = check_contract(store, capped)
        check_mode(view, mode, ContextConfig(**{**kw, "context_steps": cap}))
        for a, b in zip(View(store, free).rows(), view.rows(), strict=True):
            assert len(b.ctx_steps) == min(cap, len(a.ctx_steps))
            if mode == "bursty":
                assert b.ctx_steps == a.ctx_steps[len(a.ctx_steps) - len(b.ctx_steps) :]


@PROPS
@given(
    st.integers(0, 2**20),
    st.sampled_from(CONTEXT_MODES),
    st.sampled_from([("expert",), ("noisy",), ("expert", "noisy"), ("expert", "noisy", "random")]),
    st.sampled_from([("expert",), ("noisy",), ("expert", "random")]),
    st.booleans(),
)
def test_demonstrator_and_failure_filters(seed, mode, ctx_demos, qry_demos, allow_failed):
    # Every level has two successful episodes of every demonstrator, and failed ones.
    store = make_store(seed, n_levels=4, experts=(2, 3), others=(6, 10), p_fail=0.4, min_each=2)
    eps = store.episodes
    cfg = ContextConfig(
        mode=mode,
        k=2,
        context_demonstrators=ctx_demos,
        query_demonstrators=qry_demos,
        allow_failed=allow_failed,
    )
    builder = ContextBuilder(store, config=cfg, seed=6)
    batch = builder.sample(80, seed=seed)
    view = check_contract(store, batch)
    check_mode(view, mode, cfg)
    ctx_rows = [view.ep_row(e) for r in view.rows() for e, _ in r.ctx_steps]
    q_rows = [view.ep_row(r.query.ep) for r in view.rows()]
    assert {view.demo[x] for x in q_rows} <= set(qry_demos)
    assert all(view.success[x] for x in q_rows)
    shown_failed = any(not view.success[x] for x in ctx_rows)
    pool = eps[eps["demonstrator"].isin(ctx_demos)]
    if allow_failed and (~pool["success"]).mean() > 0.1:  # 80 rows: missed with p < 1e-6
        assert shown_failed, "failed episodes never show up"
    if not allow_failed:
        assert not shown_failed


@pytest.mark.parametrize("zipf", [0.0, 1.5])
def test_zipf_exponent_skews_level_frequencies(zipf):
    # Levels hold very different numbers of episodes; the query level is drawn per level.
    store = make_store(11, n_levels=10, experts=(2, 12))
    builder = ContextBuilder(store, mode="none", zipf=zipf, seed=3)
    n = 40_000
    batch = builder.sample(n)
    levels = batch.level[np.arange(n), np.argmax(batch.is_query, axis=1)]
    counts = np.sort(np.bincount(np.unique(levels, return_inverse=True)[1]))[::-1]
    assert len(counts) == 10
    freq = counts / n
    expected = np.arange(1, 11, dtype=float) ** -zipf
    expected /= expected.sum()
    # sd of a frequency <= 0.0025 here; sorting the observed ones moves them by less.
    assert np.abs(freq - expected).max() < 0.015, (freq, expected)
    if zipf:
        assert freq[0] > 10 * freq[-1]  # (expected ratio 10 ** 1.5 = 31.6)
    from scipy.stats import chisquare

    if not zipf:
        assert chisquare(counts).pvalue > 1e-4


@PROPS
@given(store_params, st.sampled_from(MODE_NAMES), knobs, st.integers(0, 2**31 - 1))
def test_sample_is_a_pure_function_of_its_seed(params, mode, kw, seed):
    store = make_store(**params)
    a = ContextBuilder(store, mode=mode, seed=1, **kw)
    b = ContextBuilder(store, mode=mode, seed=2, **kw)
    b.sample(5)  # advance b's own stream: a seeded sample must not care
    x, y = a.sample(9, seed=seed), b.sample(9, seed=seed)
    x2 = a.sample(9, seed=seed)
    for f in ("kind", "word", "obs", "level", "episode_id", "t", "target", "shown_action"):
        assert np.array_equal(getattr(x, f), getattr(y, f))
        assert np.array_equal(getattr(x, f), getattr(x2, f))
    # The unseeded stream is reproducible from the builder seed and moves on.
    c, d = (ContextBuilder(store, mode=mode, seed=1, **kw) for _ in range(2))
    c1, d1 = c.sample(9), d.sample(9)
    assert np.array_equal(c1.episode_id, d1.episode_id)


@pytest.mark.parametrize("pool", [3, 20, 90])  # with replacement, sorted keys, Floyd's draws
def test_context_episodes_are_drawn_uniformly(pool):
    # One level of interest with ``pool + 1`` expert episodes (so ``pool`` besides the query).
    store = make_store(4, n_levels=2, experts=(pool + 1, pool + 1), others=(0, 0))
    k = 24 if pool > 64 else 4  # (a large k makes any bias of the first place show)
    batch = ContextBuilder(store, mode="bursty", k=k, seed=0).sample(3000, seed=1)
    view = View(store, batch)
    first, seen = Counter(), Counter()
    level = view.level[0]
    for r in view.rows():
        if view.level[view.ep_row(r.query.ep)] != level:
            continue
        eps = [blk["steps"][0][0] for blk in r.blocks]
        assert len(eps) == k and r.query.ep not in eps
        if pool >= k:
            assert len(set(eps)) == k, "k distinct episodes when the level has k others"
        first[eps[0]] += 1
        seen.update(eps)
    from scipy.stats import chisquare

    assert len(seen) == pool + 1 and sum(seen.values()) > 1000
    # Every episode is equally likely in the context, and equally likely to come first (each
    # query excludes only itself, so by symmetry the expected counts are equal).
    for counts in (first, seen):
        observed = [counts[e] for e in seen]  # zero counts included
        assert chisquare(observed).pvalue > 1e-4, observed


def test_different_seeds_give_different_batches():
    store = make_store(0, n_levels=5)
    b = ContextBuilder(store, mode="bursty", k=2, seed=0)
    first = b.sample(16, seed=1)
    assert not np.array_equal(first.episode_id, b.sample(16, seed=2).episode_id)
    assert not np.array_equal(first.episode_id, b.sample(16).episode_id)


def test_pad_to_and_levels_restriction():
    store = make_store(1, n_levels=5)
    b = ContextBuilder(store, mode="bursty", seed=0)
    batch = b.sample(4, pad_to=200)
    assert batch.shape == (4, 200)
    check_contract(store, batch)
    keep = sorted(store.episodes["level"].unique())[:2]
    b = ContextBuilder(store, mode="isolated", levels=keep, seed=0)
    view = check_contract(store, b.sample(64))
    qlevels = {view.level[view.ep_row(r.query.ep)] for r in view.rows()}
    assert qlevels == set(keep)


# -- the assembler used by evaluation --------------------------------------------------------------
@PROPS
@given(store_params, st.sampled_from(MODE_NAMES), knobs, st.integers(0, 2**31 - 1))
def test_assemble_of_row_plans_rebuilds_the_builders_batch(params, mode, kw, seed):
    store = make_store(**params)
    builder = ContextBuilder(store, mode=mode, seed=0, **kw)
    batch = builder.sample(6, seed=seed)
    view = View(store, batch)
    plans = []
    for i in range(6):
        plan, j, n = RowPlan(), 0, int((~batch.pad[i]).sum())
        while j < n:
            if batch.kind[i, j] == WORD:
                e = j
                while e < n and batch.kind[i, e] == WORD:
                    e += 1
                plan.add_words(
                    batch.word[i, j:e],
                    batch.level[i, j],
                    batch.episode_id[i, j],
                    query=bool(batch.is_query[i, j]),
                )
            else:
                e = j
                while e < n and batch.kind[i, e] == STEP:
                    e += 1
                g = view.offset[view.row_of[batch.episode_id[i, j:e]]] + batch.t[i, j:e]
                if in_order(list(zip(batch.episode_id[i, j:e], batch.t[i, j:e], strict=True))):
                    plan.add_steps(range(int(g[0]), int(g[-1]) + 1), bool(batch.is_query[i, j]))
                else:
                    plan.add_steps(g.tolist(), bool(batch.is_query[i, j]))
            j = e
        assert len(plan) == n and plan.kind == batch.kind[i, :n].tolist()
        plans.append(plan)
    again = assemble(plans, builder.table, builder.n_actions, pad_to=batch.shape[1])
    for f in batch.__dataclass_fields__:
        assert np.array_equal(getattr(again, f), getattr(batch, f)), f


def test_assemble_handles_word_only_rows_and_explicit_steps():
    obs = np.arange(12, dtype=np.uint8).reshape(6, 2)
    table = StepTable.from_episodes(
        obs,
        np.array([0, 1, 2, 3, 0, 1], np.uint8),
        np.arange(6, dtype=np.float32),
        [0, 3],
        [3, 3],
        [7, 8],
        [70, 80],
    )
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
    assert batch.prev_action.tolist() == [
        [4, 4, 4, 0, 1, 4],
        [0, 0, 4, 4, 4, 3],
        [4, 0, 0, 0, 0, 0],
    ]
    assert batch.shown_action.tolist()[1] == [1, 1, 5, 5, 5, 5]
    assert batch.target.tolist()[1] == [IGNORE, IGNORE, IGNORE, IGNORE, 3, 0]
    assert batch.obs[1, 0].tolist() == [10, 11] and batch.obs[1, 2].tolist() == [0, 0]
    assert batch.level.tolist()[2] == [3, -1, -1, -1, -1, -1]
    assert batch.episode_id.tolist()[1] == [80, 70, 80, 80, 80, 80]
    empty = StepTable.from_episodes(
        np.zeros((0, 2), np.uint8), np.zeros(0, np.uint8), np.zeros(0, np.float32), [], [], [], []
    )
    only = assemble([c, c], empty, n_actions=4, pad_to=3)
    assert only.kind.tolist() == [[1, 0, 0]] * 2 and only.obs.shape == (2, 3, 2)


# -- bad knobs -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "knob",
    [
        dict(mode="bursti"),
        dict(k=0),
        dict(k=-1),
        dict(k=1.5),
        dict(context_steps=0),
        dict(p_bursty=1.5),
        dict(p_bursty=float("nan")),
        dict(mode="shuffled", p_bursty=0.5),
        dict(zipf=-1.0),
        dict(zipf=float("nan")),
        dict(instruction="none"),
        dict(context_demonstrators=()),
        dict(context_demonstrators="expert"),
        dict(contex_steps=4),
        dict(seed=-1),
        dict(levels=[12345]),
    ],
)
def test_bad_knobs_raise(knob):
    store = make_store(0)
    with pytest.raises(TrajbenchError):
        ContextBuilder(store, **knob)


def test_impossible_stores_and_requests_raise():
    store = make_store(0, n_levels=1)
    ContextBuilder(store, mode="bursty")  # fine: one level has same-level support
    for mode in ("trajectories", "isolated"):
        with pytest.raises(TrajbenchError, match="two levels"):
            ContextBuilder(store, mode=mode)
    with pytest.raises(TrajbenchError, match="two levels"):
        ContextBuilder(store, mode="bursty", p_bursty=0.5)
    ContextBuilder(store, mode="bursty", p_bursty=1.0)
    single = make_store(0, n_levels=1, experts=(1, 1), others=(0, 0))
    ContextBuilder(single, mode="none")
    with pytest.raises(TrajbenchError, match="same level"):
        ContextBuilder(single, mode="bursty")
    one_mission = make_store(0, n_missions=1)
    one_mission.episodes["mission"] = "go to the red ball"
    with pytest.raises(TrajbenchError, match="wrong"):
        ContextBuilder(one_mission, instruction="wrong")
    empty = make_store(0)
    empty.episodes = empty.episodes.iloc[:0]
    with pytest.raises(TrajbenchError, match="empty"):
        ContextBuilder(empty)
    b = ContextBuilder(store, mode="bursty")
    for bad in (0, -3, 2.5):
        with pytest.raises(TrajbenchError):
            b.sample(bad)
    with pytest.raises(TrajbenchError):
        b.sample(2, seed=-5)


def test_a_query_whose_only_same_level_episode_is_itself_is_never_drawn():
    # Level 0: one expert and one noisy success; queries may be either, contexts experts only.
    store = make_store(3, n_levels=3, experts=(2, 2), others=(0, 0))
    eps = store.episodes
    lv = eps["level"].iloc[0]
    first = eps.index[eps["level"] == lv][0]
    eps.loc[first, "demonstrator"] = "noisy"
    b = ContextBuilder(store, mode="bursty", k=1, query_demonstrators=("expert", "noisy"), seed=0)
    view = check_contract(store, b.sample(300))
    queries = {r.query.ep for r in view.rows()}
    assert int(eps.loc[first, "episode_id"]) in queries  # the noisy one serves, with the expert
    lone_expert = int(eps[(eps["level"] == lv) & (eps.index != first)]["episode_id"].iloc[0])
    assert lone_expert not in queries  # its only same-level context would be itself


def test_mission_ids_follow_the_instruction():
    store = make_store(2)
    m = store.episodes["mission"].iloc[0]
    full = ContextBuilder(store, instruction="full")
    assert full.mission_ids(m) == full.vocab.encode(m)
    assert ContextBuilder(store, instruction="empty").mission_ids(m) == [full.vocab.bos_id]
    tmpl = ContextBuilder(store, instruction="template")
    assert tmpl.mission_ids(m) == tmpl.vocab.encode(template(m))
    wrong = ContextBuilder(store, instruction="wrong")
    assert all(wrong.mission_ids(m) != full.vocab.encode(m) for _ in range(20))


# -- the mission vocabulary ------------------------------------------------------------------------
def test_mission_vocabulary_round_trip_and_unknown_words():
    missions = ["go to the red ball", "pick up a blue key behind you", "open the door on your left"]
    vocab = MissionVocab.build(reversed(missions))
    assert vocab.itos == MissionVocab.build(missions).itos, "ids do not depend on the order"
    assert vocab.itos[: len(SPECIALS)] == list(SPECIALS)
    for m in missions:
        ids = vocab.encode(m)
        assert ids[0] == vocab.bos_id and vocab.unk_id not in ids
        assert vocab.decode(ids[1:]) == m
        assert vocab.encode(template(m)).count(vocab.unk_id) == 0  # masks are in every vocab
    assert vocab.encode("Go to the RED ball!") == vocab.encode("go to the red ball")
    assert vocab.encode("go to the green box")[-2:] == [vocab.unk_id] * 2
    assert vocab.unknown_words(["go to the green box"]) == {"green", "box"}
    again = MissionVocab.from_dict(json.loads(json.dumps(vocab.to_dict())))
    assert again.itos == vocab.itos and again.encode(missions[1]) == vocab.encode(missions[1])
    assert vocab.encode("") == [vocab.bos_id]
    with pytest.raises(ValueError):
        MissionVocab(["go", "to"])


@given(
    st.lists(st.sampled_from([*CONTENT_WORDS, "go", "to", "the", "a", "pick", "up"]), max_size=9)
)
def test_template_masks_exactly_the_content_words(ws):
    mission = " ".join(ws)
    shown = template(mission).split()
    assert len(shown) == len(ws)
    for w, t in zip(ws, shown, strict=True):
        assert (t in MASKS) == (w in CONTENT_WORDS)  # content words masked, nothing else
        assert t == w or w in CONTENT_WORDS
    assert template(template(mission)) == template(mission)


def test_shown_mission_modes():
    import random

    pool = ["go to the red ball", "go to the blue key", "go to the grey box"]
    rng = random.Random(0)
    assert shown_mission(pool[0], "full", pool, rng) == pool[0]
    assert shown_mission(pool[0], "empty", pool, rng) == ""
    assert shown_mission(pool[0], "template", pool, rng) == "go to the <color> <obj>"
    wrong = {shown_mission(pool[0], "wrong", pool, rng) for _ in range(50)}
    assert wrong == set(pool[1:])
    with pytest.raises(ValueError):
        shown_mission(pool[0], "wrong", pool[:1], rng)
    with pytest.raises(ValueError):
        shown_mission(pool[0], "loud", pool, rng)


# -- real stores -----------------------------------------------------------------------------------
def _collect(tmp_path_factory, env: str, levels: str, episodes: int):
    from trajbench.collect import CollectConfig, collect
    from trajbench.data import load

    out = tmp_path_factory.mktemp(env.split("/")[-1]) / "ds"
    collect(
        CollectConfig(env=env, levels=levels, episodes_per_level=episodes, out=out, progress=False)
    )
    return load(out)


@pytest.fixture(scope="module")
def dark_room(tmp_path_factory):
    return _collect(tmp_path_factory, "trajbench/DarkRoom-v0", "0,1,2,3,4,5", 4)


@pytest.fixture(scope="module")
def babyai(tmp_path_factory):
    import gymnasium as gym

    if "trajbench/GoToLocal-v0" not in gym.registry:
        pytest.skip("trajbench/GoToLocal-v0 is not registered yet")
    return _collect(tmp_path_factory, "trajbench/GoToLocal-v0", "0,1,2,3,4,5,6,7", 4)


@pytest.mark.parametrize("mode", MODE_NAMES)
def test_every_mode_on_dark_room(dark_room, mode):
    for instruction in ("full", "empty", "template"):
        for partial in (False, True):
            cfg = ContextConfig(mode=mode, k=4, partial=partial, instruction=instruction)
            b = ContextBuilder(dark_room, config=cfg, seed=0)
            batch = b.sample(16, seed=1)
            check_mode(check_contract(dark_room, batch, b.vocab), mode, cfg)
    with pytest.raises(TrajbenchError, match="wrong"):  # Dark Room has a single (empty) mission
        ContextBuilder(dark_room, mode=mode, instruction="wrong")


@pytest.mark.parametrize("mode", MODE_NAMES)
def test_every_mode_on_a_babyai_family(babyai, mode):
    for instruction in ("full", "empty", "template", "wrong"):
        cfg = ContextConfig(mode=mode, k=3, instruction=instruction, partial=mode == "bursty")
        b = ContextBuilder(babyai, config=cfg, seed=0)
        batch = b.sample(16, seed=2)
        check_mode(check_contract(babyai, batch, b.vocab), mode, cfg)


def _registered() -> list[str]:
    from trajbench.envs.registration import env_ids

    return env_ids()


@pytest.mark.parametrize("env", _registered())
def test_every_mode_and_instruction_on_every_registered_family(tmp_path_factory, env):
    store = _collect(tmp_path_factory, env, "0,1,2,3", 3)
    one_mission = store.episodes["mission"].nunique() < 2
    for mode in MODE_NAMES:
        for instruction in ("full", "empty", "template", "wrong"):
            cfg = ContextConfig(mode=mode, k=2, instruction=instruction)
            if instruction == "wrong" and one_mission:
                with pytest.raises(TrajbenchError, match="wrong"):
                    ContextBuilder(store, config=cfg)
                continue
            b = ContextBuilder(store, config=cfg, seed=0)
            view = check_contract(store, b.sample(8, seed=3), b.vocab)
            check_mode(view, mode, cfg)

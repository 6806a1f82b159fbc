"""Shared machinery of the prompt-builder tests (not a test module).

- :func:`make_store`: random episode stores in memory, with the columns and arrays the builder
  reads; :func:`collected_store`: a small real store of a registered family;
- :class:`View`: a batch read back token by token against its store;
- :func:`check_contract`, :func:`check_mode`, :func:`check_one_property_at_a_time`: the token
  contract, each mode's property, and what every mode shares (``builder.py``'s docstring);
- :func:`valid_queries`: which episodes may serve as queries, computed independently.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, fields
from itertools import groupby, pairwise
from types import SimpleNamespace

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st

from trajbench.batch import IGNORE, PAD, STEP, WORD, Batch, hidden_action, start_action
from trajbench.contexts import ContextBuilder, ContextConfig, ContextMode, get_mode
from trajbench.envs.levels import ObsEncoding
from trajbench.errors import TrajbenchError
from trajbench.vocab import MissionVocab

N_ACTIONS = 5
COLORS = ["red", "green", "blue", "purple", "yellow", "grey"]
OBJECTS = ["ball", "box", "key"]
MISSIONS = sorted({f"go to {a} {c} {o}" for a in ("the", "a") for c in COLORS for o in OBJECTS})
PROPS = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
#: A permutation of this many distinct steps equals the identity with probability < 1e-8.
TELLS_ORDER = 12


# -- stores ---------------------------------------------------------------------------------------
def make_store(
    seed: int,
    n_families: int = 1,
    n_levels: int = 4,
    experts: tuple[int, int] = (2, 6),
    others: tuple[int, int] = (0, 3),
    min_len: int = 1,
    max_len: int = 8,
    n_missions: int = 6,
    demonstrators: tuple[str, ...] = ("noisy", "random"),
    p_fail: float = 0.3,
    min_each: int = 0,
    p_copy: float = 0.0,
):
    """A random episode store in memory (see :func:`store_of`).

    Every level of every family gets between ``experts[0]`` and ``experts[1]`` successful expert
    episodes, plus ``others`` episodes by the other ``demonstrators`` that fail with probability
    ``p_fail`` (experts never fail), plus ``min_each`` successful episodes of each of those
    demonstrators. With probability ``p_copy`` an episode repeats the action sequence of an
    earlier episode of its level. Level numbers repeat across families; missions come in article
    variants ("go to a red ball").
    """
    rng = np.random.default_rng(seed)
    missions = [MISSIONS[i] for i in rng.permutation(len(MISSIONS))[: max(2, n_missions)]]
    episodes = []
    for f in range(n_families):
        for level in rng.choice(100, size=n_levels, replace=False).tolist():
            mission = missions[rng.integers(len(missions))]
            demos = ["expert"] * int(rng.integers(experts[0], experts[1] + 1))
            demos += [
                demonstrators[rng.integers(len(demonstrators))]
                for _ in range(int(rng.integers(others[0], others[1] + 1)))
            ]
            sure = len(demos)
            demos += [d for d in demonstrators for _ in range(min_each)]
            level_actions: list[np.ndarray] = []
            for n, demo in enumerate(demos):
                if level_actions and rng.random() < p_copy:
                    acts = level_actions[rng.integers(len(level_actions))]
                else:
                    acts = rng.integers(0, N_ACTIONS, int(rng.integers(min_len, max_len + 1)))
                level_actions.append(acts)
                success = demo == "expert" or n >= sure or bool(rng.random() >= p_fail)
                episodes.append(
                    dict(
                        env_id=f"test/Family{f}-v0",
                        level=level,
                        actions=acts,
                        demonstrator=demo,
                        success=success,
                        mission=mission,
                    )
                )
    return store_of(episodes, seed)


def store_of(episodes: list[dict], seed: int = 0):
    """An episode store in memory with the columns, arrays and encoding the builder reads.

    Each episode is a dict of ``env_id``, ``level``, ``actions`` and optionally ``demonstrator``
    (expert), ``success`` (True) and ``mission`` (""); its observations and rewards are random.
    Episode ids are unique across families and rows are shuffled (so offsets, not row order,
    locate the steps).
    """
    rng = np.random.default_rng(seed)
    rows, offset = [], 0
    for i, e in enumerate(episodes):
        rows.append(
            dict(
                episode_id=i,
                env_id=e["env_id"],
                level=e["level"],
                split="train",
                demonstrator=e.get("demonstrator", "expert"),
                length=len(e["actions"]),
                success=e.get("success", True),
                mission=e.get("mission", ""),
                seed=0,
                offset=offset,
            )
        )
        offset += len(e["actions"])
    table = pd.DataFrame(rows).sample(frac=1.0, random_state=seed).reset_index(drop=True)
    obs = np.stack(
        [rng.integers(0, 7, offset), rng.integers(0, 7, offset), rng.integers(0, 3, offset)], 1
    ).astype(np.uint8)
    actions = [np.asarray(e["actions"], dtype=np.uint8) for e in episodes]
    return SimpleNamespace(
        episodes=table,
        obs=obs,
        actions=np.concatenate(actions) if actions else np.zeros(0, np.uint8),
        rewards=rng.random(offset).astype(np.float32),
        encoding=ObsEncoding("test", (7, 7, 3), N_ACTIONS),
    )


store_params = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 2**20),
        "n_families": st.integers(1, 2),
        "n_levels": st.integers(3, 6),
        "experts": st.sampled_from([(2, 4), (3, 6), (4, 8), (4, 8)]),
        "max_len": st.integers(1, 10),
        "n_missions": st.integers(2, 6),
        "p_copy": st.sampled_from([0.0, 0.3]),
    }
)
knobs = st.fixed_dictionaries(
    {
        "k": st.integers(1, 4),
        "partial": st.booleans(),
        "context_steps": st.none() | st.integers(1, 30),
    }
)
seeds = st.integers(0, 2**31 - 1)


def collected_store(tmp_path_factory, env: str, levels: str = "0,1,2,3", episodes: int = 3):
    """A real store of ``env``: expert and noisy episodes of ``levels`` (noisy ones beside the
    experts, so that families whose expert repeats one action sequence per level have
    demonstrations of other sequences)."""
    from trajbench.collect import CollectConfig, collect  # (collection is slow to import)
    from trajbench.data import load

    root = tmp_path_factory.mktemp(env.split("/")[-1])
    paths = []
    for demonstrator in ("expert", "noisy"):
        cfg = CollectConfig(
            env=env,
            levels=levels,
            episodes_per_level=episodes,
            demonstrator=demonstrator,
            out=root / demonstrator,
            progress=False,
        )
        paths.append(collect(cfg))
    return load(paths)


def build(store, **kw) -> ContextBuilder | None:
    """``ContextBuilder(store, **kw)``, or None after checking that it refuses exactly the stores
    with no valid query (other refusals propagate)."""
    cfg = ContextConfig(**{k: v for k, v in kw.items() if k not in ("seed", "vocab", "levels")})
    expected = valid_queries(store, cfg, kw.get("levels"))
    try:
        builder = ContextBuilder(store, **kw)
    except TrajbenchError as e:
        if "no level of the store can serve as a query" not in str(e):
            raise
        assert not expected, f"refused a store with {len(expected)} valid queries: {e}"
        event("the store has no valid query")
        return None
    assert expected, "accepted a store with no valid query"
    return builder


def sample_modes(store, modes, n: int, seed: int, **kw) -> dict[str, Batch] | None:
    """One batch of every mode in ``modes``: same store, knobs, builder seed and sample seed."""
    builders = {mode: build(store, mode=mode, seed=7, **kw) for mode in modes}
    if any(b is None for b in builders.values()):
        assert all(b is None for b in builders.values()), "modes accept different stores"
        return None
    return {mode: b.sample(n, seed=seed) for mode, b in builders.items()}


def vocab_of(store) -> MissionVocab:
    """The vocabulary a builder makes of the store's missions."""
    return MissionVocab.build(store.episodes["mission"].unique())


# -- the store, independently ---------------------------------------------------------------------
class Facts:
    """Per-episode arrays of a store (row order of ``store.episodes``), computed by the tests."""

    def __init__(self, store):
        eps = store.episodes.reset_index(drop=True)
        ids = eps["episode_id"].to_numpy()
        self.row_of = np.full(int(ids.max()) + 1, -1)
        self.row_of[ids] = np.arange(len(eps))
        self.episode_id = ids
        self.offset = eps["offset"].to_numpy()
        self.length = eps["length"].to_numpy()
        self.level = eps["level"].to_numpy()
        self.env_id = eps["env_id"].to_numpy()
        self.family = pd.factorize(eps["env_id"])[0]
        self.demo = eps["demonstrator"].to_numpy()
        self.success = eps["success"].to_numpy(bool)
        self.mission = eps["mission"].to_numpy()
        actions = np.asarray(store.actions)
        seqs = [tuple(actions[o : o + n]) for o, n in zip(self.offset, self.length, strict=True)]
        self.code = pd.factorize(pd.Series(seqs, dtype=object))[0]

    def row(self, episode_id: int) -> int:
        return int(self.row_of[episode_id])

    def context_ok(self, cfg: ContextConfig) -> np.ndarray:
        """Episodes that may fill a context under ``cfg``."""
        ok = np.isin(self.demo, list(cfg.context_demonstrators)) & (self.length > 0)
        return ok & (self.success | cfg.allow_failed)


def valid_queries(store, cfg: ContextConfig, levels=None) -> set[int]:
    """Episode ids that may serve as queries: successful query-demonstrator episodes whose level
    has ``k`` context episodes with another action sequence and whose family has ``k`` context
    episodes of other levels (``k >= 1`` even for ``none``: every mode accepts the same queries),
    holding ``T >= (k - 1) M + (2k - 1) L`` steps (``M`` their longest episode, ``L`` the level's),
    enough to fill any segments with distinct episodes."""
    f = Facts(store)
    ctx, k = f.context_ok(cfg), max(cfg.k, 1)
    out = set()
    for x in range(len(f.length)):
        if f.demo[x] not in cfg.query_demonstrators or not f.success[x] or f.length[x] == 0:
            continue
        if levels is not None and f.level[x] not in list(levels):
            continue
        family = ctx & (f.family == f.family[x])
        own = family & (f.level == f.level[x])
        other = family & ~own
        if (own & (f.code != f.code[x])).sum() < k or other.sum() < k:
            continue
        longest, other_longest = f.length[own].max(), f.length[other].max()
        if f.length[other].sum() >= (k - 1) * other_longest + (2 * k - 1) * longest:
            out.add(int(f.episode_id[x]))
    return out


# -- reading a batch back -------------------------------------------------------------------------
@dataclass
class Row:
    """One sequence: its context segments (each after one ``<bos>``) and its query."""

    segments: list[list[tuple[int, int]]]  # (episode_id, t) of each context step
    delims: list[int]  # positions of the context's <bos> words
    q0: int  # first query token
    n: int  # tokens before the padding
    query_ep: int
    query_words: list[int]
    query_steps: list[tuple[int, int]]

    @property
    def ctx_steps(self) -> list[tuple[int, int]]:
        return [s for seg in self.segments for s in seg]

    @property
    def lengths(self) -> list[int]:
        return [len(seg) for seg in self.segments]


class View:
    """A batch read back against its store: each row as a :class:`Row`."""

    def __init__(self, store, batch: Batch, facts: Facts | None = None):
        self.store, self.batch = store, batch
        self.f = facts or Facts(store)
        self.rows = [self._parse(i) for i in range(batch.shape[0])]

    def _parse(self, i: int) -> Row:
        b = self.batch
        n = int((~b.pad[i]).sum())
        q0 = int(np.argmax(b.is_query[i]))
        delims = np.flatnonzero(b.kind[i, :q0] == WORD).tolist()
        assert q0 == 0 or delims[:1] == [0], "the context starts with a <bos>"
        ep, t = b.episode_id[i].tolist(), b.t[i].tolist()
        segments = [
            list(zip(ep[a + 1 : z], t[a + 1 : z], strict=True)) for a, z in pairwise([*delims, q0])
        ]
        n_words = int(np.argmax(b.kind[i, q0:n] != WORD)) if n > q0 else 0
        return Row(
            segments=segments,
            delims=delims,
            q0=q0,
            n=n,
            query_ep=ep[q0],
            query_words=b.word[i, q0 : q0 + n_words].tolist(),
            query_steps=list(zip(ep[q0 + n_words : n], t[q0 + n_words : n], strict=True)),
        )


def in_order(steps) -> bool:
    """Steps of one episode, each t one more than the last."""
    return len({e for e, _ in steps}) == 1 and all(b[1] == a[1] + 1 for a, b in pairwise(steps))


def runs(steps) -> list[list[tuple[int, int]]]:
    """``steps`` cut into maximal runs of one episode."""
    return [list(g) for _, g in groupby(steps, key=lambda s: s[0])]


# -- the token contract ---------------------------------------------------------------------------
def check_contract(store, batch: Batch, vocab: MissionVocab) -> View:
    """Every field of every token agrees with the store and with the Batch contract."""
    B, T = batch.shape
    n_actions = int(store.encoding.n_actions)
    for field in fields(Batch):
        a = getattr(batch, field.name)
        assert a.shape[:2] == (B, T), field.name
    assert batch.obs.shape == (B, T, store.encoding.n_features) and batch.obs.dtype == np.uint8
    kind, q = batch.kind, batch.is_query
    step, word, pad = kind == STEP, kind == WORD, kind == PAD
    assert (step | word | pad).all()
    assert np.array_equal(pad, batch.pad)
    assert (np.diff(pad.astype(np.int8), axis=1) >= 0).all(), "padding is only at the end"

    view = View(store, batch)
    f = view.f
    # Step tokens: everything comes from the store at (episode, t), prev_* from the same episode.
    rows = f.row_of[batch.episode_id[step]]
    assert (rows >= 0).all()
    t = batch.t[step]
    assert ((t >= 0) & (t < f.length[rows])).all()
    g = f.offset[rows] + t
    assert np.array_equal(batch.level[step], f.level[rows])
    assert np.array_equal(batch.obs[step], np.asarray(store.obs)[g])
    actions = np.asarray(store.actions).astype(np.int64)
    rewards = np.asarray(store.rewards)
    has_prev = t > 0
    gp = np.where(has_prev, g - 1, 0)
    on_ctx, on_qry = ~q[step], q[step]
    # Query steps show the step before; a context step is one transition and shows nothing of it.
    prev_a = np.where(has_prev, actions[gp], n_actions)
    prev_r = np.where(has_prev, rewards[gp], 0)
    assert np.array_equal(batch.prev_action[step][on_qry], prev_a[on_qry])
    assert np.array_equal(batch.prev_reward[step][on_qry], prev_r[on_qry])
    assert (batch.prev_action[step][on_ctx] == hidden_action(n_actions)).all()
    assert (batch.prev_reward[step][on_ctx] == 0).all()
    ctx, qry = step & ~q, step & q
    assert np.array_equal(batch.shown_action[ctx], actions[g[on_ctx]])
    assert np.array_equal(batch.shown_reward[ctx], rewards[g[on_ctx]])
    assert np.array_equal(batch.target[qry], actions[g[on_qry]])
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
    # Context words are delimiters only: a <bos> that belongs to no episode.
    cw = word & ~q
    assert (batch.word[cw] == vocab.bos_id).all()
    assert (batch.level[cw] == -1).all() and (batch.episode_id[cw] == -1).all()
    assert ((batch.word[word] > 0) & (batch.word[word] < len(vocab))).all()
    # Per row: non-empty segments, then one whole successful query episode after its words.
    for i, r in enumerate(view.rows):
        assert all(r.segments), "every <bos> of the context opens a non-empty segment"
        assert q[i, r.q0 : r.n].all() and not q[i, : r.q0].any()
        assert r.query_words[:1] == [vocab.bos_id] and vocab.bos_id not in r.query_words[1:]
        x = f.row(r.query_ep)
        assert r.query_steps == [(r.query_ep, s) for s in range(f.length[x])]
        assert (batch.episode_id[i, r.q0 : r.n] == r.query_ep).all()
        assert (batch.level[i, r.q0 : r.n] == f.level[x]).all()
        assert f.success[x]
    return view


# -- each mode's property -------------------------------------------------------------------------
def check_mode(view: View, mode: ContextMode | str, cfg: ContextConfig) -> None:
    """The property of ``mode`` (read from its ``support`` and ``ordered``) on every row."""
    mode = get_mode(mode) if isinstance(mode, str) else mode
    f = view.f
    for r in view.rows:
        q = f.row(r.query_ep)
        if mode.support == "none":
            assert not r.segments and r.q0 == 0, "none shows a context"
            continue
        assert 1 <= len(r.segments) <= cfg.k
        if cfg.context_steps is None:
            assert len(r.segments) == cfg.k, "k segments when nothing caps the budget"
        else:
            assert len(r.ctx_steps) <= cfg.context_steps
        shown = {f.row(e) for e, _ in r.ctx_steps}
        assert q not in shown, "the query episode is in its own context"
        for x in shown:
            assert f.family[x] == f.family[q]
            assert f.demo[x] in cfg.context_demonstrators
            assert cfg.allow_failed or f.success[x]
            if mode.support == "same":
                assert f.level[x] == f.level[q], "a same-level mode shows another level"
                assert f.code[x] != f.code[q], "the context holds the query's action sequence"
            else:
                assert f.level[x] != f.level[q], "an other-level mode shows the query's level"
        if mode.support == "same":
            assert len(shown) <= cfg.k
        if mode.ordered and mode.support == "same":
            _check_same_level_segments(f, r, cfg)
        elif mode.ordered:
            _check_other_level_segments(f, r, cfg)


def _check_same_level_segments(f: Facts, r: Row, cfg: ContextConfig) -> None:
    """Each segment is consecutive steps of one episode; the episodes are distinct; without
    ``partial`` whole episodes, except that ``context_steps`` cuts the first one's start."""
    for i, seg in enumerate(r.segments):
        assert in_order(seg), "a bursty segment is consecutive steps of one episode"
        x = f.row(seg[0][0])
        if not cfg.partial:
            assert seg[-1][1] + 1 == f.length[x], "a whole episode (the cap keeps the latest)"
            assert seg[0][1] == 0 or (cfg.context_steps is not None and i == 0)
    episodes = [seg[0][0] for seg in r.segments]
    assert len(set(episodes)) == len(episodes), "an episode appears twice in one context"


def _check_other_level_segments(f: Facts, r: Row, cfg: ContextConfig) -> None:
    """Segment ``i`` is ``n_i`` consecutive steps of one episode (from its start unless
    ``partial``), or, only where no unused other-level episode is ``n_i`` long, distinct
    other-level episodes laid end to end; no episode appears twice in the context."""
    q = f.row(r.query_ep)
    pool = f.context_ok(cfg) & (f.family == f.family[q]) & (f.level != f.level[q])
    used: list[int] = []  # episodes of the earlier single-episode segments
    seen: list[int] = []
    for seg in r.segments:
        pieces = runs(seg)
        if len(pieces) == 1:
            assert in_order(seg)
            x = f.row(seg[0][0])
            assert len(seg) <= f.length[x]
            assert cfg.partial or seg[0][1] == 0, "a window starts at the episode's start"
            used.append(x)
        else:  # the fallback: whole episodes from their start, the last one cut
            for j, piece in enumerate(pieces):
                x = f.row(piece[0][0])
                assert in_order(piece) and piece[0][1] == 0
                assert j == len(pieces) - 1 or piece[-1][1] + 1 == f.length[x]
            fits = np.flatnonzero(pool & (f.length >= len(seg)))
            assert set(fits.tolist()) <= set(used), "fell back while an episode was long enough"
        seen += [piece[0][0] for piece in pieces]
    assert len(set(seen)) == len(seen), "an episode appears twice in one context"


# -- what every mode shares -----------------------------------------------------------------------
def ordered_twin(mode: str, modes) -> str | None:
    """The ordered mode among ``modes`` with ``mode``'s support (None if there is none)."""
    support = get_mode(mode).support
    twins = [m for m in modes if get_mode(m).ordered and get_mode(m).support == support]
    return twins[0] if twins else None


def check_one_property_at_a_time(store, batches: dict[str, Batch]) -> dict[str, View]:
    """Batches of several modes for the same seed: the same query (episode, words, tokens) in
    every mode; in every mode with a context the same segment lengths and the same delimiters;
    an unordered mode holds its ordered twin's steps in another order."""
    facts = Facts(store)
    views = {m: View(store, b, facts) for m, b in batches.items()}
    names = list(batches)
    with_context = [m for m in names if get_mode(m).support != "none"]
    first = names[0]
    for i in range(batches[first].shape[0]):
        rows = {m: views[m].rows[i] for m in names}
        ref = rows[first]
        for m, r in rows.items():
            assert r.query_ep == ref.query_ep, f"{m} draws another query"
            assert r.query_words == ref.query_words, f"{m} shows other query words"
            for field in fields(Batch):
                mine = getattr(batches[m], field.name)[i, r.q0 : r.n]
                theirs = getattr(batches[first], field.name)[i, ref.q0 : ref.n]
                assert np.array_equal(mine, theirs), (m, field.name)
        for m in with_context:
            r, c = rows[m], rows[with_context[0]]
            assert r.delims == c.delims and r.lengths == c.lengths, f"{m}: other segments"
            for field in fields(Batch):
                mine = getattr(batches[m], field.name)[i, r.delims]
                theirs = getattr(batches[with_context[0]], field.name)[i, c.delims]
                assert np.array_equal(mine, theirs), (m, field.name)
            twin = ordered_twin(m, names)
            if get_mode(m).ordered or twin is None:
                continue
            steps, ordered = rows[m].ctx_steps, rows[twin].ctx_steps
            assert Counter(steps) == Counter(ordered), f"{m} is not {twin} permuted"
            if len(set(ordered)) >= TELLS_ORDER:
                assert steps != ordered, f"{m} keeps {twin}'s order"
    return views

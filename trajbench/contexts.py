"""The prompt builder: packs stored episodes into context + query token sequences.

A training sequence is a *context* followed by a *query* episode of some level. The context modes
differ in exactly one property at a time (see ``shared/DESIGN.md``):

============== ========================================= ===============================
mode           source of context steps                   structure
============== ========================================= ===============================
bursty         other episodes of the query's own level   whole episodes, steps in order
trajectories   episodes of other levels, same family     whole episodes, steps in order
shuffled       other episodes of the query's own level   single transitions, random order
isolated       transitions of other levels, same family  single transitions, random order
none           no context                                —
============== ========================================= ===============================

Equal budgets: for every sequence the builder first draws ``k`` context episodes of the query's
level (never the query itself; distinct when the level has at least ``k`` others); their step
count ``b`` (after ``partial`` cuts and the ``context_steps`` cap) is the context budget.
``bursty`` shows those episodes; ``shuffled`` shows exactly the same steps, permuted;
``trajectories`` appends whole episodes of other levels until ``b`` steps (the last one cut to
fit); ``isolated`` samples ``b`` transitions of other levels. So modes are compared at equal
context length, and ``shuffled`` differs from ``bursty`` only in order. Mission words are extra
tokens, not context steps.

What is guaranteed, and tested: every random draw that decides a row's query and its budget
comes first, in an order that does not depend on ``mode``, ``p_bursty`` or ``instruction``. So two
builders on the same store, built with the same seed and the same other knobs (``k``, ``partial``,
``context_steps``, ``zipf``, demonstrators, ``levels``), give for the same ``sample(n, seed=s)``
the same query episode and the same number of context steps in every row, whatever their modes
(``none`` draws the same queries and shows no context). This holds whenever the same levels can
serve as queries in both modes, i.e. unless some family has context episodes of a single level
(``trajectories`` / ``isolated`` cannot use that family's levels; ``bursty`` can).

Sampling is vectorized over the batch (NumPy, one ``Generator`` per builder): the rows are laid
out as a ``[batch, runs]`` grid of runs of words or steps and expanded into the token arrays in a
few passes, so no Python code runs per token.

Example:
    >>> from trajbench.contexts import ContextBuilder          # doctest: +SKIP
    >>> builder = ContextBuilder(store, mode="bursty", k=4, seed=0)
    >>> batch = builder.sample(64)
    >>> batch.level.shape, batch.is_query.dtype
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Literal

import numpy as np
import pandas as pd

from .batch import IGNORE, PAD, STEP, WORD, Batch, hidden_action, start_action
from .errors import TrajbenchError
from .vocab import INSTRUCTIONS, MissionVocab, shown_mission, template

MODES = ("bursty", "trajectories", "shuffled", "isolated", "none")
SAME_LEVEL_MODES = ("bursty", "shuffled")
OTHER_LEVEL_MODES = ("trajectories", "isolated")

Mode = Literal["bursty", "trajectories", "shuffled", "isolated", "none"]
Instruction = Literal["full", "empty", "template", "wrong"]

# Segment kinds of the assembler: a run of mission words (ids looked up in the pool), a run of
# consecutive steps of one episode, a run of arbitrary steps (indices looked up in the pool), and
# the right padding of a row.
_PADSEG, _WORDS, _STEPS, _INDIRECT = 0, 1, 2, 3
_TOKEN_KIND = np.array([PAD, WORD, STEP, STEP], dtype=np.int8)
#: Largest same-level pool that draws its k episodes by sorting random keys (larger: Floyd's).
_SORT_DRAW_LIMIT = 64


@dataclass
class ContextConfig:
    """Every knob of the prompt builder."""

    mode: Mode = "bursty"
    """Context mode: bursty, trajectories, shuffled, isolated or none."""
    k: int = 4
    """Context episodes per sequence; their total length sets the context-step budget."""
    context_steps: int | None = None
    """Cap on context steps per sequence (oldest steps dropped first); None: no cap."""
    p_bursty: float | None = None
    """If set, each sequence is bursty with this probability and trajectories otherwise
    (mode must then be bursty or trajectories)."""
    partial: bool = False
    """Context episodes are random contiguous pieces instead of whole episodes."""
    zipf: float = 0.0
    """Zipf exponent of how often each level is drawn as the query level (0: uniform)."""
    context_demonstrators: tuple[str, ...] = ("expert",)
    """Demonstrators whose episodes may fill the context (expert, noisy, random)."""
    allow_failed: bool = False
    """Whether failed episodes may appear in the context."""
    query_demonstrators: tuple[str, ...] = ("expert",)
    """Demonstrators whose (successful) episodes serve as queries, i.e. training targets."""
    instruction: Instruction = "full"
    """What the mission words say: full, empty, template (content masked) or wrong."""

    def validate(self) -> None:
        if self.mode not in MODES:
            raise TrajbenchError(f"unknown context mode {self.mode!r}; expected one of {MODES}")
        if self.instruction not in INSTRUCTIONS:
            raise TrajbenchError(
                f"unknown instruction mode {self.instruction!r}; expected one of {INSTRUCTIONS}"
            )
        if isinstance(self.k, bool) or not isinstance(self.k, int | np.integer):
            raise TrajbenchError(f"k must be an integer, got {self.k!r}")
        if self.k < 0 or (self.k == 0 and self.mode != "none"):
            raise TrajbenchError(f"k must be >= 1 for mode {self.mode!r}, got {self.k}")
        if self.context_steps is not None and (
            isinstance(self.context_steps, bool)
            or not isinstance(self.context_steps, int | np.integer)
            or self.context_steps < 1
        ):
            raise TrajbenchError(f"context_steps must be >= 1 or None, got {self.context_steps}")
        if self.p_bursty is not None:
            if not 0.0 <= self.p_bursty <= 1.0:  # also refuses NaN
                raise TrajbenchError(f"p_bursty must be in [0, 1], got {self.p_bursty}")
            if self.mode not in ("bursty", "trajectories"):
                raise TrajbenchError(
                    "p_bursty mixes bursty and trajectories; use it with one of those modes"
                )
        if not self.zipf >= 0 or self.zipf == float("inf"):  # also refuses NaN
            raise TrajbenchError(f"zipf exponent must be finite and >= 0, got {self.zipf}")
        for name in ("context_demonstrators", "query_demonstrators"):
            value = getattr(self, name)
            if isinstance(value, str) or not all(isinstance(d, str) for d in value):
                raise TrajbenchError(f"{name} must be a sequence of demonstrator names")
            if not value:
                raise TrajbenchError(f"{name} must name at least one demonstrator")


#: Largest observation table (bytes) copied once with zero sentinel rows; larger ones are
#: gathered in place (clipped) and the non-step cells zeroed after.
_OBS_COPY_LIMIT = 256 << 20
_IOTA = np.arange(1 << 16, dtype=np.int64)


def _iota(n: int) -> np.ndarray:
    """``np.arange(n)`` from a cached array (read-only use)."""
    global _IOTA
    if len(_IOTA) < n:
        _IOTA = np.arange(max(n, 2 * len(_IOTA)), dtype=np.int64)
    return _IOTA[:n]


@dataclass
class _Lookups:
    """Per-step arrays of a :class:`StepTable` with two sentinel entries at the end.

    Index ``n`` (the number of steps) is what a word token reads, ``n + 1`` what padding reads, so
    every output array is one gather.
    """

    obs_rows: np.ndarray  # one np.void of n_features bytes per step (+ 2 zero rows unless clipped)
    obs_clip: bool  # obs_rows has no sentinels: gather clipped, then zero the non-step cells
    n_features: int
    action: np.ndarray  # int64
    reward: np.ndarray  # float32
    prev_action: np.ndarray  # int64: a_{t-1}, start_action at t = 0 and on words, 0 on padding
    prev_reward: np.ndarray  # float32
    t: np.ndarray  # int64: -1 on words and padding
    level: np.ndarray  # int64
    episode_id: np.ndarray  # int64


@dataclass
class StepTable:
    """Step arrays of a set of episodes laid end to end, plus per-step bookkeeping.

    ``obs[g]``, ``actions[g]``, ``rewards[g]`` are step ``t[g]`` of episode row ``row[g]``; the steps of
    one episode are contiguous, so ``g - 1`` is the previous step whenever ``t[g] > 0``.
    """

    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    t: np.ndarray
    level: np.ndarray
    episode_id: np.ndarray

    @classmethod
    def from_episodes(
        cls, obs, actions, rewards, offsets, lengths, levels, episode_ids
    ) -> StepTable:
        """Bookkeeping for step arrays whose episode ``i`` occupies ``offsets[i]:offsets[i]+lengths[i]``."""
        lengths = np.asarray(lengths, dtype=np.int64)
        within = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        where = np.repeat(np.asarray(offsets, dtype=np.int64), lengths) + within
        n = len(actions)
        t, level, episode = (np.full(n, -1, dtype=np.int64) for _ in range(3))
        t[where] = within
        level[where] = np.repeat(np.asarray(levels, dtype=np.int64), lengths)
        episode[where] = np.repeat(np.asarray(episode_ids, dtype=np.int64), lengths)
        return cls(obs, actions, rewards, t, level, episode)

    def lookups(self, n_actions: int) -> _Lookups:
        """The gather tables of :func:`assemble` (computed once per table and action count)."""
        cache = self.__dict__.setdefault("_lookups", {})
        if n_actions not in cache:
            n = len(self.t)
            action = np.asarray(self.actions).astype(np.int64)  # widen: uint8 must not wrap
            reward = np.asarray(self.rewards).astype(np.float32)
            t = np.asarray(self.t, dtype=np.int64)
            has_prev = t > 0
            prev_action = np.full(n + 2, start_action(n_actions), dtype=np.int64)
            prev_reward = np.zeros(n + 2, dtype=np.float32)
            if n:
                prev_action[1:n] = np.where(has_prev[1:], action[:-1], start_action(n_actions))
                prev_reward[1:n] = np.where(has_prev[1:], reward[:-1], 0.0)
            prev_action[n + 1] = 0
            obs = np.asarray(self.obs)
            if obs.dtype != np.uint8:
                obs = obs.astype(np.uint8)
            F = obs.shape[1]
            clip = obs.nbytes > _OBS_COPY_LIMIT
            if clip:
                obs_rows = np.ascontiguousarray(obs)
            else:
                obs_rows = np.zeros((n + 2, F), dtype=np.uint8)
                obs_rows[:n] = obs
            cache[n_actions] = _Lookups(
                obs_rows=obs_rows.view(np.dtype((np.void, F))).reshape(-1),
                obs_clip=clip,
                n_features=F,
                action=np.concatenate([action, [hidden_action(n_actions)] * 2]),
                reward=np.concatenate([reward, np.zeros(2, np.float32)]),
                prev_action=prev_action,
                prev_reward=prev_reward,
                t=np.concatenate([t, [-1, -1]]),
                level=np.concatenate([np.asarray(self.level, np.int64), [-1, -1]]),
                episode_id=np.concatenate([np.asarray(self.episode_id, np.int64), [-1, -1]]),
            )
        return cache[n_actions]


@dataclass
class RowPlan:
    """The tokens of one sequence before gathering, as runs of words and runs of steps.

    ``add_words`` appends a run of mission words, ``add_steps`` a run of steps (indices into the
    :class:`StepTable`; a ``range`` is kept as a run, anything else as a list). The per-token
    views ``kind``, ``word``, ``step``, ``query``, ``level``, ``episode`` list one entry per token
    (``step`` is -1 on words; ``level`` / ``episode`` are the words' own and -1 on steps).
    """

    segments: list[tuple] = field(default_factory=list)

    def add_words(self, ids, level: int, episode_id: int, query: bool) -> None:
        ids = [int(i) for i in ids]
        if ids:
            self.segments.append((_WORDS, ids, int(level), int(episode_id), bool(query)))

    def add_steps(self, steps, query: bool) -> None:
        if isinstance(steps, range) and steps.step == 1:
            if len(steps):
                self.segments.append((_STEPS, steps.start, len(steps), bool(query)))
            return
        steps = [int(g) for g in steps]
        if steps:
            self.segments.append((_INDIRECT, steps, bool(query)))

    def __len__(self) -> int:
        return sum(s[2] if s[0] == _STEPS else len(s[1]) for s in self.segments)

    def _tokens(self, name: str) -> list:
        out: list = []
        for seg in self.segments:
            if seg[0] == _WORDS:
                ids, level, episode, query = seg[1:]
                n = len(ids)
                value = {
                    "kind": [WORD] * n,
                    "word": ids,
                    "step": [-1] * n,
                    "query": [query] * n,
                    "level": [level] * n,
                    "episode": [episode] * n,
                }[name]
            else:
                steps = list(range(seg[1], seg[1] + seg[2])) if seg[0] == _STEPS else seg[1]
                n, query = len(steps), seg[-1]
                value = {
                    "kind": [STEP] * n,
                    "word": [0] * n,
                    "step": steps,
                    "query": [query] * n,
                    "level": [-1] * n,
                    "episode": [-1] * n,
                }[name]
            out += value
        return out

    kind = property(lambda self: self._tokens("kind"))
    word = property(lambda self: self._tokens("word"))
    step = property(lambda self: self._tokens("step"))
    query = property(lambda self: self._tokens("query"))
    level = property(lambda self: self._tokens("level"))
    episode = property(lambda self: self._tokens("episode"))


class _Slots:
    """A batch laid out as ``[B, W]`` runs of tokens, each row's runs in order, left to right.

    A slot is a run of mission words (ids looked up in the pool from ``base``), of consecutive
    steps of one episode (from step ``base``), or of arbitrary steps (step indices looked up in the
    pool). Word and one-episode runs carry their ``level`` and ``episode``; arbitrary steps read
    theirs from the table. Slots of length 0 hold nothing; the last column is each row's padding,
    sized by :func:`_gather`.
    """

    def __init__(self, B: int, W: int):
        self.kind = np.zeros((B, W), dtype=np.int8)  # _PADSEG until set
        self.base = np.zeros((B, W), dtype=np.int64)
        self.length = np.zeros((B, W), dtype=np.int64)
        self.query = np.zeros((B, W), dtype=bool)
        self.level = np.full((B, W), -1, dtype=np.int64)  # of words and one-episode step runs
        self.episode = np.full((B, W), -1, dtype=np.int64)


def _gather(sl: _Slots, pool: np.ndarray, lk: _Lookups, n_actions: int, pad_to) -> Batch:
    """Expand the slots into a right-padded :class:`Batch`: a few passes over the cells."""
    B = sl.kind.shape[0]
    row_len = sl.length.sum(1)
    T = max(int(row_len.max(initial=0)), int(pad_to or 0))
    sl.length[:, -1] = T - row_len
    length = sl.length.reshape(-1)
    start = np.cumsum(length) - length
    BT = B * T
    n = len(lk.t) - 2

    cell_kind = np.repeat(sl.kind.reshape(-1), length)
    src = np.repeat(sl.base.reshape(-1) - start, length)
    src += _iota(BT)
    in_pool = (cell_kind & 1).view(bool)  # words and arbitrary steps are looked up in the pool
    src[in_pool] = pool.take(src[in_pool])
    is_word = cell_kind == _WORDS
    is_step = cell_kind >= _STEPS
    level = np.repeat(sl.level.reshape(-1), length)
    episode = np.repeat(sl.episode.reshape(-1), length)
    if (sl.kind == _INDIRECT).any():
        loose = cell_kind == _INDIRECT
        g = src[loose]
        level[loose] = lk.level.take(g)
        episode[loose] = lk.episode_id.take(g)
    gi = np.where(is_step, src, n + (cell_kind == _PADSEG))  # words read n, padding n + 1
    query = np.repeat(sl.query.reshape(-1), length)
    ctx_step = is_step & ~query
    qry_step = is_step & query

    if lk.obs_clip:
        obs = lk.obs_rows.take(gi, mode="clip")
        obs[~is_step] = np.zeros(1, dtype=obs.dtype)[0]
    else:
        obs = lk.obs_rows.take(gi)
    action = lk.action.take(gi)

    def shaped(a: np.ndarray) -> np.ndarray:
        return a.reshape(B, T)

    return Batch(
        kind=shaped(_TOKEN_KIND.take(cell_kind)),
        word=shaped(np.where(is_word, src, 0)),
        obs=obs.view(np.uint8).reshape(B, T, lk.n_features),
        prev_action=shaped(lk.prev_action.take(gi)),
        prev_reward=shaped(lk.prev_reward.take(gi)),
        shown_action=shaped(np.where(ctx_step, action, hidden_action(n_actions))),
        shown_reward=shaped(np.where(ctx_step, lk.reward.take(gi), np.float32(0.0))),
        target=shaped(np.where(qry_step, action, IGNORE)),
        loss_mask=shaped(qry_step),
        is_query=shaped(query),
        pad=shaped(cell_kind == _PADSEG),
        level=shaped(level),
        episode_id=shaped(episode),
        t=shaped(lk.t.take(gi)),
    )


def assemble(
    plans: list[RowPlan], table: StepTable, n_actions: int, pad_to: int | None = None
) -> Batch:
    """Gather the planned tokens of every row from ``table`` into a right-padded :class:`Batch`."""
    W = max((len(p.segments) for p in plans), default=0) + 1
    sl = _Slots(len(plans), W)
    pool: list[int] = []
    lk = table.lookups(n_actions)
    for r, plan in enumerate(plans):
        for j, seg in enumerate(plan.segments):
            kind, query = seg[0], seg[-1]
            if kind == _STEPS:
                first, n = seg[1], seg[2]
                last = first + n - 1
                if (
                    lk.episode_id[first] == lk.episode_id[last] >= 0
                    and lk.t[last] - lk.t[first] == n - 1
                ):  # a run within one episode
                    sl.level[r, j], sl.episode[r, j] = lk.level[first], lk.episode_id[first]
                    sl.kind[r, j], sl.base[r, j], sl.length[r, j], sl.query[r, j] = seg
                    continue
                kind, seg = _INDIRECT, (_INDIRECT, list(range(first, first + n)), query)
            sl.kind[r, j], sl.query[r, j] = kind, query
            sl.base[r, j], sl.length[r, j] = len(pool), len(seg[1])
            pool += seg[1]
            if kind == _WORDS:
                sl.level[r, j], sl.episode[r, j] = seg[2], seg[3]
    return _gather(sl, np.asarray(pool, dtype=np.int64), lk, n_actions, pad_to)


class _Randrange:
    """``random.Random``-style ``randrange`` over a NumPy generator (for :func:`shown_mission`)."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def randrange(self, n: int) -> int:
        return int(self.rng.integers(n))


def _csr(groups: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of ``groups`` sorted by group (stable), with each group's start and count."""
    order = np.argsort(groups, kind="stable").astype(np.int64)
    count = np.bincount(groups, minlength=n_groups).astype(np.int64)
    return order, np.cumsum(count) - count, count


def _floor(u: np.ndarray, n) -> np.ndarray:
    """``floor(u * n)`` as int64 for uniforms ``u`` in [0, 1): a uniform index below ``n``.

    ``Generator.random`` draws multiples of 2**-53 below 1, and for those ``u * n < n`` holds in
    float64 for every integer ``n < 2**53`` (the product rounds down, or is exact), so no clip.
    """
    return (u * n).astype(np.int64)


class ContextBuilder:
    """Samples context + query sequences from an episode store.

    Args:
        store: An episode store (``trajbench.data.load``): ``episodes`` DataFrame with
            ``env_id, level, episode_id, demonstrator, success, length, offset, mission``, the
            ``obs`` / ``actions`` / ``rewards`` step arrays and the ``encoding``.
        seed: Seed of the builder's own random stream: same store, knobs and seed, same batches.
        vocab: Mission vocabulary (a trained model's); built from the store's missions if None.
        levels: Restrict query levels to these (default: every level in the store).
        config: A :class:`ContextConfig`; keyword knobs (``mode="bursty", k=4, ...``) override it.

    An episode serves as a query only if it is a successful episode of a query demonstrator and,
    for every mode but ``none``, its level has another context episode (they set the budget), and,
    for ``trajectories`` / ``isolated`` (or ``p_bursty < 1``), its family has context episodes of
    another level. Query levels are drawn first (uniformly, or by Zipf weight), then an episode of
    that level. Episodes without steps are never used.

    Raises:
        TrajbenchError: a bad knob, an empty store, or no level that can serve as a query.

    Example:
        >>> builder = ContextBuilder(store, mode="shuffled", k=2, seed=1)  # doctest: +SKIP
        >>> batch = builder.sample(8)
    """

    def __init__(
        self,
        store,
        seed: int = 0,
        vocab: MissionVocab | None = None,
        levels=None,
        config: ContextConfig | None = None,
        **knobs,
    ):
        names = {f.name for f in fields(ContextConfig)}
        unknown = set(knobs) - names
        if unknown:
            raise TrajbenchError(
                f"unknown prompt-builder knob(s) {sorted(unknown)}; known: {sorted(names)}"
            )
        base = asdict(config) if config is not None else {}
        cfg = ContextConfig(**{**base, **knobs})
        for name in ("context_demonstrators", "query_demonstrators"):
            value = getattr(cfg, name)
            setattr(cfg, name, value if isinstance(value, str) else tuple(value))
        cfg.validate()
        self.config = cfg
        self.store = store
        self.n_actions = int(store.encoding.n_actions)
        self.rng = np.random.default_rng(_check_seed(seed))

        eps = store.episodes.reset_index(drop=True)
        if len(eps) == 0:
            raise TrajbenchError("the episode store is empty")
        self.eps = eps
        self.vocab = vocab or MissionVocab.build(eps["mission"].unique())
        offset = eps["offset"].to_numpy(np.int64)
        length = eps["length"].to_numpy(np.int64)
        level = eps["level"].to_numpy(np.int64)
        episode_id = eps["episode_id"].to_numpy(np.int64)
        self.table = StepTable.from_episodes(
            np.asarray(store.obs),
            np.asarray(store.actions),
            np.asarray(store.rewards),
            offset,
            length,
            level,
            episode_id,
        )
        self._lookups = self.table.lookups(self.n_actions)
        self._offset, self._length, self._level, self._episode_id = (
            offset,
            length,
            level,
            episode_id,
        )

        # Families, and levels as keys sorted by (family, level): a family's keys are contiguous.
        family, self.families = pd.factorize(eps["env_id"], sort=True)
        family = family.astype(np.int64)
        n_fam = len(self.families)
        lo = int(level.min())
        span = int(level.max()) - lo + 1
        unique_keys, key = np.unique(family * span + (level - lo), return_inverse=True)
        key = key.astype(np.int64).ravel()
        n_keys = len(unique_keys)
        self._family, self._key = family, key
        self._key_family = unique_keys // span
        self._key_level = unique_keys % span + lo

        # Context episodes by key (and so by family), with each episode's place in its key's list.
        demos = eps["demonstrator"]
        success = eps["success"].to_numpy(bool)
        ctx_ok = demos.isin(list(cfg.context_demonstrators)).to_numpy() & (length > 0)
        if not cfg.allow_failed:
            ctx_ok &= success
        qry_ok = demos.isin(list(cfg.query_demonstrators)).to_numpy() & success & (length > 0)
        ctx_idx = np.flatnonzero(ctx_ok)
        order, self._ctx_ptr, self._ctx_cnt = _csr(key[ctx_idx], n_keys)
        self._ctx_rows = ctx_idx[order]
        self._ctx_pos = np.full(len(eps), -1, dtype=np.int64)
        self._ctx_pos[self._ctx_rows] = (
            np.arange(len(self._ctx_rows)) - self._ctx_ptr[key[self._ctx_rows]]
        )
        fam_cnt = np.bincount(family[self._ctx_rows], minlength=n_fam).astype(np.int64)
        self._fam_ptr, self._fam_cnt = np.cumsum(fam_cnt) - fam_cnt, fam_cnt
        # Context steps in the same order, for isolated transitions.
        ctx_len = length[self._ctx_rows]
        self._steps_cnt = np.bincount(key[self._ctx_rows], weights=ctx_len, minlength=n_keys)
        self._steps_cnt = self._steps_cnt.astype(np.int64)
        self._steps_ptr = np.cumsum(self._steps_cnt) - self._steps_cnt
        fam_steps = np.bincount(family[self._ctx_rows], weights=ctx_len, minlength=n_fam)
        self._fam_steps_cnt = fam_steps.astype(np.int64)
        self._fam_steps_ptr = np.cumsum(self._fam_steps_cnt) - self._fam_steps_cnt
        mean_len = self._fam_steps_cnt / np.maximum(self._fam_cnt, 1)
        if cfg.partial:  # a random piece is about a quarter of its episode
            mean_len = mean_len / 4
        self._fam_mean_len = np.maximum(mean_len, 1.0)  # sizes trajectories' rounds of draws
        self._ctx_steps: np.ndarray | None = None  # built on first use

        # Which episodes can be queries under these knobs.
        p = cfg.p_bursty
        mixed = p is not None
        needs_same = cfg.mode != "none"
        needs_other = (cfg.mode in OTHER_LEVEL_MODES and not mixed) or (mixed and p < 1)
        same_avail = self._ctx_cnt[key] - (self._ctx_pos >= 0)
        other_avail = self._fam_cnt[family] - self._ctx_cnt[key]
        valid = qry_ok.copy()
        if needs_same:
            valid &= same_avail >= 1
        if needs_other:
            valid &= other_avail >= 1
        if levels is not None:
            valid &= np.isin(level, np.asarray([int(x) for x in levels], dtype=np.int64))
        if not valid.any():
            need = [f"successful {'/'.join(cfg.query_demonstrators)} episodes"]
            if needs_same:
                need.append(
                    f"another {'/'.join(cfg.context_demonstrators)} episode of the same level "
                    "(it sets the context budget)"
                )
            if needs_other:
                need.append(
                    "context episodes of at least two levels of the family "
                    "(trajectories/isolated contexts come from other levels)"
                )
            raise TrajbenchError(
                f"no level of the store can serve as a query for mode {cfg.mode!r}"
                + (f" among levels {sorted(int(x) for x in levels)}" if levels is not None else "")
                + ": need "
                + "; ".join(need)
            )
        q_idx = np.flatnonzero(valid)
        self._query_keys, q_key = np.unique(key[q_idx], return_inverse=True)
        q_key = q_key.ravel()
        order, self._q_ptr, self._q_cnt = _csr(q_key, len(self._query_keys))
        self._q_rows = q_idx[order]

        # Zipf weights over the query levels, in a seeded random rank order.
        ranks = np.random.default_rng(_check_seed(seed)).permutation(len(self._query_keys))
        weights = (ranks + 1.0) ** (-cfg.zipf)
        self._cum_weights = np.cumsum(weights)

        # Missions: the encoded shown form of every episode's mission, and the wrong-mission pools.
        mission_code, missions = pd.factorize(eps["mission"], sort=True)
        self._mission = mission_code.astype(np.int64)
        self._missions = list(missions)
        self._missions_by_family = [
            sorted(set(eps.loc[family == f, "mission"])) for f in range(n_fam)
        ]
        if cfg.instruction == "wrong":
            single = [
                self.families[f] for f in range(n_fam) if len(self._missions_by_family[f]) < 2
            ]
            if single:
                raise TrajbenchError(
                    f"the 'wrong' instruction needs at least two distinct missions; {single} has one"
                )
        shown = {
            "full": self._missions,
            "wrong": self._missions,  # the wrong mission of another level is shown in full
            "template": [template(m) for m in self._missions],
            "empty": [""] * len(self._missions),
        }[cfg.instruction]
        encoded = [self.vocab.encode(s) for s in shown]
        self._w_len = np.asarray([len(e) for e in encoded], dtype=np.int64)
        self._w_ptr = np.cumsum(self._w_len) - self._w_len
        self._word_pool = np.asarray([w for e in encoded for w in e], dtype=np.int64)
        if cfg.instruction == "wrong":
            index = {m: i for i, m in enumerate(self._missions)}
            pools = [[index[m] for m in ms] for ms in self._missions_by_family]
            self._wrong_cnt = np.asarray([len(p) for p in pools], dtype=np.int64)
            self._wrong_ptr = np.cumsum(self._wrong_cnt) - self._wrong_cnt
            self._wrong_pool = np.asarray([m for p in pools for m in p], dtype=np.int64)
            self._wrong_pos = np.full((n_fam, len(self._missions)), -1, dtype=np.int64)
            for f, p in enumerate(pools):
                self._wrong_pos[f, p] = np.arange(len(p))
        self._encoded: dict[str, list[int]] = {}

    # -- public API --------------------------------------------------------------------------
    def sample(self, batch_size: int, pad_to: int | None = None, seed: int | None = None) -> Batch:
        """``batch_size`` sequences, right-padded to the longest (or to ``pad_to``).

        With ``seed`` the builder's stream is re-seeded first, so the batch is a pure function of
        ``seed`` (given the store, the knobs and the builder's own seed, which fixes the Zipf rank
        order of the levels): training uses ``seed = f(run seed, step)`` to resume and to split
        steps across DataLoader workers exactly. Without ``seed`` the builder's stream goes on.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer):
            raise TrajbenchError(f"batch_size must be an integer, got {batch_size!r}")
        if batch_size < 1:
            raise TrajbenchError(f"batch_size must be >= 1, got {batch_size}")
        if pad_to is not None and pad_to < 0:
            raise TrajbenchError(f"pad_to must be >= 0 or None, got {pad_to}")
        if seed is not None:
            self.rng = np.random.default_rng(_check_seed(seed))
        slots, pool = self._plan(int(batch_size))
        return _gather(slots, pool, self._lookups, self.n_actions, pad_to)

    def mission_ids(self, mission: str, family: int = 0) -> list[int]:
        """Token ids of ``mission`` as the instruction mode shows it (``wrong``: another mission)."""
        shown = shown_mission(
            mission,
            self.config.instruction,
            self._missions_by_family[family],
            _Randrange(self.rng),
        )
        ids = self._encoded.get(shown)
        if ids is None:
            ids = self._encoded[shown] = self.vocab.encode(shown)
        return list(ids)

    def max_episode_length(self) -> int:
        return int(self._length.max())

    # -- sampling ------------------------------------------------------------------------------
    def _plan(self, B: int) -> tuple[_Slots, np.ndarray]:
        """Every row's runs of tokens. Draw order: queries, same-level pieces, mode-specific."""
        cfg, rng = self.config, self.rng
        u = rng.random(B)
        if cfg.zipf:
            qk = np.searchsorted(self._cum_weights, u * self._cum_weights[-1], side="right")
            qk = np.minimum(qk, len(self._query_keys) - 1)
        else:
            qk = _floor(u, len(self._query_keys))
        q = self._q_rows[self._q_ptr[qk] + _floor(rng.random(B), self._q_cnt[qk])]
        key = self._key[q]
        coin = rng.random(B)

        # Layout of a row: [transitions] [words, steps] x pieces, query words, query steps, pad.
        indirect = pieces = None
        if cfg.mode != "none":
            c, s, e = self._same_level_pieces(key, q)
            budget = (e - s).sum(1)
            if cfg.mode == "shuffled":
                indirect = self._shuffled_steps(c, s, e, budget)
            elif cfg.mode == "isolated":
                indirect = self._other_level_steps(key, budget)
            elif cfg.p_bursty is None and cfg.mode == "bursty":
                pieces = c, s, e
            elif cfg.p_bursty is None:  # trajectories
                pieces = self._other_level_pieces(key, budget)
            else:  # a mix of bursty and trajectories rows
                traj = np.flatnonzero(coin >= cfg.p_bursty)
                tc, ts, te = self._other_level_pieces(key[traj], budget[traj])
                k = c.shape[1] if len(traj) < B else 0
                P = max(tc.shape[1], k)
                pc, ps, pe = (np.zeros((B, P), dtype=np.int64) for _ in range(3))
                pc[:, :k], ps[:, :k], pe[:, :k] = c[:, :k], s[:, :k], e[:, :k]  # bursty rows
                pe[traj] = ps[traj]  # trajectories rows: emptied, then filled
                pc[traj, : tc.shape[1]] = tc
                ps[traj, : tc.shape[1]] = ts
                pe[traj, : tc.shape[1]] = te
                pieces = pc, ps, pe
        n_ind = 1 if indirect is not None else 0
        P = pieces[0].shape[1] if pieces is not None else 0
        qw = n_ind + 2 * P
        sl = _Slots(B, qw + 3)
        mission = np.full((B, qw + 3), -1, dtype=np.int64)
        if indirect is not None:
            sl.kind[:, 0] = _INDIRECT
            sl.base[:, 0] = len(self._word_pool) + np.cumsum(budget) - budget
            sl.length[:, 0] = budget
        if pieces is not None:
            pc, ps, pe = pieces
            n = pe - ps
            words, steps = slice(n_ind, qw, 2), slice(n_ind + 1, qw, 2)
            sl.kind[:, words] = _WORDS
            sl.kind[:, steps] = _STEPS
            sl.base[:, steps] = self._offset[pc] + ps
            sl.length[:, steps] = n
            mission[:, words] = np.where(n > 0, self._mission[pc], -1)
            sl.level[:, words] = sl.level[:, steps] = self._level[pc]
            sl.episode[:, words] = sl.episode[:, steps] = self._episode_id[pc]
        sl.kind[:, qw], sl.kind[:, qw + 1] = _WORDS, _STEPS
        sl.query[:, qw : qw + 2] = True
        mission[:, qw] = self._mission[q]
        sl.level[:, qw : qw + 2] = self._level[q, None]
        sl.episode[:, qw : qw + 2] = self._episode_id[q, None]
        sl.base[:, qw + 1], sl.length[:, qw + 1] = self._offset[q], self._length[q]
        # Mission words: the shown form of each word run's mission.
        has_words = mission >= 0
        shown = self._shown_missions(np.nonzero(has_words)[0], mission[has_words], self._family[q])
        sl.base[has_words] = self._w_ptr[shown]
        sl.length[has_words] = self._w_len[shown]
        pool = self._word_pool if indirect is None else np.concatenate([self._word_pool, indirect])
        return sl, pool

    def _same_level_pieces(self, key: np.ndarray, q: np.ndarray):
        """``k`` context episodes of each row's level (never the query) and their cuts [s, e)."""
        cfg, rng = self.config, self.rng
        k, B = cfg.k, len(key)
        qpos = self._ctx_pos[q]
        m = self._ctx_cnt[key] - (qpos >= 0)  # >= 1 for every query row
        limit = max(_SORT_DRAW_LIMIT, 2 * k)
        lo, hi = int(m.min()), int(m.max())
        if lo >= k and hi <= limit:  # the usual case: every row draws by sorting random keys
            pick = _first_k_of_permutations(rng, m, k)
        else:
            pick = np.empty((B, k), dtype=np.int64)
            # Fewer than k others: draw with replacement.
            few = np.flatnonzero(m < k)
            if len(few):
                pick[few] = _floor(rng.random((len(few), k)), m[few, None])
            mid = np.flatnonzero((m >= k) & (m <= limit))
            if len(mid):
                pick[mid] = _first_k_of_permutations(rng, m[mid], k)
            big = np.flatnonzero(m > limit)
            if len(big):
                pick[big] = _k_distinct(rng, m[big], k)
        pick += (qpos[:, None] >= 0) & (pick >= qpos[:, None])  # skip the query's own place
        c = self._ctx_rows[self._ctx_ptr[key][:, None] + pick]
        s, e = self._cut(c)
        cap = cfg.context_steps
        if cap is not None:
            n = e - s
            later = np.cumsum(n[:, ::-1], axis=1)[:, ::-1] - n  # steps in the later pieces
            s = e - np.clip(cap - later, 0, n)  # keep the last ``cap`` steps
        return c, s, e

    def _cut(self, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Whole episodes ``[0, length)``, or with ``partial`` a random contiguous piece."""
        n = self._length[c]
        if not self.config.partial:
            return np.zeros_like(n), n
        s = _floor(self.rng.random(c.shape), n)
        e = s + 1 + _floor(self.rng.random(c.shape), n - s)
        return s, e

    def _shuffled_steps(self, c, s, e, budget) -> np.ndarray:
        """The steps of the pieces of each row, in a random order within the row."""
        n = (e - s).ravel()
        steps = np.repeat((self._offset[c] + s).ravel() - (np.cumsum(n) - n), n)
        steps += _iota(len(steps))
        # Each row's steps in the order of a uniformly random permutation of its budget.
        order = _first_k_of_permutations(self.rng, budget, int(budget.max()))
        order += (np.cumsum(budget) - budget)[:, None]
        if int(budget.min()) < order.shape[1]:
            return steps.take(order[_iota(order.shape[1])[None, :] < budget[:, None]])
        return steps.take(order.reshape(-1))

    def _other_level_pieces(self, key: np.ndarray, budget: np.ndarray):
        """Episodes of other levels of the family, appended until each row's budget is filled.

        Returns ``(c, s, e)`` matrices of pieces per row; unused places are empty (``s == e``).
        """
        n_rows = len(key)
        fam = self._key_family[key]
        other = self._fam_cnt[fam] - self._ctx_cnt[key]
        own_start = self._ctx_ptr[key] - self._fam_ptr[fam]
        left = budget.copy()
        active = np.arange(n_rows)
        blocks = []
        while len(active):
            a = active
            every = len(a) == n_rows
            # Enough pieces that most rows fill up in this round: episodes of mean length.
            mean = float(self._fam_mean_len[fam[a]].min())
            width = int(min(max(self.config.k, np.ceil(1.25 * left[a].max() / mean)), 256))
            u = _floor(self.rng.random((len(a), width)), other[a, None])
            u += np.where(u >= own_start[a, None], self._ctx_cnt[key[a], None], 0)
            c = self._ctx_rows[self._fam_ptr[fam[a], None] + u]
            s, e = self._cut(c)
            n = e - s
            before = np.cumsum(n, axis=1) - n
            take = np.clip(left[a, None] - before, 0, n)  # the last piece is cut to fit
            if every:
                blocks.append((c, s, s + take))
                left -= take.sum(1)
                active = np.flatnonzero(left > 0)
                continue
            block = tuple(np.zeros((n_rows, width), dtype=np.int64) for _ in range(3))
            block[0][a], block[1][a], block[2][a] = c, s, s + take
            blocks.append(block)
            left[a] -= take.sum(1)
            active = a[left[a] > 0]
        if len(blocks) == 1:
            return blocks[0]
        if not blocks:
            return tuple(np.zeros((n_rows, 0), dtype=np.int64) for _ in range(3))
        return tuple(np.concatenate([b[i] for b in blocks], axis=1) for i in range(3))

    def _other_level_steps(self, key: np.ndarray, budget: np.ndarray) -> np.ndarray:
        """``budget`` uniform transitions of other levels of the family, per row."""
        if self._ctx_steps is None:
            n = self._length[self._ctx_rows]
            steps = np.repeat(self._offset[self._ctx_rows] - (np.cumsum(n) - n), n)
            self._ctx_steps = steps + np.arange(len(steps))
        kk = np.repeat(key, budget)
        fam = self._key_family[kk]
        other = self._fam_steps_cnt[fam] - self._steps_cnt[kk]
        u = _floor(self.rng.random(len(kk)), other)
        own_start = self._steps_ptr[kk] - self._fam_steps_ptr[fam]
        u += np.where(u >= own_start, self._steps_cnt[kk], 0)
        return self._ctx_steps[self._fam_steps_ptr[fam] + u]

    def _shown_missions(self, row: np.ndarray, m: np.ndarray, row_family) -> np.ndarray:
        """Index (in ``self._missions``) of the mission shown for true mission ``m`` in ``row``.

        ``wrong`` draws, per row and true mission, one other mission of the row's family, so a
        level's episodes in one sequence all show the same wrong mission.
        """
        if self.config.instruction != "wrong":
            return m
        n_missions = len(self._missions)
        pairs, inverse = np.unique(row * n_missions + m, return_inverse=True)
        pr, pm = pairs // n_missions, pairs % n_missions
        f = row_family[pr]
        d = _floor(self.rng.random(len(pairs)), self._wrong_cnt[f] - 1)
        d += d >= self._wrong_pos[f, pm]
        return self._wrong_pool[self._wrong_ptr[f] + d][inverse.ravel()]


def _first_k_of_permutations(rng: np.random.Generator, m: np.ndarray, k: int) -> np.ndarray:
    """Per row, the first ``k`` of a uniformly random permutation of ``range(m[row])``."""
    width = int(m.max())
    r = rng.random((len(m), width))
    if int(m.min()) < width:
        r[_iota(width)[None, :] >= m[:, None]] = 2.0
    return np.argsort(r, axis=1)[:, :k]


def _k_distinct(rng: np.random.Generator, m: np.ndarray, k: int) -> np.ndarray:
    """Per row, ``k`` distinct values of ``range(m[row])`` (``m >= k``) in a uniformly random order.

    Floyd's algorithm gives a uniformly random ``k``-subset in ``k`` vectorized draws; a random
    permutation of the ``k`` columns then makes every order equally likely.
    """
    out = np.empty((len(m), k), dtype=np.int64)
    u = rng.random((len(m), k))
    for i in range(k):
        j = m - k + i
        t = _floor(u[:, i], j + 1)
        out[:, i] = np.where((out[:, :i] == t[:, None]).any(1), j, t)
    return np.take_along_axis(out, np.argsort(rng.random((len(m), k)), axis=1), axis=1)


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise TrajbenchError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)

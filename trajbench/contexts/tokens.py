"""Token assembly: runs of mission words and steps, gathered into a right-padded :class:`Batch`.

The builder (and the transformer policy, for its rollout contexts) describes each row as *runs*:
a run of mission words, a run of consecutive steps of one episode, or a run of arbitrary steps.
:func:`assemble` and the builder's fast path expand the runs into the token arrays of
:mod:`trajbench.batch` in a few vectorized passes over the cells.

Example:
    >>> import numpy as np
    >>> table = StepTable.from_episodes(np.zeros((3, 2), np.uint8), [1, 2, 3], [0, 0, 1.0],
    ...                                 offsets=[0], lengths=[3], levels=[7], episode_ids=[0])
    >>> plan = RowPlan()
    >>> plan.add_words([1], level=7, episode_id=0, query=True)
    >>> plan.add_steps(range(0, 3), query=True)
    >>> batch = assemble([plan], table, n_actions=5)
    >>> batch.kind.tolist(), batch.target.tolist()
    ([[1, 2, 2, 2]], [[-100, 1, 2, 3]])
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..batch import IGNORE, PAD, STEP, WORD, Batch, hidden_action, start_action
from ..policy import EpisodeRecord
from .sampling import iota

# Segment (run) kinds: a run of mission words (ids looked up in the pool), a run of
# consecutive steps of one episode, a run of arbitrary steps (indices looked up in the pool), and
# the right padding of a row.
SEG_PAD, SEG_WORDS, SEG_STEPS, SEG_INDIRECT = 0, 1, 2, 3
_TOKEN_KIND = np.array([PAD, WORD, STEP, STEP], dtype=np.int8)
#: Largest observation table (bytes) copied once with zero sentinel rows; larger ones are
#: gathered in place (clipped) and the non-step cells zeroed after.
_OBS_COPY_LIMIT = 256 << 20


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
    def from_records(cls, records: list[EpisodeRecord], n_features: int) -> StepTable:
        """The steps of ``records`` laid end to end."""
        if not records:
            none = np.zeros(0, np.int64)
            obs = np.zeros((0, n_features), np.uint8)
            return cls(obs, none, np.zeros(0, np.float32), none, none, none)
        lengths = [len(r) for r in records]
        return cls.from_episodes(
            np.concatenate([r.obs for r in records]),
            np.concatenate([r.actions for r in records]).astype(np.int64),
            np.concatenate([r.rewards for r in records]).astype(np.float32),
            np.cumsum(lengths) - np.asarray(lengths),
            lengths,
            [r.level for r in records],
            [r.episode_id for r in records],
        )

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
            self.segments.append((SEG_WORDS, ids, int(level), int(episode_id), bool(query)))

    def add_steps(self, steps, query: bool) -> None:
        if isinstance(steps, range) and steps.step == 1:
            if len(steps):
                self.segments.append((SEG_STEPS, steps.start, len(steps), bool(query)))
            return
        steps = [int(g) for g in steps]
        if steps:
            self.segments.append((SEG_INDIRECT, steps, bool(query)))

    def __len__(self) -> int:
        return sum(s[2] if s[0] == SEG_STEPS else len(s[1]) for s in self.segments)

    def _tokens(self, name: str) -> list:
        out: list = []
        for seg in self.segments:
            if seg[0] == SEG_WORDS:
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
                steps = list(range(seg[1], seg[1] + seg[2])) if seg[0] == SEG_STEPS else seg[1]
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


class Slots:
    """A batch laid out as ``[B, W]`` runs of tokens, each row's runs in order, left to right.

    A slot is a run of mission words (ids looked up in the pool from ``base``), of consecutive
    steps of one episode (from step ``base``), or of arbitrary steps (step indices looked up in the
    pool). Word and one-episode runs carry their ``level`` and ``episode``; arbitrary steps read
    theirs from the table. Slots of length 0 hold nothing; the last column is each row's padding,
    sized by :func:`gather`.
    """

    def __init__(self, B: int, W: int):
        self.kind = np.zeros((B, W), dtype=np.int8)  # SEG_PAD until set
        self.base = np.zeros((B, W), dtype=np.int64)
        self.length = np.zeros((B, W), dtype=np.int64)
        self.query = np.zeros((B, W), dtype=bool)
        self.level = np.full((B, W), -1, dtype=np.int64)  # of words and one-episode step runs
        self.episode = np.full((B, W), -1, dtype=np.int64)


def gather(sl: Slots, pool: np.ndarray, lk: _Lookups, n_actions: int, pad_to) -> Batch:
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
    src += iota(BT)
    in_pool = (cell_kind & 1).view(bool)  # words and arbitrary steps are looked up in the pool
    src[in_pool] = pool.take(src[in_pool])
    is_word = cell_kind == SEG_WORDS
    is_step = cell_kind >= SEG_STEPS
    level = np.repeat(sl.level.reshape(-1), length)
    episode = np.repeat(sl.episode.reshape(-1), length)
    if (sl.kind == SEG_INDIRECT).any():
        loose = cell_kind == SEG_INDIRECT
        g = src[loose]
        level[loose] = lk.level.take(g)
        episode[loose] = lk.episode_id.take(g)
    gi = np.where(is_step, src, n + (cell_kind == SEG_PAD))  # words read n, padding n + 1
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
        # A context step is one transition (o_t, a_t, r_t): what came before it is not shown, so
        # that unordered modes show single transitions and ordered ones carry it only by order.
        prev_action=shaped(np.where(ctx_step, hidden_action(n_actions), lk.prev_action.take(gi))),
        prev_reward=shaped(np.where(ctx_step, np.float32(0.0), lk.prev_reward.take(gi))),
        shown_action=shaped(np.where(ctx_step, action, hidden_action(n_actions))),
        shown_reward=shaped(np.where(ctx_step, lk.reward.take(gi), np.float32(0.0))),
        target=shaped(np.where(qry_step, action, IGNORE)),
        loss_mask=shaped(qry_step),
        is_query=shaped(query),
        pad=shaped(cell_kind == SEG_PAD),
        level=shaped(level),
        episode_id=shaped(episode),
        t=shaped(lk.t.take(gi)),
    )


def assemble(
    plans: list[RowPlan], table: StepTable, n_actions: int, pad_to: int | None = None
) -> Batch:
    """Gather the planned tokens of every row from ``table`` into a right-padded :class:`Batch`."""
    W = max((len(p.segments) for p in plans), default=0) + 1
    sl = Slots(len(plans), W)
    pool: list[int] = []
    lk = table.lookups(n_actions)
    for r, plan in enumerate(plans):
        for j, seg in enumerate(plan.segments):
            kind, query = seg[0], seg[-1]
            if kind == SEG_STEPS:
                first, n = seg[1], seg[2]
                last = first + n - 1
                if (
                    lk.episode_id[first] == lk.episode_id[last] >= 0
                    and lk.t[last] - lk.t[first] == n - 1
                ):  # a run within one episode
                    sl.level[r, j], sl.episode[r, j] = lk.level[first], lk.episode_id[first]
                    sl.kind[r, j], sl.base[r, j], sl.length[r, j], sl.query[r, j] = seg
                    continue
                kind, seg = SEG_INDIRECT, (SEG_INDIRECT, list(range(first, first + n)), query)
            sl.kind[r, j], sl.query[r, j] = kind, query
            sl.base[r, j], sl.length[r, j] = len(pool), len(seg[1])
            pool += seg[1]
            if kind == SEG_WORDS:
                sl.level[r, j], sl.episode[r, j] = seg[2], seg[3]
    return gather(sl, np.asarray(pool, dtype=np.int64), lk, n_actions, pad_to)

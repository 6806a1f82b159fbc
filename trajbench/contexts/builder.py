"""The prompt builder: packs stored episodes into context + query token sequences.

A training sequence is a *context* followed by a *query* episode of some level. Every sequence is
laid out the same way, whatever its mode::

    <bos> steps of segment 1 | <bos> steps of segment 2 | ... | <bos> mission words | query steps

For each row the builder first draws the query, then ``k`` distinct context episodes of the
query's level (never the query, and never an episode with the query's own action sequence); after
``partial`` cuts and the ``context_steps`` cap, their lengths are the row's *segment lengths*.
Every mode fills exactly those segments, so modes share the number of context tokens, the
delimiters (one ``<bos>`` per segment) and the mission-word policy (words only on the query);
what differs is only what the mode names (:mod:`trajbench.contexts.modes`):

- same-level support shows the drawn episodes themselves; other-level support shows, in segment
  ``i``, ``n_i`` consecutive steps of a distinct episode of another level of the family, drawn
  among those at least ``n_i`` long (its start, or a random window with ``partial``; where no
  other-level episode is that long, a few distinct ones laid end to end);
- unordered modes pour the same steps, in a uniformly random order, into the same segments.

So ``shuffled`` is ``bursty`` with its steps permuted, ``isolated`` is ``trajectories`` permuted,
and ``bursty`` and ``trajectories`` differ only in which level the steps come from. No episode
appears twice in one context. Guaranteed (and tested): the draws that decide a row's query, its
shown mission and its segment lengths come first, in an order independent of ``mode``,
``p_bursty`` and ``instruction``, and every mode accepts the same queries; so builders on one
store with one seed and the same other knobs give, for the same ``sample(n, seed=s)``, the same
queries, query words and segment lengths in every mode (``none`` shows no context).

Sampling is vectorized over the batch: rows are a ``[batch, runs]`` grid of runs of words or
steps (:class:`~trajbench.contexts.tokens.Slots`), expanded into tokens in a few passes.

Example:
    >>> from trajbench.contexts import ContextBuilder          # doctest: +SKIP
    >>> builder = ContextBuilder(store, mode="bursty", k=4, seed=0)
    >>> batch = builder.sample(64)
"""

from __future__ import annotations

from dataclasses import asdict, fields

import numpy as np

from ..batch import Batch
from ..errors import TrajbenchError
from ..vocab import MissionVocab
from .config import ContextConfig
from .index import StoreIndex
from .modes import get_mode
from .sampling import check_seed, first_k_of_permutations, floor, iota, k_distinct
from .tokens import SEG_INDIRECT, SEG_STEPS, SEG_WORDS, Slots, gather

#: Largest pool that draws its k episodes by sorting random keys (larger: Floyd's algorithm).
_SORT_DRAW_LIMIT = 64
#: Draws of an other-level episode for a segment before falling back to several episodes.
_REDRAWS = 16


class ContextBuilder:
    """Samples context + query sequences from an episode store.

    Args:
        store: An episode store (``trajbench.data.load``).
        seed: Seed of the builder's own random stream: same store, knobs and seed, same batches.
        vocab: Mission vocabulary (a trained model's); built from the store's missions if None.
        levels: Restrict query levels to these (default: every level in the store).
        config: A :class:`ContextConfig`; keyword knobs (``mode="bursty", k=4, ...``) override it.

    An episode serves as a query if it is a successful episode of a query demonstrator whose
    level has ``k`` other context episodes with other action sequences, and whose family has ``k``
    context episodes of other levels, with steps enough to fill the level's segments (see
    ``StoreIndex._can_fill``). Query levels are drawn first (uniformly, or by Zipf weight),
    then an episode of that level.

    Raises:
        TrajbenchError: a bad knob, an empty store, or no level that can serve as a query.
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
        self.config = _merged_config(config, knobs)
        self.mode = get_mode(self.config.mode)
        self.rng = np.random.default_rng(check_seed(seed))
        self.vocab = vocab or MissionVocab.build(store.episodes["mission"].unique())
        self.index = StoreIndex(store, self.config, self.vocab, levels, seed)
        self.table, self.n_actions = self.index.table, self.index.n_actions

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
            self.rng = np.random.default_rng(check_seed(seed))
        slots, pool = self._plan(int(batch_size))
        return gather(slots, pool, self.index.lookups, self.n_actions, pad_to)

    # -- one batch -----------------------------------------------------------------------------
    def _plan(self, B: int) -> tuple[Slots, np.ndarray]:
        """Every row's runs of tokens. Draw order: queries, missions, segments, support, order."""
        cfg, ix, rng = self.config, self.index, self.rng
        u = rng.random(B)
        if cfg.zipf:
            qk = np.searchsorted(ix.cum_weights, u * ix.cum_weights[-1], side="right")
            qk = np.minimum(qk, len(ix.query_keys) - 1)
        else:
            qk = floor(u, len(ix.query_keys))
        q = ix.q_rows[ix.q_ptr[qk] + floor(rng.random(B), ix.q_cnt[qk])]
        key = ix.key[q]
        coin = rng.random(B)
        # Drawn whatever the instruction and before anything a mode draws, so that a row shows
        # the same (wrong) mission in every mode.
        pick_mission = rng.random(B)
        K = cfg.k if self.mode.has_context else 0
        sl = Slots(B, 2 * K + 3)
        pool = ix.word_pool
        if K:
            c, s, e = self._same_level_pieces(key, q)
            n = e - s
            same = np.full(B, self.mode.support == "same")
            if cfg.p_bursty is not None:
                same = coin < cfg.p_bursty
            steps = self._segment_steps(c, s, same, key, q, n)
            if not self.mode.ordered:
                steps = self._permute_within_rows(steps, n.sum(1))
            seg_start = len(pool) + np.cumsum(n.ravel()).reshape(n.shape) - n
            sl.kind[:, 0 : 2 * K : 2] = SEG_WORDS
            sl.kind[:, 1 : 2 * K : 2] = SEG_INDIRECT
            sl.base[:, 0 : 2 * K : 2] = ix.w_ptr[ix.bos_run]
            sl.length[:, 0 : 2 * K : 2] = (n > 0).astype(np.int64)  # one <bos> per segment
            sl.base[:, 1 : 2 * K : 2] = seg_start
            sl.length[:, 1 : 2 * K : 2] = n
            pool = np.concatenate([pool, steps])
        qw = 2 * K
        shown = self._shown_missions(q, pick_mission)
        sl.kind[:, qw], sl.kind[:, qw + 1] = SEG_WORDS, SEG_STEPS
        sl.query[:, qw : qw + 2] = True
        sl.base[:, qw], sl.length[:, qw] = ix.w_ptr[shown], ix.w_len[shown]
        sl.base[:, qw + 1], sl.length[:, qw + 1] = ix.offset[q], ix.length[q]
        sl.level[:, qw : qw + 2] = ix.level[q, None]
        sl.episode[:, qw : qw + 2] = ix.episode_id[q, None]
        return sl, pool

    def _same_level_pieces(self, key: np.ndarray, q: np.ndarray):
        """``k`` distinct context episodes of each row's level (never the query nor a copy of its
        action sequence), and their cuts ``[s, e)``."""
        cfg, ix, rng = self.config, self.index, self.rng
        k = cfg.k
        lo, hi = ix.copy_range(q)  # the query's own copies within its level's context episodes
        m = ix.ctx_cnt[key] - (hi - lo)
        limit = max(_SORT_DRAW_LIMIT, 2 * k)
        if int(m.max()) <= limit:
            pick = first_k_of_permutations(rng, m, k)
        else:
            pick = np.empty((len(key), k), dtype=np.int64)
            small = np.flatnonzero(m <= limit)
            big = np.flatnonzero(m > limit)
            if len(small):
                pick[small] = first_k_of_permutations(rng, m[small], k)
            pick[big] = k_distinct(rng, m[big], k)
        pick += np.where(pick >= lo[:, None], (hi - lo)[:, None], 0)  # skip the copies
        c = ix.ctx_rows[ix.ctx_ptr[key][:, None] + pick]
        s, e = self._cut(c, ix.length[c])
        if cfg.context_steps is not None:
            n = e - s
            later = np.cumsum(n[:, ::-1], axis=1)[:, ::-1] - n  # steps in the later pieces
            s = e - np.clip(cfg.context_steps - later, 0, n)  # keep the last ``cap`` steps
        return c, s, e

    def _cut(self, c: np.ndarray, length: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Whole episodes ``[0, length)``, or with ``partial`` a random contiguous piece: ``s``
        uniform in ``[0, length)``, then ``e`` uniform in ``(s, length]``."""
        if not self.config.partial:
            return np.zeros_like(length), length
        s = floor(self.rng.random(c.shape), length)
        e = s + 1 + floor(self.rng.random(c.shape), length - s)
        return s, e

    def _segment_steps(self, c, s, same, key, q, n) -> np.ndarray:
        """Every row's context steps, segment after segment: same-level rows show their pieces,
        other-level rows ``n_i`` steps of a distinct episode of another level in segment ``i``."""
        ix = self.index
        starts = ix.offset[c] + s
        other = np.flatnonzero(~same)
        patches = {}
        if len(other):
            starts[other], patches = self._other_level_windows(
                key[other], ix.level[q[other]], n[other]
            )
        steps = _expand(starts, n)
        if patches:  # rare: no single other-level episode was long enough for the segment
            seg_start = (np.cumsum(n.ravel()) - n.ravel()).reshape(n.shape)
            for (row, i), filled in patches.items():
                at = seg_start[other[row], i]
                steps[at : at + len(filled)] = filled
        return steps

    def _other_level_windows(self, key, level, n) -> tuple[np.ndarray, dict]:
        """Per row and segment, the first step of ``n`` steps of a distinct episode of another
        level of the family: drawn uniformly among the family's episodes at least ``n`` long
        (a random window of it with ``partial``, else its start).

        Returns the first steps ``[rows, k]`` and, for the rare segments no single episode fits,
        ``{(row, segment): step indices}`` of a few distinct episodes laid end to end.
        """
        ix, rng = self.index, self.rng
        rows, k = n.shape
        fam = ix.key_family[key]
        chosen = np.full((rows, k), -1, dtype=np.int64)
        for i in range(k):
            lo, hi = ix.long_enough(fam, n[:, i])
            todo = np.flatnonzero(hi > lo)
            for _ in range(_REDRAWS):
                if not len(todo):
                    break
                pick = ix.len_rows[lo[todo] + floor(rng.random(len(todo)), hi[todo] - lo[todo])]
                fresh = (ix.level[pick] != level[todo]) & (pick[:, None] != chosen[todo]).all(1)
                chosen[todo[fresh], i] = pick[fresh]
                todo = todo[~fresh]
            for r in todo:  # rare: the redraws kept hitting the query's level or a chosen one
                fits = ix.len_rows[lo[r] : hi[r]]
                fits = fits[(ix.level[fits] != level[r]) & ~np.isin(fits, chosen[r])]
                if len(fits):
                    chosen[r, i] = fits[rng.integers(len(fits))]
        length = ix.length[np.maximum(chosen, 0)]
        slack = np.maximum(length - n, 0)
        offset = floor(rng.random((rows, k)), slack + 1) if self.config.partial else 0
        starts = ix.offset[np.maximum(chosen, 0)] + offset
        patches = {}
        for r in np.unique(np.nonzero(chosen < 0)[0]):
            used = chosen[r][chosen[r] >= 0]
            for i in np.flatnonzero(chosen[r] < 0):
                by, patches[(int(r), int(i))] = self._fill(fam[r], level[r], int(n[r, i]), used)
                used = np.concatenate([used, by])
        return starts, patches

    def _fill(
        self, family: int, level: int, n: int, used: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """``n`` steps of distinct other-level episodes not in ``used``, laid end to end, longest
        first: the episodes and their steps. :class:`StoreIndex` admits only queries whose
        family holds enough such steps, whatever the row's other segments took."""
        ix = self.index
        lo, hi = ix.fam_ptr[family], ix.fam_ptr[family] + ix.fam_cnt[family]
        rows = ix.len_rows[lo:hi][::-1]
        rows = rows[(ix.level[rows] != level) & ~np.isin(rows, used)]
        rows = rows[: int(np.searchsorted(np.cumsum(ix.length[rows]), n)) + 1]
        steps = [np.arange(ix.offset[r], ix.offset[r] + ix.length[r]) for r in rows]
        filled = np.concatenate(steps)[:n] if steps else np.zeros(0, np.int64)
        if len(filled) < n:  # (cannot happen for an admitted query)
            raise TrajbenchError(
                f"{ix.families[family]} has too few steps in episodes of other levels to fill a "
                f"context segment of {n} steps"
            )
        return rows, filled

    def _permute_within_rows(self, steps: np.ndarray, budget: np.ndarray) -> np.ndarray:
        """Each row's steps (laid end to end in ``steps``) in a uniformly random order."""
        if not len(steps):
            return steps
        order = first_k_of_permutations(self.rng, budget, int(budget.max()))
        order += (np.cumsum(budget) - budget)[:, None]
        if int(budget.min()) < order.shape[1]:
            return steps.take(order[iota(order.shape[1])[None, :] < budget[:, None]])
        return steps.take(order.reshape(-1))

    def _shown_missions(self, q: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Index of the mission shown on each query ``q``: its own, or for ``wrong`` one of its
        family's missions that says something else (picked by the uniforms ``u``)."""
        ix = self.index
        if self.config.instruction != "wrong":
            return ix.mission[q]
        pair = ix.pair[q]
        return ix.wrong_pool[ix.wrong_ptr[pair] + floor(u, ix.wrong_cnt[pair])]


def _expand(starts: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Consecutive step indices ``starts[r, i] + 0 .. n[r, i] - 1``, segments laid end to end."""
    flat_n = n.ravel()
    steps = np.repeat(starts.ravel() - (np.cumsum(flat_n) - flat_n), flat_n)
    return steps + iota(len(steps))


def _merged_config(config: ContextConfig | None, knobs: dict) -> ContextConfig:
    """``config`` with keyword ``knobs`` on top, validated."""
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
    return cfg

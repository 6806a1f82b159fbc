"""The prompt builder: packs stored episodes into context + query token sequences.

A training sequence is a *context* followed by a *query* episode of some level. The context modes
(:mod:`trajbench.contexts.modes`) differ in one property at a time: where the context's steps come
from (the query's own level or other levels of its family) and whether they are whole episodes in
order or single transitions in random order.

Equal budgets: for every sequence the builder first draws ``k`` context episodes of the query's
level (never the query itself; distinct when the level has at least ``k`` others); their step
count ``b`` (after ``partial`` cuts and the ``context_steps`` cap) is the context budget.
``bursty`` shows those episodes; ``shuffled`` shows exactly the same steps, permuted;
``trajectories`` appends whole episodes of other levels until ``b`` steps (the last one cut to
fit); ``isolated`` samples ``b`` transitions of other levels. So modes are compared at equal
context length, and ``shuffled`` differs from ``bursty`` only in order. Mission words are extra
tokens, not context steps.

Guaranteed (and tested): the draws that decide a row's query and its budget come first, in an
order independent of ``mode``, ``p_bursty`` and ``instruction``; so builders on one store with
one seed and the same other knobs give, for the same ``sample(n, seed=s)``, the same query and
budget in every row whatever their modes (when the same levels can serve as queries in both).

Sampling is vectorized over the batch: rows are a ``[batch, runs]`` grid of runs of words or
steps (:class:`~trajbench.contexts.tokens.Slots`), expanded into tokens in a few passes.

Example:
    >>> from trajbench.contexts import ContextBuilder          # doctest: +SKIP
    >>> builder = ContextBuilder(store, mode="bursty", k=4, seed=0)
    >>> batch = builder.sample(64)
    >>> batch.level.shape, batch.is_query.dtype
"""

from __future__ import annotations

from dataclasses import asdict, fields

import numpy as np
import pandas as pd

from ..batch import Batch
from ..errors import TrajbenchError
from ..vocab import MissionVocab, shown_mission, template
from .config import ContextConfig
from .modes import get_mode
from .sampling import (
    Randrange,
    check_seed,
    csr,
    first_k_of_permutations,
    floor,
    iota,
    k_distinct,
)
from .tokens import SEG_INDIRECT, SEG_STEPS, SEG_WORDS, Slots, StepTable, gather

#: Largest same-level pool that draws its k episodes by sorting random keys (larger: Floyd's).
_SORT_DRAW_LIMIT = 64


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
        self.config = _merged_config(config, knobs)
        self.mode = get_mode(self.config.mode)
        self.store = store
        self.n_actions = int(store.encoding.n_actions)
        self.rng = np.random.default_rng(check_seed(seed))
        self.eps = store.episodes.reset_index(drop=True)
        if len(self.eps) == 0:
            raise TrajbenchError("the episode store is empty")
        self.vocab = vocab or MissionVocab.build(self.eps["mission"].unique())
        self._index_steps()
        self._index_levels()
        self._index_context_episodes()
        self._index_queries(levels, seed)
        self._index_missions()

    # -- indexes built once per builder --------------------------------------------------------
    def _index_steps(self) -> None:
        """The store's steps as one :class:`StepTable` and its gather tables."""
        eps, store = self.eps, self.store
        self._offset = eps["offset"].to_numpy(np.int64)
        self._length = eps["length"].to_numpy(np.int64)
        self._level = eps["level"].to_numpy(np.int64)
        self._episode_id = eps["episode_id"].to_numpy(np.int64)
        self.table = StepTable.from_episodes(
            np.asarray(store.obs),
            np.asarray(store.actions),
            np.asarray(store.rewards),
            self._offset,
            self._length,
            self._level,
            self._episode_id,
        )
        self._lookups = self.table.lookups(self.n_actions)

    def _index_levels(self) -> None:
        """Families, and levels as keys sorted by (family, level): a family's keys are contiguous."""
        family, self.families = pd.factorize(self.eps["env_id"], sort=True)
        self._family = family.astype(np.int64)
        level = self._level
        lo = int(level.min())
        span = int(level.max()) - lo + 1
        unique_keys, key = np.unique(self._family * span + (level - lo), return_inverse=True)
        self._key = key.astype(np.int64).ravel()
        self._n_keys = len(unique_keys)
        self._key_family = unique_keys // span

    def _index_context_episodes(self) -> None:
        """Context episodes by key (so by family), each with its place in its key's list, and
        their steps in the same order (for single transitions of other levels)."""
        cfg, eps, key, family = self.config, self.eps, self._key, self._family
        n_fam = len(self.families)
        length = self._length
        ctx_ok = eps["demonstrator"].isin(list(cfg.context_demonstrators)).to_numpy() & (length > 0)
        if not cfg.allow_failed:
            ctx_ok &= eps["success"].to_numpy(bool)
        ctx_idx = np.flatnonzero(ctx_ok)
        order, self._ctx_ptr, self._ctx_cnt = csr(key[ctx_idx], self._n_keys)
        self._ctx_rows = ctx_idx[order]
        self._ctx_pos = np.full(len(eps), -1, dtype=np.int64)
        self._ctx_pos[self._ctx_rows] = (
            np.arange(len(self._ctx_rows)) - self._ctx_ptr[key[self._ctx_rows]]
        )
        fam_cnt = np.bincount(family[self._ctx_rows], minlength=n_fam).astype(np.int64)
        self._fam_ptr, self._fam_cnt = np.cumsum(fam_cnt) - fam_cnt, fam_cnt
        ctx_len = length[self._ctx_rows]
        steps_cnt = np.bincount(key[self._ctx_rows], weights=ctx_len, minlength=self._n_keys)
        self._steps_cnt = steps_cnt.astype(np.int64)
        self._steps_ptr = np.cumsum(self._steps_cnt) - self._steps_cnt
        fam_steps = np.bincount(family[self._ctx_rows], weights=ctx_len, minlength=n_fam)
        self._fam_steps_cnt = fam_steps.astype(np.int64)
        self._fam_steps_ptr = np.cumsum(self._fam_steps_cnt) - self._fam_steps_cnt
        mean_len = self._fam_steps_cnt / np.maximum(self._fam_cnt, 1)
        if cfg.partial:  # a random piece is about a quarter of its episode
            mean_len = mean_len / 4
        self._fam_mean_len = np.maximum(mean_len, 1.0)  # sizes trajectories' rounds of draws
        self._ctx_steps: np.ndarray | None = None  # built on first use

    def _index_queries(self, levels, seed: int) -> None:
        """Which episodes can be queries under these knobs, grouped by level, and Zipf weights."""
        cfg, eps, key = self.config, self.eps, self._key
        p = cfg.p_bursty
        mixed = p is not None
        needs_same = self.mode.support != "none"
        needs_other = (self.mode.support == "other" and not mixed) or (mixed and p < 1)
        valid = (
            eps["demonstrator"].isin(list(cfg.query_demonstrators)).to_numpy()
            & eps["success"].to_numpy(bool)
            & (self._length > 0)
        )
        if needs_same:
            valid &= self._ctx_cnt[key] - (self._ctx_pos >= 0) >= 1
        if needs_other:
            valid &= self._fam_cnt[self._family] - self._ctx_cnt[key] >= 1
        if levels is not None:
            valid &= np.isin(self._level, np.asarray([int(x) for x in levels], dtype=np.int64))
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
        order, self._q_ptr, self._q_cnt = csr(q_key.ravel(), len(self._query_keys))
        self._q_rows = q_idx[order]
        # Zipf weights over the query levels, in a seeded random rank order.
        ranks = np.random.default_rng(check_seed(seed)).permutation(len(self._query_keys))
        self._cum_weights = np.cumsum((ranks + 1.0) ** (-cfg.zipf))

    def _index_missions(self) -> None:
        """The encoded shown form of every episode's mission, and the wrong-mission pools."""
        cfg, eps = self.config, self.eps
        n_fam = len(self.families)
        mission_code, missions = pd.factorize(eps["mission"], sort=True)
        self._mission = mission_code.astype(np.int64)
        self._missions = list(missions)
        self._missions_by_family = [
            sorted(set(eps.loc[self._family == f, "mission"])) for f in range(n_fam)
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
            self.rng = np.random.default_rng(check_seed(seed))
        slots, pool = self._plan(int(batch_size))
        return gather(slots, pool, self._lookups, self.n_actions, pad_to)

    def mission_ids(self, mission: str, family: int = 0) -> list[int]:
        """Token ids of ``mission`` as the instruction mode shows it (``wrong``: another mission)."""
        shown = shown_mission(
            mission,
            self.config.instruction,
            self._missions_by_family[family],
            Randrange(self.rng),
        )
        ids = self._encoded.get(shown)
        if ids is None:
            ids = self._encoded[shown] = self.vocab.encode(shown)
        return list(ids)

    # -- sampling ------------------------------------------------------------------------------
    def _plan(self, B: int) -> tuple[Slots, np.ndarray]:
        """Every row's runs of tokens. Draw order: queries, same-level pieces, mode-specific."""
        cfg, rng = self.config, self.rng
        u = rng.random(B)
        if cfg.zipf:
            qk = np.searchsorted(self._cum_weights, u * self._cum_weights[-1], side="right")
            qk = np.minimum(qk, len(self._query_keys) - 1)
        else:
            qk = floor(u, len(self._query_keys))
        q = self._q_rows[self._q_ptr[qk] + floor(rng.random(B), self._q_cnt[qk])]
        key = self._key[q]
        coin = rng.random(B)

        # Layout of a row: [transitions] [words, steps] x pieces, query words, query steps, pad.
        indirect = pieces = None
        mode = self.mode
        if mode.support != "none":
            c, s, e = self._same_level_pieces(key, q)
            budget = (e - s).sum(1)
            if not mode.ordered and mode.support == "same":
                indirect = self._shuffled_steps(c, s, e, budget)
            elif not mode.ordered:
                indirect = self._other_level_steps(key, budget)
            elif cfg.p_bursty is None and mode.support == "same":
                pieces = c, s, e
            elif cfg.p_bursty is None:
                pieces = self._other_level_pieces(key, budget)
            else:  # a mix of same-level (bursty) and other-level (trajectories) rows
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
        sl = Slots(B, qw + 3)
        mission = np.full((B, qw + 3), -1, dtype=np.int64)
        if indirect is not None:
            sl.kind[:, 0] = SEG_INDIRECT
            sl.base[:, 0] = len(self._word_pool) + np.cumsum(budget) - budget
            sl.length[:, 0] = budget
        if pieces is not None:
            pc, ps, pe = pieces
            n = pe - ps
            words, steps = slice(n_ind, qw, 2), slice(n_ind + 1, qw, 2)
            sl.kind[:, words] = SEG_WORDS
            sl.kind[:, steps] = SEG_STEPS
            sl.base[:, steps] = self._offset[pc] + ps
            sl.length[:, steps] = n
            mission[:, words] = np.where(n > 0, self._mission[pc], -1)
            sl.level[:, words] = sl.level[:, steps] = self._level[pc]
            sl.episode[:, words] = sl.episode[:, steps] = self._episode_id[pc]
        sl.kind[:, qw], sl.kind[:, qw + 1] = SEG_WORDS, SEG_STEPS
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
            pick = first_k_of_permutations(rng, m, k)
        else:
            pick = np.empty((B, k), dtype=np.int64)
            # Fewer than k others: draw with replacement.
            few = np.flatnonzero(m < k)
            if len(few):
                pick[few] = floor(rng.random((len(few), k)), m[few, None])
            mid = np.flatnonzero((m >= k) & (m <= limit))
            if len(mid):
                pick[mid] = first_k_of_permutations(rng, m[mid], k)
            big = np.flatnonzero(m > limit)
            if len(big):
                pick[big] = k_distinct(rng, m[big], k)
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
        s = floor(self.rng.random(c.shape), n)
        e = s + 1 + floor(self.rng.random(c.shape), n - s)
        return s, e

    def _shuffled_steps(self, c, s, e, budget) -> np.ndarray:
        """The steps of the pieces of each row, in a random order within the row."""
        n = (e - s).ravel()
        steps = np.repeat((self._offset[c] + s).ravel() - (np.cumsum(n) - n), n)
        steps += iota(len(steps))
        # Each row's steps in the order of a uniformly random permutation of its budget.
        order = first_k_of_permutations(self.rng, budget, int(budget.max()))
        order += (np.cumsum(budget) - budget)[:, None]
        if int(budget.min()) < order.shape[1]:
            return steps.take(order[iota(order.shape[1])[None, :] < budget[:, None]])
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
            u = floor(self.rng.random((len(a), width)), other[a, None])
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
        u = floor(self.rng.random(len(kk)), other)
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
        d = floor(self.rng.random(len(pairs)), self._wrong_cnt[f] - 1)
        d += d >= self._wrong_pos[f, pm]
        return self._wrong_pool[self._wrong_ptr[f] + d][inverse.ravel()]

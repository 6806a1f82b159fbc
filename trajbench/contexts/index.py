"""What the prompt builder precomputes once per store: steps, levels, episodes and missions.

Everything here is a flat numpy array in "CSR" form (a pool, a start pointer and a count per
group), so that the builder draws whole batches with a few vectorized lookups:

- every step of the store as one :class:`~trajbench.contexts.tokens.StepTable`;
- levels as *keys* sorted by (family, level), so one family's keys are contiguous;
- the context episodes (of the context demonstrators, successful unless ``allow_failed``) of each
  key, and so of each family, sorted within a key by action sequence (so the copies of an
  episode's action sequence are one contiguous range) and, per family, by length;
- the query episodes of each key that can serve under the knobs, and the Zipf weights of the keys;
- the mission shown on each query, with the pool of ``wrong`` missions of every mission.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import TrajbenchError
from ..vocab import MissionVocab, mission_key, template
from .config import ContextConfig
from .sampling import check_seed, csr
from .tokens import StepTable


class StoreIndex:
    """The arrays of one store under one :class:`ContextConfig` (see the module docstring).

    Args:
        store: An episode store (``trajbench.data.load``).
        config: The builder's knobs (validated).
        vocab: The mission vocabulary that encodes the shown missions.
        levels: Restrict query levels to these (None: every level of the store).
        seed: Seed of the Zipf rank order of the query levels.

    Raises:
        TrajbenchError: an empty store, or no episode that can serve as a query.
    """

    def __init__(self, store, config: ContextConfig, vocab: MissionVocab, levels, seed: int):
        self.config, self.vocab = config, vocab
        self.eps = store.episodes.reset_index(drop=True)
        if len(self.eps) == 0:
            raise TrajbenchError("the episode store is empty")
        self.n_actions = int(store.encoding.n_actions)
        self._steps(store)
        self._levels()
        self._context_episodes()
        self._queries(levels, seed)
        self._missions()

    def _steps(self, store) -> None:
        eps = self.eps
        self.offset = eps["offset"].to_numpy(np.int64)
        self.length = eps["length"].to_numpy(np.int64)
        self.level = eps["level"].to_numpy(np.int64)
        self.episode_id = eps["episode_id"].to_numpy(np.int64)
        self.table = StepTable.from_episodes(
            np.asarray(store.obs),
            np.asarray(store.actions),
            np.asarray(store.rewards),
            self.offset,
            self.length,
            self.level,
            self.episode_id,
        )
        self.lookups = self.table.lookups(self.n_actions)

    def _levels(self) -> None:
        family, self.families = pd.factorize(self.eps["env_id"], sort=True)
        self.family = family.astype(np.int64)
        lo = int(self.level.min())
        span = int(self.level.max()) - lo + 1
        keys, key = np.unique(self.family * span + (self.level - lo), return_inverse=True)
        self.key = key.astype(np.int64).ravel()
        self.n_keys = len(keys)
        self.key_family = keys // span

    def _context_episodes(self) -> None:
        cfg, eps, key = self.config, self.eps, self.key
        ok = eps["demonstrator"].isin(list(cfg.context_demonstrators)).to_numpy().copy()
        ok &= self.length > 0
        if not cfg.allow_failed:
            ok &= eps["success"].to_numpy(bool)
        idx = np.flatnonzero(ok)
        # Within a key, context episodes are ordered by their action sequence's code.
        self.code = self._action_codes()
        idx = idx[np.lexsort((self.code[idx], key[idx]))]
        _, self.ctx_ptr, self.ctx_cnt = csr(key[idx], self.n_keys)
        self.ctx_rows = idx  # context episodes, grouped by key
        n_codes = int(self.code.max()) + 1
        self._ctx_sortkey = key[idx] * n_codes + self.code[idx]
        self._n_codes = n_codes
        fam = self.family[idx]
        fam_cnt = np.bincount(fam, minlength=len(self.families))
        self.fam_cnt = fam_cnt.astype(np.int64)
        self.fam_ptr = np.cumsum(self.fam_cnt) - self.fam_cnt
        # The same episodes, grouped by family and sorted by length within it.
        longest = int(self.length.max()) + 1
        by_len = idx[np.lexsort((self.length[idx], fam))]
        self.len_rows = by_len
        self._len_sortkey = self.family[by_len] * longest + self.length[by_len]
        self._longest = longest

    def _action_codes(self) -> np.ndarray:
        """One integer per episode; equal codes mean equal action sequences."""
        actions = np.asarray(self.table.actions)
        digests = [
            actions[o : o + n].tobytes() for o, n in zip(self.offset, self.length, strict=True)
        ]
        return pd.factorize(pd.Series(digests, dtype=object))[0].astype(np.int64)

    def copy_range(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For episodes ``q``, the range ``[lo, hi)`` of their level's context episodes (places in
        the key's group) whose action sequence is theirs (the episode itself included)."""
        target = self.key[q] * self._n_codes + self.code[q]
        base = self.ctx_ptr[self.key[q]]
        lo = np.searchsorted(self._ctx_sortkey, target, side="left") - base
        hi = np.searchsorted(self._ctx_sortkey, target, side="right") - base
        return lo, hi

    def long_enough(self, family: np.ndarray, length: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each (family, length), the range ``[lo, hi)`` of ``len_rows`` holding the family's
        context episodes at least that long."""
        lo = np.searchsorted(self._len_sortkey, family * self._longest + length, side="left")
        return lo, self.fam_ptr[family] + self.fam_cnt[family]

    def _queries(self, levels, seed: int) -> None:
        cfg, eps, key = self.config, self.eps, self.key
        valid = eps["demonstrator"].isin(list(cfg.query_demonstrators)).to_numpy().copy()
        valid &= eps["success"].to_numpy(bool) & (self.length > 0)
        # Every mode draws the same queries: a level needs k distinct context episodes of its own
        # (the budget) and k of other levels (what other-level modes show), whatever the mode.
        k = max(cfg.k, 1)
        lo, hi = self.copy_range(np.arange(len(eps)))
        valid &= self.ctx_cnt[key] - (hi - lo) >= k
        valid &= self.fam_cnt[self.family] - self.ctx_cnt[key] >= k
        valid &= self._can_fill(k)[key]
        if levels is not None:
            valid &= np.isin(self.level, np.asarray([int(x) for x in levels], dtype=np.int64))
        if not valid.any():
            where = f" among levels {sorted(int(x) for x in levels)}" if levels is not None else ""
            raise TrajbenchError(
                f"no level of the store can serve as a query{where}: need successful "
                f"{'/'.join(cfg.query_demonstrators)} episodes of levels with at least {k} other "
                f"{'/'.join(cfg.context_demonstrators)} episodes of their own (with other action "
                f"sequences) and {k} of other levels of their family (k distinct context episodes), "
                "whose steps could fill k segments as long as the level's longest episode"
            )
        q_idx = np.flatnonzero(valid)
        self.query_keys, q_key = np.unique(key[q_idx], return_inverse=True)
        order, self.q_ptr, self.q_cnt = csr(q_key.ravel(), len(self.query_keys))
        self.q_rows = q_idx[order]
        ranks = np.random.default_rng(check_seed(seed)).permutation(len(self.query_keys))
        self.cum_weights = np.cumsum((ranks + 1.0) ** (-cfg.zipf))

    def _can_fill(self, k: int) -> np.ndarray:
        """Per key: can the family's other levels fill any ``k`` segments of this level with
        distinct episodes, even end to end (the builder's fallback)?

        Segments are at most ``L`` steps (the level's longest context episode). In the worst case
        the row's other ``k - 1`` segments took the longest other-level episodes (at most ``M``
        steps each) or, end to end, fewer than ``2 L`` steps each; what is left must still hold
        ``L`` steps: ``T >= (k - 1) * M + (2 k - 1) * L`` for the ``T`` other-level steps.
        """
        rows = self.ctx_rows
        keys, lengths = self.key[rows], self.length[rows]
        key_steps = np.bincount(keys, weights=lengths, minlength=self.n_keys)
        longest = np.zeros(self.n_keys, dtype=np.int64)
        np.maximum.at(longest, keys, lengths)
        fam_steps = np.bincount(self.key_family, weights=key_steps, minlength=len(self.families))
        other_longest = np.zeros(self.n_keys, dtype=np.int64)
        for f in range(len(self.families)):
            family_keys = np.flatnonzero(self.key_family == f)
            for kk in family_keys:
                other_longest[kk] = longest[family_keys[family_keys != kk]].max(initial=0)
        other_steps = fam_steps[self.key_family] - key_steps
        return other_steps >= (k - 1) * other_longest + (2 * k - 1) * longest

    def _missions(self) -> None:
        cfg, eps = self.config, self.eps
        code, missions = pd.factorize(eps["mission"], sort=True)
        self.mission = code.astype(np.int64)
        self.missions = list(missions)
        self.missions_by_family = [
            sorted(set(eps.loc[self.family == f, "mission"])) for f in range(len(self.families))
        ]
        shown = {
            "full": self.missions,
            "wrong": self.missions,  # the wrong mission, another one, is shown in full
            "template": [template(m) for m in self.missions],
            "empty": [""] * len(self.missions),
        }[cfg.instruction]
        encoded = [self.vocab.encode(s) for s in shown] + [self.vocab.encode("")]
        self.bos_run = len(shown)  # the word run that is <bos> alone: a context delimiter
        self.w_len = np.asarray([len(e) for e in encoded], dtype=np.int64)
        self.w_ptr = np.cumsum(self.w_len) - self.w_len
        self.word_pool = np.asarray([w for e in encoded for w in e], dtype=np.int64)
        if cfg.instruction == "wrong":
            self._wrong_missions()

    def _wrong_missions(self) -> None:
        """For every (family, mission) of the store, the family's missions that say something
        else (CSR by pair; ``pair`` is each episode's). A mission shared by two families has a
        pool in each."""
        index = {m: i for i, m in enumerate(self.missions)}
        n = len(self.missions)
        pair, pairs = pd.factorize(self.family * n + self.mission)
        self.pair = pair.astype(np.int64)
        pools = []
        for family, m in (divmod(int(p), n) for p in pairs):
            key = mission_key(self.missions[m])
            pool = self.missions_by_family[family]
            pools.append([index[o] for o in pool if mission_key(o) != key])
        empty = [divmod(int(p), n) for p, pool in zip(pairs, pools, strict=True) if not pool]
        if empty:
            family, m = empty[0]
            raise TrajbenchError(
                f"the 'wrong' instruction needs another mission of the family; "
                f"{self.missions[m]!r} of {self.families[family]} has none that differs in more "
                "than its articles"
            )
        self.wrong_cnt = np.asarray([len(p) for p in pools], dtype=np.int64)
        self.wrong_ptr = np.cumsum(self.wrong_cnt) - self.wrong_cnt
        self.wrong_pool = np.asarray([m for p in pools for m in p], dtype=np.int64)

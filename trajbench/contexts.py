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
level (never the query itself); their step count ``b`` is the context budget. ``bursty`` shows
those episodes; ``shuffled`` shows exactly the same steps, permuted; ``trajectories`` appends whole
episodes of other levels until ``b`` steps (the last one cut to fit); ``isolated`` samples ``b``
transitions of other levels. So modes are compared at equal context length, and ``shuffled``
differs from ``bursty`` only in order. Mission words are extra tokens, not context steps.

Example:
    >>> from trajbench.contexts import ContextBuilder          # doctest: +SKIP
    >>> builder = ContextBuilder(store, mode="bursty", k=4, seed=0)
    >>> batch = builder.sample(64)
    >>> batch.level.shape, batch.is_query.dtype
"""

from __future__ import annotations

import random
from bisect import bisect_right
from dataclasses import asdict, dataclass, field, fields
from itertools import accumulate
from typing import Literal

import numpy as np
import pandas as pd

from .batch import IGNORE, PAD, STEP, WORD, Batch, hidden_action, start_action
from .errors import TrajbenchError
from .vocab import INSTRUCTIONS, MissionVocab, shown_mission

MODES = ("bursty", "trajectories", "shuffled", "isolated", "none")
SAME_LEVEL_MODES = ("bursty", "shuffled")

Mode = Literal["bursty", "trajectories", "shuffled", "isolated", "none"]
Instruction = Literal["full", "empty", "template", "wrong"]


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
        if self.k < 0 or (self.k == 0 and self.mode != "none"):
            raise TrajbenchError(f"k must be >= 1 for mode {self.mode!r}, got {self.k}")
        if self.context_steps is not None and self.context_steps < 1:
            raise TrajbenchError(f"context_steps must be >= 1 or None, got {self.context_steps}")
        if self.p_bursty is not None:
            if not 0.0 <= self.p_bursty <= 1.0:
                raise TrajbenchError(f"p_bursty must be in [0, 1], got {self.p_bursty}")
            if self.mode not in ("bursty", "trajectories"):
                raise TrajbenchError(
                    "p_bursty mixes bursty and trajectories; use it with one of those modes"
                )
        if self.zipf < 0:
            raise TrajbenchError(f"zipf exponent must be >= 0, got {self.zipf}")


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


@dataclass
class RowPlan:
    """The tokens of one sequence before gathering: parallel lists, one entry per token."""

    kind: list[int] = field(default_factory=list)
    word: list[int] = field(default_factory=list)
    step: list[int] = field(default_factory=list)  # index into the StepTable, -1 on words
    query: list[bool] = field(default_factory=list)
    level: list[int] = field(default_factory=list)  # for word tokens
    episode: list[int] = field(default_factory=list)  # for word tokens

    def add_words(self, ids: list[int], level: int, episode_id: int, query: bool) -> None:
        n = len(ids)
        self.kind += [WORD] * n
        self.word += ids
        self.step += [-1] * n
        self.query += [query] * n
        self.level += [level] * n
        self.episode += [episode_id] * n

    def add_steps(self, steps, query: bool) -> None:
        steps = list(steps)
        n = len(steps)
        self.kind += [STEP] * n
        self.word += [0] * n
        self.step += steps
        self.query += [query] * n
        self.level += [-1] * n
        self.episode += [-1] * n


def assemble(
    plans: list[RowPlan], table: StepTable, n_actions: int, pad_to: int | None = None
) -> Batch:
    """Gather the planned tokens of every row from ``table`` into a right-padded :class:`Batch`."""
    if len(table.t) == 0:  # word-only sequences (no context, query not started): one dummy step
        table = StepTable(
            np.zeros((1, table.obs.shape[1]), np.uint8),
            np.zeros(1, np.int64),
            np.zeros(1, np.float32),
            *(np.full(1, -1, np.int64) for _ in range(3)),
        )
    lens = np.array([len(p.kind) for p in plans], dtype=np.int64)
    B, T = len(plans), int(max(lens.max(initial=0), pad_to or 0))
    rows = np.repeat(np.arange(B), lens)
    cols = np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens)

    def flat(name: str, dtype) -> np.ndarray:
        out = []
        for p in plans:
            out += getattr(p, name)
        return np.asarray(out, dtype=dtype)

    kind_f, word_f, step_f = flat("kind", np.int8), flat("word", np.int64), flat("step", np.int64)
    query_f = flat("query", bool)
    is_step = kind_f == STEP
    g = np.where(is_step, step_f, 0)
    t_f = np.where(is_step, table.t[g], -1)
    has_prev = is_step & (t_f > 0)
    gp = np.where(has_prev, g - 1, 0)
    ctx_step = is_step & ~query_f
    qry_step = is_step & query_f

    def grid(values: np.ndarray, fill, dtype) -> np.ndarray:
        out = np.full((B, T), fill, dtype=dtype)
        out[rows, cols] = values
        return out

    obs = np.zeros((B, T, table.obs.shape[1]), dtype=np.uint8)
    obs[rows[is_step], cols[is_step]] = table.obs[g[is_step]]
    # Gather first, then widen: stored actions are uint8 and must not wrap IGNORE (-100).
    act_g, act_p = table.actions[g].astype(np.int64), table.actions[gp].astype(np.int64)
    rew_g, rew_p = table.rewards[g].astype(np.float32), table.rewards[gp].astype(np.float32)
    level_f = np.where(is_step, table.level[g], flat("level", np.int64))
    episode_f = np.where(is_step, table.episode_id[g], flat("episode", np.int64))
    return Batch(
        kind=grid(kind_f, PAD, np.int8),
        word=grid(word_f, 0, np.int64),
        obs=obs,
        prev_action=grid(np.where(has_prev, act_p, start_action(n_actions)), 0, np.int64),
        prev_reward=grid(np.where(has_prev, rew_p, 0.0), 0.0, np.float32),
        shown_action=grid(
            np.where(ctx_step, act_g, hidden_action(n_actions)), hidden_action(n_actions), np.int64
        ),
        shown_reward=grid(np.where(ctx_step, rew_g, 0.0), 0.0, np.float32),
        target=grid(np.where(qry_step, act_g, IGNORE), IGNORE, np.int64),
        loss_mask=grid(qry_step, False, bool),
        is_query=grid(query_f, False, bool),
        pad=grid(np.zeros(len(kind_f), bool), True, bool),
        level=grid(level_f, -1, np.int64),
        episode_id=grid(episode_f, -1, np.int64),
        t=grid(t_f, -1, np.int64),
    )


class ContextBuilder:
    """Samples context + query sequences from an episode store.

    Args:
        store: An episode store (``trajbench.data.load``): ``episodes`` DataFrame with
            ``env_id, level, episode_id, demonstrator, success, length, offset, mission`` and the
            ``obs`` / ``actions`` / ``rewards`` step arrays.
        seed: Seed of the builder's own random stream: same store, knobs and seed, same batches.
        vocab: Mission vocabulary (a trained model's); built from the store's missions if None.
        levels: Restrict query levels to these (default: every level in the store).
        config: A :class:`ContextConfig`; keyword knobs (``mode="bursty", k=4, ...``) override it.

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
        cfg.context_demonstrators = tuple(cfg.context_demonstrators)
        cfg.query_demonstrators = tuple(cfg.query_demonstrators)
        cfg.validate()
        self.config = cfg
        self.store = store
        self.n_actions = int(store.encoding.n_actions)
        self.vocab = vocab or MissionVocab.build(store.episodes["mission"].unique())
        self.rng = random.Random(seed)

        eps = store.episodes.reset_index(drop=True)
        if len(eps) == 0:
            raise TrajbenchError("the episode store is empty")
        self.eps = eps
        self.table = StepTable.from_episodes(
            store.obs,
            store.actions,
            store.rewards,
            eps["offset"].to_numpy(),
            eps["length"].to_numpy(),
            eps["level"].to_numpy(),
            eps["episode_id"].to_numpy(),
        )
        self._offset = eps["offset"].to_numpy(np.int64).tolist()
        self._length = eps["length"].to_numpy(np.int64).tolist()
        self._level = eps["level"].to_numpy(np.int64).tolist()
        self._episode_id = eps["episode_id"].to_numpy(np.int64).tolist()
        family_codes, self.families = pd.factorize(eps["env_id"])
        self._family = family_codes.tolist()
        level_keys, key_index = pd.factorize(
            pd.MultiIndex.from_arrays([eps["env_id"], eps["level"]])
        )
        self._key = level_keys.tolist()
        n_keys = len(key_index)

        ctx_ok = eps["demonstrator"].isin(cfg.context_demonstrators).to_numpy().copy()
        if not cfg.allow_failed:
            ctx_ok &= eps["success"].to_numpy(bool)
        qry_ok = eps["demonstrator"].isin(cfg.query_demonstrators).to_numpy() & eps[
            "success"
        ].to_numpy(bool)
        self._ctx_by_key: list[list[int]] = [[] for _ in range(n_keys)]
        self._qry_by_key: list[list[int]] = [[] for _ in range(n_keys)]
        for r in np.flatnonzero(ctx_ok).tolist():
            self._ctx_by_key[self._key[r]].append(r)
        for r in np.flatnonzero(qry_ok).tolist():
            self._qry_by_key[self._key[r]].append(r)

        # Context material from other levels: episodes and single steps, per family.
        n_fam = len(self.families)
        self._ctx_rows_by_family: list[list[int]] = [[] for _ in range(n_fam)]
        for r in np.flatnonzero(ctx_ok).tolist():
            self._ctx_rows_by_family[self._family[r]].append(r)
        self._ctx_steps_by_family = []
        for f in range(n_fam):
            rows_f = self._ctx_rows_by_family[f]
            steps = [
                g for r in rows_f for g in range(self._offset[r], self._offset[r] + self._length[r])
            ]
            self._ctx_steps_by_family.append(steps)
        step_key = np.full(len(store.actions), -1, dtype=np.int64)
        for r in range(len(eps)):
            step_key[self._offset[r] : self._offset[r] + self._length[r]] = self._key[r]
        self._step_key = step_key.tolist()

        # Query levels and their Zipf weights.
        wanted = None if levels is None else {int(x) for x in levels}
        needs_same = cfg.mode in SAME_LEVEL_MODES or (cfg.p_bursty or 0) > 0
        keys = []
        for key in range(n_keys):
            q, c = self._qry_by_key[key], self._ctx_by_key[key]
            if not q or (wanted is not None and int(key_index[key][1]) not in wanted):
                continue
            if needs_same and not (set(c) - ({q[0]} if len(q) == 1 else set())):
                continue
            keys.append(key)
        if not keys:
            raise TrajbenchError(
                f"no level of the store can serve as a query for mode {cfg.mode!r}: need successful "
                f"{'/'.join(cfg.query_demonstrators)} episodes"
                + (
                    " and at least one other context episode of the same level"
                    if needs_same
                    else ""
                )
            )
        self._query_keys = keys
        ranks = np.random.default_rng(seed).permutation(len(keys))
        weights = (ranks + 1.0) ** (-cfg.zipf)
        self._cum_weights = list(accumulate(weights.tolist()))

        # Missions per level and the pool of "wrong" missions per family.
        mission_of_row = eps["mission"].tolist()
        self._mission_of_key = [""] * n_keys
        for r, key in enumerate(self._key):
            self._mission_of_key[key] = mission_of_row[r]
        self._missions_by_family = [
            sorted(set(eps.loc[family_codes == f, "mission"])) for f in range(n_fam)
        ]
        if cfg.instruction == "wrong":
            single = [
                self.families[f] for f in range(n_fam) if len(self._missions_by_family[f]) < 2
            ]
            if single:
                raise TrajbenchError(
                    f"the 'wrong' instruction needs at least two distinct missions; {single} has one"
                )
        self._encoded: dict[str, list[int]] = {}

    # -- public API --------------------------------------------------------------------------
    def sample(self, batch_size: int, pad_to: int | None = None, seed: int | None = None) -> Batch:
        """``batch_size`` sequences, right-padded to the longest (or to ``pad_to``).

        With ``seed`` the builder's stream is re-seeded first, so the batch is a pure function of
        ``seed``: training uses ``seed = f(run seed, step)`` to resume and shard exactly.
        """
        if batch_size < 1:
            raise TrajbenchError(f"batch_size must be >= 1, got {batch_size}")
        if seed is not None:
            self.rng.seed(int(seed))
        plans = [self._plan_one() for _ in range(batch_size)]
        return assemble(plans, self.table, self.n_actions, pad_to)

    def mission_ids(self, mission: str, family: int = 0) -> list[int]:
        """Token ids of ``mission`` as the instruction mode shows it (``wrong``: another mission)."""
        shown = shown_mission(
            mission, self.config.instruction, self._missions_by_family[family], self.rng
        )
        ids = self._encoded.get(shown)
        if ids is None:
            ids = self._encoded[shown] = self.vocab.encode(shown)
        return ids

    def max_episode_length(self) -> int:
        return int(max(self._length))

    # -- sampling ------------------------------------------------------------------------------
    def _plan_one(self) -> RowPlan:
        cfg, rnd = self.config, self.rng
        key = self._query_keys[
            bisect_right(self._cum_weights, rnd.random() * self._cum_weights[-1])
            if cfg.zipf
            else rnd.randrange(len(self._query_keys))
        ]
        queries = self._qry_by_key[key]
        q = queries[rnd.randrange(len(queries))]
        fam = self._family[q]
        mode = cfg.mode
        if cfg.p_bursty is not None:
            mode = "bursty" if rnd.random() < cfg.p_bursty else "trajectories"
        shown_missions: dict[int, list[int]] = {}

        def words_of(row: int) -> list[int]:
            k = self._key[row]
            if k not in shown_missions:
                shown_missions[k] = self.mission_ids(self._mission_of_key[k], family=fam)
            return shown_missions[k]

        plan = RowPlan()
        if mode != "none":
            pieces = self._same_level_pieces(key, q)
            budget = sum(e - s for _, s, e in pieces)
            if cfg.context_steps is not None and budget > cfg.context_steps:
                pieces = _keep_last_steps(pieces, cfg.context_steps)
                budget = cfg.context_steps
            if mode == "bursty":
                self._add_pieces(plan, pieces, words_of)
            elif mode == "shuffled":
                steps = [
                    g for r, s, e in pieces for g in range(self._offset[r] + s, self._offset[r] + e)
                ]
                rnd.shuffle(steps)
                plan.add_steps(steps, query=False)
            elif mode == "trajectories":
                self._add_pieces(plan, self._other_level_pieces(key, fam, budget), words_of)
            else:  # isolated
                plan.add_steps(self._other_level_steps(key, fam, budget), query=False)
        plan.add_words(words_of(q), self._level[q], self._episode_id[q], query=True)
        plan.add_steps(range(self._offset[q], self._offset[q] + self._length[q]), query=True)
        return plan

    def _piece(self, row: int) -> tuple[int, int, int]:
        n = self._length[row]
        if not self.config.partial or n == 1:
            return row, 0, n
        s = self.rng.randrange(n)
        return row, s, self.rng.randrange(s + 1, n + 1)

    def _same_level_pieces(self, key: int, query_row: int) -> list[tuple[int, int, int]]:
        pool = [r for r in self._ctx_by_key[key] if r != query_row]
        k = self.config.k
        rows = (
            self.rng.sample(pool, k)
            if len(pool) >= k
            else [pool[self.rng.randrange(len(pool))] for _ in range(k)]
        )
        return [self._piece(r) for r in rows]

    def _other_level_pieces(self, key: int, fam: int, budget: int) -> list[tuple[int, int, int]]:
        pool, pieces, total = self._ctx_rows_by_family[fam], [], 0
        self._require_other_levels(key, fam)
        while total < budget:
            r = pool[self.rng.randrange(len(pool))]
            if self._key[r] == key:
                continue
            row, s, e = self._piece(r)
            e = min(e, s + budget - total)  # the last episode is cut to fit the budget exactly
            pieces.append((row, s, e))
            total += e - s
        return pieces

    def _other_level_steps(self, key: int, fam: int, budget: int) -> list[int]:
        pool, out = self._ctx_steps_by_family[fam], []
        self._require_other_levels(key, fam)
        while len(out) < budget:
            g = pool[self.rng.randrange(len(pool))]
            if self._step_key[g] != key:
                out.append(g)
        return out

    def _require_other_levels(self, key: int, fam: int) -> None:
        if all(self._key[r] == key for r in self._ctx_rows_by_family[fam]):
            raise TrajbenchError(
                "trajectories/isolated contexts need context episodes of at least two levels"
            )

    def _add_pieces(self, plan: RowPlan, pieces, words_of) -> None:
        for r, s, e in pieces:
            plan.add_words(words_of(r), self._level[r], self._episode_id[r], query=False)
            plan.add_steps(range(self._offset[r] + s, self._offset[r] + e), query=False)


def _keep_last_steps(pieces: list[tuple[int, int, int]], cap: int) -> list[tuple[int, int, int]]:
    """Drop steps from the front of the earliest pieces until ``cap`` steps remain."""
    out, remaining = [], cap
    for r, s, e in reversed(pieces):
        if remaining <= 0:
            break
        take = min(e - s, remaining)
        out.append((r, e - take, e))
        remaining -= take
    return out[::-1]

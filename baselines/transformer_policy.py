"""The trajectory model as a :class:`~trajbench.policy.Policy`: batched, cached rollouts.

At the start of each episode every row's context is laid out as the prompt builder lays out a
training sequence (:mod:`trajbench.contexts.builder`): each context segment (a demonstration, or
a segment of shuffled transitions) behind one ``<bos>`` delimiter, then ``<bos>`` and the query's
mission words. It is packed by the builder's own assembler, left-padded and encoded into the
backbone's cache (keys and values for attention, the state of a recurrent backbone). Each
environment step feeds one token per running row through the cache; rows that finish are dropped
from the cache. A backbone without a usable cache re-encodes instead (``policy.cached`` is False,
and a log line says so).

The context's cache is kept between episodes: when the next episode shows the same context (the
evaluation protocol), it is reused as it is; when it shows the previous context plus the episode
just played, only that episode is encoded on top. ``use_cache=False`` re-encodes the whole
sequence at every step instead (the reference the cache is checked and benchmarked against).

The query's mission words are drawn once per row and true mission for the row's whole rollout
(this matters for the ``wrong`` instruction, which draws another mission at random); a row whose
context names a ``shown_mission`` (evaluation's decoys) shows that text as it is.

Example:
    >>> policy = TransformerPolicy.load("runs/dr-bursty/model")   # doctest: +SKIP
"""

from __future__ import annotations

import copy
import logging
import random
from pathlib import Path

import numpy as np
import torch

from trajbench.batch import STEP, Batch, hidden_action
from trajbench.contexts.tokens import RowPlan, StepTable, assemble
from trajbench.policy import EpisodeRecord
from trajbench.privileged import PrivilegedPolicy, PrivilegedRow
from trajbench.vocab import shown_mission

from .transformer import TrajectoryTransformer, positions_from_mask

_KEYS = Batch.MODEL_INPUTS
log = logging.getLogger(__name__)


class TransformerPolicy(PrivilegedPolicy):
    """Acts with a trained :class:`TrajectoryTransformer`.

    Privileged (:mod:`trajbench.privileged`): it is shown the true mission, to show it as it
    was trained (full, template, empty or a wrong one); it reads no level or environment.

    Args:
        model: The trained model (it carries its mission vocabulary).
        instruction: How missions are shown (the training condition's instruction mode).
        mission_pool: Missions of each family, the source of ``wrong`` missions.
        use_context: False for the no-context baseline: only the query's own mission is shown.
        use_cache: Step with the backbone's cache (True; where it has none, the policy falls back
            to re-encoding and logs it) or re-encode everything each step (False).
        greedy: Take the most likely action (True) or sample from the logits.
        device: Torch device.
        seed: Seed for sampling and ``wrong`` missions.
    """

    name = "transformer"

    def __init__(
        self,
        model: TrajectoryTransformer,
        instruction: str = "full",
        mission_pool: dict[str, list[str]] | None = None,
        use_context: bool = True,
        use_cache: bool = True,
        greedy: bool = True,
        device: str | torch.device = "cpu",
        seed: int = 0,
    ):
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.vocab, self.instruction = model.vocab, instruction
        self.mission_pool = mission_pool or {}
        self.use_context, self.greedy = use_context, greedy
        #: Whether rollouts step the backbone's cache (else they re-encode every step).
        self.cached = use_cache and model.kind.cache is not None
        if use_cache and not self.cached:
            log.warning(
                "backbone %s has no usable cache: rollouts re-encode the whole sequence every step",
                model.cfg.backbone,
            )
        self.n_actions = model.encoding.n_actions
        self.n_features = model.encoding.n_features
        self.rnd = random.Random(seed)
        self.gen = torch.Generator().manual_seed(seed)
        # Rollout state: see begin().
        self._previous: list[tuple] | None = None
        self._shown: list[dict[str, list[int]]] = []
        self._prefix: tuple | None = None
        self._constants: dict[str, torch.Tensor] = {}

    @classmethod
    def load(cls, directory: str | Path, **kwargs) -> TransformerPolicy:
        """A policy acting with the model saved in ``directory`` (``trajbench train``'s ``model/``).

        Keyword arguments go to the constructor; ``trajbench.pipeline.policies`` passes the
        training condition's instruction mode and whether it saw any context.
        """
        return cls(TrajectoryTransformer.from_pretrained(directory), **kwargs)

    # -- context ---------------------------------------------------------------------------------
    def _words(self, row: int, context: PrivilegedRow) -> list[int]:
        """The query's mission ids, drawn once per row and true mission (see the module doc)."""
        if context.shown_mission is not None:
            return self.vocab.encode(context.shown_mission)
        shown = self._shown[row]
        if context.mission not in shown:
            pool = self.mission_pool.get(context.env_id, [])
            text = shown_mission(context.mission, self.instruction, pool, self.rnd)
            shown[context.mission] = self.vocab.encode(text)
        return shown[context.mission]

    def _left_padded(
        self, rows: list[PrivilegedRow], episodes: list[list[EpisodeRecord]], query: bool
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor] | None:
        """Tokens of every row's ``episodes`` (context segments), then, if ``query``, its query
        words. Returns left-padded token tensors and their mask, or None when there is no token."""
        flat = [ep for eps in episodes for ep in eps]
        if not flat and not query:
            return None
        table = StepTable.from_records(flat, self.n_features)
        plans, offset = [], 0
        for i, (row, eps) in enumerate(zip(rows, episodes, strict=True)):
            plan = RowPlan()
            for ep in eps:
                plan.add_words([self.vocab.bos_id], ep.level, ep.episode_id, query=False)
                plan.add_steps(range(offset, offset + len(ep)), query=False)
                offset += len(ep)
            if query:
                plan.add_words(self._words(i, row), row.level, -1, query=True)
            plans.append(plan)
        batch = assemble(plans, table, self.n_actions)
        lens = (~batch.pad).sum(1)
        T = batch.shape[1]
        if T == 0:
            return None
        # Right padding -> left padding (PAD tokens first), so that every row's last token is real.
        cols = (np.arange(T)[None, :] - (T - lens)[:, None]) % T
        tokens = {}
        for k in _KEYS:
            a = getattr(batch, k)
            a = np.take_along_axis(a, cols if a.ndim == 2 else cols[..., None], axis=1)
            tokens[k] = torch.from_numpy(a).to(self.device)
        mask = torch.from_numpy(np.arange(T)[None, :] >= (T - lens)[:, None]).long()
        return tokens, mask.to(self.device)

    def _extension(
        self, rows: list[PrivilegedRow], episodes: list[list[EpisodeRecord]]
    ) -> list[list[EpisodeRecord]] | None:
        """What every row's context adds to its previous one: nothing (the same context) or one
        episode (the one just played); None when it is anything else."""
        prev = self._previous
        if prev is None or len(prev) != len(rows):
            return None
        added = []
        for row, eps, (env_id, level, mission, shown, old) in zip(
            rows, episodes, prev, strict=True
        ):
            if (row.env_id, row.level, row.mission, row.shown_mission) != (
                env_id,
                level,
                mission,
                shown,
            ):
                return None
            if len(eps) - len(old) not in (0, 1) or any(
                a is not b for a, b in zip(eps, old, strict=False)
            ):
                return None
            added.append(eps[len(old) :])
        if len({len(a) for a in added}) != 1:
            return None
        return added

    def _feed(self, tokens, new_mask, cache, mask):
        """Encode ``tokens`` after ``cache`` (None: start a new cache); returns (cache, mask)."""
        if cache is None:
            _, cache = self.model.prefill(tokens, new_mask)
            return cache, new_mask
        mask = torch.cat([mask, new_mask], 1)
        _, cache = self.model.step(tokens, cache, mask)
        return cache, mask

    @torch.no_grad()
    def begin(self, rows: list[PrivilegedRow]) -> None:
        episodes = [list(row.episodes) if self.use_context else [] for row in rows]
        added = self._extension(rows, episodes)
        if added is None or (self.cached and self._prefix is None):
            self._shown = [{} for _ in rows]
            self._prefix, added = None, None
        self._previous = [
            (row.env_id, row.level, row.mission, row.shown_mission, eps)
            for row, eps in zip(rows, episodes, strict=True)
        ]
        for i, row in enumerate(rows):  # draw every shown mission now, in one fixed order
            self._words(i, row)
        self.rows = np.arange(len(rows))
        if not self.cached:
            self.tokens, self.mask = self._left_padded(rows, episodes, query=True)
            return
        # The kept context cache (a copy: stepping extends it), plus what the context adds.
        cache, mask = (None, None)
        if added is not None and self._prefix[0] is not None:
            cache, mask = copy.deepcopy(self._prefix[0]), self._prefix[1]
        context = self._left_padded(rows, episodes if added is None else added, query=False)
        if context is not None:
            cache, mask = self._feed(*context, cache, mask)
        self._prefix = (None if cache is None else copy.deepcopy(cache), mask)
        query = self._left_padded(rows, [[] for _ in rows], query=True)
        self.cache, self.mask = self._feed(*query, cache, mask)

    # -- acting ----------------------------------------------------------------------------------
    def _keep(self, rows: np.ndarray) -> None:
        if len(rows) == len(self.rows):
            return
        keep = torch.from_numpy(np.searchsorted(self.rows, rows)).to(self.device)
        if self.cached:
            self.cache, self.mask = self.model.select_rows(self.cache, self.mask, keep)
        else:
            self.tokens = {k: v[keep] for k, v in self.tokens.items()}
            self.mask = self.mask[keep]
        self.rows = np.asarray(rows)

    def _constant(self, name: str, n: int, value, dtype) -> torch.Tensor:
        """A cached ``[n, 1]`` tensor filled with ``value`` (the same every step)."""
        t = self._constants.get(name)
        if t is None or t.shape[0] < n:
            t = self._constants[name] = torch.full(
                (max(n, 64), 1), value, dtype=dtype, device=self.device
            )
        return t[:n]

    @torch.no_grad()
    def act(self, obs, prev_action, prev_reward, rows, envs) -> np.ndarray:
        self._keep(np.asarray(rows))
        n = len(rows)
        dev = self.device

        def column(a, dtype) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(a, dtype=dtype)).to(dev).unsqueeze(1)

        step = {
            "kind": self._constant("kind", n, STEP, torch.int8),
            "word": self._constant("word", n, 0, torch.int64),
            "obs": column(obs, np.uint8),
            "prev_action": column(prev_action, np.int64),
            "prev_reward": column(prev_reward, np.float32),
            "shown_action": self._constant(
                "shown_action", n, hidden_action(self.n_actions), torch.int64
            ),
            "shown_reward": self._constant("shown_reward", n, 0.0, torch.float32),
            "is_query": self._constant("is_query", n, True, torch.bool),
        }
        self.mask = torch.cat([self.mask, self._constant("one", n, 1, self.mask.dtype)], 1)
        if self.cached:
            logits, self.cache = self.model.step(step, self.cache, self.mask)
        else:
            self.tokens = {k: torch.cat([self.tokens[k], step[k]], 1) for k in _KEYS}
            logits, _ = self.model(self.tokens, self.mask, positions_from_mask(self.mask))
            logits = logits[:, -1]
        logits = logits.float()
        if self.greedy:
            return logits.argmax(-1).cpu().numpy()
        probs = torch.softmax(logits.cpu(), -1)
        return torch.multinomial(probs, 1, generator=self.gen).squeeze(-1).numpy()

"""The transformer as a :class:`~trajbench.baselines.base.Policy`: batched, KV-cached rollouts.

At the start of each episode every row's context (its demonstrations and own earlier episodes,
each preceded by its mission words) plus the query's mission words are packed by the same
assembler the prompt builder uses, left-padded and encoded once (``prefill``). Each environment step
then feeds one token per running row through the cache; rows that finish are dropped from the
cache. ``use_cache=False`` re-encodes the whole sequence at every step instead (the reference the
cache is checked and benchmarked against).

Example:
    >>> policy = TransformerPolicy.load("runs/dr-bursty/model")   # doctest: +SKIP
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from trajbench.batch import STEP, hidden_action
from trajbench.contexts import RowPlan, StepTable, assemble
from trajbench.errors import TrajbenchError
from trajbench.vocab import MissionVocab, shown_mission

from .base import Policy, RowContext
from .transformer import TrajectoryTransformer, positions_from_mask, select_rows

_KEYS = (
    "kind",
    "word",
    "obs",
    "prev_action",
    "prev_reward",
    "shown_action",
    "shown_reward",
    "is_query",
)


class TransformerPolicy(Policy):
    """Acts with a trained :class:`TrajectoryTransformer`.

    Args:
        model: The trained model.
        vocab: Its mission vocabulary.
        instruction: How missions are shown (the training condition's instruction mode).
        mission_pool: Missions of each family, the source of ``wrong`` missions.
        use_context: False for the no-context baseline: only the query's own mission is shown.
        use_cache: Step with the KV cache (True) or re-encode everything each step (False).
        greedy: Take the most likely action (True) or sample from the logits.
        device: Torch device.
        seed: Seed for sampling and ``wrong`` missions.
    """

    name = "transformer"

    def __init__(
        self,
        model: TrajectoryTransformer,
        vocab: MissionVocab,
        instruction: str = "full",
        mission_pool: dict[str, list[str]] | None = None,
        use_context: bool = True,
        use_cache: bool = True,
        greedy: bool = True,
        device: str | torch.device = "cpu",
        seed: int = 0,
    ):
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self.vocab, self.instruction = vocab, instruction
        self.mission_pool = mission_pool or {}
        self.use_context, self.use_cache, self.greedy = use_context, use_cache, greedy
        self.n_actions = model.cfg.n_actions
        self.rnd = random.Random(seed)
        self.gen = torch.Generator().manual_seed(seed)
        self.extra: dict = {}

    @classmethod
    def load(cls, directory: str | Path, **kwargs) -> TransformerPolicy:
        """Load a model directory written by ``trajbench train``."""
        model, extra = TrajectoryTransformer.from_pretrained(directory)
        if "vocab" not in extra:
            raise TrajbenchError(
                f"{directory} has no mission vocabulary; was it written by trajbench train?"
            )
        context = (extra.get("train_config") or {}).get("context", {})
        kwargs.setdefault("instruction", context.get("instruction", "full"))
        kwargs.setdefault("use_context", context.get("mode", "bursty") != "none")
        policy = cls(model, MissionVocab.from_dict(extra["vocab"]), **kwargs)
        policy.extra = extra
        return policy

    # -- context ---------------------------------------------------------------------------------
    def _words(self, env_id: str, mission: str) -> list[int]:
        return self.vocab.encode(
            shown_mission(mission, self.instruction, self.mission_pool.get(env_id, []), self.rnd)
        )

    def begin(self, rows: list[RowContext]) -> None:
        episodes = [ep for row in rows for ep in (row.episodes if self.use_context else [])]
        F = len(self.model.cfg.feature_sizes)
        lengths = [len(ep) for ep in episodes]
        table = StepTable.from_episodes(
            np.concatenate([ep.obs for ep in episodes]) if episodes else np.zeros((0, F), np.uint8),
            np.concatenate([ep.actions for ep in episodes]) if episodes else np.zeros(0, np.int64),
            np.concatenate([ep.rewards for ep in episodes])
            if episodes
            else np.zeros(0, np.float32),
            np.cumsum(lengths, dtype=np.int64) - np.asarray(lengths, dtype=np.int64),
            lengths,
            [ep.level for ep in episodes],
            [ep.episode_id for ep in episodes],
        )
        plans, offset = [], 0
        for row in rows:
            plan = RowPlan()
            for ep in row.episodes if self.use_context else []:
                plan.add_words(
                    self._words(row.env_id, ep.mission), ep.level, ep.episode_id, query=False
                )
                plan.add_steps(range(offset, offset + len(ep)), query=False)
                offset += len(ep)
            plan.add_words(self._words(row.env_id, row.mission), row.level, -1, query=True)
            plans.append(plan)
        batch = assemble(plans, table, self.n_actions)
        lens = (~batch.pad).sum(1)
        T = batch.shape[1]
        # Right padding -> left padding (PAD tokens first), so that every row's last token is real.
        cols = (np.arange(T)[None, :] - (T - lens)[:, None]) % T
        tokens = {
            k: torch.from_numpy(
                np.take_along_axis(
                    getattr(batch, k),
                    cols if getattr(batch, k).ndim == 2 else cols[..., None],
                    axis=1,
                )
            )
            for k in _KEYS
        }
        self.tokens = {k: v.to(self.device) for k, v in tokens.items()}
        self.mask = (
            torch.from_numpy(np.arange(T)[None, :] >= (T - lens)[:, None]).long().to(self.device)
        )
        self.rows = np.arange(len(rows))
        self.cache = None
        if self.use_cache:
            _, self.cache = self.model.prefill(self.tokens, self.mask)

    # -- acting ----------------------------------------------------------------------------------
    def _keep(self, rows: np.ndarray) -> None:
        if len(rows) == len(self.rows):
            return
        keep = torch.from_numpy(np.searchsorted(self.rows, rows)).to(self.device)
        if self.use_cache:
            self.cache, self.mask = select_rows(self.cache, self.mask, keep)
        else:
            self.tokens = {k: v[keep] for k, v in self.tokens.items()}
            self.mask = self.mask[keep]
        self.rows = np.asarray(rows)

    @torch.no_grad()
    def act(self, obs, prev_action, prev_reward, rows, envs) -> np.ndarray:
        self._keep(np.asarray(rows))
        n = len(rows)
        step = {
            "kind": torch.full((n, 1), STEP, dtype=torch.int8),
            "word": torch.zeros((n, 1), dtype=torch.int64),
            "obs": torch.from_numpy(np.asarray(obs, dtype=np.uint8)[:, None, :]),
            "prev_action": torch.from_numpy(np.asarray(prev_action, dtype=np.int64)[:, None]),
            "prev_reward": torch.from_numpy(np.asarray(prev_reward, dtype=np.float32)[:, None]),
            "shown_action": torch.full((n, 1), hidden_action(self.n_actions), dtype=torch.int64),
            "shown_reward": torch.zeros((n, 1), dtype=torch.float32),
            "is_query": torch.ones((n, 1), dtype=torch.bool),
        }
        step = {k: v.to(self.device) for k, v in step.items()}
        self.mask = torch.cat(
            [self.mask, torch.ones((n, 1), dtype=self.mask.dtype, device=self.device)], 1
        )
        if self.use_cache:
            logits, self.cache = self.model.step(step, self.cache, self.mask)
        else:
            self.tokens = {k: torch.cat([self.tokens[k], step[k]], 1) for k in _KEYS}
            logits, _ = self.model(self.tokens, self.mask, positions_from_mask(self.mask))
            logits = logits[:, -1]
        logits = logits.float().cpu()
        if self.greedy:
            return logits.argmax(-1).numpy()
        return (
            torch.multinomial(torch.softmax(logits, -1), 1, generator=self.gen).squeeze(-1).numpy()
        )

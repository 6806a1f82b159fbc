"""Evaluation contexts in a mode's structure: the same demonstrations, whole or as transitions.

Evaluation shows every model K demonstrations of a level. In the *common* format they are whole
episodes in order; in a model's *matched* format they take the structure of its training mode
(:mod:`trajbench.contexts.modes`): for an unordered mode, the same steps in a uniformly random
order, poured into segments of the same lengths (a context step shows only its own transition,
so nothing else changes). The training builder does the same, vectorized, for whole batches.

Example:
    >>> import numpy as np
    >>> from trajbench.policy import EpisodeRecord
    >>> demo = EpisodeRecord(np.zeros((3, 2), np.uint8), np.array([1, 2, 3]),
    ...                      np.zeros(3, np.float32), level=5)
    >>> [seg.actions.tolist() for seg in in_structure([demo], ordered=True, rng=None)]
    [[1, 2, 3]]
    >>> shuffled = in_structure([demo, demo], ordered=False, rng=np.random.default_rng(0))
    >>> [len(seg) for seg in shuffled], sorted(np.concatenate([s.actions for s in shuffled]).tolist())
    ([3, 3], [1, 1, 2, 2, 3, 3])
"""

from __future__ import annotations

import numpy as np

from ..policy import EpisodeRecord


def in_structure(
    records: list[EpisodeRecord], ordered: bool, rng: np.random.Generator | None
) -> list[EpisodeRecord]:
    """``records`` as a context of that structure shows them (see the module docstring)."""
    if ordered or not records:
        return list(records)
    obs = np.concatenate([r.obs for r in records])
    actions = np.concatenate([r.actions for r in records])
    rewards = np.concatenate([r.rewards for r in records])
    level = np.concatenate([np.full(len(r), r.level) for r in records])
    order = rng.permutation(len(actions))
    out, start = [], 0
    for r in records:
        take = order[start : start + len(r)]
        start += len(r)
        levels = set(level[take].tolist())
        only = levels.pop() if len(levels) == 1 else -1
        out.append(EpisodeRecord(obs[take], actions[take], rewards[take], only, -1, r.mission))
    return out

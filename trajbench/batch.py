"""The token batch: what the prompt builder produces and what every sequence model eats.

A sequence is a context (earlier episodes or single transitions) followed by a query episode.
Each position is one of three *kinds* of token:

- ``WORD``: a ``<bos>`` delimiter before each context segment, and ``<bos>`` plus the mission's
  words before the query's steps.
- ``STEP``: one time step with its observation ``o_t``. A *context* step is one transition: it
  shows its own action and reward (``a_t``, ``r_t``) as ``shown_action`` / ``shown_reward`` and
  nothing of the step before (``prev_action`` is ``HIDDEN_ACTION``, ``prev_reward`` 0), so a
  context's order is the only thing that links its steps. A *query* step shows the previous
  action and reward (``a_{t-1}``, ``r_{t-1}``; ``START_ACTION`` and 0 at ``t = 0``) and hides its
  own (``shown_action`` is ``HIDDEN_ACTION``): that is what the model predicts.
- ``PAD``: right padding up to the batch length.

All arrays are ``[batch, tokens]`` (``obs`` is ``[batch, tokens, features]``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

PAD, WORD, STEP = 0, 1, 2
#: Target value of positions that carry no loss (PyTorch's cross-entropy ignore index).
IGNORE = -100


def start_action(n_actions: int) -> int:
    """Id used as ``prev_action`` at ``t = 0`` (one past the real actions)."""
    return n_actions


def hidden_action(n_actions: int) -> int:
    """Id used as ``shown_action`` where the action is not shown (query, words, padding)."""
    return n_actions + 1


@dataclass
class Batch:
    """A batch of token sequences. See the module docstring for the token layout."""

    kind: np.ndarray  # int8: PAD / WORD / STEP
    word: np.ndarray  # int64: mission word id on WORD tokens, 0 elsewhere
    obs: np.ndarray  # uint8 [B, T, F]: encoded observation on STEP tokens, 0 elsewhere
    prev_action: (
        np.ndarray
    )  # int64: a_{t-1} on query steps (start_action at t = 0), hidden on context steps
    prev_reward: np.ndarray  # float32: r_{t-1}, 0 at t = 0
    shown_action: np.ndarray  # int64: a_t on context steps, hidden_action elsewhere
    shown_reward: np.ndarray  # float32: r_t on context steps, 0 elsewhere
    target: np.ndarray  # int64: a_t to predict on query steps, IGNORE elsewhere
    loss_mask: np.ndarray  # bool: query STEP tokens
    is_query: np.ndarray  # bool: token belongs to the query episode (its words and steps)
    pad: np.ndarray  # bool: PAD tokens
    level: np.ndarray  # int64: source level of the token, -1 on padding
    episode_id: np.ndarray  # int64: source episode, -1 on padding
    t: np.ndarray  # int64: step index in the source episode, -1 on words and padding

    #: Arrays the model reads; the rest is bookkeeping for tests and analyses.
    MODEL_INPUTS = (
        "kind",
        "word",
        "obs",
        "prev_action",
        "prev_reward",
        "shown_action",
        "shown_reward",
        "is_query",
    )

    @property
    def shape(self) -> tuple[int, int]:
        return self.kind.shape

    def to_torch(self, device="cpu", keys: tuple[str, ...] | None = None) -> dict:
        """Model inputs (and ``target``) as torch tensors on ``device``."""
        import torch  # here, so that collecting episodes never pays for importing torch

        keys = keys or (*self.MODEL_INPUTS, "target")
        return {
            k: torch.from_numpy(np.ascontiguousarray(getattr(self, k))).to(device) for k in keys
        }

    def __getitem__(self, rows) -> Batch:
        """Select rows, e.g. ``batch[:8]`` or ``batch[[0, 3]]``."""
        return Batch(**{f.name: getattr(self, f.name)[rows] for f in fields(self)})

"""Every knob of the prompt builder, in one dataclass (its field docstrings are the ``--help``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..errors import TrajbenchError
from ..vocab import INSTRUCTIONS
from .modes import BURSTY, MODE_NAMES, get_mode

Mode = Literal[MODE_NAMES]  # type: ignore[valid-type]  (built from the registry)
Instruction = Literal[INSTRUCTIONS]  # type: ignore[valid-type]


def _is_int(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | np.integer)


@dataclass
class ContextConfig:
    """How training sequences are built: the context mode and its knobs."""

    mode: Mode = BURSTY
    """Context mode: bursty, trajectories, shuffled, isolated or none."""
    k: int = 4
    """Context episodes per sequence; their total length sets the context-step budget."""
    context_steps: int | None = None
    """Cap on context steps per sequence (oldest steps dropped first); None: no cap."""
    p_bursty: float | None = None
    """If set, each sequence is bursty with this probability and trajectories otherwise
    (mode must then be bursty or trajectories)."""
    partial: bool = False
    """Context episodes are random contiguous pieces instead of whole episodes: the first step
    uniform over the episode's L steps, the last uniform over the steps from there on (a piece
    holds the episode's first step with probability 1/L and its last with H_L / L)."""
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
        """Raise :class:`TrajbenchError` naming the first bad knob."""
        mode = get_mode(self.mode)
        if self.instruction not in INSTRUCTIONS:
            raise TrajbenchError(
                f"unknown instruction mode {self.instruction!r}; expected one of {INSTRUCTIONS}"
            )
        if not _is_int(self.k):
            raise TrajbenchError(f"k must be an integer, got {self.k!r}")
        if self.k < 0 or (self.k == 0 and mode.has_context):
            raise TrajbenchError(f"k must be >= 1 for mode {self.mode!r}, got {self.k}")
        if self.context_steps is not None and (
            not _is_int(self.context_steps) or self.context_steps < 1
        ):
            raise TrajbenchError(f"context_steps must be >= 1 or None, got {self.context_steps}")
        if self.p_bursty is not None:
            if not 0.0 <= self.p_bursty <= 1.0:  # also refuses NaN
                raise TrajbenchError(f"p_bursty must be in [0, 1], got {self.p_bursty}")
            if not mode.has_context or not mode.ordered:
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

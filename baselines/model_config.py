"""The policy network's architecture as a config (``--model.*``): a module of its own, so the
training config and the sizing read it without the model.

Example:
    ModelConfig(backbone="mamba2", d_model=32).validate()
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from trajbench.errors import TrajbenchError

from .backbones import BACKBONES, Backbone

BackboneName = Literal[tuple(BACKBONES)]  # type: ignore[valid-type]  (the registered backbones)


@dataclass
class ModelConfig:
    """The policy network's architecture. What it reads (the observation encoding, the mission
    vocabulary) comes from the data it is trained on, not from here."""

    backbone: BackboneName = "llama"
    """Sequence model between the token embedding and the action head: llama (pre-norm RMSNorm,
    RoPE, SwiGLU, sdpa), gpt2 (LayerNorm, learned positions, GELU), mamba2 (a selective
    state-space model) or lstm (torch's LSTM). See trajbench.baselines.backbones."""
    d_model: int = 64
    """Width of the residual stream (token embedding size; the LSTM's hidden size)."""
    n_layers: int = 2
    """Number of blocks (LSTM: stacked layers)."""
    n_heads: int = 4
    """Attention heads per block (mamba2: SSM heads of width 2 * d_model / n_heads); must divide
    d_model."""
    d_ff: int | None = None
    """Hidden width of the feed-forward layers of llama and gpt2; None means 4 * d_model."""
    state_size: int = 64
    """mamba2: size of each head's SSM state."""
    max_positions: int = 2048
    """Longest sequence an attention backbone accepts (GPT-2: its learned position table; Llama:
    RoPE's max_position_embeddings). Recurrent backbones have no limit."""
    dropout: float = 0.0
    """Dropout on the token embeddings and inside the backbone (mamba2 has none inside)."""

    @property
    def ff_width(self) -> int:
        return 4 * self.d_model if self.d_ff is None else self.d_ff

    @property
    def kind(self) -> Backbone:
        """The backbone's registry entry."""
        return BACKBONES[self.backbone]

    def validate(self) -> None:
        """Raise :class:`TrajbenchError` listing every bad field."""
        problems = []
        if self.d_model < 1 or self.n_heads < 1 or self.d_model % self.n_heads:
            problems.append(f"n_heads ({self.n_heads}) must divide d_model ({self.d_model})")
        if min(self.n_layers, self.ff_width, self.max_positions, self.state_size) < 1:
            problems.append("n_layers, d_ff, state_size and max_positions must be >= 1")
        if self.backbone not in BACKBONES:
            problems.append(f"backbone must be one of {list(BACKBONES)}, got {self.backbone!r}")
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"dropout must be in [0, 1), got {self.dropout}")
        if problems:
            raise TrajbenchError("bad model config: " + "; ".join(problems))

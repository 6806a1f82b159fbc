"""The classic recurrent baseline: a stack of torch LSTM layers fed the model's token embeddings.

It reads the same tokens through the same embedding and action head as every other backbone
(:class:`~trajbench.baselines.transformer.TrajectoryTransformer`); only the sequence mixing is an
LSTM. Its cache is its state, ``(h, c)`` per layer (:class:`LSTMState`), carried from step to step.

Padding: a PAD token must change nothing, wherever it is (batched decoding left-pads rows). An
LSTM's state moves even on a zero input (its biases), so a masked call moves each row's real tokens
to the front, runs them as a packed sequence of the row's own length from the row's state, and
puts the outputs back in place: exact for any mask, in one call.

Example:
    >>> lstm = LSTMBackbone(d_model=8, n_layers=2)
    >>> x = torch.randn(2, 5, 8)
    >>> mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    >>> y, state = lstm(x, mask, LSTMState())
    >>> alone, _ = lstm(x[:1, 2:])
    >>> torch.allclose(y[0, 2:], alone[0], atol=1e-6), tuple(state.h.shape)
    (True, (2, 2, 8))
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

WEIGHTS_FILE = "model.safetensors"


@dataclass
class LSTMState:
    """The LSTM's cache: ``h`` and ``c``, ``[n_layers, B, d_model]`` each; None before any token."""

    h: Tensor | None = None
    c: Tensor | None = None

    def select(self, idx: Tensor) -> None:
        """Keep rows ``idx`` (in their new order)."""
        if self.h is not None:
            self.h, self.c = self.h[:, idx], self.c[:, idx]


class LSTMBackbone(nn.Module):
    """``n_layers`` LSTM layers of width ``d_model``: ``[B, T, d]`` embeddings -> ``[B, T, d]``.

    A LayerNorm comes first, as every ``transformers`` block starts with a norm: the token
    embeddings start small (std 0.02), and an LSTM has nothing else to scale them.

    Args:
        d_model: Input and hidden width.
        n_layers: Stacked LSTM layers.
        dropout: Dropout between layers (needs ``n_layers > 1``).
    """

    def __init__(self, d_model: int, n_layers: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.lstm = nn.LSTM(
            d_model, d_model, n_layers, batch_first=True, dropout=dropout if n_layers > 1 else 0.0
        )

    def forward(
        self, x: Tensor, mask: Tensor | None = None, state: LSTMState | None = None
    ) -> tuple[Tensor, LSTMState | None]:
        """Outputs at every position, and ``state`` advanced over the real tokens (in place).

        Args:
            x: ``[B, T, d]`` embeddings.
            mask: ``[B, T]``, 0 on PAD tokens (anywhere); None: every token is real.
            state: The state to start from and advance; None: start from zeros, keep nothing.

        Returns:
            ``(outputs [B, T, d], state)``; outputs on PAD tokens are 0.
        """
        start = None if state is None or state.h is None else (state.h, state.c)
        x = self.norm(x)
        if mask is None or bool(mask.all()):
            y, (h, c) = self.lstm(x, start)
        else:
            y, (h, c) = self._masked(x, mask.bool(), start)
        if state is not None:
            state.h, state.c = h, c
        return y, state

    def _masked(
        self, x: Tensor, mask: Tensor, start: tuple[Tensor, Tensor] | None
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """Each row's real tokens as one packed sequence; rows without any keep their state."""
        B, T, d = x.shape
        if start is None:
            zeros = x.new_zeros(self.lstm.num_layers, B, d)
            start = (zeros, zeros)
        lengths = mask.sum(1)
        # A stable sort of "is padding" puts each row's real tokens first, in their order.
        order = torch.sort((~mask).to(torch.int8), dim=1, stable=True).indices
        compact = x.gather(1, order.unsqueeze(-1).expand(-1, -1, d))
        live = (lengths > 0).nonzero().squeeze(-1)
        y = x.new_zeros(B, T, d)
        h, c = start[0].clone(), start[1].clone()
        if len(live):
            packed = pack_padded_sequence(
                compact[live], lengths[live].cpu(), batch_first=True, enforce_sorted=False
            )
            out, (h_live, c_live) = self.lstm(packed, (start[0][:, live], start[1][:, live]))
            out, _ = pad_packed_sequence(out, batch_first=True, total_length=T)
            # Position i of the compact row came from position order[i]; beyond the row's length
            # the packed output is 0, and order points at the row's PAD tokens.
            y[live] = out.new_zeros(out.shape).scatter(
                1, order[live].unsqueeze(-1).expand(-1, -1, d), out
            )
            h[:, live], c[:, live] = h_live, c_live
        return y, (h, c)

    def save_pretrained(self, directory: str | Path, **_: object) -> None:
        """Write the weights to ``directory/model.safetensors`` (as ``transformers`` models do)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(state, directory / WEIGHTS_FILE)

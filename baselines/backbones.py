"""The backbone registry: every sequence model the policy network can use, by name.

A backbone maps token embeddings ``[B, T, d_model]`` to features ``[B, T, d_model]``, causally;
:class:`~trajbench.baselines.transformer.TrajectoryTransformer` puts the same token embedding in
front and the same action head behind every one. An entry (:class:`Backbone`) says how to build it
from a :class:`~trajbench.baselines.model_config.ModelConfig`, how to run it, and what its cache
is, so that rollouts step it token by token:

| name | model | cache |
|---|---|---|
| ``llama`` | ``transformers.LlamaModel`` (RMSNorm, RoPE, SwiGLU, sdpa) | keys and values (``kv``) |
| ``gpt2`` | ``transformers.GPT2Model`` (LayerNorm, learned positions, GELU) | ``kv`` |
| ``mamba2`` | ``transformers.Mamba2Model`` (selective state space, chunked scan in torch) | ``state`` |
| ``lstm`` | :class:`~trajbench.baselines.lstm.LSTMBackbone` (``torch.nn.LSTM``) | ``state`` |

A ``kv`` cache grows by one column per token; rows are left-padded and an attention mask hides the
padding. A ``state`` cache has a fixed size per row, so a PAD token must leave it untouched: the
LSTM packs each row's real tokens (:mod:`trajbench.baselines.lstm`); Mamba-2 starts a sequence
left-padded (zero inputs keep a zero state) and steps through later padding one token at a time,
restoring the rows it pads. An entry whose ``cache`` is None has no usable cache: its rollouts
re-encode the whole sequence every step (the policy says so).

Mamba-2 rather than Mamba: ``transformers``' Mamba (v1) runs on CPU, but its reference scan
indexes one time step at a time, so its backward pass grows with the square of the length
(measured on one CPU thread, 32 rows, d_model 64: 8 s at 100 tokens, 170 s at 200) and it cannot
continue a cached state over more than one token; Mamba-2's chunked scan trains in about 0.6 s
on the same batch of 100 tokens and continues its state over chunks.

Adding a backbone is one entry in :data:`BACKBONES`.

Example:
    >>> from trajbench.baselines.model_config import ModelConfig
    >>> kind = BACKBONES["mamba2"]
    >>> module = kind.build(ModelConfig(backbone="mamba2", d_model=8, n_layers=1, n_heads=2))
    >>> cache = kind.new_cache(module)
    >>> kind.run(module, torch.randn(2, 3, 8), None, None, cache).shape  # fills the cache
    torch.Size([2, 3, 8])
    >>> kind.run(module, torch.randn(2, 1, 8), None, None, cache).shape  # one more token each
    torch.Size([2, 1, 8])
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol

import torch
import transformers
from torch import Tensor, nn
from transformers import (
    DynamicCache,
    GPT2Config,
    GPT2Model,
    LlamaConfig,
    LlamaModel,
    Mamba2Config,
    Mamba2Model,
    PretrainedConfig,
    cache_utils,
)

from trajbench.errors import TrajbenchError

from .lstm import LSTMBackbone, LSTMState


class BackboneConfig(Protocol):
    """What a backbone reads of its :class:`~trajbench.baselines.model_config.ModelConfig`
    (a protocol, so that the config's module may import this registry)."""

    d_model: int
    n_layers: int
    n_heads: int
    state_size: int
    max_positions: int
    dropout: float

    @property
    def ff_width(self) -> int: ...


CacheKind = Literal["kv", "state"]

#: Arguments every ``transformers`` backbone gets: no vocabulary (fed ``inputs_embeds``).
_HF_COMMON = dict(vocab_size=1, bos_token_id=None, eos_token_id=None, pad_token_id=None)
_HF_COMMON.update(use_cache=False, tie_word_embeddings=False)
#: transformers renamed the backbones' ``past_key_values`` argument to ``cache`` in v5.
_CACHE_ARG = (
    "cache" if "cache" in inspect.signature(LlamaModel.forward).parameters else "past_key_values"
)


@dataclass(frozen=True)
class Backbone(ABC):
    """One kind of backbone: how to build, run and cache it (see the module docstring)."""

    name: str
    about: str
    """One line for ``--help`` and the docs."""
    cache: CacheKind | None
    """kv (keys and values, one column per token), state (fixed size per row), or None: no usable
    cache, rollouts re-encode the sequence every step."""
    attention: bool
    """Attends over positions: ``max_positions`` bounds it, and it has attention weights."""
    ensemble: bool = True
    """Trains as a batched ensemble (``torch.func.vmap`` over stacked weights, see
    :mod:`trajbench.pipeline.ensemble`); False: one model per process."""

    @abstractmethod
    def build(self, cfg: BackboneConfig) -> nn.Module:
        """A randomly initialised backbone of ``cfg``'s size."""

    @abstractmethod
    def run(
        self,
        module: nn.Module,
        x: Tensor,
        attention_mask: Tensor | None,
        position_ids: Tensor | None,
        cache: Any,
    ) -> Tensor:
        """Features ``[B, T, d]`` of embeddings ``x``; extends ``cache`` in place (None: none).

        ``attention_mask`` covers the cache and ``x`` (``[B, cached + T]``), 0 on PAD tokens.
        """

    @abstractmethod
    def new_cache(self, module: nn.Module) -> Any:
        """An empty cache for ``module``."""

    @abstractmethod
    def select(self, cache: Any, idx: Tensor, n_drop: int) -> None:
        """Keep rows ``idx`` of ``cache``, dropping ``n_drop`` leading columns that are padding in
        every kept row (in place)."""

    @abstractmethod
    def matmul_params(self, cfg: BackboneConfig) -> int:
        """Parameters per layer that take part in a matrix multiplication (for FLOP counts)."""


@dataclass(frozen=True)
class Attention(Backbone):
    """A ``transformers`` attention model with a key/value cache."""

    cache: CacheKind | None = "kv"
    attention: bool = True
    model_class: ClassVar[type] = LlamaModel

    @abstractmethod
    def config(self, cfg: BackboneConfig) -> PretrainedConfig:
        """The ``transformers`` config of ``cfg``."""

    def build(self, cfg: BackboneConfig) -> nn.Module:
        return self.model_class(self.config(cfg))

    def run(self, module, x, attention_mask, position_ids, cache):
        out = module(
            inputs_embeds=x,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=cache is not None,
            **{_CACHE_ARG: cache},
        )
        return out.last_hidden_state

    def new_cache(self, module):
        return DynamicCache(config=module.config)

    def select(self, cache, idx, n_drop):
        cache.batch_select_indices(idx)
        if n_drop:
            for layer in cache.layers:
                layer.keys = layer.keys[..., n_drop:, :]
                layer.values = layer.values[..., n_drop:, :]


@dataclass(frozen=True)
class Llama(Attention):
    def config(self, cfg):
        return LlamaConfig(
            hidden_size=cfg.d_model,
            intermediate_size=cfg.ff_width,
            num_hidden_layers=cfg.n_layers,
            num_attention_heads=cfg.n_heads,
            num_key_value_heads=cfg.n_heads,
            max_position_embeddings=cfg.max_positions,
            attention_dropout=cfg.dropout,
            attn_implementation="sdpa",
            **_HF_COMMON,
        )

    def matmul_params(self, cfg):
        return 4 * cfg.d_model**2 + 3 * cfg.d_model * cfg.ff_width  # SwiGLU: three matrices


@dataclass(frozen=True)
class GPT2(Attention):
    model_class: ClassVar[type] = GPT2Model

    def config(self, cfg):
        return GPT2Config(
            n_embd=cfg.d_model,
            n_inner=cfg.ff_width,
            n_layer=cfg.n_layers,
            n_head=cfg.n_heads,
            n_positions=cfg.max_positions,
            resid_pdrop=cfg.dropout,
            embd_pdrop=cfg.dropout,
            attn_pdrop=cfg.dropout,
            attn_implementation="sdpa",
            **_HF_COMMON,
        )

    def matmul_params(self, cfg):
        return 4 * cfg.d_model**2 + 2 * cfg.d_model * cfg.ff_width


@dataclass(frozen=True)
class Mamba2(Backbone):
    """``transformers``' Mamba-2: ``n_heads`` heads of width ``2 * d_model / n_heads``."""

    cache: CacheKind | None = "state"
    attention: bool = False
    chunk_size: int = 32
    """Scan chunk (speed only: any size gives the same outputs); 32 was fastest on a CPU."""

    def build(self, cfg: BackboneConfig) -> nn.Module:
        if not hasattr(cache_utils, "LinearAttentionLayer"):
            raise TrajbenchError(
                "the mamba2 backbone needs a transformers whose caches hold state layers (5.x); "
                f"this one is {transformers.__version__}"
            )
        config = Mamba2Config(
            hidden_size=cfg.d_model,
            num_hidden_layers=cfg.n_layers,
            num_heads=cfg.n_heads,
            head_dim=2 * cfg.d_model // cfg.n_heads,
            expand=2,
            n_groups=1,
            state_size=cfg.state_size,
            chunk_size=self.chunk_size,
            **_HF_COMMON,
        )
        return Mamba2Model(config)

    def run(self, module, x, attention_mask, position_ids, cache):
        n = x.shape[1]
        mask = None if attention_mask is None else attention_mask[:, -n:].bool()
        if cache is None or not cache.layers[0].has_previous_state[0]:
            # A new sequence: padding before each row's first token keeps its state at zero.
            if mask is not None and bool((mask[:, 1:] < mask[:, :-1]).any()):
                raise ValueError("a new Mamba-2 sequence takes padding only before its first token")
            out = module(
                inputs_embeds=x, attention_mask=mask, cache=cache, use_cache=cache is not None
            )
            return out.last_hidden_state
        # Continuing a state: through the last column that pads any row, one token at a time,
        # putting back the state of the rows it pads; the rest in one chunk.
        holes = (~mask).any(0).nonzero() if mask is not None else []
        last = int(holes[-1]) if len(holes) else -1
        outs = []
        for t in range(last + 1):
            if not mask[:, t].any():
                outs.append(torch.zeros_like(x[:, t : t + 1]))
                continue
            saved = _mamba_states(cache, clone=True)
            outs.append(_step(module, x[:, t : t + 1], cache))
            for old, new in zip(saved, _mamba_states(cache), strict=True):
                keep = mask[:, t].view(-1, *[1] * (new.dim() - 1))
                new.copy_(torch.where(keep, new, old))
        if last + 1 < n:
            outs.append(_step(module, x[:, last + 1 :], cache))
        return torch.cat(outs, 1)

    def new_cache(self, module):
        return DynamicCache(config=module.config)

    def select(self, cache, idx, n_drop):
        for layer in cache.layers:
            layer.reorder_cache(idx)

    def matmul_params(self, cfg):
        d, inner, n = cfg.d_model, 2 * cfg.d_model, cfg.state_size
        # in_proj (gate, x, B, C, dt), out_proj, and the state update and readout per token.
        return d * (2 * inner + 2 * n + cfg.n_heads) + inner * d + 2 * inner * n


def _step(module: nn.Module, x: Tensor, cache: DynamicCache) -> Tensor:
    return module(inputs_embeds=x, cache=cache, use_cache=True).last_hidden_state


def _mamba_states(cache: DynamicCache, clone: bool = False) -> list[Tensor]:
    """Every layer's convolution and SSM state tensors (rows first)."""
    out = [t for layer in cache.layers for t in (layer.conv_states[0], layer.recurrent_states[0])]
    return [t.clone() for t in out] if clone else out


@dataclass(frozen=True)
class LSTM(Backbone):
    """:class:`~trajbench.baselines.lstm.LSTMBackbone`: ``n_layers`` LSTM layers of ``d_model``."""

    cache: CacheKind | None = "state"
    attention: bool = False
    ensemble: bool = False  # torch has no vmap batching rule for aten::lstm

    def build(self, cfg: BackboneConfig) -> nn.Module:
        return LSTMBackbone(cfg.d_model, cfg.n_layers, cfg.dropout)

    def run(self, module, x, attention_mask, position_ids, cache):
        mask = None if attention_mask is None else attention_mask[:, -x.shape[1] :]
        return module(x, mask, cache)[0]

    def new_cache(self, module):
        return LSTMState()

    def select(self, cache, idx, n_drop):
        cache.select(idx)

    def matmul_params(self, cfg):
        return 8 * cfg.d_model**2  # four gates, each from the input and the hidden state


BACKBONES: dict[str, Backbone] = {
    b.name: b
    for b in (
        Llama("llama", "Llama: pre-norm RMSNorm, RoPE, SwiGLU, sdpa attention"),
        GPT2("gpt2", "GPT-2: LayerNorm, learned positions, GELU"),
        Mamba2("mamba2", "Mamba-2: a selective state-space model (no attention)"),
        LSTM("lstm", "LSTM: torch's classic recurrent network"),
    )
}

"""The trajectory transformer: one token per time step, a causal `transformers` backbone, an action head.

Read top to bottom:

1. :class:`ModelConfig` -- the architecture, documented field by field.
2. :class:`TrajectoryTransformer` -- token embedding (see :mod:`trajbench.batch` for the token
   contract), a causal backbone from the registry in :mod:`trajbench.baselines.backbones`
   (``transformers``' ``LlamaModel`` with sdpa attention by default; ``GPT2Model``, ``Mamba2Model``
   or torch's LSTM) fed ``inputs_embeds``, and a linear head to action logits. ``loss`` for
   training, ``prefill`` / ``step`` for cached decoding, ``save_pretrained`` / ``from_pretrained``
   for checkpoints. (The name stays for every backbone: the model is what it does, not its mixer.)
3. Decoding helpers: :func:`positions_from_mask` and :func:`select_rows`.

Training batches are right-padded and need no attention mask: causal attention already keeps
every real token from seeing the padding after it, and the loss ignores padding (``target`` is
``IGNORE`` there). Without a mask sdpa can use its fused ``is_causal`` kernels.

Cached decoding for batched rollouts (contexts of different lengths, rows finishing at different
times) uses *left* padding and a 2D ``attention_mask`` (1 = real token, 0 = padding), and lets the
positions follow the mask (``cumsum(mask) - 1``) so that each row sees exactly what it would see
alone. The cache is the backbone's: keys and values for attention, the state for recurrent
backbones (which keep it untouched through PAD tokens)::

    # contexts: a left-padded dict of [B, T0] token tensors; mask0: [B, T0] with 0 on the padding
    logits, cache = model.prefill(contexts, mask0)              # logits of the last token: [B, A]
    mask = mask0
    while rows are left:
        actions = logits.argmax(-1)                              # act; step the environments
        # new: [B, n] tokens (n >= 1: e.g. the next step, or bos + mission words + first step
        # when an episode restarts). Rows with fewer new tokens are left-padded with PAD tokens
        # and 0 in new_mask; PAD tokens are holes that change nothing.
        mask = torch.cat([mask, new_mask], dim=1)
        logits, cache = model.step(new, cache, mask)
        keep = ...                                               # indices of unfinished rows
        cache, mask = model.select_rows(cache, mask, keep)       # also select logits[keep] etc.

Under ``torch.autocast("cuda", dtype=torch.bfloat16)`` and ``torch.compile`` the forward pass has
no Python branching on tensor values: token kinds are combined with masks.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from transformers.utils import logging as hf_logging

from trajbench.batch import IGNORE, STEP, WORD
from trajbench.configs import from_dict, to_dict
from trajbench.envs import ObsEncoding
from trajbench.errors import TrajbenchError
from trajbench.io import atomic_directory
from trajbench.vocab import MissionVocab

from .backbones import BACKBONES, Backbone
from .model_config import ModelConfig

#: Marker written into ``trajbench_model.json``; a directory without it is not a trajbench model.
MODEL_FORMAT = "trajbench-model"
MODEL_FORMAT_VERSION = 2
CONFIG_FILE = "trajbench_model.json"
POLICY_FILE = "policy.safetensors"
BACKBONE_DIR = "backbone"
BACKBONE_FILE = "model.safetensors"


@contextlib.contextmanager
def _no_progress_bars() -> Iterator[None]:
    """Silence transformers' save/load progress bars (they would break the training bar)."""
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


class TrajectoryTransformer(nn.Module):
    """Token embedding -> causal backbone -> action logits.

    Example:
        >>> from trajbench.envs import ObsEncoding
        >>> from trajbench.vocab import MissionVocab
        >>> model = TrajectoryTransformer(ModelConfig(d_model=32, n_layers=1, n_heads=2),
        ...                               ObsEncoding("dark-room", (9, 9), 5), MissionVocab.build([]))
        >>> B, T = 2, 7
        >>> tokens = {
        ...     "kind": torch.full((B, T), STEP), "word": torch.zeros(B, T, dtype=torch.long),
        ...     "obs": torch.zeros(B, T, 2, dtype=torch.uint8),
        ...     "prev_action": torch.full((B, T), 5), "prev_reward": torch.zeros(B, T),
        ...     "shown_action": torch.full((B, T), 6), "shown_reward": torch.zeros(B, T),
        ...     "is_query": torch.ones(B, T, dtype=torch.bool)}
        >>> logits, _ = model(tokens)
        >>> tuple(logits.shape)
        (2, 7, 5)
    """

    def __init__(self, cfg: ModelConfig, encoding: ObsEncoding, vocab: MissionVocab) -> None:
        super().__init__()
        cfg.validate()
        self.cfg, self.encoding, self.vocab = cfg, encoding, vocab
        d = cfg.d_model
        sizes, n_actions = encoding.feature_sizes, encoding.n_actions
        # Observation: one table for all features; feature i's value v is row offsets[i] + v.
        # Summing the rows is a linear layer on the concatenated one-hots, without building them.
        self.obs_embed = nn.EmbeddingBag(sum(sizes), d, mode="sum")
        offsets = torch.tensor([0, *sizes[:-1]]).cumsum(0)
        self.register_buffer("obs_offsets", offsets, persistent=False)
        # Actions: the real ones, then start_action (n_actions) and hidden_action (n_actions + 1).
        self.prev_action_embed = nn.Embedding(n_actions + 2, d)
        self.shown_action_embed = nn.Embedding(n_actions + 2, d)
        self.prev_reward_proj = nn.Linear(1, d, bias=False)
        self.shown_reward_proj = nn.Linear(1, d, bias=False)
        self.word_embed = nn.Embedding(len(vocab), d)
        self.segment_embed = nn.Embedding(2, d)  # 0: context, 1: query
        self.drop = nn.Dropout(cfg.dropout)
        self.kind = cfg.kind
        self.backbone = self.kind.build(cfg)
        self.head = nn.Linear(d, n_actions)
        embeddings = (self.obs_embed, self.prev_action_embed, self.shown_action_embed)
        embeddings += (self.word_embed, self.segment_embed)
        for module in (*embeddings, self.prev_reward_proj, self.shown_reward_proj, self.head):
            nn.init.normal_(module.weight, std=0.02)
        nn.init.zeros_(self.head.bias)
        # A transformers backbone's token table is never used (we feed inputs_embeds). Frozen, it
        # gets no gradient, which DistributedDataParallel requires of trainable parameters.
        if hasattr(self.backbone, "get_input_embeddings"):
            self.backbone.get_input_embeddings().requires_grad_(False)

    def num_parameters(self) -> int:
        """Number of parameters (a transformers backbone's unused, frozen 1-row token table
        included)."""
        return sum(p.numel() for p in self.parameters())

    def embed(self, tokens: dict[str, Tensor]) -> Tensor:
        """Token embeddings ``[B, T, d_model]``; zero on PAD tokens."""
        kind = tokens["kind"]
        is_step, is_word = kind == STEP, kind == WORD
        # Ids outside their kind are replaced by 0, so whatever padding holds is never looked up.
        B, T, n_features = tokens["obs"].shape
        obs_ids = torch.where(is_step.unsqueeze(-1), tokens["obs"].long(), 0) + self.obs_offsets
        step = (
            self.obs_embed(obs_ids.view(B * T, n_features)).view(B, T, -1)
            + self.prev_action_embed(torch.where(is_step, tokens["prev_action"], 0))
            + self.prev_reward_proj(tokens["prev_reward"].float().unsqueeze(-1))
            + self.shown_action_embed(torch.where(is_step, tokens["shown_action"], 0))
            + self.shown_reward_proj(tokens["shown_reward"].float().unsqueeze(-1))
        )
        word = self.word_embed(torch.where(is_word, tokens["word"], 0))
        segment = self.segment_embed(tokens["is_query"].long())
        is_step, is_word = is_step.unsqueeze(-1), is_word.unsqueeze(-1)
        x = torch.where(is_step, step, 0.0) + torch.where(is_word, word, 0.0)
        x = x + torch.where(is_step | is_word, segment, 0.0)
        return self.drop(x)

    def forward(
        self,
        tokens: dict[str, Tensor],
        attention_mask: Tensor | None = None,
        position_ids: Tensor | None = None,
        past_key_values: Any = None,
        use_cache: bool = False,
    ) -> tuple[Tensor, Any]:
        """Action logits at every position.

        Args:
            tokens: ``[B, T]`` tensors ``kind, word, obs ([B, T, F]), prev_action, prev_reward,
                shown_action, shown_reward, is_query`` (``Batch.to_torch``; extra keys ignored).
            attention_mask: ``[B, past + T]``, 1 on real tokens, 0 on padding; ``None`` for
                right-padded training batches (see the module docstring).
            position_ids: ``[B, T]`` positions; ``None`` counts from the cache length (and checks
                the length against ``max_positions``). Pass them with left padding
                (:func:`positions_from_mask`). Recurrent backbones have none.
            past_key_values: The backbone's cache from an earlier call (key/value or state),
                extended in place.
            use_cache: Return the (possibly new) cache.

        Returns:
            ``(logits [B, T, n_actions], cache or None)``.
        """
        if self.kind.attention and position_ids is None:
            past = 0 if past_key_values is None else past_key_values.get_seq_length()
            if past + tokens["kind"].shape[1] > self.cfg.max_positions:
                raise TrajbenchError(
                    f"sequence of {past + tokens['kind'].shape[1]} tokens is longer than the "
                    f"model's max_positions ({self.cfg.max_positions})"
                )
        x = self.embed(tokens)
        cache = None
        if use_cache:
            cache = (
                self.kind.new_cache(self.backbone) if past_key_values is None else past_key_values
            )
        h = self.kind.run(self.backbone, x, attention_mask, position_ids, cache)
        return self.head(h), cache

    def loss(self, tokens: dict[str, Tensor], normalizer: float | Tensor | None = None) -> Tensor:
        """Cross-entropy of the action predictions at positions where ``target != IGNORE``.

        Args:
            tokens: Model inputs and ``target`` (``Batch.to_torch()``).
            normalizer: Divide the summed loss by this instead of this batch's number of targets:
                under DistributedDataParallel pass the number of targets in the *global* batch, so
                that averaging gradients over ranks gives the single-process gradient.
        """
        logits, _ = self(tokens)
        return action_loss(logits, tokens["target"], normalizer)

    # ---- cached decoding --------------------------------------------------------------------

    @torch.no_grad()
    def prefill(self, tokens: dict[str, Tensor], attention_mask: Tensor) -> tuple[Tensor, Any]:
        """Encode left-padded contexts into a new cache.

        Args:
            tokens: ``[B, T]`` token tensors, rows left-padded with PAD tokens.
            attention_mask: ``[B, T]``, 0 on the left padding.

        Returns:
            ``(logits of the last position [B, n_actions], cache)``.
        """
        return self.step(tokens, self.kind.new_cache(self.backbone), attention_mask)

    @torch.no_grad()
    def step(
        self, tokens: dict[str, Tensor], cache: Any, attention_mask: Tensor
    ) -> tuple[Tensor, Any]:
        """Feed ``n >= 1`` new tokens per row after the cached ones.

        Args:
            tokens: ``[B, n]`` new tokens; rows with fewer are left-padded with PAD tokens
                (and 0 in the mask), so that every row's last token is real.
            cache: From :meth:`prefill` or an earlier :meth:`step`; extended in place.
            attention_mask: ``[B, cached + n]``: the mask so far with the new tokens' appended.

        Returns:
            ``(logits of the last position [B, n_actions], cache)``.
        """
        n_new = tokens["kind"].shape[1]
        position_ids = None
        if self.kind.attention:
            position_ids = positions_from_mask(attention_mask)[:, -n_new:]
            if int(position_ids.max()) >= self.cfg.max_positions:
                raise TrajbenchError(
                    f"sequence is longer than the model's max_positions ({self.cfg.max_positions})"
                )
        logits, cache = self(tokens, attention_mask, position_ids, cache, use_cache=True)
        return logits[:, -1], cache

    def select_rows(self, cache: Any, attention_mask: Tensor, idx: Tensor) -> tuple[Any, Tensor]:
        """Keep rows ``idx`` of a decoding state, then drop the left padding they all share.

        Args:
            cache: The cache from :meth:`prefill` / :meth:`step`; changed in place.
            attention_mask: ``[B, L]``, the mask that covers the cache.
            idx: 1D indices (or a boolean mask) of the rows to keep, in their new order.

        Returns:
            ``(cache, attention_mask)`` for the kept rows.
        """
        return select_rows(cache, attention_mask, idx, self.kind)

    # ---- checkpoints ------------------------------------------------------------------------

    def save_pretrained(
        self, directory: str | Path, extra_files: dict[str, str] | None = None
    ) -> None:
        """Write the model to ``directory`` atomically (replacing an earlier trajbench model).

        Layout: ``backbone/`` (the backbone's own ``save_pretrained``: ``model.safetensors``, and
        a ``transformers`` backbone's ``config.json``),
        ``policy.safetensors`` (embeddings and head), ``trajbench_model.json`` (the
        :class:`ModelConfig`, the observation encoding and the mission vocabulary), and
        ``extra_files`` (name -> text, e.g. the training record written by ``trajbench train``).
        """
        directory = Path(directory)
        replaceable = directory.is_dir() and (
            (directory / CONFIG_FILE).is_file() or not any(directory.iterdir())
        )
        if directory.exists() and not replaceable:
            raise TrajbenchError(
                f"{directory} exists and is not a trajbench model; not overwriting it"
            )
        meta = {
            "format": MODEL_FORMAT,
            "format_version": MODEL_FORMAT_VERSION,
            "model": to_dict(self.cfg),
            "encoding": to_dict(self.encoding),
            "vocab": self.vocab.itos,
        }
        text = json.dumps(meta, indent=2, allow_nan=False) + "\n"  # fails before writing anything
        policy = {
            k: v.detach().cpu().contiguous()
            for k, v in self.state_dict().items()
            if not k.startswith("backbone.")
        }
        with atomic_directory(directory, overwrite=True) as tmp, _no_progress_bars():
            self.backbone.save_pretrained(tmp / BACKBONE_DIR, safe_serialization=True)
            save_file(policy, tmp / POLICY_FILE, metadata={"format": MODEL_FORMAT})
            (tmp / CONFIG_FILE).write_text(text)
            for name, content in (extra_files or {}).items():
                (tmp / name).write_text(content)

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> TrajectoryTransformer:
        """Load a model written by :meth:`save_pretrained`, on the CPU in eval mode.

        Raises:
            TrajbenchError: The directory is missing, is not a trajbench model, or its weights do
                not match its config.
        """
        directory = Path(directory)
        if not directory.is_dir():
            raise TrajbenchError(f"model directory {directory} does not exist")
        try:
            meta = json.loads((directory / CONFIG_FILE).read_text())
        except (OSError, ValueError) as e:
            raise TrajbenchError(
                f"{directory} is not a trajbench model ({CONFIG_FILE}: {e})"
            ) from e
        if not isinstance(meta, dict) or meta.get("format") != MODEL_FORMAT:
            raise TrajbenchError(
                f"{directory} is not a trajbench model ({CONFIG_FILE} has no format marker)"
            )
        if meta.get("format_version") != MODEL_FORMAT_VERSION:
            raise TrajbenchError(
                f"{directory}: model format version {meta.get('format_version')}, "
                f"this trajbench reads version {MODEL_FORMAT_VERSION}"
            )
        where = f"{directory / CONFIG_FILE}"
        cfg = from_dict(ModelConfig, meta.get("model"), f"{where}: model")
        encoding = from_dict(ObsEncoding, meta.get("encoding"), f"{where}: encoding")
        try:
            vocab = MissionVocab(list(meta.get("vocab") or []))
        except ValueError as e:
            raise TrajbenchError(f"{where}: bad mission vocabulary: {e}") from e
        model = cls(cfg, encoding, vocab)
        try:
            # Strict: every backbone weight must be there, with the shape the config gives.
            model.backbone.load_state_dict(load_file(directory / BACKBONE_DIR / BACKBONE_FILE))
            result = model.load_state_dict(load_file(directory / POLICY_FILE), strict=False)
            missing = [k for k in result.missing_keys if not k.startswith("backbone.")]
            if missing or result.unexpected_keys:
                raise TrajbenchError(f"missing {missing}, unexpected {result.unexpected_keys}")
        except (OSError, RuntimeError, ValueError, TrajbenchError) as e:
            raise TrajbenchError(
                f"{directory}: weights missing or not matching the model config: {e}"
            ) from e
        return model.eval()


def training_flops_per_token(cfg: ModelConfig, n_actions: int, mean_context: float) -> float:
    """Training FLOPs per token: 6 per parameter that takes part in a matrix multiplication
    (embedding lookups excluded; a recurrent backbone's state update counted as such), plus, for
    attention backbones, causal attention over ``mean_context`` earlier tokens (forward and
    backward), as in the PaLM/Chinchilla accounting.

    Example:
        >>> training_flops_per_token(ModelConfig(d_model=64, n_layers=2), 5, 0.0)
        788352.0
    """
    kind = cfg.kind
    matmul = cfg.n_layers * kind.matmul_params(cfg) + cfg.d_model * n_actions
    attention = 6 * cfg.n_layers * cfg.d_model * mean_context if kind.attention else 0.0
    return 6 * matmul + attention


def action_loss(logits: Tensor, target: Tensor, normalizer: float | Tensor | None = None) -> Tensor:
    """Summed float32 cross-entropy over positions with a target, divided by ``normalizer``
    (default: their number). Shared by :meth:`TrajectoryTransformer.loss` and the training step,
    which calls the (possibly DDP-wrapped or compiled) model itself and then this."""
    total = F.cross_entropy(
        logits.float().flatten(0, 1), target.flatten(), ignore_index=IGNORE, reduction="sum"
    )
    if normalizer is None:
        normalizer = (target != IGNORE).sum().clamp(min=1)
    return total / normalizer


# ---- decoding helpers -----------------------------------------------------------------------


def positions_from_mask(attention_mask: Tensor) -> Tensor:
    """Position of each token counting only real tokens: ``cumsum(mask) - 1``, 0 on left padding.

    Example:
        >>> positions_from_mask(torch.tensor([[0, 0, 1, 1, 0, 1]])).tolist()
        [[0, 0, 0, 1, 1, 2]]
    """
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def select_rows(
    cache: Any, attention_mask: Tensor, idx: Tensor, kind: Backbone | None = None
) -> tuple[Any, Tensor]:
    """Keep rows ``idx`` of a decoding state, then drop the left padding they all share.

    Args:
        cache: The cache from :meth:`TrajectoryTransformer.prefill` / ``step``; changed in place.
        attention_mask: ``[B, L]``, the mask that covers the cache.
        idx: 1D indices (or a boolean mask) of the rows to keep, in their new order.
        kind: The backbone's registry entry (None: an attention backbone's key/value cache).

    Returns:
        ``(cache, attention_mask)`` for the kept rows.
    """
    if idx.dtype == torch.bool:
        idx = idx.nonzero().squeeze(-1)
    idx = idx.to(attention_mask.device)
    mask = attention_mask[idx]
    # Leading columns that are padding in every kept row are never attended to: drop them.
    # (Positions come from cumsum(mask), so they do not change.)
    n_drop = int(mask.any(0).long().argmax()) if mask.numel() else 0
    (kind or BACKBONES["llama"]).select(cache, idx, n_drop)
    return cache, mask[:, n_drop:]

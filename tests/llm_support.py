"""Shared by the language-model tests (loaded with ``pytest_plugins``; not itself a test module):
a tiny, randomly initialized Llama and a byte-level BPE tokenizer trained here on the text
track's own lines, so no test downloads weights.

- :func:`train_tokenizer`: the tokenizer;
- :func:`save_tiny_lm`: a 2-layer Llama with random weights and that tokenizer, saved with
  ``save_pretrained``;
- the fixture ``tiny_lm``: such a directory, once per test module.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from trajbench.envs import ObsEncoding
from trajbench.text import TextFormat

KEY_DOOR = ObsEncoding("dark-key-to-door", (9, 9, 2), 5)
FMT = TextFormat.of(KEY_DOOR)


def train_tokenizer():
    """A byte-level BPE tokenizer trained on the text track's words (any text encodes)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    texts = [FMT.header(), FMT.query_start("go to the red ball")]
    texts += [
        FMT.step_line(np.array([x, y, k]), a, r)
        for x in range(9)
        for y in range(9)
        for k in (0, 1)
        for a in range(5)
        for r in (0, 1)
    ]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=300, initial_alphabet=alphabet))
    return PreTrainedTokenizerFast(tokenizer_object=tok)


def save_tiny_lm(path: Path, seed: int = 0) -> Path:
    """Write a 2-layer Llama (random weights, ``seed``) and its tokenizer into ``path``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = train_tokenizer()
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
    )
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory) -> Path:
    """A directory holding a 2-layer Llama (random weights) and its tokenizer."""
    return save_tiny_lm(tmp_path_factory.mktemp("tiny-lm"))

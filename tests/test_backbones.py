"""The backbone registry and the recurrent backbones' padding: a PAD token leaves a state alone."""

from __future__ import annotations

import typing

import pytest
import torch

from trajbench.baselines.backbones import BACKBONES
from trajbench.baselines.lstm import LSTMBackbone, LSTMState
from trajbench.baselines.transformer import ModelConfig, training_flops_per_token
from trajbench.configs import from_dict, to_dict

D = 16


def test_every_entry_builds_and_is_a_config_choice():
    assert typing.get_args(typing.get_type_hints(ModelConfig)["backbone"]) == tuple(BACKBONES)
    for name, kind in BACKBONES.items():
        assert kind.name == name and kind.about and kind.cache in ("kv", "state")
        cfg = ModelConfig(backbone=name, d_model=D, n_layers=1, n_heads=2)
        module = kind.build(cfg)
        assert sum(p.numel() for p in module.parameters()) > 0
        assert from_dict(ModelConfig, to_dict(cfg)) == cfg
        assert training_flops_per_token(cfg, 5, 10.0) > 0


def test_attention_flops_grow_with_context_and_recurrent_ones_do_not():
    for name, kind in BACKBONES.items():
        cfg = ModelConfig(backbone=name)
        grows = training_flops_per_token(cfg, 5, 100.0) > training_flops_per_token(cfg, 5, 0.0)
        assert grows == kind.attention


def _lstm_alone(lstm: LSTMBackbone, x: torch.Tensor, state: LSTMState) -> torch.Tensor:
    return lstm(x, None, state)[0]


def test_lstm_packs_real_tokens_wherever_the_padding_is():
    torch.manual_seed(0)
    lstm = LSTMBackbone(D, n_layers=2).eval()
    x = torch.randn(3, 6, D)
    mask = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 0, 1, 0, 0, 1], [0, 0, 0, 0, 0, 0]])
    # A state to continue from: rows have read different prefixes.
    start = LSTMState()
    lstm(torch.randn(3, 4, D), None, start)
    state = LSTMState(start.h.clone(), start.c.clone())
    with torch.no_grad():
        y, _ = lstm(x, mask, state)
        for b in range(2):
            real = mask[b].bool()
            alone = LSTMState(start.h[:, b : b + 1].clone(), start.c[:, b : b + 1].clone())
            ref = _lstm_alone(lstm, x[b : b + 1, real], alone)
            torch.testing.assert_close(y[b, real], ref[0])
            torch.testing.assert_close(state.h[:, b], alone.h[:, 0])
            assert torch.equal(y[b, ~real], torch.zeros_like(y[b, ~real]))
        # A row without a real token keeps its state.
        assert torch.equal(state.h[:, 2], start.h[:, 2]) and torch.equal(
            state.c[:, 2], start.c[:, 2]
        )
        # Without the mask the padding would move the state (the check above can fail).
        plain = LSTMState(start.h.clone(), start.c.clone())
        lstm(x, None, plain)
        assert not torch.allclose(plain.h[:, 0], state.h[:, 0])


def _mamba2():
    cfg = ModelConfig(backbone="mamba2", d_model=D, n_layers=2, n_heads=2, state_size=8)
    torch.manual_seed(0)
    return BACKBONES["mamba2"], BACKBONES["mamba2"].build(cfg).eval()


@torch.no_grad()
def test_mamba2_steps_through_padding_in_a_continued_state():
    kind, module = _mamba2()
    x = torch.randn(2, 9, D)
    ref = kind.run(module, x, None, None, None)
    cache = kind.new_cache(module)
    kind.run(module, x[:, :4], torch.ones(2, 4), None, cache)
    # Row 0 gets 3 new tokens, row 1 gets 5: row 0 is left-padded by two PAD tokens.
    chunk = torch.cat([torch.zeros(1, 2, D), x[:1, 4:7]], 1)
    chunk = torch.cat([chunk, x[1:, 4:9]])
    mask = torch.tensor([[1] * 4 + [0, 0, 1, 1, 1], [1] * 9])
    out = kind.run(module, chunk, mask, None, cache)
    torch.testing.assert_close(out[0, 2:], ref[0, 4:7], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[1], ref[1, 4:9], atol=1e-5, rtol=1e-5)
    # transformers' own masking lets the padding decay a continued state (the check can fail).
    naive = kind.new_cache(module)
    kind.run(module, x[:, :4], None, None, naive)
    out = module(inputs_embeds=chunk, attention_mask=mask, cache=naive, use_cache=True)
    assert not torch.allclose(out.last_hidden_state[0, 2:], ref[0, 4:7], atol=1e-3)


@torch.no_grad()
def test_mamba2_takes_left_padding_on_a_new_sequence_only():
    kind, module = _mamba2()
    x = torch.randn(1, 5, D)
    padded = torch.cat([torch.zeros(1, 3, D), x], 1)
    mask = torch.tensor([[0, 0, 0, 1, 1, 1, 1, 1]])
    out = kind.run(module, padded, mask, None, kind.new_cache(module))
    torch.testing.assert_close(out[:, 3:], kind.run(module, x, None, None, None), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="only before its first token"):
        kind.run(module, padded, torch.tensor([[1, 0, 0, 1, 1, 1, 1, 1]]), None, None)

"""Tests of the trajectory transformer: shapes, loss, causality, checkpoints, cached decoding."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from trajbench.baselines.backbones import BACKBONES as REGISTRY
from trajbench.baselines.transformer import (
    ModelConfig,
    TrajectoryTransformer,
    positions_from_mask,
    select_rows,
)
from trajbench.batch import IGNORE, PAD, STEP, WORD, hidden_action, start_action
from trajbench.envs import ObsEncoding
from trajbench.errors import TrajbenchError
from trajbench.vocab import SPECIALS, MissionVocab

BACKBONES = list(REGISTRY)
ATTENTION = [name for name, kind in REGISTRY.items() if kind.attention]
KEYS = ("kind", "word", "obs", "prev_action", "prev_reward", "shown_action", "shown_reward")


ENCODING = ObsEncoding("test", (7, 7, 2), 5)
VOCAB = MissionVocab([*SPECIALS, *(f"w{i}" for i in range(12 - len(SPECIALS)))])


@dataclass(frozen=True)
class Shape:
    """What the token helpers need to know of a model: its encoding and vocabulary sizes."""

    feature_sizes: tuple[int, ...]
    n_actions: int
    vocab_size: int


def shape(model: TrajectoryTransformer) -> Shape:
    enc = model.encoding
    return Shape(enc.feature_sizes, enc.n_actions, len(model.vocab))


def tiny_config(backbone: str = "llama", **kw) -> ModelConfig:
    base = dict(d_model=32, n_layers=2, n_heads=4, max_positions=256, backbone=backbone)
    return ModelConfig(**{**base, **kw})


def tiny_model(backbone: str = "llama", seed: int = 0, **kw) -> TrajectoryTransformer:
    torch.manual_seed(seed)
    return TrajectoryTransformer(tiny_config(backbone, **kw), ENCODING, VOCAB).eval()


def episode(cfg: Shape, rng: np.random.Generator, query: bool) -> list[dict]:
    """One whole episode as a list of token dicts: <bos> (word 0), mission words, steps."""
    n_words, n_steps = rng.integers(0, 3), rng.integers(2, 8)
    out = [dict(kind=WORD, word=int(w)) for w in [0, *rng.integers(1, cfg.vocab_size, n_words)]]
    prev_a, prev_r = start_action(cfg.n_actions), 0.0
    for _ in range(n_steps):
        obs = [int(rng.integers(s)) for s in cfg.feature_sizes]
        # A learnable rule, so that a model can fit it: the action follows from the observation.
        a, r = (obs[0] + obs[1]) % cfg.n_actions, float(rng.random() < 0.2)
        tok = dict(kind=STEP, obs=obs, prev_action=prev_a, prev_reward=prev_r)
        if query:
            tok.update(target=a)
        else:
            tok.update(shown_action=a, shown_reward=r)
        out.append(tok)
        prev_a, prev_r = a, r
    for tok in out:
        tok["is_query"] = query
    return out


def row_tokens(cfg: Shape, seed: int, n_context: int = 2) -> list[dict]:
    rng = np.random.default_rng(seed)
    toks = [t for _ in range(n_context) for t in episode(cfg, rng, query=False)]
    return toks + episode(cfg, rng, query=True)


def to_tensors(cfg: Shape, rows: list[list[dict]], length: int, left: bool = False) -> dict:
    """Pad rows (right, or left for decoding) with PAD tokens and stack them as tensors."""
    B = len(rows)
    t = {
        "kind": torch.full((B, length), PAD, dtype=torch.int8),
        "word": torch.zeros(B, length, dtype=torch.long),
        "obs": torch.zeros(B, length, len(cfg.feature_sizes), dtype=torch.uint8),
        "prev_action": torch.zeros(B, length, dtype=torch.long),
        "prev_reward": torch.zeros(B, length),
        "shown_action": torch.full((B, length), hidden_action(cfg.n_actions)),
        "shown_reward": torch.zeros(B, length),
        "is_query": torch.zeros(B, length, dtype=torch.bool),
        "target": torch.full((B, length), IGNORE),
    }
    for b, row in enumerate(rows):
        start = length - len(row) if left else 0
        for i, tok in enumerate(row):
            for k, v in tok.items():
                t[k][b, start + i] = torch.tensor(v)
    return t


def batch(cfg: Shape, B: int = 4, seed: int = 0) -> dict:
    rows = [row_tokens(cfg, seed * 1000 + b) for b in range(B)]
    return to_tensors(cfg, rows, max(map(len, rows)) + 3)


def take(tokens: dict, sl) -> dict:
    return {k: v[:, sl] for k, v in tokens.items()}


@pytest.mark.parametrize("backbone", BACKBONES)
def test_forward_shapes(backbone):
    model = tiny_model(backbone)
    cfg = shape(model)
    tokens = batch(cfg, B=3)
    logits, cache = model(tokens)
    assert logits.shape == (3, tokens["kind"].shape[1], cfg.n_actions)
    assert cache is None and torch.isfinite(logits).all()
    again, cache = model(tokens, use_cache=True)
    assert cache is not None and torch.allclose(again, logits, atol=1e-5)
    if model.kind.attention:
        assert cache.get_seq_length() == tokens["kind"].shape[1]
    assert model.num_parameters() == sum(p.numel() for p in model.parameters()) > 0


def test_config_defaults_and_validation():
    cfg = ModelConfig()
    assert cfg.ff_width == 4 * cfg.d_model and cfg.backbone == "llama"
    with pytest.raises(TrajbenchError, match="n_heads"):
        ModelConfig(d_model=30, n_heads=4).validate()
    with pytest.raises(TrajbenchError, match="backbone"):
        TrajectoryTransformer(ModelConfig(backbone="mamba"), ENCODING, VOCAB)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_every_trainable_parameter_gets_a_gradient(backbone):
    """DistributedDataParallel (without find_unused_parameters) needs this."""
    model = tiny_model(backbone)
    model.loss(batch(shape(model))).backward()
    no_grad = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert no_grad == []
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    # A transformers backbone's unused token table; the LSTM has none.
    assert len(frozen) == (0 if backbone == "lstm" else 1)


def test_sequences_longer_than_max_positions_are_refused():
    model = tiny_model(max_positions=16)
    rows = [row_tokens(shape(model), seed=0, n_context=3)]
    assert len(rows[0]) > 16
    with pytest.raises(TrajbenchError, match="max_positions"):
        model(to_tensors(shape(model), rows, len(rows[0])))
    tokens = to_tensors(shape(model), [rows[0][:16]], 16)
    _, cache = model.prefill(tokens, torch.ones(1, 16, dtype=torch.long))
    with pytest.raises(TrajbenchError, match="max_positions"):
        model.step(to_tensors(shape(model), [rows[0][16:17]], 1), cache, torch.ones(1, 17))


def test_loss_is_cross_entropy_on_target_positions_only():
    model = tiny_model()
    tokens = batch(shape(model))
    logits, _ = model(tokens)
    at = tokens["target"] != IGNORE
    logp = torch.log_softmax(logits[at], -1)
    manual = -logp.gather(1, tokens["target"][at][:, None]).mean()
    torch.testing.assert_close(model.loss(tokens), manual)

    # Inputs after the last target (context steps' shown actions, padding) do not matter...
    last = int(at.nonzero()[:, 1].max())
    changed = {k: v.clone() for k, v in tokens.items()}
    changed["shown_action"][:, last + 1 :] = 0
    changed["kind"][:, last + 1 :] = STEP
    changed["obs"][:, last + 1 :] = 1
    assert torch.equal(model.loss(changed), model.loss(tokens))
    # ... while ignoring one more target changes the loss.
    fewer = {**tokens, "target": tokens["target"].clone()}
    b, t = at.nonzero()[0]
    fewer["target"][b, t] = IGNORE
    assert not torch.allclose(model.loss(fewer), model.loss(tokens))


@pytest.mark.parametrize("backbone", BACKBONES)
def test_causal_and_padding_contents_ignored(backbone):
    model = tiny_model(backbone)
    tokens = batch(shape(model), B=2)
    ref, _ = model(tokens)
    t = 9
    changed = {k: v.clone() for k, v in tokens.items()}
    changed["kind"][:, t] = STEP
    changed["obs"][:, t] = torch.tensor([6, 6, 1], dtype=torch.uint8)
    changed["prev_action"][:, t] = 4
    changed["shown_action"][:, t] = 1
    changed["is_query"][:, t] = ~changed["is_query"][:, t]
    out, _ = model(changed)
    assert torch.equal(out[:, :t], ref[:, :t])
    assert (out[:, t] - ref[:, t]).abs().max() > 1e-3  # the change is seen where it happens

    # Whatever PAD tokens hold, they embed to zero and change nothing.
    pad = tokens["kind"] == PAD
    assert pad.any()
    garbage = {k: v.clone() for k, v in tokens.items()}
    for k in KEYS[1:]:
        garbage[k][pad] = 3
    garbage["is_query"][pad] = True
    assert torch.equal(model.embed(garbage)[pad], torch.zeros_like(model.embed(garbage)[pad]))
    assert torch.equal(model(garbage)[0], ref)


def test_every_input_field_reaches_the_logits():
    model = tiny_model()
    tokens = batch(shape(model), B=1)
    ref, _ = model(tokens)
    step = int((tokens["kind"][0] == STEP).nonzero()[3])
    word = int((tokens["kind"][0] == WORD).nonzero()[1])
    edits = {
        "obs": (step, lambda v: (v + 1) % 2),
        "prev_action": (step, lambda v: (v + 1) % 5),
        "prev_reward": (step, lambda v: v + 1.0),
        "shown_action": (step, lambda v: (v + 1) % 5),
        "shown_reward": (step, lambda v: v + 1.0),
        "is_query": (step, lambda v: ~v),
        "word": (word, lambda v: (v + 1) % len(model.vocab)),
    }
    for key, (t, edit) in edits.items():
        changed = {**tokens, key: tokens[key].clone()}
        changed[key][0, t] = edit(changed[key][0, t])
        out, _ = model(changed)
        assert torch.equal(out[0, :t], ref[0, :t])
        assert (out[0, t] - ref[0, t]).abs().max() > 1e-4, key


@pytest.mark.parametrize("backbone", BACKBONES)
def test_save_and_load_round_trip(tmp_path, backbone):
    model = tiny_model(backbone, seed=3)
    tokens = batch(shape(model))
    model.save_pretrained(tmp_path / "m", extra_files={"notes.json": '{"lr": 0.001}'})
    assert (tmp_path / "m" / "backbone" / "model.safetensors").is_file()
    assert (tmp_path / "m" / "policy.safetensors").is_file()
    assert (tmp_path / "m" / "notes.json").read_text() == '{"lr": 0.001}'
    loaded = TrajectoryTransformer.from_pretrained(tmp_path / "m")
    assert loaded.cfg == model.cfg and loaded.encoding == model.encoding and not loaded.training
    assert loaded.vocab.itos == model.vocab.itos
    assert torch.equal(loaded(tokens)[0], model(tokens)[0])
    # Saving again over a trajbench model replaces it.
    other = tiny_model(backbone, seed=4)
    other.save_pretrained(tmp_path / "m")
    again = TrajectoryTransformer.from_pretrained(tmp_path / "m")
    assert torch.equal(again(tokens)[0], other(tokens)[0])
    assert not torch.equal(again(tokens)[0], model(tokens)[0])
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no temporary leftovers


def test_bad_directories(tmp_path):
    load = TrajectoryTransformer.from_pretrained
    with pytest.raises(TrajbenchError, match="does not exist"):
        load(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TrajbenchError, match="not a trajbench model"):
        load(tmp_path / "empty")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "trajbench_model.json").write_text('{"hello": 1}')
    with pytest.raises(TrajbenchError, match="not a trajbench model"):
        load(tmp_path / "foreign")
    # save_pretrained refuses to replace a directory that is not a trajbench model.
    (tmp_path / "foreign" / "trajbench_model.json").unlink()
    (tmp_path / "foreign" / "precious.txt").write_text("keep me")
    with pytest.raises(TrajbenchError, match="not overwriting"):
        tiny_model().save_pretrained(tmp_path / "foreign")
    assert (tmp_path / "foreign" / "precious.txt").read_text() == "keep me"

    tiny_model().save_pretrained(tmp_path / "a")
    tiny_model(d_model=64).save_pretrained(tmp_path / "b")
    # Embeddings and head from another config.
    shutil.copy(tmp_path / "b" / "policy.safetensors", tmp_path / "a" / "policy.safetensors")
    with pytest.raises(TrajbenchError, match="weights missing or not matching"):
        load(tmp_path / "a")
    # A backbone from another config.
    tiny_model().save_pretrained(tmp_path / "a")
    shutil.rmtree(tmp_path / "a" / "backbone")
    shutil.copytree(tmp_path / "b" / "backbone", tmp_path / "a" / "backbone")
    with pytest.raises(TrajbenchError, match="weights missing or not matching"):
        load(tmp_path / "a")
    # Missing weights, and a config with unknown fields.
    shutil.rmtree(tmp_path / "a" / "backbone")
    with pytest.raises(TrajbenchError, match="weights missing or not matching"):
        load(tmp_path / "a")
    meta = json.loads((tmp_path / "b" / "trajbench_model.json").read_text())
    meta["model"]["n_experts"] = 8
    (tmp_path / "b" / "trajbench_model.json").write_text(json.dumps(meta))
    with pytest.raises(TrajbenchError, match="unknown ModelConfig field"):
        load(tmp_path / "b")


@pytest.mark.parametrize("backbone", BACKBONES)
def test_cached_stepping_matches_reencoding(backbone):
    """Left-padded prefill, then chunks of 1-3 new tokens (left-padded per row), then dropping rows:
    every logit equals that of re-encoding the row's whole sequence alone."""
    model = tiny_model(backbone, seed=1)
    cfg = shape(model)
    rows = [row_tokens(cfg, seed=100 + b, n_context=1 + b % 2) for b in range(4)]
    refs = [model(to_tensors(cfg, [row], len(row)))[0][0] for row in rows]
    prefix = [5, 11, 8, 14]  # contexts of different lengths

    tokens = to_tensors(
        cfg, [r[:n] for r, n in zip(rows, prefix, strict=True)], max(prefix), left=True
    )
    mask = (tokens["kind"] != PAD).long()
    logits, cache = model.prefill(tokens, mask)
    for b, n in enumerate(prefix):
        torch.testing.assert_close(logits[b], refs[b][n - 1], atol=1e-5, rtol=1e-5)

    alive, seen = list(range(len(rows))), list(prefix)
    rng = np.random.default_rng(0)
    for i in range(40):
        if i == 6:  # drop two rows, among them the longest: the shared left padding goes too
            keep = torch.tensor([0, 2])
            width = mask.shape[1]
            cache, mask = model.select_rows(cache, mask, keep)
            logits = logits[keep]
            alive = [alive[j] for j in keep.tolist()]
            seen = [seen[j] for j in keep.tolist()]
            assert mask.shape[1] < width
            if model.kind.attention:
                assert cache.get_seq_length() == mask.shape[1]
        n_new = [
            min(int(rng.integers(1, 4)), len(rows[r]) - s) for r, s in zip(alive, seen, strict=True)
        ]
        if max(n_new) == 0:
            break
        # Rows with nothing left get a single PAD token (masked; their logits are not checked).
        chunk = [rows[r][s : s + n] for r, s, n in zip(alive, seen, n_new, strict=True)]
        new = to_tensors(cfg, chunk, max(max(n_new), 1), left=True)
        mask = torch.cat([mask, (new["kind"] != PAD).long()], dim=1)
        logits, cache = model.step(new, cache, mask)
        assert not model.kind.attention or cache.get_seq_length() == mask.shape[1]
        for j, (r, s, n) in enumerate(zip(alive, seen, n_new, strict=True)):
            if n:
                torch.testing.assert_close(logits[j], refs[r][s + n - 1], atol=1e-5, rtol=1e-5)
        seen = [s + n for s, n in zip(seen, n_new, strict=True)]
    assert all(s == len(rows[r]) for r, s in zip(alive, seen, strict=True))


def test_positions_and_select_rows_by_boolean_mask():
    assert positions_from_mask(torch.tensor([[0, 1, 1, 0, 1]])).tolist() == [[0, 0, 1, 1, 2]]
    model = tiny_model()
    rows = [row_tokens(shape(model), seed=s) for s in range(3)]
    tokens = to_tensors(shape(model), rows, max(map(len, rows)), left=True)
    mask = (tokens["kind"] != PAD).long()
    _, cache = model.prefill(tokens, mask)
    cache, kept = select_rows(cache, mask, torch.tensor([False, True, False]))
    assert kept.shape == (1, len(rows[1])) and kept.all()
    assert cache.layers[0].keys.shape[0] == 1 and cache.get_seq_length() == len(rows[1])


def test_normalizer_gives_the_global_batch_mean():
    """Two shards with the global target count as normalizer add up to the whole-batch loss and
    gradient (what DistributedDataParallel's gradient averaging needs, times the world size)."""
    model = tiny_model()
    tokens = batch(shape(model), B=6)
    n = int((tokens["target"] != IGNORE).sum())
    whole = model.loss(tokens)
    summed = model.loss(tokens, normalizer=1.0)
    torch.testing.assert_close(model.loss(tokens, normalizer=n), summed / n)
    torch.testing.assert_close(whole, summed / n)

    grads = lambda: [p.grad.clone() for p in model.parameters() if p.grad is not None]  # noqa: E731
    model.zero_grad()
    whole.backward()
    ref = grads()
    model.zero_grad()
    shards = [{k: v[:2] for k, v in tokens.items()}, {k: v[2:] for k, v in tokens.items()}]
    parts = [model.loss(s, normalizer=n) for s in shards]
    with torch.no_grad():  # shards of unequal target counts: the mean of means is not the mean
        assert not torch.allclose((model.loss(shards[0]) + model.loss(shards[1])) / 2, whole)
    sum(parts).backward()
    torch.testing.assert_close(sum(parts), whole)
    for a, b in zip(grads(), ref, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_tiny_model_overfits_a_fixed_batch(backbone):
    model = tiny_model(backbone, seed=0).train()
    tokens = batch(shape(model), B=8, seed=1)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    # The LSTM has no feed-forward layer: the rule (a sum of two features mod 5) takes it longer.
    for _ in range(150 if backbone == "lstm" else 60):
        loss = model.loss(tokens)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] > 1.2  # about log(5) at the start
    assert min(losses[-5:]) < 0.1 * losses[0], losses[::10]


@pytest.mark.parametrize("backbone", BACKBONES)
def test_compiles_without_graph_breaks_and_runs_under_autocast(backbone):
    model = tiny_model(backbone)
    tokens = batch(shape(model), B=2)
    # Dynamo does not trace torch's LSTM: it is one graph break there (training compiles without
    # fullgraph).
    compiled = torch.compile(model.loss, backend="eager", fullgraph=backbone != "lstm")
    torch.testing.assert_close(compiled(tokens), model.loss(tokens))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model.loss(tokens)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, model.loss(tokens), atol=0.05, rtol=0.05)

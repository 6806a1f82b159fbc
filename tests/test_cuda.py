"""The CUDA path on a card: bf16 autocast, fused AdamW, ``torch.compile`` and a batched ensemble
train as the fp32 CPU loop does; KV-cached rollouts act as re-encoding; models and checkpoints
round-trip.

Every test here is marked ``cuda`` (``pytest -m cuda`` runs just these) and skips where there is
no GPU; ``benchmarks/gpu_check.sh`` runs them on one.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from test_rollout import Twin, mixed_rows, untrained_policy

from trajbench.baselines.transformer import ModelConfig, TrajectoryTransformer
from trajbench.collect import CollectConfig, collect
from trajbench.contexts import ContextBuilder, ContextConfig
from trajbench.data import load
from trajbench.device import autocast
from trajbench.pipeline import train as train_module
from trajbench.pipeline.ensemble import train_ensemble
from trajbench.pipeline.train import TrainConfig, batch_tensors, make_optimizer, train
from trajbench.rollout import rollout

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; this has none"),
]

DARK_ROOM = "trajbench/DarkRoom-v0"
GOTO = "trajbench/GoToLocal-v1"
CUDA = torch.device("cuda")
#: Loss tolerance between bf16 on the card and fp32 on the CPU, per metrics row. Emulating bf16
#: autocast on the CPU moves this run's loss by at most 0.012; a wrong step moves it far more.
LOSS_ATOL = 0.05


def _store(root: Path, env: str, levels: str, episodes: int) -> str:
    cfg = CollectConfig(
        env=env, levels=levels, episodes_per_level=episodes, seed=1, out=root, progress=False
    )
    return str(collect(cfg))


@pytest.fixture(scope="module")
def dark_room(tmp_path_factory) -> str:
    """Expert Dark Room episodes of 24 levels."""
    levels = ",".join(str(i) for i in range(24))
    return _store(tmp_path_factory.mktemp("data") / "dr", DARK_ROOM, levels, 6)


@pytest.fixture(scope="module")
def goto_local(tmp_path_factory) -> str:
    """Expert GoToLocal episodes of 6 levels (episodes of different lengths)."""
    levels = ",".join(str(i) for i in range(6))
    return _store(tmp_path_factory.mktemp("data") / "goto", GOTO, levels, 5)


def config(store: str, out: Path, **kw) -> TrainConfig:
    base = dict(
        data=(store,),
        out=str(out),
        context=ContextConfig(mode="bursty", k=2),
        model=ModelConfig(d_model=64, n_layers=2, n_heads=4),
        steps=40,
        batch_size=16,
        warmup_steps=5,
        lr=3e-3,
        checkpoint_every=0,
        log_every=5,
        progress=False,
        threads=1,
    )
    return TrainConfig(**{**base, **kw})


def losses(run: Path) -> list[float]:
    with open(run / "metrics.csv") as f:
        return [float(row["loss"]) for row in csv.DictReader(f)]


def state(model_dir: Path) -> dict[str, torch.Tensor]:
    return TrajectoryTransformer.from_pretrained(model_dir).state_dict()


@pytest.fixture(scope="module")
def cpu_losses(dark_room, tmp_path_factory) -> list[float]:
    """The fp32 CPU run every CUDA run is held against."""
    out = tmp_path_factory.mktemp("cpu")
    train(config(dark_room, out, device="cpu"))
    return losses(out)


# -- training -------------------------------------------------------------------------------------
def test_the_cuda_step_runs_bf16_autocast_and_fused_adamw(dark_room):
    cfg = config(dark_room, Path("unused"), device="cuda")
    builder = ContextBuilder(load(dark_room), seed=0, config=cfg.context)
    model = TrajectoryTransformer(cfg.model, load(dark_room).encoding, builder.vocab).to(CUDA)
    assert make_optimizer(model, cfg, CUDA).defaults["fused"] is True
    tokens = batch_tensors(builder.sample(4, seed=0), CUDA)
    assert tokens["obs"].is_cuda and tokens["target"].is_cuda
    with autocast(CUDA, bf16=True):
        logits, _ = model(tokens)
        loss = model.loss(tokens)
    assert logits.dtype == torch.bfloat16
    assert loss.dtype == torch.float32  # the cross-entropy is taken in float32


@pytest.mark.parametrize("compile_model", [False, True], ids=["eager", "compiled"])
def test_bf16_training_follows_the_fp32_cpu_loss(dark_room, cpu_losses, tmp_path, compile_model):
    train(config(dark_room, tmp_path, device="cuda", bf16=True, compile=compile_model))
    cuda = losses(tmp_path)
    assert len(cuda) == len(cpu_losses) == 8
    assert cpu_losses[-1] < 0.3 * cpu_losses[0]  # both learn: not two flat lines that agree
    gaps = [abs(a - b) for a, b in zip(cuda, cpu_losses, strict=True)]
    assert max(gaps) <= LOSS_ATOL, f"CUDA {cuda} vs CPU {cpu_losses}"


def test_a_bf16_ensemble_member_follows_the_fp32_cpu_loss(dark_room, cpu_losses, tmp_path):
    """trajbench run --ensemble auto's path on the card: the member with the CPU run's seed and
    context follows its loss; a second member (another seed) trains beside it."""
    first = config(dark_room, tmp_path / "a", device="cuda", bf16=True)
    second = config(dark_room, tmp_path / "b", device="cuda", bf16=True, seed=1)
    train_ensemble([first, second])
    cuda = losses(tmp_path / "a")
    gaps = [abs(a - b) for a, b in zip(cuda, cpu_losses, strict=True)]
    assert len(cuda) == 8 and max(gaps) <= LOSS_ATOL, f"CUDA {cuda} vs CPU {cpu_losses}"
    assert losses(tmp_path / "b")[-1] < 0.3 * losses(tmp_path / "b")[0]


# -- rollouts -------------------------------------------------------------------------------------
def test_cached_rollouts_act_as_re_encoding_on_cuda(dark_room):
    store = load(dark_room)
    levels, contexts, missions = mixed_rows(store, DARK_ROOM, sorted(store.episodes.level.unique()))
    twin = Twin(
        untrained_policy(store, use_cache=True, sharpen=30.0, device="cuda"),
        untrained_policy(store, use_cache=False, sharpen=30.0, device="cuda"),
    )
    assert next(twin.cached.model.parameters()).is_cuda
    rollout(twin, DARK_ROOM, levels, contexts, missions, n_episodes=3, seed=0, own_episodes=True)
    assert twin.episode_starts == 3
    assert len(np.unique(np.concatenate(twin.actions))) >= 3  # it acts on its input


def test_cached_rollouts_drop_finished_rows_on_cuda(goto_local):
    """GoToLocal episodes end at different steps, so rows leave the cache mid-rollout (actions
    are sampled, with the same generator on both sides)."""
    store = load(goto_local)
    levels, contexts, missions = mixed_rows(store, GOTO, sorted(store.episodes.level.unique()))
    twin = Twin(
        untrained_policy(store, use_cache=True, greedy=False, device="cuda"),
        untrained_policy(store, use_cache=False, greedy=False, device="cuda"),
    )
    records = rollout(twin, GOTO, levels, contexts, missions, n_episodes=2, seed=0)
    assert len({r["length"] for r in records}) >= 3


# -- save and load --------------------------------------------------------------------------------
def test_a_cuda_model_saves_and_loads_on_either_device(dark_room, tmp_path):
    cfg = config(dark_room, tmp_path)
    builder = ContextBuilder(load(dark_room), seed=0, config=cfg.context)
    torch.manual_seed(0)
    model = TrajectoryTransformer(cfg.model, load(dark_room).encoding, builder.vocab)
    model = model.to(CUDA).eval()
    tokens = builder.sample(8, seed=1).to_torch()
    on_card = {k: v.to(CUDA) for k, v in tokens.items()}
    model.save_pretrained(tmp_path / "m")
    loaded = TrajectoryTransformer.from_pretrained(tmp_path / "m")
    assert next(loaded.parameters()).device.type == "cpu"
    with torch.no_grad():
        expected = model(on_card)[0]
        torch.testing.assert_close(loaded(tokens)[0], expected.cpu(), atol=1e-4, rtol=1e-4)
        assert torch.equal(loaded.to(CUDA)(on_card)[0], expected)


def test_a_cuda_run_resumes_from_its_checkpoint(dark_room, tmp_path, monkeypatch):
    """The checkpoint holds CUDA weights and fused AdamW state; the resumed run ends where an
    uninterrupted one does, up to the card's non-deterministic atomics."""
    kw = dict(device="cuda", steps=20, checkpoint_every=10)
    whole = train(config(dark_room, tmp_path / "whole", **kw))

    real_lr = train_module.learning_rate

    def crash_at_13(step, cfg):
        if step == 13:
            raise RuntimeError("simulated crash")
        return real_lr(step, cfg)

    monkeypatch.setattr(train_module, "learning_rate", crash_at_13)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(config(dark_room, tmp_path / "resumed", **kw))
    monkeypatch.setattr(train_module, "learning_rate", real_lr)
    resumed = train(config(dark_room, tmp_path / "resumed", resume=True, **kw))

    cfg = config(dark_room, tmp_path)
    torch.manual_seed(cfg.seed)  # the weights train() starts from
    builder = ContextBuilder(load(dark_room), seed=0, config=cfg.context)
    init = TrajectoryTransformer(cfg.model, load(dark_room).encoding, builder.vocab).state_dict()
    a, b = state(whole), state(resumed)
    apart = math.sqrt(sum(float((a[k] - b[k]).pow(2).sum()) for k in init))
    moved = math.sqrt(sum(float((a[k] - init[k]).pow(2).sum()) for k in init))
    assert moved > 0 and apart <= 1e-2 * moved, (apart, moved)

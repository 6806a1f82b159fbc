"""``trajbench train``: fit the transformer policy on prompt-builder sequences.

One file you can read top to bottom. Every knob is a field of :class:`TrainConfig` (its docstrings
are the ``--help``). CPU or CUDA is picked automatically; on CUDA the step runs under bf16 autocast
with fused AdamW and optionally ``torch.compile``. Batches are a pure function of (seed, step),
and a checkpoint holds the weights, the optimizer and torch's RNG state, so ``--resume`` after a
crash ends exactly where an uninterrupted run ends (a checkpoint written by another model config,
training config or dataset is refused). Under ``torchrun`` every rank takes its slice of the same
global batch (DistributedDataParallel, gloo or NCCL) and the loss is normalised by the global
number of targets, so N processes train the same model as one. The step (:class:`TrainStep`)
never waits for the device; the loss is read only when a metrics row is written.

Example:
    trajbench collect --env trajbench/DarkRoom-v0 --levels train --episodes-per-level 20 --out data/dr
    trajbench train --data data/dr --out runs/dr-bursty --context.mode bursty --steps 1500
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from trajbench import __version__
from trajbench.baselines.transformer import TrajectoryTransformer, action_loss
from trajbench.batch import Batch
from trajbench.cliargs import parse_config
from trajbench.configs import to_dict
from trajbench.contexts import ContextBuilder
from trajbench.data import load
from trajbench.device import (
    Dist,
    autocast,
    close_distributed,
    init_distributed,
    torch_threads,
    world_size,
)
from trajbench.errors import TrajbenchError
from trajbench.io import atomic_write_json, remove_stale_temporaries

from .checkpoints import CHECKPOINT, load_checkpoint, save_checkpoint
from .train_config import TrainConfig, validate
from .training_record import (
    TrainingRecord,
    save_trained_model,
    trained_levels,
)


# -- data --------------------------------------------------------------------------------------
def batch_seed(seed: int, step: int) -> int:
    """The batch of ``step`` depends only on (seed, step)."""
    return (seed * 1_000_003 + step) & 0x7FFFFFFF


class BatchStream(torch.utils.data.IterableDataset):
    """Global batches for steps ``start, start+1, ...``; worker ``w`` of ``n`` builds every n-th.

    The DataLoader reads its workers round-robin, so the order is exactly the step order.
    """

    def __init__(self, make_builder, batch_size: int, seed: int, start: int, stop: int):
        self.make_builder, self.batch_size, self.seed = make_builder, batch_size, seed
        self.start, self.stop = start, stop

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        wid, n = (info.id, info.num_workers) if info else (0, 1)
        builder = self.make_builder()
        for step in range(self.start + wid, self.stop, n):
            yield step, builder.sample(self.batch_size, seed=batch_seed(self.seed, step))


# -- schedule ----------------------------------------------------------------------------------
def learning_rate(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to ``lr * min_lr_ratio``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * cosine)


def make_optimizer(
    model: torch.nn.Module, cfg: TrainConfig, device: torch.device
) -> torch.optim.Optimizer:
    """AdamW with weight decay on the matrices only."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    return adamw(decay, no_decay, cfg, device)


def adamw(decay: list, no_decay: list, cfg: TrainConfig, device: torch.device):
    """AdamW over ``decay`` (with ``cfg.weight_decay``) and ``no_decay``, in that order."""
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95), fused=device.type == "cuda")


# -- the step ----------------------------------------------------------------------------------
def batch_tensors(batch, device: torch.device) -> dict[str, torch.Tensor]:
    """Model inputs and targets of a :class:`~trajbench.batch.Batch` on ``device``.

    On CUDA the host arrays are pinned and copied asynchronously, so the copy does not stall the
    host while the previous step's kernels run.
    """
    if device.type != "cuda":
        return batch.to_torch(device)
    return {
        k: torch.from_numpy(np.ascontiguousarray(getattr(batch, k)))
        .pin_memory()
        .to(device, non_blocking=True)
        for k in (*Batch.MODEL_INPUTS, "target")
    }


class TrainStep:
    """One optimizer step: forward, summed cross-entropy / ``normalizer``, backward, clip, AdamW.

    Nothing in it waits for the device: the loss and the gradient norm are returned as tensors and
    only read (synchronising) when a metrics row is written.

    Args:
        forward: The module to call (the model, or its DDP / compiled wrapper).
        model: The underlying model (whose parameters are clipped).
        optimizer: The optimizer.
        grad_clip: Clip the global gradient norm to this (0: no clipping; the norm is still
            computed for the metrics).
        autocast: Context manager around the forward pass (bf16 autocast on CUDA).
    """

    def __init__(self, forward, model, optimizer, grad_clip: float, autocast):
        self.forward, self.optimizer, self.autocast = forward, optimizer, autocast
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.max_norm = grad_clip or float("inf")

    def __call__(
        self, tokens: dict[str, torch.Tensor], normalizer: float, lr: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with self.autocast:
            logits, _ = self.forward(tokens)
        loss = action_loss(logits, tokens["target"], normalizer)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, self.max_norm)
        self.optimizer.step()
        return loss.detach(), grad_norm.detach()


# -- the run -----------------------------------------------------------------------------------
def train(cfg: TrainConfig, on_checkpoint=None) -> Path:
    """Train and save the model to ``cfg.out/model``; returns that directory.

    Args:
        cfg: The training config.
        on_checkpoint: Optional hook ``on_checkpoint(step, model)``, called on the main process
            right after each checkpoint is written (every ``checkpoint_every`` steps and at the
            end) with the number of steps done and the model. It must leave the model's weights,
            its train/eval mode and torch's RNG state as it found them, so that training goes on
            exactly as without it (``trajbench analyze phases`` evaluates the model there).
    """
    validate(cfg)
    world = world_size()
    if cfg.batch_size % world:
        raise TrajbenchError(
            f"batch_size {cfg.batch_size} is not divisible by the {world} ranks; "
            f"use a multiple of {world}"
        )
    out = Path(cfg.out)
    if (out / "model").exists() and not cfg.resume:
        raise TrajbenchError(
            f"{out / 'model'} already exists; pass --resume to continue or choose another --out"
        )
    if (out / CHECKPOINT).exists() and not cfg.resume:
        raise TrajbenchError(
            f"{out / CHECKPOINT} exists (an interrupted run?); pass --resume to continue from it "
            "or choose another --out"
        )
    dist, device = init_distributed(cfg.device)
    try:
        with torch_threads(cfg.threads):
            return _train(cfg, dist, device, on_checkpoint)
    finally:
        close_distributed(dist)


def _train(cfg: TrainConfig, dist: Dist, device: torch.device, on_checkpoint=None) -> Path:
    out = Path(cfg.out)
    model_dir, ckpt_path = out / "model", out / CHECKPOINT

    store = load(list(cfg.data))
    builder = ContextBuilder(store, seed=cfg.seed, config=cfg.context)
    vocab = builder.vocab

    def make_builder():
        if cfg.workers == 0:
            return builder
        return ContextBuilder(load(list(cfg.data)), seed=cfg.seed, vocab=vocab, config=cfg.context)

    torch.manual_seed(cfg.seed)
    model = TrajectoryTransformer(cfg.model, store.encoding, vocab).to(device)
    optimizer = make_optimizer(model, cfg, device)
    start, rng_state = 0, None
    if cfg.resume and ckpt_path.exists():
        start, rng_state = load_checkpoint(ckpt_path, model, optimizer, cfg, store.content_hash)

    forward = model
    if dist.world > 1:
        forward = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if cfg.compile:
        forward = torch.compile(forward)
    step_fn = TrainStep(forward, model, optimizer, cfg.grad_clip, autocast(device, cfg.bf16))

    loader = torch.utils.data.DataLoader(
        BatchStream(make_builder, cfg.batch_size, cfg.seed, start, cfg.steps),
        batch_size=None,
        num_workers=cfg.workers,
        persistent_workers=False,
    )
    batches = iter(loader)  # draws the loader's base seed from torch's RNG ...
    if rng_state is not None:
        torch.set_rng_state(rng_state)  # ... so the checkpoint's RNG state is restored after it
    if dist.main:
        out.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(out)  # left by a run that was killed
        atomic_write_json(out / "train_config.json", to_dict(cfg))
    log = MetricsLog(out / "metrics.csv", enabled=dist.main, resume_step=start)
    bar = _progress(cfg, dist, start)
    per_rank = cfg.batch_size // dist.world
    model.train()
    t_last, tokens_since = time.perf_counter(), 0
    try:
        for step, batch in batches:
            lr = learning_rate(step, cfg)
            # Normalise by the global target count, so DDP's gradient average equals one big batch.
            normalizer = max(int(batch.loss_mask.sum()), 1) / dist.world
            local = batch[dist.rank * per_rank : (dist.rank + 1) * per_rank]
            loss, grad_norm = step_fn(batch_tensors(local, device), normalizer, lr)
            tokens_since += int((~batch.pad).sum())  # global tokens: every rank counts them all
            done = step + 1
            if done % cfg.log_every == 0 or done == cfg.steps:
                if dist.world > 1:  # each rank holds its share of the global mean loss
                    torch.distributed.all_reduce(loss)
                    loss = loss / dist.world
                loss_value = float(loss)
                now = time.perf_counter()
                tps = tokens_since / max(now - t_last, 1e-9)
                t_last, tokens_since = now, 0
                log.write(
                    step=done, loss=loss_value, lr=lr, grad_norm=float(grad_norm), tokens_per_s=tps
                )
                if bar is not None:
                    bar.set_postfix(loss=f"{loss_value:.3f}", tok_s=f"{tps:,.0f}")
            if bar is not None:
                bar.update(1)
            if (
                dist.main
                and cfg.checkpoint_every
                and done % cfg.checkpoint_every == 0
                and done < cfg.steps
            ):
                save_checkpoint(ckpt_path, model, optimizer, done, cfg, store.content_hash)
                if on_checkpoint is not None:
                    on_checkpoint(done, model)
    finally:
        if bar is not None:
            bar.close()
        log.close()
    if dist.main:
        record = TrainingRecord(
            config=cfg,
            data_hash=store.content_hash,
            trained_levels=trained_levels(store),
            parameters=model.num_parameters(),
            trajbench_version=__version__,
        )
        # The last checkpoint first: killed between the two, a resumed run only saves the model.
        save_checkpoint(ckpt_path, model, optimizer, cfg.steps, cfg, store.content_hash)
        save_trained_model(model, model_dir, record)
        if on_checkpoint is not None:
            on_checkpoint(cfg.steps, model)
    if dist.world > 1:
        torch.distributed.barrier()
    return model_dir


class MetricsLog:
    """metrics.csv (and TensorBoard when installed); rows after a resume point are replaced."""

    FIELDS = ("step", "loss", "lr", "grad_norm", "tokens_per_s")

    def __init__(self, path: Path, enabled: bool, resume_step: int):
        self.file = self.writer = self.tb = None
        if not enabled:
            return
        rows = []
        if resume_step and path.exists():
            with path.open() as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_step]
        self.file = path.open("w", newline="")
        self.writer = csv.DictWriter(self.file, fieldnames=self.FIELDS)
        self.writer.writeheader()
        self.writer.writerows(rows)
        with contextlib.suppress(ImportError):
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(path.parent / "tensorboard"))

    def write(self, **row) -> None:
        if self.writer is None:
            return
        self.writer.writerow(row)
        self.file.flush()
        if self.tb is not None:
            for k, v in row.items():
                if k != "step":
                    self.tb.add_scalar(f"train/{k}", v, row["step"])

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        if self.tb is not None:
            self.tb.close()


def _progress(cfg: TrainConfig, dist: Dist, start: int):
    if not (cfg.progress and dist.main):
        return None
    return tqdm(
        total=cfg.steps, initial=start, desc=f"train {cfg.context.mode}", unit="step", leave=False
    )


def main(argv: list[str]) -> int:
    """``trajbench train``: parse flags into :class:`TrainConfig` and train."""
    cfg = parse_config(TrainConfig, list(argv), "trajbench train")
    if cfg is None:  # --help
        return 0
    model_dir = train(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"model saved to {model_dir}")
    return 0

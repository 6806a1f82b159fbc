"""``trajbench train``: fit the transformer policy on prompt-builder sequences.

One file you can read top to bottom. Every knob is a field of :class:`TrainConfig` (its docstrings
are the ``--help``). CPU or CUDA is picked automatically; on CUDA the step runs under bf16 autocast
with fused AdamW and optionally ``torch.compile``. Batches are a pure function of (seed, step),
so ``--resume`` after a crash ends exactly where an uninterrupted run ends, and under ``torchrun``
every rank takes its slice of the same global batch (DistributedDataParallel, gloo or NCCL).

Example:
    trajbench collect --env trajbench/DarkRoom-v0 --levels train --episodes-per-level 20 --out data/dr
    trajbench train --data data/dr --out runs/dr-bursty --context.mode bursty --steps 1500
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import tyro

from .contexts import ContextBuilder, ContextConfig
from .errors import TrajbenchError
from .io import atomic_write_json

CHECKPOINT = "checkpoint.pt"


@dataclass
class ModelSize:
    """The model's shape (the rest of its config comes from the data)."""

    d_model: int = 64
    """Width of the residual stream."""
    n_layers: int = 2
    """Number of transformer blocks."""
    n_heads: int = 4
    """Attention heads per block."""
    backbone: str = "llama"
    """Backbone architecture from transformers: llama (RoPE, sdpa) or gpt2."""
    dropout: float = 0.0
    """Dropout inside the backbone."""


@dataclass
class TrainConfig:
    """Train a trajectory transformer on episodes of one or more stores."""

    data: tuple[str, ...]
    """Episode store directories (families must share an observation encoding)."""
    out: str
    """Run directory: the model goes to OUT/model, checkpoints and metrics beside it."""
    context: ContextConfig = field(default_factory=ContextConfig)
    """How training sequences are built (context mode, k, instruction, ...)."""
    model: ModelSize = field(default_factory=ModelSize)
    """Model shape."""
    steps: int = 1500
    """Optimizer steps."""
    batch_size: int = 32
    """Sequences per step (the global batch, split across ranks under torchrun)."""
    lr: float = 1e-3
    """Peak learning rate."""
    min_lr_ratio: float = 0.1
    """The cosine schedule decays to lr * min_lr_ratio."""
    warmup_steps: int = 100
    """Linear warm-up steps."""
    weight_decay: float = 0.01
    """AdamW weight decay (matrices only)."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value (0: off)."""
    seed: int = 0
    """Seed of the weights and of the batch stream."""
    device: str = "auto"
    """auto (CUDA if available, else CPU), cpu, cuda or cuda:N."""
    bf16: bool = True
    """Use bf16 autocast on CUDA (ignored on CPU)."""
    compile: bool = False
    """Compile the model with torch.compile."""
    threads: int = 0
    """CPU threads for torch (0: torch's default)."""
    workers: int = 0
    """DataLoader worker processes that build batches (0: in the training process)."""
    checkpoint_every: int = 250
    """Save a resumable checkpoint every N steps (0: only at the end)."""
    resume: bool = False
    """Continue from OUT/checkpoint.pt if it exists."""
    log_every: int = 25
    """Write a metrics row every N steps."""
    progress: bool = True
    """Show a progress bar."""


# -- devices and distributed -------------------------------------------------------------------
def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available else CPU; a device that does not exist is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise TrajbenchError(f"unknown device {name!r}: {err}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise TrajbenchError(
                f"device {name!r} requested but CUDA is not available on this machine"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise TrajbenchError(
                f"device {name!r} does not exist: {torch.cuda.device_count()} CUDA device(s)"
            )
    elif device.type != "cpu":
        raise TrajbenchError(f"unsupported device {name!r}; use auto, cpu or cuda[:N]")
    return device


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device_name: str) -> tuple[Dist, torch.device]:
    """Join the torchrun process group if launched by torchrun, else a single process."""
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return Dist(), resolve_device(device_name)
    dist = Dist(
        int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0))
    )
    device = resolve_device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist, device


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
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95), fused=device.type == "cuda")


# -- the run -----------------------------------------------------------------------------------
def validate(cfg: TrainConfig) -> None:
    for name in ("steps", "batch_size", "log_every"):
        if getattr(cfg, name) < 1:
            raise TrajbenchError(f"{name} must be >= 1, got {getattr(cfg, name)}")
    for name in ("warmup_steps", "checkpoint_every", "workers", "threads"):
        if getattr(cfg, name) < 0:
            raise TrajbenchError(f"{name} must be >= 0, got {getattr(cfg, name)}")
    if cfg.lr <= 0:
        raise TrajbenchError(f"lr must be > 0, got {cfg.lr}")
    if not cfg.data:
        raise TrajbenchError("--data needs at least one episode store directory")
    cfg.context.validate()


def train(cfg: TrainConfig) -> Path:
    """Train and save the model to ``cfg.out/model``; returns that directory."""
    from torch.nn.functional import cross_entropy

    from trajbench.baselines.transformer import ModelConfig, TrajectoryTransformer

    from .data import load

    validate(cfg)
    dist, device = init_distributed(cfg.device)
    if cfg.batch_size % dist.world:
        raise TrajbenchError(
            f"batch_size {cfg.batch_size} is not divisible by the {dist.world} ranks"
        )
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    model_dir, ckpt_path = out / "model", out / CHECKPOINT

    store = load(list(cfg.data))
    builder = ContextBuilder(store, seed=cfg.seed, config=cfg.context)
    vocab = builder.vocab

    def make_builder():
        return ContextBuilder(load(list(cfg.data)), seed=cfg.seed, vocab=vocab, config=cfg.context)

    torch.manual_seed(cfg.seed)
    mcfg = ModelConfig(
        feature_sizes=tuple(store.encoding.feature_sizes),
        n_actions=store.encoding.n_actions,
        vocab_size=len(vocab),
        d_model=cfg.model.d_model,
        n_layers=cfg.model.n_layers,
        n_heads=cfg.model.n_heads,
        backbone=cfg.model.backbone,
        dropout=cfg.model.dropout,
        encoding_name=store.encoding.name,
    )
    model = TrajectoryTransformer(mcfg).to(device)
    optimizer = make_optimizer(model, cfg, device)
    start = 0
    if cfg.resume and ckpt_path.exists():
        start = load_checkpoint(ckpt_path, model, optimizer, cfg)
    elif model_dir.exists() and not cfg.resume:
        raise TrajbenchError(
            f"{model_dir} already exists; pass --resume to continue or choose another --out"
        )

    ddp_model = model
    if dist.world > 1:
        ddp_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    forward_loss = ddp_model
    if cfg.compile:
        forward_loss = torch.compile(ddp_model)
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if device.type == "cuda" and cfg.bf16
        else contextlib.nullcontext()
    )

    loader = torch.utils.data.DataLoader(
        BatchStream(make_builder, cfg.batch_size, cfg.seed, start, cfg.steps),
        batch_size=None,
        num_workers=cfg.workers,
        persistent_workers=False,
    )
    if dist.main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "train_config.json", config_dict(cfg))
    log = MetricsLog(out / "metrics.csv", enabled=dist.main, resume_step=start)
    bar = _progress(cfg, dist, start)
    per_rank = cfg.batch_size // dist.world
    model.train()
    t_last, tokens_since = time.perf_counter(), 0
    for step, batch in loader:
        lr = learning_rate(step, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        n_targets = int(batch.loss_mask.sum())
        local = batch[dist.rank * per_rank : (dist.rank + 1) * per_rank]
        tokens = local.to_torch(device)
        with autocast:
            # Normalize by the global target count so DDP's gradient average equals one big batch.
            logits, _ = forward_loss(tokens)
            loss = cross_entropy(
                logits.float().flatten(0, 1),
                tokens["target"].flatten(),
                ignore_index=-100,
                reduction="sum",
            ) / (max(n_targets, 1) / dist.world)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(
            model.parameters(), cfg.grad_clip or float("inf")
        )
        optimizer.step()
        tokens_since += int((~batch.pad).sum())
        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.steps:
            loss_value = float(loss.detach()) * dist.world
            if dist.world > 1:
                t = torch.tensor([loss_value], device=device)
                torch.distributed.all_reduce(t)
                loss_value = float(t) / dist.world
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
            save_checkpoint(ckpt_path, model, optimizer, done, cfg)
    if bar is not None:
        bar.close()
    log.close()
    if dist.main:
        extra = {
            "vocab": vocab.to_dict(),
            "train_config": config_dict(cfg),
            "env_ids": list(store.env_ids),
            "encoding": asdict_encoding(store.encoding),
            "data_hash": store.content_hash,
            "parameters": model.num_parameters(),
        }
        model.save_pretrained(model_dir, extra=extra)
        save_checkpoint(ckpt_path, model, optimizer, cfg.steps, cfg)
    if dist.world > 1:
        torch.distributed.barrier()
    return model_dir


def asdict_encoding(encoding) -> dict:
    return {
        "name": encoding.name,
        "feature_sizes": list(encoding.feature_sizes),
        "n_actions": encoding.n_actions,
    }


def config_dict(cfg: TrainConfig) -> dict:
    return json.loads(json.dumps(asdict(cfg)))


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
    from tqdm.auto import tqdm

    return tqdm(
        total=cfg.steps, initial=start, desc=f"train {cfg.context.mode}", unit="step", leave=False
    )


def save_checkpoint(path: Path, model, optimizer, step: int, cfg: TrainConfig) -> None:
    """Model, optimizer and step, written atomically (the batch stream needs no state)."""
    import io

    from .io import atomic_write_bytes

    buf = io.BytesIO()
    torch.save(
        {
            "step": step,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "model_config": asdict(model.cfg),
            "torch_rng": torch.get_rng_state(),
            "config": config_dict(cfg),
        },
        buf,
    )
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: Path, model, optimizer, cfg: TrainConfig) -> int:
    """Restore a checkpoint; refuses one written by a different model config."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # torch raises many types for a truncated or foreign file
        raise TrajbenchError(f"cannot read checkpoint {path}: {err}") from None
    if state.get("model_config") != asdict(model.cfg):
        raise TrajbenchError(
            f"checkpoint {path} was written for another model config; use a new --out"
        )
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"])
    return int(state["step"])


def main(argv: list[str]) -> int:
    cfg = tyro.cli(TrainConfig, args=argv, prog="trajbench train")
    model_dir = train(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"model saved to {model_dir}")
    return 0

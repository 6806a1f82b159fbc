"""``trajbench train``'s config: every knob of a training run, and its checks.

Example:
    cfg = TrainConfig(data=("data/dr-train",), out="runs/dr-bursty", steps=300)
    validate(cfg)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from trajbench.baselines.model_config import ModelConfig
from trajbench.contexts import ContextConfig
from trajbench.errors import TrajbenchError


@dataclass
class TrainConfig:
    """Train a trajectory transformer on episodes of one or more stores."""

    data: tuple[str, ...] = ()
    """Episode store directories (families must share an observation encoding)."""
    out: str = ""
    """Run directory: the model goes to OUT/model, checkpoints and metrics beside it."""
    context: ContextConfig = field(default_factory=ContextConfig)
    """How training sequences are built (context mode, k, instruction, ...)."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """The policy network's architecture."""
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


def validate(cfg: TrainConfig) -> None:
    for name in ("steps", "batch_size", "log_every"):
        if getattr(cfg, name) < 1:
            raise TrajbenchError(f"{name} must be >= 1, got {getattr(cfg, name)}")
    for name in ("warmup_steps", "checkpoint_every", "workers", "threads"):
        if getattr(cfg, name) < 0:
            raise TrajbenchError(f"{name} must be >= 0, got {getattr(cfg, name)}")
    if cfg.lr <= 0:
        raise TrajbenchError(f"lr must be > 0, got {cfg.lr}")
    if not 0 <= cfg.min_lr_ratio <= 1:
        raise TrajbenchError(f"min_lr_ratio must be in [0, 1], got {cfg.min_lr_ratio}")
    if cfg.grad_clip < 0 or cfg.weight_decay < 0:
        raise TrajbenchError("grad_clip and weight_decay must be >= 0")
    if not cfg.data:
        raise TrajbenchError("--data needs at least one episode store directory")
    if not cfg.out:
        raise TrajbenchError("--out needs a run directory")
    for d in cfg.data:
        if not Path(d).is_dir():
            raise TrajbenchError(f"--data {d}: no such directory")
    cfg.context.validate()
    cfg.model.validate()

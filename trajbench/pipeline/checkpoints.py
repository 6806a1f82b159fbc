"""Resumable training checkpoints: weights, optimizer, step and torch's RNG, written atomically.

A checkpoint also records the model's architecture and encoding, the training config and the
training data's content hash, so ``--resume`` refuses a checkpoint another run wrote.
"""

from __future__ import annotations

import io
from pathlib import Path

import torch

from trajbench.configs import to_dict
from trajbench.errors import TrajbenchError
from trajbench.io import atomic_write_bytes

from .train_config import TrainConfig

CHECKPOINT = "checkpoint.pt"


def _model_identity(model) -> dict:
    """What a checkpoint's weights must have been trained as: architecture and encoding."""
    return {"model": to_dict(model.cfg), "encoding": to_dict(model.encoding)}


#: TrainConfig fields that decide the trained weights; resuming needs a checkpoint that agrees.
TRAJECTORY_FIELDS = (
    "context",
    "model",
    "steps",
    "batch_size",
    "lr",
    "min_lr_ratio",
    "warmup_steps",
    "weight_decay",
    "grad_clip",
    "seed",
)


def save_checkpoint(
    path: Path, model, optimizer, step: int, cfg: TrainConfig, data_hash: str = ""
) -> None:
    """Model, optimizer, step and RNG, written atomically (the batch stream needs no state)."""
    buf = io.BytesIO()
    torch.save(
        {
            "step": step,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "model_config": _model_identity(model),
            "torch_rng": torch.get_rng_state(),
            "config": to_dict(cfg),
            "data_hash": data_hash,
        },
        buf,
    )
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(
    path: Path, model, optimizer, cfg: TrainConfig, data_hash: str = ""
) -> tuple[int, torch.Tensor]:
    """Restore model and optimizer from a checkpoint; returns ``(step, torch RNG state)``.

    Refuses a checkpoint written by a different model config, training config or dataset.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
        step, rng = int(state["step"]), state["torch_rng"]
    except Exception as err:  # torch raises many types for a truncated or foreign file
        raise TrajbenchError(f"cannot read checkpoint {path}: {err}") from None
    if state.get("model_config") != _model_identity(model):
        raise TrajbenchError(
            f"checkpoint {path} was written for another model config; use a new --out"
        )
    saved, now = state.get("config") or {}, to_dict(cfg)
    changed = [k for k in TRAJECTORY_FIELDS if saved.get(k) != now[k]]
    if changed:
        diff = ", ".join(f"{k}: {saved.get(k)!r} -> {now[k]!r}" for k in changed)
        raise TrajbenchError(
            f"checkpoint {path} was written by another training config ({diff}); "
            "resume with the same settings or use a new --out"
        )
    if data_hash and state.get("data_hash") and state["data_hash"] != data_hash:
        raise TrajbenchError(
            f"checkpoint {path} was trained on other data (content hash {state['data_hash'][:12]} "
            f"!= {data_hash[:12]}); resume with the same --data or use a new --out"
        )
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as err:
        raise TrajbenchError(f"checkpoint {path} does not fit the model: {err}") from None
    return step, rng

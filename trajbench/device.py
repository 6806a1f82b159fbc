"""Where torch runs: device choice, CPU threads, torchrun processes and mixed precision.

Every stage that touches torch (training, evaluation, the analyses) picks its device and threads
here, so a bad ``--device`` gets the same one-line error everywhere.

Example:
    >>> resolve_device("cpu")
    device(type='cpu')
    >>> with torch_threads(1):
    ...     torch.get_num_threads()
    1
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from .errors import TrajbenchError


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available else CPU; a device that does not exist is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise TrajbenchError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
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


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Use ``n`` CPU threads inside the block (0: leave torch's setting), then restore it."""
    if n < 0:
        raise TrajbenchError(f"threads must be >= 0, got {n}")
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n:
            torch.set_num_threads(before)


def autocast(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA when asked for; a no-op elsewhere (CPU runs in float32)."""
    if device.type == "cuda" and bf16:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@dataclass
class Dist:
    """This process's place in a torchrun job (a single process: rank 0 of 1)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def world_size() -> int:
    """Number of processes of this run (``WORLD_SIZE`` under torchrun, else 1)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        raise TrajbenchError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not an integer") from None


def init_distributed(device_name: str) -> tuple[Dist, torch.device]:
    """Join the torchrun process group if launched by torchrun, else a single process."""
    if "RANK" not in os.environ or world_size() == 1:
        return Dist(), resolve_device(device_name)
    dist = Dist(int(os.environ["RANK"]), world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    device = resolve_device(device_name)
    if device.type == "cuda":
        if dist.local_rank >= torch.cuda.device_count():
            raise TrajbenchError(
                f"local rank {dist.local_rank} has no GPU: {torch.cuda.device_count()} CUDA "
                "device(s) on this node; start fewer processes per node"
            )
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist, device


def close_distributed(dist: Dist) -> None:
    """Leave the torchrun process group joined by :func:`init_distributed`, if any."""
    if dist.world > 1 and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()

"""What the benchmarks share: the machine line each prints above its figures, and a Dark Room
store to measure on."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def describe(versions: str, gpu: str = "") -> str:
    """CPU model, cores, load average and OS, then Python and the given package ``versions``."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = " ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    gpu = f", GPU {gpu}" if gpu else ""
    return (
        f"machine: {cpu}, {cores} cores (load average {load}), {platform.system()}{gpu}\n"
        f"python {platform.python_version()}, {versions}"
    )


def describe_torch(device) -> str:
    """:func:`describe` for the torch benchmarks: torch version, CPU threads, device (and GPU)."""
    import torch

    import trajbench

    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else ""
    return describe(
        f"torch {torch.__version__} ({torch.get_num_threads()} CPU thread(s)), "
        f"trajbench {trajbench.__version__}, device {device}",
        gpu,
    )


def dark_room_store(directory: str | Path, levels: str, episodes_per_level: int) -> Path:
    """Collect expert Dark Room episodes of a split (``"train"``, ``"test"``, ``"all"``) into
    ``directory/dr``, quietly; returns the store's path."""
    from trajbench.collect import CollectConfig, collect

    return collect(
        CollectConfig(
            env="trajbench/DarkRoom-v0",
            levels=levels,
            episodes_per_level=episodes_per_level,
            out=str(Path(directory) / "dr"),
            progress=False,
        )
    )

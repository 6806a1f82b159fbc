"""Where a result came from: the machine, the code's commit, the package versions.

Written into ``results.json``, leaderboard submissions and every benchmark's output.

Example:
    >>> isinstance(git_commit(), str) and "cores" in hardware()
    True
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path


def cpu_name() -> str:
    """The CPU model from ``/proc/cpuinfo`` where there is one, else what ``platform`` says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cores() -> int:
    """CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def gpu_name() -> str:
    """The first CUDA device's name, or '' without CUDA (imports torch only when asked)."""
    import torch  # not at module level: the CLI's light commands never need torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else ""


def hardware() -> str:
    """A one-line description of the machine (and its GPU, if there is one)."""
    gpu = gpu_name()
    return f"{cpu_name()}, {cores()} cores, {platform.system()}" + (f", GPU {gpu}" if gpu else "")


def git_commit() -> str:
    """The commit of the trajbench checkout, or ``unknown`` outside a git checkout."""
    try:
        root = Path(__file__).resolve().parent.parent
        return subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"

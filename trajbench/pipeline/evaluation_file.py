"""``OUT/evaluation.json``: where the records of ``trajbench evaluate`` came from.

Written last, atomically, beside ``records.parquet`` by ``trajbench evaluate`` and by
``trajbench.evaluate(..., out=...)``, it holds what a leaderboard entry needs besides the records
(``trajbench leaderboard submit`` reads it): the evaluation config, trajbench's version and
commit, the suite version, the machine, device, date, wall time, the command, and the policy's
name, version and training condition.

Example:
    >>> from trajbench.pipeline.evaluate import EvalConfig
    >>> cfg = EvalConfig(policy="hashmap", data=("data/dr-test",), ks=(0, 4))
    >>> changed_fields(cfg)
    "policy='hashmap', data=('data/dr-test',), ks=(0, 4)"
"""

from __future__ import annotations

import dataclasses
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from trajbench import __version__
from trajbench.configs import to_dict
from trajbench.io import atomic_write_json
from trajbench.provenance import git_commit, hardware
from trajbench.records import EVALUATION_FILE, REFERENCES, TRAIN_CONTEXT
from trajbench.suite import SUITE, SUITE_VERSION

from .eval_config import EvalConfig
from .policies import PolicyInfo
from .training_record import read_training_record


def write_evaluation_file(
    cfg: EvalConfig, policy: Any, info: PolicyInfo, command: str, started: float
) -> Path:
    """Write ``cfg.out/evaluation.json`` for an evaluation that began at ``started``
    (``time.perf_counter()``); returns its path."""
    trained = info.model_params > 0 and Path(cfg.policy).is_dir()
    p_bursty = read_training_record(cfg.policy).config.context.p_bursty if trained else None
    # trajbench's models say where they run; its reference policies run on the CPU, and of
    # any other policy only its own device attribute would tell.
    device = getattr(policy, "device", "cpu" if info.policy in REFERENCES else "unknown")
    path = Path(cfg.out) / EVALUATION_FILE
    # a Python caller may give paths where the config holds strings
    paths = {"policy": str(cfg.policy), "data": tuple(map(str, cfg.data)), "out": str(cfg.out)}
    provenance = {
        "trajbench_version": __version__,
        "git_commit": git_commit(),
        "suite": SUITE,
        "suite_version": SUITE_VERSION,
        "hardware": hardware(),
        "device": str(device),
        "torch_version": torch.__version__,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "wall_time_s": round(time.perf_counter() - started, 1),
        "command": command,
        "policy": info.policy,
        "policy_version": info.policy_version,
        "training": {
            TRAIN_CONTEXT: info.train_context,
            "instruction": info.instruction,
            "p_bursty": p_bursty,
        },
        "config": to_dict(dataclasses.replace(cfg, **paths)),
    }
    atomic_write_json(path, provenance)
    return path


def changed_fields(cfg: EvalConfig, skip: tuple[str, ...] = ()) -> str:
    """``name=value, ...`` for the fields of ``cfg`` that differ from their defaults: how a call
    from Python is recorded as the command."""
    return ", ".join(
        f"{f.name}={getattr(cfg, f.name)!r}"
        for f in dataclasses.fields(cfg)
        if f.name not in skip and getattr(cfg, f.name) != f.default
    )

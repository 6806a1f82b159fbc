"""Issue 23's GPU targets, estimated on the ensemble path (``trajbench run --dry-run`` prints them
under :mod:`trajbench.pipeline.sizing`'s table).

What a preset would take end to end on one GPU box (an H100 and :data:`BOX_CORES` cores) if

- **collection** runs on every core: episodes / (episodes per CPU-second measured here on the
  dry-run's small collection x :data:`BOX_CORES`);
- **training** runs as batched ensembles (:mod:`trajbench.pipeline.ensemble`): a group whose
  backbones all batch trains its conditions x seeds together, a step costing
  ``max(the members' FLOPs / (peak x ENSEMBLE_MFU), shortest step)``, the shortest step being the
  GPU basis's (a vmapped step launches about the kernels of one model, plus one attention and
  one embedding launch per member and layer that vmap loops); a group whose backbone does not
  batch trains one model at a time, as in the table above;
- **evaluation** rolls out at :data:`ROLLOUT_SPEEDUP` x the cached rollout rate measured on the
  card (``gpu_check.json``'s ``rollout``), an episode taking the small collection's mean steps.

Each of these is an assumption (the target itself for MFU and rollouts) until
``benchmarks/gpu_check.sh`` measures it on a card; the report says so beside each target.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

from trajbench.baselines.backbones import BACKBONES

from .sizing import MEASURED_FILE, GroupSize, PresetSize, _duration, render, size_of

if TYPE_CHECKING:
    from .jobs import RunConfig
    from .presets import Group

#: Model FLOPs utilisation assumed for an ensemble step: issue 23's target for the standard model.
ENSEMBLE_MFU = 0.30
#: Rollout speed-up over today's cached rollouts assumed: issue 23's target.
ROLLOUT_SPEEDUP = 10
#: Cores of the GPU box (issue 23: "a GPU box here has 16").
BOX_CORES = 16
#: Issue 23's end-to-end targets (seconds) by preset.
END_TO_END_TARGET_S = {"gpu": 300.0, "standard": 720.0}


def batches(group: Group) -> bool:
    """Whether every condition of ``group`` can train in one ensemble (backbone, dropout)."""
    model = group.train.model
    kinds = {c.backbone or model.backbone for c in group.conditions}
    return model.dropout == 0 and all(BACKBONES[k].ensemble for k in kinds)


def ensemble_train_s(group: Group, size: GroupSize, peak: float, min_step_s: float) -> float:
    """Training seconds of ``group`` on the ensemble path (see the module docstring)."""
    if not batches(group):
        return size.gpu_s
    return size.steps * max(size.training_flops / size.steps / (peak * ENSEMBLE_MFU), min_step_s)


def floor_needed(
    pairs: list[tuple[Group, GroupSize]], peak: float, budget_s: float
) -> float | None:
    """The longest shortest-step (seconds) with which ensemble training of ``pairs`` fits in
    ``budget_s`` (None: it does not fit even with no floor at all)."""

    def train_s(floor: float) -> float:
        return sum(ensemble_train_s(g, s, peak, floor) for g, s in pairs)

    if train_s(0.0) > budget_s:
        return None
    low, high = 0.0, 1.0
    for _ in range(60):  # bisection: train_s grows with the floor
        mid = (low + high) / 2
        low, high = (mid, high) if train_s(mid) <= budget_s else (low, mid)
    return low


def today_rollout_steps_s(path: str | os.PathLike | None = None) -> tuple[float, str]:
    """Cached rollout env steps/s measured by ``gpu_check.sh`` and its card, or (nan, "")."""
    try:
        where = Path(path or os.environ.get("TRAJBENCH_GPU_CHECK") or MEASURED_FILE)
        data = json.loads(where.read_text())
        return float(data["rollout"]["cached_steps_per_s"]), str(data["card"])
    except (OSError, ValueError, KeyError, TypeError):
        return math.nan, ""


def render_targets(size: PresetSize) -> str:
    """The targets table: each target, the estimate on the ensemble path, what it rests on."""
    basis = size.basis
    today, card = today_rollout_steps_s()
    rollout = ROLLOUT_SPEEDUP * today
    collect_rate = min(g.collect_episodes_per_cpu_s for g in size.groups) * BOX_CORES
    collect_s = size.collect_episodes / collect_rate
    pairs = list(zip(size.preset.groups, size.groups, strict=True))
    train_s = sum(ensemble_train_s(g, s, basis.peak_flops, basis.min_step_s) for g, s in pairs)
    eval_s = sum(s.eval_episodes * s.episode_steps for s in size.groups) / rollout
    total = collect_s + train_s + eval_s
    target = END_TO_END_TARGET_S.get(size.preset.name)
    verdict = "n/a" if target is None else ("meets" if total <= target else "misses")
    today_text = f"{today:,.0f} env steps/s on {card}" if card else "not measured"
    rows = []
    if target is not None:
        floor = floor_needed(pairs, basis.peak_flops, target - collect_s - eval_s)
        needed = "not reachable by a shorter step" if floor is None else f"<= {floor * 1e3:.1f} ms"
        rows.append(
            f"| shortest ensemble step that meets it | {needed} | the rest as above; the "
            f"step floor assumed: {basis.min_step_s * 1e3:.1f} ms (one model, {basis.source}) |"
        )
    return "\n".join(
        [
            "",
            f"Issue 23's targets on one {basis.card} with {BOX_CORES} cores, on the ensemble "
            "path (ESTIMATES until benchmarks/gpu_check.sh measures them):",
            "",
            "| target | estimate | rests on |",
            "|---|---|---|",
            f"| ensemble MFU >= {ENSEMBLE_MFU:.0%} (bf16) | {ENSEMBLE_MFU:.0%} | assumed: the "
            f"target (one model today: MFU {basis.mfu:.2%}, {basis.source}) |",
            f"| rollouts >= {ROLLOUT_SPEEDUP}x today's | {rollout:,.0f} env steps/s | assumed: "
            f"{ROLLOUT_SPEEDUP}x today's cached rollouts ({today_text}) |",
            f"| {size.preset.name} end to end"
            + ("" if target is None else f" <= {_duration(target)}")
            + f" | {_duration(total)} ({verdict}): collect {_duration(collect_s)} + train "
            f"{_duration(train_s)} + evaluate {_duration(eval_s)} | collection "
            f"{collect_rate:,.0f} episodes/s ({BOX_CORES} cores at the rate measured here, "
            f"{size.collect_episodes:,} episodes); training as ensembles at the assumed MFU, a "
            f"step >= {basis.min_step_s * 1e3:.1f} ms; evaluation at the assumed rollout rate |",
            *rows,
        ]
    )


def dry_run(cfg: RunConfig) -> str:
    """``trajbench run --dry-run``: the sizing report of ``cfg.preset`` and the targets under it."""
    size = size_of(cfg)
    return render(size) + "\n" + render_targets(size)

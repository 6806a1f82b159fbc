"""A run's plan: its config, its jobs (one training condition or reference policy and seed of a
preset's group each) and the evaluations every job runs. The runner executes the plan;
:mod:`trajbench.pipeline.sizing` prices it without running it.

Example:
    jobs = jobs_of(PRESETS["ci"], seeds=(0, 1))
    [job.name for job in jobs[:2]], evaluations(jobs[0])[0][:1]
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from trajbench.contexts import ContextConfig
from trajbench.records import COMMON, DECOY, TEST_FAMILIES, TEST_LEVELS

from .eval_config import EvalConfig
from .launch import LauncherName, SlurmConfig
from .presets import PRESETS, Condition, DataSpec, Group, Preset

PresetName = Literal[tuple(PRESETS)]  # type: ignore[valid-type]  (the registered presets)


@dataclass
class RunConfig:
    """Run a benchmark preset end to end."""

    preset: PresetName
    """Preset: ci (seconds, for tests), smoke (2-core CPU, <= 15 min), architectures (llama vs
    mamba2 vs lstm, 2-core CPU, <= 20 min), standard (GPU), gpu (~8 min on one H100)."""
    out: str = ""
    """Run directory; rerunning with the same directory resumes."""
    device: str = ""
    """Override the preset's device: auto, cpu, cuda or cuda:N."""
    seeds: tuple[int, ...] = ()
    """Override the preset's training seeds."""
    workers: int = 0
    """Override how many jobs run in parallel on the CPU, and collection processes (0: the preset's choice)."""
    gpus: str = ""
    """Spread jobs over GPUs: all, or a count N (the first N visible); empty: the device's GPU."""
    jobs_per_gpu: int = 0
    """Jobs run at once on one GPU, each in its own process (0: the preset's choice)."""
    launcher: LauncherName = "pool"
    """Where jobs run: pool (this machine; worker processes unless one job at a time), slurm (a Slurm job array through submitit, collection as shards first), local (the slurm path through submitit's local executor, on this machine)."""
    slurm: SlurmConfig = field(default_factory=SlurmConfig)
    """Submission knobs of --launcher slurm (and local)."""
    progress: bool = True
    """Show progress bars."""
    ensemble: Literal["auto", "on", "off"] = "auto"
    """Train the models of a group that share a model shape (conditions x seeds) in one process
    as one batched ensemble, each as if alone (trajbench.pipeline.ensemble): on, off, or auto (on
    CUDA, where one small model leaves the card idle; off on the CPU, where it does not pay)."""
    dry_run: bool = False
    """Run nothing: print each group's jobs, training tokens and FLOPs, evaluation episodes and
    the estimated training time on this CPU and on a GPU (trajbench.pipeline.sizing)."""


# -- jobs -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Job:
    """One training condition and seed (or one reference policy and seed) of a group."""

    group: Group
    seed: int
    condition: Condition | None = None
    baseline: str = ""

    @property
    def name(self) -> str:
        if self.baseline:
            return f"baseline-{self.baseline}"
        c = self.condition
        p = "" if c.p_bursty is None else f"-p{c.p_bursty:g}"
        return f"{c.train_context}-{c.instruction}{p}" + (f"-{c.backbone}" if c.backbone else "")

    @property
    def eval_seed(self) -> int:
        """The evaluation seed: apart from the training seed, the same for every condition."""
        return EVAL_SEED_OFFSET + self.seed

    def directory(self, out: Path) -> Path:
        return out / "jobs" / self.group.name / self.name / f"seed{self.seed}"


#: Evaluation seed = this + training seed (so no evaluation reuses a training seed's stream).
EVAL_SEED_OFFSET = 1000


def jobs_of(preset: Preset, seeds: tuple[int, ...]) -> list[Job]:
    """Every (condition or reference policy, seed) of every group of ``preset``."""
    jobs = []
    for group in preset.groups:
        jobs += [Job(group, s, condition=c) for c in group.conditions for s in seeds]
        jobs += [Job(group, s, baseline=b) for b in group.baselines for s in seeds]
    return jobs


def condition_context(group: Group, condition: Condition) -> ContextConfig:
    """The context config ``condition``'s models train with in ``group``."""
    return replace(
        group.train.context,
        mode=condition.train_context,
        p_bursty=condition.p_bursty,
        instruction=condition.instruction,
    )


def evaluations(job: Job) -> list[tuple[str, tuple[DataSpec, ...], str, tuple[str, ...]]]:
    """``(eval_split, stores, instruction, formats)`` of every evaluation ``job`` runs: held-out
    levels and held-out families, as trained, and with decoy missions where the group asks."""
    g, c = job.group, job.condition
    instructions = ["train"]
    if g.decoy_eval and (job.baseline or c.instruction == "full"):
        instructions.append(DECOY)
    return [
        (split, specs, instruction, eval_formats(g.eval, instruction))
        for split, specs in ((TEST_LEVELS, g.test_data), (TEST_FAMILIES, g.heldout_family_data))
        for instruction in (instructions if specs else ())
    ]


def job_eval_config(base: EvalConfig, split: str, instruction: str, **fields) -> EvalConfig:
    """A job's evaluation of one held-out split with one query mission (a decoy mission is
    shown in the common format only); ``fields`` fill in the policy, data, seed, ..."""
    formats = eval_formats(base, instruction)
    return replace(
        base, eval_split=split, instruction=instruction, formats=formats, progress=False, **fields
    )


def eval_formats(base: EvalConfig, instruction: str) -> tuple[str, ...]:
    """The formats an evaluation shows: the group's as trained, the common one with a decoy."""
    return base.formats if instruction == "train" else (COMMON,)

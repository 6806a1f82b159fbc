"""Fine-tuning presets: a language model fine-tuned on text contexts under every (context mode,
instruction) of a grid, each fine-tune then evaluated in context on held-out levels.

``trajbench finetune --preset NAME --out DIR`` collects the preset's stores, runs its jobs in
sequence (:func:`~trajbench.pipeline.finetune.finetune`, then the usual evaluation of
``trajbench.llm:make_policy`` on the fine-tuned directory) and prints mean success per job, K and
support (also in ``DIR/summary.csv``). A job already done (its model or its ``evaluation.json``
on disk) is skipped, so a stopped run goes on where it stopped. ``--dry-run`` prints the jobs and
a time estimate per job and in all, on the basis :class:`Basis` states.

These presets are apart from ``trajbench run``'s (:mod:`trajbench.pipeline.presets`): those train
the token track's transformer over seeds and ask declared questions; these fine-tune one language
model once per condition, sized for one GPU lease.

Example:
    trajbench finetune --preset goto-gpu --out runs/ft-goto --dry-run
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from trajbench.cliargs import parse_config
from trajbench.contexts import ContextConfig
from trajbench.contexts.modes import BURSTY, ISOLATED
from trajbench.device import resolve_device
from trajbench.errors import TrajbenchError
from trajbench.llm import POLICY_SPEC
from trajbench.records import EVALUATION_FILE, RECORDS_FILE

from .eval_config import EvalConfig
from .evaluate import evaluate
from .finetune import finetune
from .finetune import main as finetune_main
from .finetune_config import FineTuneConfig
from .presets import DataSpec
from .runner import collect_data, data_dir


@dataclass(frozen=True)
class Basis:
    """What a dry run's time estimate rests on: two measurements on a 2-core CPU and three
    assumptions about the GPU, none of them measured on one.

    Measured with ``OMP_NUM_THREADS=1 python benchmarks/finetune_speed.py`` (docs/text-track.md
    shows its output).
    """

    cpu_tokens_per_s: dict[str, float]
    """Measured: tokens per second of one SmolLM2-135M training step on the CPU with 1 thread,
    by method (full, lora)."""
    tokens_per_row: dict[str, float]
    """Measured: mean SmolLM2 tokens of a training row, by context mode (at the preset's K)."""
    gpu_speedup: float
    """Assumed: how many times faster than one CPU thread a step runs on the GPU (bf16)."""
    pass_s: float
    """Assumed: seconds of one batched forward pass of the policy on the GPU (evaluation steps
    are small batches of a few tokens: latency, not arithmetic, bounds them)."""
    load_s: float
    """Assumed: seconds to load (and save) the model once, per job."""


@dataclass(frozen=True)
class FineTunePreset:
    """A grid of fine-tunes of one model on one family, and their evaluation."""

    description: str
    """One line: what it runs and what it is sized for."""
    train: DataSpec
    """The training store (training levels)."""
    test: DataSpec
    """The evaluation store (held-out levels)."""
    finetune: FineTuneConfig
    """Every job's fine-tuning config; the job fills in its data, directory, mode and
    instruction (context.k and every other knob as given here)."""
    eval: EvalConfig
    """Every job's evaluation; the job fills in its policy, data and directory."""
    modes: tuple[str, ...] = (BURSTY, ISOLATED)
    """Context modes to fine-tune with."""
    instructions: tuple[str, ...] = ("full", "empty", "wrong")
    """Instruction modes to fine-tune with (crossed with ``modes``)."""
    evaluate_base: bool = True
    """Also evaluate the model before fine-tuning (job ``base``)."""
    basis: Basis | None = None
    """What the dry run's estimate rests on (None: no estimate)."""
    max_steps: int = 48
    """The family's episode step limit (bounds an evaluation's forward passes)."""
    passes_per_step: int = 4
    """Forward passes per evaluation step: one, plus one per action whose text is more than one
    token (3 of MiniGrid's 7 actions with SmolLM2's tokenizer)."""


@dataclass(frozen=True)
class Job:
    """One fine-tune (None for the base model) and its evaluation."""

    name: str
    finetune: FineTuneConfig | None
    eval: EvalConfig


def jobs(preset: FineTunePreset, out: Path, device: str = "auto") -> list[Job]:
    """The preset's jobs in run order, with their directories under ``out``."""
    train, test = str(data_dir(out, preset.train)), str(data_dir(out, preset.test))
    grid: list[tuple[str, FineTuneConfig | None]] = []
    if preset.evaluate_base:
        grid.append(("base", None))
    for mode in preset.modes:
        for instruction in preset.instructions:
            name = f"{mode}-{instruction}"
            context = replace(preset.finetune.context, mode=mode, instruction=instruction)
            cfg = replace(
                preset.finetune,
                data=(train,),
                out=str(out / "jobs" / name),
                context=context,
                device=device,
            )
            grid.append((name, cfg))
    result = []
    for name, cfg in grid:
        model = str(Path(cfg.out) / "model") if cfg else preset.finetune.model
        kwargs = {**json.loads(preset.eval.policy_kwargs or "{}"), "model": model}
        if device != "auto":
            kwargs["device"] = device
        evaluation = replace(
            preset.eval,
            policy=POLICY_SPEC,
            policy_kwargs=json.dumps(kwargs),
            data=(test,),
            out=str(out / "jobs" / name / "eval"),
        )
        result.append(Job(name, cfg, evaluation))
    return result


# -- the estimate ------------------------------------------------------------------------------
def estimate(preset: FineTunePreset, job: Job) -> tuple[float, float]:
    """(fine-tuning, evaluation) seconds of ``job`` on the GPU, on ``preset.basis``.

    Fine-tuning: steps x batch size x tokens per row / (CPU tokens/s x GPU speed-up), plus a
    load. Evaluation: at most (row batches x episodes x step limit x passes per step) forward
    passes of ``pass_s`` each, plus a load. Rows: levels x the (K, support) pairs evaluated.
    """
    basis = preset.basis
    if basis is None:
        raise TrajbenchError("this preset states no basis for a time estimate")
    train_s = 0.0
    if job.finetune is not None:
        cfg = job.finetune
        tokens = cfg.steps * cfg.batch_size * basis.tokens_per_row[cfg.context.mode]
        train_s = tokens / (basis.cpu_tokens_per_s[cfg.method] * basis.gpu_speedup) + basis.load_s
    ev = job.eval
    supports = 2 if ev.support == "both" else 1
    conditions = sum(1 if k == 0 else supports for k in ev.ks)
    levels = ev.max_levels or _levels(preset.test)
    batch_rows = json.loads(ev.policy_kwargs).get("batch_rows", 8)
    row_batches = math.ceil(levels * conditions / batch_rows)
    passes = row_batches * ev.episodes * preset.max_steps * preset.passes_per_step
    return train_s, passes * basis.pass_s + basis.load_s


def _levels(spec: DataSpec) -> int:
    if spec.max_levels:
        return spec.max_levels
    if all(part.strip().isdigit() for part in spec.levels.split(",")):
        return len(spec.levels.split(","))
    raise TrajbenchError(f"say how many levels {spec.name} holds (max_levels) to estimate")


def dry_run(preset: FineTunePreset, out: Path) -> str:
    """The jobs, each with its estimate, and the total, as printed by ``--dry-run``."""
    basis = preset.basis
    lines = [f"{len(jobs(preset, out))} jobs, in sequence, into {out}:"]
    total = 0.0
    for job in jobs(preset, out):
        train_s, eval_s = estimate(preset, job)
        total += train_s + eval_s
        if job.finetune is None:
            what = f"evaluate {preset.finetune.model or 'the packaged SmolLM2'} as it is"
        else:
            c = job.finetune
            what = (
                f"finetune {c.method} mode={c.context.mode} k={c.context.k} "
                f"instruction={c.context.instruction} steps={c.steps} batch={c.batch_size}, evaluate"
            )
        lines.append(
            f"  {job.name:<16} {what}: {train_s:5.0f} s + {eval_s:4.0f} s = "
            f"{train_s + eval_s:5.0f} s"
        )
    lines.append(f"total: {total:.0f} s ({total / 60:.1f} min) after collecting the stores")
    if basis is not None:
        lines.append(
            f"basis: CPU tokens/s of one step (1 thread, measured) {basis.cpu_tokens_per_s}; "
            f"tokens per row (measured) {basis.tokens_per_row}; assumed GPU speed-up "
            f"{basis.gpu_speedup:g}x, {basis.pass_s:g} s per evaluation forward pass, "
            f"{basis.load_s:g} s per model load"
        )
    return "\n".join(lines)


# -- the run -----------------------------------------------------------------------------------
def run_preset(preset: FineTunePreset, out: Path, device: str = "auto", progress: bool = True):
    """Collect, fine-tune and evaluate every job in sequence; returns the summary table (mean
    success per job, K and support), also written to ``out/summary.csv``."""
    device = str(resolve_device(device))
    for spec in (preset.train, preset.test):
        collect_data(spec, out, workers=1, progress=progress)
    tables = []
    for job in jobs(preset, out, device):
        if job.finetune is not None and not (Path(job.finetune.out) / "model").exists():
            finetune(replace(job.finetune, progress=progress))
        if not (Path(job.eval.out) / EVALUATION_FILE).exists():
            evaluate(replace(job.eval, progress=progress))
        records = pd.read_parquet(Path(job.eval.out) / RECORDS_FILE)
        tables.append(records.assign(job=job.name))
    records = pd.concat(tables, ignore_index=True)
    table = (
        records.groupby(["job", "k", "support"], sort=False)["success"]
        .agg(["mean", "count"])
        .reset_index()
        .rename(columns={"mean": "success", "count": "episodes"})
    )
    table.to_csv(out / "summary.csv", index=False)
    return table


@dataclass
class PresetArgs:
    """Run a fine-tuning preset: every fine-tune of its grid, each then evaluated."""

    preset: str = ""
    """The preset's name (see the list in docs/text-track.md)."""
    out: str = ""
    """Run directory: the stores under OUT/data, each job under OUT/jobs/NAME."""
    dry_run: bool = False
    """Print the jobs and their time estimate; run nothing."""
    device: str = "auto"
    """auto (CUDA if available, else CPU), cpu, cuda or cuda:N."""
    progress: bool = True
    """Show progress bars."""


def main(argv: list[str]) -> int:
    """``trajbench finetune``: a preset's jobs with ``--preset NAME``, else one fine-tune
    (:func:`trajbench.pipeline.finetune.main`)."""
    if "--preset" in argv:
        return preset_main(argv)
    return finetune_main(argv)


def preset_main(argv: list[str]) -> int:
    """``trajbench finetune --preset NAME --out DIR [--dry-run]``."""
    args = parse_config(PresetArgs, list(argv), "trajbench finetune --preset")
    if args is None:  # --help
        return 0
    if args.preset not in FINETUNE_PRESETS:
        raise TrajbenchError(
            f"unknown fine-tuning preset {args.preset!r}; known: {', '.join(FINETUNE_PRESETS)}"
        )
    if not args.out:
        raise TrajbenchError("--out needs a run directory")
    preset, out = FINETUNE_PRESETS[args.preset], Path(args.out)
    if args.dry_run:
        print(dry_run(preset, out))
        return 0
    table = run_preset(preset, out, args.device, args.progress)
    print(table.to_string(index=False))
    print(f"summary written to {out / 'summary.csv'}")
    return 0


#: The measured and assumed figures behind the ``goto-gpu`` estimate (see :class:`Basis`).
#: Measured on 2 busy cores (docs/text-track.md); assumed: 500x is 31,000 LoRA tokens/s, about
#: 25 TFLOP/s at 6 x 135 M FLOPs a token, a few percent of an H100's dense bf16 peak; 20 ms a
#: forward pass of a 30-layer model run eagerly; 20 s a load (the GGUF took 17 s on this CPU).
GOTO_BASIS = Basis(
    cpu_tokens_per_s={"full": 57.7, "lora": 62.4},
    tokens_per_row={BURSTY: 834.0, ISOLATED: 822.0},
    gpu_speedup=500.0,
    pass_s=0.02,
    load_s=20.0,
)

FINETUNE_PRESETS: dict[str, FineTunePreset] = {
    "goto-gpu": FineTunePreset(
        description=(
            "SmolLM2-135M, LoRA, on GoToLocal-v2: bursty vs isolated x instruction full / empty"
            " / wrong, 6 fine-tunes and the base model evaluated; sized for one 15-minute lease"
            " of one H100"
        ),
        train=DataSpec("trajbench/GoToLocal-v2", "train", 6, max_levels=512),
        test=DataSpec("trajbench/GoToLocal-v2", "test", 6, seed=1, max_levels=16),
        finetune=FineTuneConfig(
            context=ContextConfig(k=2),
            method="lora",
            steps=200,
            batch_size=8,
            lr=2e-4,
            warmup_steps=20,
        ),
        eval=EvalConfig(
            policy_kwargs=json.dumps({"batch_rows": 64}),
            ks=(0, 2),
            episodes=2,
            support="both",
            instruction="full",
            offline=False,
        ),
        basis=GOTO_BASIS,
    ),
}

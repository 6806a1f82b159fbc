"""``trajbench leaderboard {submit,validate,verify,build}``: one dataclass config per action.

Exit status: 0 when all is well, 1 when validation finds problems (one ``file: problem`` line
each on stderr), ``verify`` finds re-run records that differ, or ``build --check`` finds stale
files, 2 for bad input (one error line).

Example:
    trajbench leaderboard submit runs/smoke --name smoke-2cpu --authors "Ada Lovelace"
    trajbench leaderboard submit runs/tabular --name tabular-icl --authors "Ada Lovelace"
    trajbench leaderboard validate
    trajbench leaderboard verify leaderboard/submissions/smoke-2cpu.json --model runs/smoke
    trajbench leaderboard build --check
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from tyro.conf import Positional, arg

from trajbench.cliargs import parse_config
from trajbench.errors import TrajbenchError
from trajbench.io import atomic_write_text

from .render import render
from .submit import make_submissions, write_submissions
from .validate import submission_files, validate_files

PROG = "trajbench leaderboard"
DEFAULT_ROOT = Path("leaderboard")


@dataclass
class SubmitConfig:
    """Turn a run directory or an evaluate output into submission files."""

    run_dir: Positional[Annotated[Path, arg(metavar="DIR")]]
    """Directory written by trajbench run (results.json) or trajbench evaluate (evaluation.json),
    each beside its records.parquet."""
    name: str
    """Entry name (suffixed per condition if the run has several)."""
    authors: tuple[str, ...] = ("anonymous",)
    """Who submits it."""
    model_name: str | None = None
    """Model name (default: the policy kind, or the import path of a policy trajbench did not
    train)."""
    command: str | None = None
    """Command that produced the records (default: the one results.json or evaluation.json
    records, else the run's preset)."""
    out: Path = DEFAULT_ROOT / "submissions"
    """Directory the submission files are written to."""
    reps: int = 2000
    """Bootstrap replicates for the confidence intervals (1000 to 100000)."""
    seed: int = 0
    """Bootstrap seed."""


@dataclass
class ValidateConfig:
    """Check submissions (default: every one in the leaderboard)."""

    files: Positional[Annotated[tuple[Path, ...], arg(metavar="[FILE ...]")]] = ()
    """Submission files."""
    root: Path = DEFAULT_ROOT
    """Leaderboard directory (its submissions/*.json are checked when no files are given)."""


@dataclass
class VerifyConfig:
    """Re-run a sample of an entry's evaluation and compare the records (exact on a CPU)."""

    submission: Positional[Annotated[Path, arg(metavar="SUBMISSION")]]
    """The submission file."""
    model: tuple[Path, ...] = ()
    """Model directories of the entry's training seeds, or the run directory holding them
    (reference policies need none)."""
    data: Path | None = None
    """Where the evaluation stores are, laid out as trajbench run lays them out (DIR/data/<store>:
    a run directory); stores missing there are collected into it. Default: collected into a
    temporary directory from the specs the entry records."""
    cells: int = 8
    """(seed, level) records sampled; the evaluations that produced them are re-run whole."""
    seed: int = 0
    """Seed of the sample."""
    tolerance: float = 0.0
    """Largest difference accepted between a submitted and a re-run value (0: exact)."""
    device: str = "cpu"
    """Device of the re-run: cpu reproduces an entry evaluated on a CPU exactly (one evaluated
    on a GPU may need its device and a --tolerance)."""
    workers: int = 1
    """Worker processes collecting the evaluation stores."""
    write: bool = False
    """Mark the entry verified in its file when the re-run agrees."""


@dataclass
class BuildConfig:
    """Regenerate README.md, index.html and schema.json from the submissions."""

    root: Path = DEFAULT_ROOT
    """Leaderboard directory."""
    check: bool = False
    """Write nothing; fail if the files on disk are stale."""


def _report(problems: Sequence[str]) -> int:
    for line in problems:
        print(line, file=sys.stderr)
    return 1 if problems else 0


def submit(cfg: SubmitConfig) -> int:
    """Write the directory's submissions; refuses to overwrite an entry."""
    if not 1000 <= cfg.reps <= 100_000:
        raise TrajbenchError(f"--reps must be in 1000..100000, got {cfg.reps}")
    subs = make_submissions(
        cfg.run_dir, cfg.name, cfg.authors, cfg.model_name, cfg.reps, cfg.seed, cfg.command
    )
    for path in write_submissions(subs, cfg.out):
        print(f"wrote {path}")
    return 0


def validate(cfg: ValidateConfig) -> int:
    """Check the files; one ``ok:`` line per valid entry, one stderr line per problem."""
    files = list(cfg.files) or submission_files(cfg.root)
    subs, problems = validate_files(files)
    if not files:
        print(f"no submissions in {cfg.root / 'submissions'}")
    for sub in subs:
        print(f"ok: {sub.name}")
    return _report(problems)


def verify(cfg: VerifyConfig) -> int:
    """Re-check one entry by re-running part of its evaluation; 1 when the records differ."""
    # The re-run needs torch and the pipeline: imported here, so the other actions start fast.
    from .verify import verify as rerun

    return rerun(
        cfg.submission,
        cfg.model,
        cfg.data,
        cfg.cells,
        cfg.seed,
        cfg.tolerance,
        cfg.device,
        cfg.workers,
        cfg.write,
    )


def build(cfg: BuildConfig) -> int:
    """Regenerate the leaderboard files (or, with ``check``, compare them with the disk)."""
    subs, problems = validate_files(submission_files(cfg.root))
    if problems:
        return _report([*problems, "build: fix the submissions above first"])
    generated = render(subs)
    if cfg.check:
        stale = [
            f"{cfg.root / name}: stale; run trajbench leaderboard build"
            for name, text in generated.items()
            if not (cfg.root / name).is_file()
            or (cfg.root / name).read_bytes() != text.encode("utf-8")
        ]
        if not stale:
            print(f"{cfg.root}: up to date ({len(subs)} entries)")
        return _report(stale)
    for name, text in generated.items():
        atomic_write_text(cfg.root / name, text)
    print(f"wrote {', '.join(str(cfg.root / n) for n in generated)} ({len(subs)} entries)")
    return 0


#: action -> (config class, what runs it)
ACTIONS: dict[str, tuple[type, Callable[[Any], int]]] = {
    "submit": (SubmitConfig, submit),
    "validate": (ValidateConfig, validate),
    "verify": (VerifyConfig, verify),
    "build": (BuildConfig, build),
}


def _usage() -> str:
    width = max(map(len, ACTIONS))
    lines = [f"usage: {PROG} ACTION [--help] [OPTIONS]", "", "actions:"]
    for name, (cls, _) in ACTIONS.items():
        lines.append(f"  {name:<{width}}  {cls.__doc__}")
    return "\n".join(lines)


def main(argv: Sequence[str]) -> int:
    """``trajbench leaderboard ACTION ...``: parse the action's config and run it."""
    argv = list(argv)
    if not argv or argv[0] in {"-h", "--help"}:
        print(_usage(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    if argv[0] not in ACTIONS:
        raise TrajbenchError(f"unknown action {argv[0]!r}; expected one of {', '.join(ACTIONS)}")
    cls, run = ACTIONS[argv[0]]
    cfg = parse_config(cls, argv[1:], f"{PROG} {argv[0]}")
    return 0 if cfg is None else run(cfg)  # None: --help was printed

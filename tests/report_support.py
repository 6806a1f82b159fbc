"""Shared by the report tests (not a test module): evaluation records built by hand with a known
answer, and the independent computations their reported numbers are checked against.

Records are built cell by cell: every (seed, level) cell of a condition gets a chosen number of
episodes and of successes, so the cell means, and every mean and difference of them, are known
exactly here, computed with numpy from the construction; intervals and minimum detectable effects
are checked against a bootstrap written here (resampled indices, not the project's counts),
within Monte-Carlo tolerance.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from scipy.stats import norm, trim_mean

from trajbench.report import write_report
from trajbench.report.questions import Question

# The report's plots import pyplot (half a second); importing it with this module, which mutmut's
# fork server imports before it forks a process per mutant, saves that in every mutant's run.
matplotlib.use("Agg")
import matplotlib.pyplot

DARK_ROOM = "trajbench/DarkRoom-v0"
#: (policy, train_context, instruction) of a label, as the runner records them.
TRAINED = "transformer"
#: A two-sided 95% test with 80% power: the multiple of the standard error it detects.
Z_MDE = norm.ppf(0.975) + norm.ppf(0.8)
META = {
    "trajbench_version": "0.1.0",
    "git_commit": "0123456789abcdef",
    "preset": "constructed",
    "torch_version": "2.x",
    "hardware": "test",
    "device": "cpu",
    "wall_time_s": 1.0,
    "date": "2026-01-01T00:00:00+00:00",
    "seeds": [0, 1, 2],
}


@dataclass
class Cells:
    """One condition's (seed, level) cells: episodes and successes of each, and their returns."""

    episodes: np.ndarray
    successes: np.ndarray
    returns: np.ndarray = field(default=None)  # normalized return of each episode's cell
    decoys: np.ndarray | None = None
    """Episodes of each cell that reached the decoy (decoy evaluations only)."""

    @property
    def means(self) -> np.ndarray:
        """Success rate of every cell: the matrix every reported success number comes from."""
        return self.successes / self.episodes


def simulate(
    rng: np.random.Generator,
    p: float,
    seed_effect: np.ndarray,
    level_effect: np.ndarray,
    episodes: np.ndarray,
) -> Cells:
    """Cells with success probability ``p + seed effect + level effect`` (clipped)."""
    prob = np.clip(p + seed_effect[:, None] + level_effect[None, :], 0.0, 1.0)
    successes = rng.binomial(episodes, prob)
    return Cells(episodes, successes, returns=rng.uniform(0.0, 1.0, size=episodes.shape))


def label_of(policy: str, context: str, instruction: str) -> str:
    """The report's label of a condition (trained: its context, '/instruction' unless full)."""
    if context == "-":
        return policy
    return context + ("" if instruction == "full" else f"/{instruction}")


def rows_of(
    cells: Cells,
    *,
    policy: str,
    context: str = "-",
    instruction: str = "-",
    family: str = DARK_ROOM,
    split: str = "test_levels",
    k: int,
    support: str = "same",
    fmt: str = "common",
    eval_instruction: str | None = None,
    group: str = "g",
    seeds: tuple[int, ...] = (0, 1, 2),
    levels: tuple[int, ...],
    backbone: str = "llama",
) -> list[dict]:
    """One record per episode of every cell, as ``trajbench run`` writes them."""
    trained = context != "-"
    rows = []
    for i, seed in enumerate(seeds):
        for j, level in enumerate(levels):
            n, s = int(cells.episodes[i, j]), int(cells.successes[i, j])
            reached = 0 if cells.decoys is None else int(cells.decoys[i, j])
            for e in range(n):
                success = e < s
                row = {
                    "group": group,
                    "policy": policy,
                    "policy_version": "0.1.0",
                    "backbone": backbone if trained else "-",
                    "train_context": context,
                    "instruction": instruction,
                    "p_bursty": np.nan,
                    "family": family,
                    "eval_split": split,
                    "k": k,
                    "support": support,
                    "format": fmt,
                    "eval_instruction": eval_instruction or instruction,
                    "eval_seed": 1000 + seed,
                    "seed": seed,
                    "level": level,
                    "episode": e,
                    "return": float(success),
                    "success": success,
                    "length": 10,
                    # Every episode of a cell holds the cell's return: its cell mean is that value.
                    "normalized_return": float(cells.returns[i, j]),
                    "model_params": 1000 if trained else 0,
                    "decoy_success": np.nan if cells.decoys is None else float(e >= n - reached),
                }
                rows.append(row)
    return rows


def shared_unless_mutating(fixture_name: str, config) -> str:
    """Scope of a fixture many tests read (a pytest dynamic scope): built once per module, but
    once per test while mutmut records which tests call which functions (its *stats* run, with
    ``MUTANT_UNDER_TEST=stats``). mutmut then runs against a mutant only the tests during which
    the mutated function was called, and a module's fixture is built during its first test only:
    recorded at module scope, the tests that check its numbers would never see a mutant. Against
    a mutant (one forked pytest per mutant) the fixture is built once again and shared, so a
    surviving mutant costs one report, not one per test."""
    return "function" if os.environ.get("MUTANT_UNDER_TEST") == "stats" else "module"


def report(
    tmp_path: Path, records: pd.DataFrame, questions: dict[str, tuple[Question, ...]]
) -> tuple[dict, str]:
    """Run the runner's report path on ``records`` with the ``questions`` each group (by name)
    declared: (results.json, report.md)."""
    out = tmp_path / "report"
    out.mkdir()
    path = write_report(out, records, META, questions)
    return json.loads(path.read_text()), (out / "report.md").read_text()


def bootstrap_difference(
    x: np.ndarray, y: np.ndarray, reps: int = 4000, seed: int = 12345, scale: float = 1.0
) -> tuple[float, float, float]:
    """Percentile 95% CI and standard error of ``scale * (mean(x) - mean(y))``: seeds (rows, the
    same ones for both) and levels (columns, the same ones for both) drawn with replacement."""
    rng = np.random.default_rng(seed)
    s, n = x.shape
    rows = rng.integers(0, s, size=(reps, s))[:, :, None]
    cols = rng.integers(0, n, size=(reps, n))[:, None, :]
    d = scale * (x[rows, cols].mean(axis=(1, 2)) - y[rows, cols].mean(axis=(1, 2)))
    low, high = np.percentile(d, [2.5, 97.5])
    return float(low), float(high), float(d.std(ddof=1))


def bootstrap_interval(
    m: np.ndarray, statistic=None, reps: int = 4000, seed: int = 54321
) -> tuple[float, float, float]:
    """Percentile 95% CI and standard error of a statistic (mean; or ``iqm``) of the cells of
    ``m``, seeds and levels drawn with replacement."""
    rng = np.random.default_rng(seed)
    s, n = m.shape
    rows = rng.integers(0, s, size=(reps, s))[:, :, None]
    cols = rng.integers(0, n, size=(reps, n))[:, None, :]
    cells = m[rows, cols].reshape(reps, -1)
    values = cells.mean(1) if statistic is None else trim_mean(cells, 0.25, axis=1)
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high), float(values.std(ddof=1))


def readings(text: str) -> list[tuple[str, str, str, int, str]]:
    """Every reading line of ``report.md`` (``- *question*: ...``) with where it is: (group,
    family, split, K, line); K from a family's ``**Readings at K=k.**`` blocks and its 2x2's
    ``**K=k.**`` blocks."""
    out, group, family, split, k = [], None, None, None, None
    for line in text.splitlines():
        if line.startswith("## Group `"):
            group, family, split, k = line.split("`")[1], None, None, None
        elif line.startswith("### "):
            family, rest = line[4:].split(" — ", 1)
            split, k = rest.split(" (")[0].replace(" ", "_"), None
        elif line.startswith("## "):
            group, family, split, k = None, None, None, None
        found = re.match(r"^\*\*(?:Readings at )?K=(\d+)\.\*\*$", line)
        if found:
            k = int(found.group(1))
        elif k is not None and line.startswith("- *"):
            out.append((group, family, split, k, line))
    return out

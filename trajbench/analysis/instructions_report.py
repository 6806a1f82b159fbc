"""``trajbench analyze instructions``: the report it writes (Markdown and figure) from what
:mod:`trajbench.analysis.instructions` computes, and the command that writes it."""

from __future__ import annotations

import numpy as np
import pandas as pd

from trajbench.records import EVAL_SPLIT, TRAIN_CONTEXT

from .common import direction, fmt_ci, pyplot, run_analysis
from .instructions import NAME, InstructionsConfig, InstructionsResult, compute


# -- report ------------------------------------------------------------------------------------
def _label(row) -> str:
    if row["instruction"] == "-":
        return f"{row['policy']} (reference)"
    return f"{row[TRAIN_CONTEXT]} / {row['instruction']}"


def render(result: InstructionsResult, cfg: InstructionsConfig) -> str:
    """The report: the levels, one table per (family, split, K, support) and its reading."""
    table, levels = result.table, result.levels
    n_seeds = int(table["n_seeds"].max())
    lines = [
        "# Instruction content: inferable vs not inferable missions",
        "",
        f"Success and guess-normalized score ((success - chance) / (1 - chance)), mean over "
        f"{n_seeds} seed(s) x levels with 95% stratified-bootstrap CIs. A mission is *inferable* "
        "when exactly one object of the layout matches the demonstrations' final target (no "
        "look-alike of the same type and color); chance = satisfying objects / candidate objects "
        f"of the layout. Wall time {result.about['wall_s']:.0f} s.",
        "",
    ]
    used = levels[~levels.skipped]
    for fam, lv in used.groupby("family"):
        lines.append(
            f"- {fam}: {int(lv.inferable.sum())} of {len(lv)} evaluated levels inferable; mean "
            f"chance {lv.chance.mean():.3f} (inferable {lv[lv.inferable].chance.mean():.3f}, not "
            f"inferable {lv[~lv.inferable].chance.mean():.3f})."
        )
    if levels.skipped.any():
        lines.append(
            f"- {int(levels.skipped.sum())} level(s) where every object satisfies the mission were left out."
        )
    lines.append("")
    keys = ["family", EVAL_SPLIT, "k", "support"]
    for (fam, split, k, support), sub in table.groupby(keys, sort=False):
        lines += [
            f"## {fam.split('/')[-1]}, {split.replace('_', ' ')}, K={k} ({support}-level demonstrations)",
            "",
            "| training context / instruction | inferable: success | inferable: guess-normalized "
            "| not inferable: success | not inferable: guess-normalized |",
            "|---|---|---|---|---|",
        ]
        for label, rows in sub.groupby(sub.apply(_label, axis=1), sort=False):
            by = {r["inferable"]: r for r in rows.to_dict("records")}
            cells = []
            for part in ("inferable", "not inferable"):
                r = by.get(part)
                cells += (
                    ["—", "—"]
                    if r is None
                    else [
                        f"{fmt_ci(r)} (n={r['n_levels']})",
                        fmt_ci(r, "guess_normalized"),
                    ]
                )
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines += ["", *_reading(sub), ""]
    lines += [f"![{NAME}]({NAME}.png)", ""]
    return "\n".join(lines)


def _reading(sub: pd.DataFrame) -> list[str]:
    """For every training context: each instruction against ``full`` on both sides of the split."""
    out = []
    metric = "guess_normalized"
    for mode, rows in sub[sub.instruction != "-"].groupby(TRAIN_CONTEXT, sort=False):
        sides, drops = [], {}
        for part in ("inferable", "not inferable"):
            side = rows[rows.inferable == part]
            full = side[side.instruction == "full"]
            if full.empty:
                continue
            f = full.iloc[0]
            cells = []
            for r in side[side.instruction != "full"].to_dict("records"):
                drops.setdefault(r["instruction"], {})[part] = (
                    f[f"{metric}_mean"] - r[f"{metric}_mean"]
                )
                d = direction(r, f, metric)
                mark = "CIs overlap" if d == "overlap" else f"{d}, CIs separated"
                cells.append(f"`{r['instruction']}` {r[f'{metric}_mean']:.2f} ({mark})")
            if cells:
                sides.append(
                    f"on {part} levels `full` scores {f[f'{metric}_mean']:.2f}, " + ", ".join(cells)
                )
        if not sides:
            continue
        both = [
            f"`{i}` {d['not inferable']:+.2f} vs {d['inferable']:+.2f}"
            for i, d in drops.items()
            if len(d) == 2
        ]
        text = f"- `{mode}` training, guess-normalized mean: " + "; ".join(sides) + "."
        if both:
            text += (
                " Drop from `full` where the mission is not inferable vs where it is: "
                + ", ".join(both)
                + "."
            )
        out.append(text)
    return out


def plot(result: InstructionsResult, cfg: InstructionsConfig):
    """Guess-normalized mean per condition, inferable vs not, one panel per (family, split, K)."""
    plt = pyplot()
    table = result.table
    keys = list(table.groupby(["family", EVAL_SPLIT, "k", "support"], sort=False))
    fig, axes = plt.subplots(1, len(keys), figsize=(6.5 * len(keys), 3.8), squeeze=False)
    for ax, ((fam, split, k, support), sub) in zip(axes[0], keys, strict=True):
        labels = list(dict.fromkeys(sub.apply(_label, axis=1)))
        x = np.arange(len(labels))
        for i, part in enumerate(("inferable", "not inferable")):
            side = sub[sub.inferable == part].assign(label=lambda d: d.apply(_label, axis=1))
            side = side.set_index("label").reindex(labels)
            y = side["guess_normalized_mean"].to_numpy()
            err = np.vstack(
                [
                    y - side["guess_normalized_ci_low"].to_numpy(),
                    side["guess_normalized_ci_high"].to_numpy() - y,
                ]
            )
            ax.bar(x + (i - 0.5) * 0.4, y, 0.4, yerr=err, capsize=3, label=part)
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xticks(x, labels, rotation=35, ha="right", fontsize=7)
        ax.set_ylabel("guess-normalized score (mean)")
        ax.set_title(f"{fam.split('/')[-1]} {split.replace('_', ' ')}, K={k} {support}", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def main(argv: list[str]) -> int:
    """``trajbench analyze instructions``."""
    return run_analysis(argv, NAME, InstructionsConfig, compute, render, plot)

"""``trajbench analyze failures``: the report it writes (Markdown and figure) from what
:mod:`trajbench.analysis.failures` computes, and the command that writes it."""

from __future__ import annotations

import numpy as np

from .common import compare, fmt_ci, pyplot, run_analysis
from .failures import CONDITIONS, NAME, FailuresConfig, FailuresResult, compute

# -- report --------------------------------------------------------------------------------------
LABEL = {
    "expert": "successful expert episodes only",
    "raw": "K - m expert + m raw imperfect",
    "cut": "K - m expert + m imperfect cut where it went wrong",
}


def row_label(context: str, k: int, m: int) -> str:
    """What a context of the table holds, in words."""
    if context == "expert":
        return f"{k} successful expert"
    what = "raw imperfect" if context == "raw" else "imperfect, cut where it went wrong"
    return f"{m} {what}" if m == k else f"{k - m} expert + {m} {what}"


def render(result: FailuresResult, cfg: FailuresConfig) -> str:
    """The report: the table and a reading generated from its numbers."""
    table, pool, about = result.table, result.pool, result.about
    imperfect = pool[pool.cut >= 0]
    kept = (imperfect.cut / imperfect.length).mean() if len(imperfect) else float("nan")
    n_levels_all = pool.level.nunique()
    n_levels = imperfect.level.nunique()
    lines = [
        f"# Successes and failures in context ({about['env']}, {about['levels']} levels)",
        "",
        f"{about['models']} model(s); mean over seeds x {n_levels} levels with 95% "
        f"stratified-bootstrap CIs; {about['eval_episodes']} independent episode(s) per level and "
        f"condition. Imperfect episodes: `{about['imperfect']}` demonstrator"
        + (f" (epsilon {about['epsilon']:g})" if about["imperfect"] == "noisy" else "")
        + f"; {len(imperfect)} of {len(pool)} went wrong somewhere "
        f"({int((~imperfect.success).sum())} of them failed), and their cuts keep "
        f"{100 * kept:.0f}% of their steps on average. "
        + (
            f"{n_levels_all - n_levels} level(s) without an imperfect episode were dropped. "
            if n_levels < n_levels_all
            else ""
        )
        + f"Wall time {about['wall_s']:.0f} s.",
        "",
        "| K | imperfect m | context | success | context tokens | success per 1k tokens |",
        "|---|---|---|---|---|---|",
    ]
    for r in table.to_dict("records"):
        lines.append(
            f"| {r['k']} | {r['m']} | {row_label(r['context'], r['k'], r['m'])} | "
            f"{fmt_ci(r)} | {r['context_tokens_mean']:.0f} | "
            f"{fmt_ci(r, 'success_per_1k_tokens')} |"
        )
    lines += ["", "**Reading.**", ""]
    for k, g in table.groupby("k", sort=True):
        ex = g[g.context == "expert"]
        if ex.empty:
            continue
        ex = ex.iloc[0]
        for m in sorted(g.loc[g.context != "expert", "m"].unique()):
            by = {r["context"]: r for r in g[g.m == m].to_dict("records")}
            if not {"raw", "cut"} <= set(by):
                continue
            raw, cut = by["raw"], by["cut"]
            saved = 1 - cut["context_tokens_mean"] / raw["context_tokens_mean"]
            lines.append(
                f"- K={k} with {m} imperfect episode(s): "
                f"{compare(raw, ex, 'the raw context', 'the expert-only one')} "
                f"({raw['success_mean']:.2f} vs {ex['success_mean']:.2f}); "
                f"{compare(cut, raw, 'the cut context', 'the raw one')} "
                f"({cut['success_mean']:.2f}) and {compare(cut, ex, 'it', 'the expert-only one')}, "
                f"with {100 * saved:.0f}% fewer context tokens than raw; per 1,000 context tokens "
                f"{compare(cut, raw, 'cut', 'raw', 'success_per_1k_tokens')} "
                f"({cut['success_per_1k_tokens_mean']:.2f} vs {raw['success_per_1k_tokens_mean']:.2f})."
            )
    lines += ["", f"![{NAME}]({NAME}.png)", ""]
    return "\n".join(lines)


def plot(result: FailuresResult, cfg: FailuresConfig):
    """Bars per (K, m, context): success, and success per 1,000 context tokens, with 95% CIs."""
    plt = pyplot()
    table = result.table
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    colors = dict(zip(CONDITIONS, ("#4C72B0", "#DD8452", "#55A868"), strict=True))
    x = np.arange(len(table))
    for ax, metric, ylabel in (
        (axes[0], "success", "mean success"),
        (axes[1], "success_per_1k_tokens", "success per 1,000 context tokens (mean)"),
    ):
        y = table[f"{metric}_mean"].to_numpy()
        err = np.vstack(
            [y - table[f"{metric}_ci_low"].to_numpy(), table[f"{metric}_ci_high"].to_numpy() - y]
        )
        ax.bar(x, y, yerr=err, capsize=3, color=[colors[c] for c in table["context"]])
        ax.set_xticks(x, [f"K={k}\nm={m}" for k, m in zip(table["k"], table["m"], strict=True)])
        ax.set_ylabel(ylabel)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colors[c]) for c in CONDITIONS]
    axes[0].legend(handles, [LABEL[c] for c in CONDITIONS], fontsize=7)
    axes[0].set_ylim(0, 1.05)
    axes[0].set_title("success on the evaluation levels (95% CI)")
    axes[1].set_title("per 1,000 context tokens (95% CI)")
    fig.tight_layout()
    return fig


def main(argv: list[str]) -> int:
    """``trajbench analyze failures``."""
    return run_analysis(argv, NAME, FailuresConfig, compute, render, plot)

"""``trajbench analyze burstiness``: the report it writes (Markdown and figure) from what
:mod:`trajbench.analysis.burstiness` computes, and the command that writes it."""

from __future__ import annotations

import pandas as pd

from .burstiness import NAME, BurstinessConfig, BurstinessResult, compute
from .common import compare, fmt_ci, pick, pyplot, run_analysis
from .sweep import HELD_OUT, TRAIN


# -- report ---------------------------------------------------------------------------------------
def _cell(row) -> str:
    return "—" if row is None else fmt_ci(row)


def render(result: BurstinessResult, cfg: BurstinessConfig) -> str:
    """The Markdown report: three tables and a reading generated from their numbers."""
    table, about = result.table, result.about
    kmax = int(table["k"].max())
    p_sweep = table[table.sweep == "p_bursty"]
    z_sweep = table[table.sweep == "zipf"]
    lines = [
        f"# Burstiness, shots and Zipf: in-context vs in-weights learning ({about['env']})",
        "",
        f"Mean success over {int(table['n_seeds'].max())} training seed(s) x levels with 95% "
        f"stratified-bootstrap CIs. Models: d_model {about['d_model']}, {about['n_layers']} "
        f"layers, {about['steps']} steps of {about['batch_size']} sequences with "
        f"{about['train_k']} context episodes; {about['eval_episodes']} independent episode(s) "
        f"per level and condition. Wall time {about['wall_s']:.0f} s.",
        "",
        "- **in context**: held-out levels, K demonstrations of the level itself;",
        "- **no support**: held-out levels, K demonstrations of other levels (the model's prior);",
        f"- **in weights**: each model's {about['train_eval_levels'] or 'all'} most-trained train "
        "levels, K demonstrations of other train levels (only a memorized goal helps); its mean is "
        "shown beside the mean because a steep Zipf exponent concentrates memorization on a few "
        "levels.",
        "",
    ]
    if not p_sweep.empty:
        lines += ["## Against p_bursty (Zipf exponent 0)", ""]
        lines += _sweep_rows(p_sweep, "p_bursty", kmax)
        lines += _reading_sweep(p_sweep, "p_bursty", kmax)
        lines += ["## Against K (held-out levels; same = in context, other = no support)", ""]
        held = p_sweep[p_sweep.levels == HELD_OUT]
        ks = sorted(int(k) for k in table["k"].unique())
        lines += [*_k_rows(held, ks), "", *_reading_k(held, ks), ""]
    if not z_sweep.empty and z_sweep.zipf.nunique() > 1:
        p0 = float(z_sweep.p_bursty.iloc[0])
        lines += [f"## Against the Zipf exponent of the training levels (p_bursty {p0:g})", ""]
        lines += _sweep_rows(z_sweep, "zipf", kmax)
        lines += _reading_sweep(z_sweep, "zipf", kmax)
    lines += [f"![{NAME}]({NAME}.png)", ""]
    return "\n".join(lines)


def _sweep_rows(sweep: pd.DataFrame, key: str, kmax: int) -> list[str]:
    """The table of one sweep: the three scores at the largest K, and the in-weights mean."""
    out = [
        f"| {key} | in context (K={kmax}) | no support (K={kmax}) | in weights (K={kmax}) "
        "| in weights, mean |",
        "|---|---|---|---|---|",
    ]
    for val in sorted(sweep[key].unique()):
        at = sweep[(sweep[key] == val) & (sweep.k == kmax)]
        weights = pick(at, levels=TRAIN, support="other")
        out.append(
            f"| {val:g} | {_cell(pick(at, levels=HELD_OUT, support='same'))} | "
            f"{_cell(pick(at, levels=HELD_OUT, support='other'))} | {_cell(weights)} | "
            + ("—" if weights is None else f"{weights['success_mean']:.2f}")
            + " |"
        )
    return [*out, ""]


def _k_rows(held: pd.DataFrame, ks: list[int]) -> list[str]:
    """The k-shot table: one row per (p_bursty, support); K=0 has no support, so both show it."""
    lines = [
        "| p_bursty | support | " + " | ".join(f"K={k}" for k in ks) + " |",
        "|---|---|" + "---|" * len(ks),
    ]
    for p in sorted(held.p_bursty.unique()):
        same = held[(held.p_bursty == p) & (held.support == "same")]
        for support in ("same", "other"):
            at = held[(held.p_bursty == p) & (held.support == support)]
            if at.empty:
                continue
            rows = [pick(at, k=k) for k in ks]
            if ks[0] == 0 and rows[0] is None:
                rows[0] = pick(same, k=0)
            cells = [_cell(row) for row in rows]
            lines.append(f"| {p:g} | {support} | " + " | ".join(cells) + " |")
    return lines


def _reading_sweep(sweep: pd.DataFrame, key: str, kmax: int) -> list[str]:
    """Sentences from the numbers of one sweep (p_bursty or Zipf)."""
    vals = sorted(sweep[key].unique())
    if len(vals) < 2 or kmax == 0:
        return []
    lo, hi = vals[0], vals[-1]
    same = sweep[(sweep.levels == HELD_OUT) & (sweep.support == "same") & (sweep.k == kmax)]
    other = sweep[(sweep.levels == HELD_OUT) & (sweep.support == "other") & (sweep.k == kmax)]
    train = sweep[(sweep.levels == TRAIN) & (sweep.k == kmax)]
    a, b = pick(same, **{key: lo}), pick(same, **{key: hi})
    lines = []
    if a is not None and b is not None:
        best = same.sort_values("success_mean", ascending=False).iloc[0]
        lines.append(
            f"- In-context success (held-out levels, K={kmax}) is {fmt_ci(a)} at {key}={lo:g} and "
            f"{fmt_ci(b)} at {key}={hi:g}: {compare(b, a, f'{key}={hi:g}', f'{key}={lo:g}')}. "
            f"Highest at {key}={best[key]:g} ({fmt_ci(best)})."
        )
    if not other.empty and not same.empty:
        gap = same.set_index(key)["success_mean"] - other.set_index(key)["success_mean"]
        top = other.sort_values("success_mean", ascending=False).iloc[0]
        lines.append(
            f"- The no-support score is at most {fmt_ci(top)} (at {key}={top[key]:g}); the in-context "
            f"gain (same-level minus other-level mean) ranges from {gap.min():.2f} "
            f"({key}={gap.idxmin():g}) to {gap.max():.2f} ({key}={gap.idxmax():g})."
        )
    if len(train):
        ta, tb = pick(train, **{key: lo}), pick(train, **{key: hi})
        best = train.sort_values("success_mean", ascending=False).iloc[0]
        if ta is not None and tb is not None:
            lines.append(
                f"- In-weights success (train levels, other-level demonstrations) is {fmt_ci(ta)} at "
                f"{key}={lo:g} and {fmt_ci(tb)} at {key}={hi:g} ({compare(tb, ta, f'{key}={hi:g}', f'{key}={lo:g}')}); highest at "
                f"{key}={best[key]:g} ({fmt_ci(best)})."
            )
    return [*lines, ""]


def _reading_k(held: pd.DataFrame, ks: list[int]) -> list[str]:
    """For every p_bursty: the smallest K whose in-context CI lies above the K=0 CI."""
    if len(ks) < 2:
        return []
    parts = []
    for p in sorted(held.p_bursty.unique()):
        same = held[(held.p_bursty == p) & (held.support == "same")]
        base = pick(same, k=ks[0])
        if base is None:
            continue
        first = next(
            (
                k
                for k in ks[1:]
                if (r := pick(same, k=k)) is not None
                and r["success_ci_low"] > base["success_ci_high"]
            ),
            None,
        )
        top = pick(same, k=ks[-1])
        what = (
            f"first separated from K={ks[0]} at K={first}"
            if first is not None
            else f"never separated from K={ks[0]}"
        )
        parts.append(
            f"p_bursty={p:g}: {base['success_mean']:.2f} -> {top['success_mean']:.2f}, {what}"
        )
    return (
        ["- In-context success from K=" + f"{ks[0]} to K={ks[-1]} — " + "; ".join(parts) + "."]
        if parts
        else []
    )


def plot(result: BurstinessResult, cfg: BurstinessConfig):
    """Three panels: success vs p_bursty, k-shot curves, success vs Zipf exponent."""
    plt = pyplot()
    table = result.table
    kmax = int(table["k"].max())
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    series = [
        (HELD_OUT, "same", "in context (held-out, same-level demos)", "-"),
        (HELD_OUT, "other", "no support (held-out, other-level demos)", "--"),
        (TRAIN, "other", "in weights (most-trained train levels, other-level demos)", ":"),
    ]
    for ax, (sweep, key) in zip(
        (axes[0], axes[2]), (("p_bursty", "p_bursty"), ("zipf", "zipf")), strict=True
    ):
        sub = table[(table.sweep == sweep) & (table.k == kmax)]
        for levels, support, label, style in series:
            rows = sub[(sub.levels == levels) & (sub.support == support)].sort_values(key)
            if rows.empty:
                continue
            ax.plot(rows[key], rows["success_mean"], style, marker="o", label=label)
            ax.fill_between(rows[key], rows["success_ci_low"], rows["success_ci_high"], alpha=0.15)
        ax.set_xlabel(key if key == "p_bursty" else "Zipf exponent of training levels")
        ax.set_ylabel(f"mean success (K={kmax})")
        ax.set_ylim(-0.02, 1.05)
        ax.legend(fontsize=7)
    axes[0].set_title("against p_bursty (95% CI)")
    axes[2].set_title("against the Zipf exponent (95% CI)")
    held = table[(table.sweep == "p_bursty") & (table.levels == HELD_OUT)]
    for p in sorted(held.p_bursty.unique()):
        rows = held[(held.p_bursty == p) & ((held.support == "same") | (held.k == 0))].sort_values(
            "k"
        )
        line = axes[1].plot(rows["k"], rows["success_mean"], marker="o", label=f"p_bursty={p:g}")
        axes[1].fill_between(
            rows["k"],
            rows["success_ci_low"],
            rows["success_ci_high"],
            alpha=0.12,
            color=line[0].get_color(),
        )
    axes[1].set_xlabel("K demonstrations of the level in context")
    axes[1].set_ylabel("mean success (held-out levels)")
    axes[1].set_ylim(-0.02, 1.05)
    axes[1].set_title("k-shot curves (95% CI)")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    return fig


def main(argv: list[str]) -> int:
    """``trajbench analyze burstiness``."""
    return run_analysis(argv, NAME, BurstinessConfig, compute, render, plot)

"""``trajbench analyze importance``: the report it writes (Markdown and figure) from what
:mod:`trajbench.analysis.importance` computes, and the command that writes it."""

from __future__ import annotations

import numpy as np

from .common import fmt, markdown_table, pct, pyplot, run_analysis
from .importance import NAME, STEP_MEASURES, ImportanceConfig, ImportanceResult, compute


# -- report ---------------------------------------------------------------------------------------
def render(result: ImportanceResult, cfg: ImportanceConfig) -> str:
    """The report: headline sentences generated from the numbers, then the tables."""
    about, episodes = result.about, result.episodes
    lines = [
        "# Context-step importance",
        "",
        f"Model `{about['model']}` on `{', '.join(about['data'])}`: {about['sequences']} "
        f"held-out sequences over {about['levels']} level(s) of {', '.join(about['env_ids'])}, "
        f"each with k = {about['k']} context episode(s) "
        f"(the model trained with k = {about.get('train_k')}), {about['context_steps']} context "
        f"steps, {about['perturbed_sequences']} perturbed copies, {about['wall_s']:.1f} s.",
        "",
        "## Findings",
        "",
        *_findings(result, cfg),
    ]
    lines += ["", "## Step kinds", "", "Mean over context steps of each kind vs all other steps."]
    cols = ["kind", "n", "share_of_steps"]
    for m in ("kl_replace", "kl_delete", "attention"):
        cols += [f"{m}_kind", f"{m}_rest", f"ratio_{m}"]
    lines += ["", markdown_table(result.kinds[cols]), ""]
    lines += ["## Context episodes by position", ""]
    ep_cols = ["kl_replace", "kl_delete", "flip_replace", "flip_delete"]
    ep_cols += [c for c in ("success_base", "dsuccess_delete", "dsuccess_replace") if c in episodes]
    by_pos = episodes.groupby("episode_pos")[ep_cols].mean().reset_index()
    lines += [
        (
            f"Position 0 is the earliest context episode, {cfg.k - 1} the one just before the "
            "query."
            if cfg.k > 1
            else "The single context episode (position 0) comes just before the query."
        ),
        "",
        markdown_table(by_pos),
        "",
    ]
    lines += ["## Concentration and agreement", ""]
    summ = result.summary[
        result.summary["measure"].str.startswith(("top_share", "spearman"))
    ].reset_index(drop=True)
    lines += [markdown_table(summ[["measure", "value", "description"]]), ""]
    lines += [
        "## Definitions",
        "",
        "- kl_replace / kl_delete: KL(p_base || p_perturbed) of the query's action distribution "
        "(teacher-forced), averaged over the query's steps, in nats; replacements are steps or "
        f"episodes of another level of the family ({cfg.replace_draws} draws averaged).",
        "- attention: weight a context token receives, averaged over layers, heads and the "
        "query's step tokens (unperturbed sequence).",
        "- flip: share of query steps whose most likely action changes.",
        "- Step kinds: see `trajbench analyze importance --help` and the module documentation.",
        "",
        "Files: importance.csv (one row per context step), importance_episodes.csv, "
        "importance_kinds.csv, importance_sequences.csv, importance_summary.csv.",
        "",
    ]
    return "\n".join(lines)


def _findings(result: ImportanceResult, cfg: ImportanceConfig) -> list[str]:
    """The headline sentences, each generated from the summary and kind tables."""
    v = result.summary.set_index("measure")["value"].get
    kinds, about = result.kinds, result.about
    frac = pct(cfg.top_fraction)
    tr, td, ta = v("top_share_kl_replace"), v("top_share_kl_delete"), v("top_share_attention")
    lines = [
        f"- **Concentration.** The top {frac} of context steps hold {pct(tr)} of the replacement "
        f"effect and {pct(td)} of the deletion effect (equal effects would give {frac}), "
        f"versus {pct(ta)} of the attention. " + _concentration_word(tr, cfg.top_fraction)
    ]
    top = kinds[(kinds["n"] > 0) & kinds["ratio_kl_replace"].notna()].sort_values(
        "ratio_kl_replace", ascending=False
    )
    if len(top):
        best, least = top.iloc[0], top.iloc[-1]
        lines.append(
            f"- **Which steps.** `{best['kind']}` steps ({int(best['n'])} of "
            f"{len(result.steps)}) have {fmt(best['ratio_kl_replace'], 2)}x the mean replacement "
            f"effect of other steps ({fmt(best['kl_replace_kind'])} vs "
            f"{fmt(best['kl_replace_rest'])} nats)"
            + (
                f"; `{least['kind']}` steps the least ({fmt(least['ratio_kl_replace'], 2)}x)."
                if len(top) > 1
                else "."
            )
        )
    absent = kinds.loc[kinds["n"] == 0, "kind"].tolist()
    if absent:
        lines.append(f"- Kinds that never occur in these contexts: {', '.join(absent)}.")
    med = v("spearman_attention_kl_replace_median")
    head_med = v("spearman_attention_max_kl_replace_median")
    lines.append(
        f"- **Attention as a proxy.** Per sequence, attention ranks steps like the replacement "
        f"effect with a median Spearman rho of {fmt(med, 2)} (positive in "
        f"{pct(v('spearman_attention_kl_replace_positive'))} of "
        f"{fmt(int(v('spearman_attention_kl_replace_n') or 0))} sequences; deletion: median "
        f"{fmt(v('spearman_attention_kl_delete_median'), 2)}). "
        + _agreement_word(med)
        + " The most attentive single head does "
        + ("better" if (head_med or 0) > (med or 0) else "no better")
        + f" (median rho {fmt(head_med, 2)}). Replacement and deletion effects agree with median "
        f"rho {fmt(v('spearman_kl_replace_kl_delete_median'), 2)}."
    )
    lines.append(
        f"- **Whole episodes.** Replacing one context episode by one of another level moves the "
        f"query's action distribution by {fmt(v('episode_kl_replace_mean'))} nats "
        f"({pct(v('episode_flip_replace_mean'))} of the query's greedy actions change); deleting "
        f"it, by {fmt(v('episode_kl_delete_mean'))} nats ({pct(v('episode_flip_delete_mean'))}). "
        f"A single step: {fmt(v('step_kl_replace_mean'))} (replace) and "
        f"{fmt(v('step_kl_delete_mean'))} (delete) nats on average."
    )
    if v("success_base") is not None:
        lines.append(
            f"- **Online.** Success with the unperturbed context is {pct(v('success_base'))}; "
            f"deleting one context episode changes it by {_signed_points(v('dsuccess_delete'))}, "
            f"replacing it by one of another level by {_signed_points(v('dsuccess_replace'))} "
            f"({cfg.online_seeds} paired start states per sequence)."
        )
    if about.get("unreplayable_episodes"):
        lines.append(
            f"- {about['unreplayable_episodes']} non-expert context episode(s) could not be "
            "replayed from their seed: their off_plan/recovery labels are missing."
        )
    return lines


def _signed_points(value) -> str:
    if value is None or not np.isfinite(value):
        return "-"
    return f"{100 * value:+.0f} points"


def _concentration_word(share, fraction: float) -> str:
    if share is None or not np.isfinite(share):
        return "No step has any effect."
    ratio = share / fraction
    if ratio >= 4:
        return f"Importance is highly concentrated ({ratio:.1f}x the uniform share)."
    if ratio >= 2:
        return f"Importance is concentrated on a few steps ({ratio:.1f}x the uniform share)."
    return f"Importance is spread over many steps ({ratio:.1f}x the uniform share)."


def _agreement_word(rho) -> str:
    if rho is None or not np.isfinite(rho):
        return "The correlation is undefined (constant effects)."
    if rho >= 0.5:
        return "Attention is a good cheap proxy here."
    if rho >= 0.2:
        return "Attention is a weak proxy here."
    return "Attention is not a usable proxy here."


def plot(result: ImportanceResult, cfg: ImportanceConfig):
    """Three panels: effect by step kind, concentration curves, attention vs effect."""
    plt = pyplot()
    steps, kinds = result.steps, result.kinds
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    k = kinds[kinds["n"] > 0]
    x = np.arange(len(k))
    axes[0].bar(x - 0.2, k["kl_replace_kind"], 0.4, label="steps of the kind")
    axes[0].bar(x + 0.2, k["kl_replace_rest"], 0.4, label="all other steps")
    axes[0].set_xticks(x, k["kind"], rotation=35, ha="right")
    axes[0].set_ylabel("mean KL when replaced (nats)")
    axes[0].set_title("Which steps carry the lesson")
    axes[0].legend(fontsize=8)
    grid = np.linspace(0, 1, 101)
    for m, style in zip(STEP_MEASURES, ("-", "--", ":", "-."), strict=True):
        curves = []
        for _, g in steps.groupby("sequence"):
            vals = np.sort(g[m].to_numpy(float))[::-1]
            if vals.sum() <= 0:
                continue
            cum = np.concatenate([[0], np.cumsum(vals) / vals.sum()])
            curves.append(np.interp(grid, np.linspace(0, 1, len(cum)), cum))
        if curves:
            axes[1].plot(grid, np.mean(curves, 0), style, label=m)
    axes[1].plot([0, 1], [0, 1], color="grey", lw=0.8, label="equal")
    axes[1].axvline(cfg.top_fraction, color="grey", lw=0.6, ls=":")
    axes[1].set_xlabel("fraction of context steps (largest first)")
    axes[1].set_ylabel("share of the total")
    axes[1].set_title("Concentration (mean over sequences)")
    axes[1].legend(fontsize=8)
    axes[2].scatter(steps["attention"], steps["kl_replace"], s=6, alpha=0.5)
    axes[2].set_xlabel("attention received from the query")
    axes[2].set_ylabel("KL when replaced (nats)")
    if (steps["kl_replace"] > 0).any():
        axes[2].set_yscale("symlog", linthresh=max(1e-4, float(steps["kl_replace"].median())))
    rho = result.summary.set_index("measure")["value"].get("spearman_attention_kl_replace_median")
    axes[2].set_title(f"Attention vs effect (median rho {fmt(rho, 2)})")
    fig.tight_layout()
    return fig


def main(argv: list[str]) -> int:
    """``trajbench analyze importance``."""
    return run_analysis(argv, NAME, ImportanceConfig, compute, render, plot)

"""``trajbench analyze phases``: the report it writes (Markdown and figure) from what
:mod:`trajbench.analysis.phases` computes, and the command that writes it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .common import fmt, markdown_table, pct, pyplot, run_analysis
from .phases import CLASSES, NAME, PhasesConfig, PhasesResult, compute


# -- report -------------------------------------------------------------------------------------
def _points(result: PhasesResult) -> dict:
    """The detected points as a dict (None where a point was not found)."""
    return {k: None if pd.isna(v) else v for k, v in result.bottleneck.iloc[0].items()}


def render(result: PhasesResult, cfg: PhasesConfig) -> str:
    """The report: the setting, findings generated from the numbers, the evaluations."""
    ev, about = result.evaluations, result.about
    thr = pct(cfg.threshold)
    last = ev.iloc[-1]
    lines = [
        "# Learning phases: routine vs decision steps",
        "",
        f"Trained on `{', '.join(about['data'])}` ({about['context']['mode']} contexts, "
        f"k = {about['context']['k']}) for {about['steps']} steps, evaluated every "
        f"{about['every']} steps on {about['eval_sequences']} held-out sequences of "
        f"`{', '.join(about['eval_data'])}` (k = {about['eval_k']}; {about['query_steps']} query "
        f"steps, {pct(last['decision_step_share'])} of them decision steps); "
        f"{about['wall_s']:.1f} s in all, {about['eval_s']:.1f} s of it evaluating.",
        "",
        "## Findings",
        "",
        *_findings(ev, _points(result), about, thr),
    ]
    per_class = [f"{c}_{m}" for m in ("accuracy", "entropy") for c in CLASSES]
    cols = ["step", "train_loss", *per_class, "decision_error_share", "errors", "phase"]
    cols = [c for c in cols if c in ev]
    lines += ["", "## Evaluations", "", markdown_table(ev[cols]), ""]
    lines += [
        "## Definitions",
        "",
        "- routine step: the expert repeats its previous action (not an interaction); decision "
        "step: first step, changed action, or an interaction (MiniGrid pickup/drop/toggle/done).",
        f"- learned: accuracy >= {thr} at that evaluation and every later one; bottleneck: from "
        "the step routine steps are learned while decision steps are not; crossover: decision "
        "steps hold >= 50% of the errors at every later evaluation with errors.",
        "- entropy: mean entropy (nats) of the predicted action distribution; accuracy: most "
        "likely action equals the expert's. Teacher-forced on held-out query episodes.",
        "",
        f"Files: phases.csv (one row per evaluation), phases_bottleneck.csv; the run is in "
        f"`{Path(cfg.out) / 'run'}`.",
        "",
    ]
    return "\n".join(lines)


def _findings(ev: pd.DataFrame, b: dict, about: dict, thr: str) -> list[str]:
    """Sentences on when each class is learned, the bottleneck, the errors and the entropy."""
    last, first = ev.iloc[-1], ev.iloc[0]
    r_l, d_l = b["routine_learned"], b["decision_learned"]
    lines = [
        f"- Routine steps reach and keep {thr} accuracy "
        + (f"from step {r_l}" if r_l is not None else f"at no point within {about['steps']} steps")
        + "; decision steps "
        + (f"from step {d_l}." if d_l is not None else f"never within {about['steps']} steps.")
    ]
    if b["bottleneck_step"] is not None:
        at = ev.loc[ev["step"] == b["bottleneck_step"]].iloc[0]
        lines.append(
            f"- **Decision steps are the bottleneck from step {b['bottleneck_step']}**: routine "
            f"accuracy is {pct(at['routine_accuracy'], 1)} there, decision accuracy "
            f"{pct(at['decision_accuracy'], 1)}; the lag lasts "
            + (
                f"{b['bottleneck_steps']} steps (until step {d_l})."
                if not b["bottleneck_open"]
                else f"at least {b['bottleneck_steps']} steps (to the end of the run)."
            )
        )
    elif r_l is not None and d_l is not None:
        lines.append(
            f"- No bottleneck at the {thr} threshold: decision steps are learned "
            + ("together with" if d_l == r_l else "before" if d_l < r_l else "after")
            + " routine steps while routine accuracy was still changing."
        )
    else:
        lines.append(f"- No bottleneck at the {thr} threshold: routine steps are not learned yet.")
    if b["crossover_step"] is not None:
        after = ev.loc[ev["step"] >= b["crossover_step"], "errors"]
        lines.append(
            f"- From step {b['crossover_step']} on, decision steps hold at least half of all "
            f"errors (they are {pct(last['decision_step_share'])} of the steps); from there the "
            f"model makes {int(after.min())} to {int(after.max())} errors on "
            f"{about['query_steps']} query steps per evaluation."
        )
    else:
        lines.append("- Decision steps never hold a lasting majority of the errors.")
    lines.append(
        f"- Entropy of the predicted action: routine {fmt(first['routine_entropy'])} -> "
        f"{fmt(last['routine_entropy'])} nats, decision {fmt(first['decision_entropy'])} -> "
        f"{fmt(last['decision_entropy'])} nats (step {int(first['step'])} -> "
        f"{int(last['step'])})."
    )
    return lines


def plot(result: PhasesResult, cfg: PhasesConfig):
    """Three panels: accuracy, entropy and the decision steps' share of errors, against steps."""
    plt = pyplot()
    ev, b = result.evaluations, _points(result)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for name, style in zip(CLASSES, ("-o", "-s"), strict=True):
        axes[0].plot(ev["step"], ev[f"{name}_accuracy"], style, ms=3, label=f"{name} steps")
        axes[1].plot(ev["step"], ev[f"{name}_entropy"], style, ms=3, label=f"{name} steps")
    axes[0].axhline(cfg.threshold, color="grey", lw=0.8, ls=":", label=f"{pct(cfg.threshold)}")
    axes[2].plot(
        ev["step"], ev["decision_error_share"], "-o", ms=3, label="decision share of errors"
    )
    axes[2].plot(ev["step"], ev["decision_step_share"], "--", label="decision share of steps")
    axes[2].axhline(0.5, color="grey", lw=0.8, ls=":")
    if b["bottleneck_step"] is not None:
        end = b["decision_learned"] if b["decision_learned"] is not None else ev["step"].max()
        for ax in axes:
            ax.axvspan(b["bottleneck_step"], end, color="tab:red", alpha=0.1)
    axes[0].set_ylabel("accuracy (held-out queries)")
    axes[1].set_ylabel("action entropy (nats)")
    axes[2].set_ylabel("share")
    axes[0].set_title(
        "Accuracy" + (" (shaded: decision bottleneck)" if b["bottleneck_step"] else "")
    )
    axes[1].set_title("Entropy of the predicted action")
    axes[2].set_title("Where the errors are")
    for ax in axes:
        ax.set_xlabel("training step")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def main(argv: list[str]) -> int:
    """``trajbench analyze phases``."""
    return run_analysis(argv, NAME, PhasesConfig, compute, render, plot)

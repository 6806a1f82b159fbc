"""Reports: ``results.json``, ``report.md`` and plots from a run's evaluation records.

All numbers come from :func:`trajbench.metrics.aggregate` (IQM over training seeds x levels with
95% stratified-bootstrap CIs) and :func:`~trajbench.bootstrap.probability_of_improvement`; the prose
of the report is generated from those numbers, never written by hand.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

from .bootstrap import probability_of_improvement
from .contexts import MODE_NAMES
from .io import atomic_write_bytes, atomic_write_json, atomic_write_text, write_parquet
from .metrics import aggregate, score_matrix
from .suite import SUITE, SUITE_VERSION

CONDITION = [
    "group",
    "policy",
    "train_context",
    "instruction",
    "p_bursty",
    "family",
    "eval_split",
    "k",
    "support",
]
MODE_ORDER = list(MODE_NAMES)


def conditions_table(records: pd.DataFrame) -> pd.DataFrame:
    """One row per condition: success and normalized-return IQM with CIs, seeds, levels."""
    records = label_p_bursty(records)
    agg = aggregate(
        records, ["success", "normalized_return"], CONDITION, statistic="iqm", resample="seeds"
    )
    params = records.groupby(CONDITION)["model_params"].max().reset_index()
    agg = agg.merge(params, on=CONDITION)
    return agg.rename(
        columns={
            "normalized_return_iqm": "return_iqm",
            "normalized_return_ci_low": "return_ci_low",
            "normalized_return_ci_high": "return_ci_high",
        }
    )


def label_p_bursty(records: pd.DataFrame) -> pd.DataFrame:
    """``p_bursty`` as a label ('-' when the condition does not mix modes), for grouping."""
    return records.assign(
        p_bursty=records["p_bursty"].map(lambda p: "-" if pd.isna(p) else f"{p:g}")
    )


def write_report(out: Path, records: pd.DataFrame, meta: dict) -> Path:
    """Write ``records.parquet``, ``results.json``, ``report.md`` and ``plots/`` into ``out``."""
    write_parquet(out / "records.parquet", records)
    table = conditions_table(records)
    conditions = []
    for row in table.to_dict("records"):
        item = {k: _plain(v) for k, v in row.items()}
        item["p_bursty"] = None if item["p_bursty"] == "-" else float(item["p_bursty"])
        for drop in ("success_mean", "normalized_return_mean", "n_episodes"):
            item.pop(drop, None)
        conditions.append(item)
    results = {**meta, "suite": SUITE, "suite_version": SUITE_VERSION, "conditions": conditions}
    atomic_write_json(out / "results.json", results)
    plots = write_plots(out / "plots", table)
    atomic_write_text(
        out / "report.md", render_markdown(label_p_bursty(records), table, meta, plots)
    )
    return out / "results.json"


# -- markdown -------------------------------------------------------------------------------------
def _fmt(row) -> str:
    return f"{row['success_iqm']:.2f} [{row['success_ci_low']:.2f}, {row['success_ci_high']:.2f}]"


def _label(row) -> str:
    if row["policy"] in ("transformer", "no-context"):
        p = "" if row["p_bursty"] == "-" else f" p={row['p_bursty']}"
        return f"{row['train_context']}{p}"
    return row["policy"]


def render_markdown(
    records: pd.DataFrame, table: pd.DataFrame, meta: dict, plots: list[str]
) -> str:
    lines = [
        f"# trajbench report: preset `{meta['preset']}`",
        "",
        f"- trajbench {meta['trajbench_version']} (commit `{meta['git_commit'][:12]}`), torch {meta['torch_version']}",
        f"- hardware: {meta['hardware']}; device `{meta['device']}`; wall time {meta['wall_time_s']:.0f} s",
        f"- training seeds: {meta['seeds']}; date {meta['date']}",
        "- scores: success rate per (seed, level) averaged over episodes; **IQM over seeds x levels with 95% "
        "stratified-bootstrap CIs** [low, high].",
        "",
    ]
    table = table.assign(label=table.apply(_label, axis=1))
    for group, gt in table.groupby("group", sort=False):
        lines += [f"## Group `{group}`", ""]
        kmax = int(gt["k"].max())
        for split, st in gt.groupby("eval_split", sort=False):
            for fam, ft in st.groupby("family", sort=False):
                lines += [f"### {fam} — {split.replace('_', ' ')}", ""]
                lines += _kshot_table(ft)
                lines += _reading(
                    records[
                        (records.group == group)
                        & (records.family == fam)
                        & (records.eval_split == split)
                    ],
                    ft,
                    kmax,
                )
        if gt["instruction"].nunique() > 2:  # '-' for baselines plus at least two modes
            lines += _instruction_section(records[records.group == group], gt, kmax)
    lines += ["## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in plots] + [""]
    return "\n".join(lines)


def _kshot_table(ft: pd.DataFrame) -> list[str]:
    ks = sorted(ft["k"].unique())
    head = (
        "| training context / policy | instruction | support | "
        + " | ".join(f"K={k}" for k in ks)
        + " |"
    )
    lines = [head, "|" + "---|" * (3 + len(ks))]
    for (label, instr, support), rows in ft.groupby(["label", "instruction", "support"]):
        by_k = {int(r["k"]): _fmt(r) for r in rows.to_dict("records")}
        cells = " | ".join(by_k.get(int(k), "—") for k in ks)
        lines.append(f"| {label} | {instr} | {support} | {cells} |")
    ordered = lines[:2] + sorted(lines[2:], key=lambda s: _sort_key(s.split("|")[1].strip()))
    return [*ordered, ""]


def _sort_key(label: str) -> tuple:
    return (MODE_ORDER.index(label) if label in MODE_ORDER else len(MODE_ORDER), label)


def _matrix(records: pd.DataFrame, **where) -> np.ndarray | None:
    sel = records
    for col, val in where.items():
        sel = sel[sel[col] == val]
    if sel.empty:
        return None
    return score_matrix(sel, "success")


def _reading(records: pd.DataFrame, ft: pd.DataFrame, kmax: int) -> list[str]:
    """Plain-words reading of the context-mode comparison at the largest K, same-level support."""
    at = ft[
        (ft["k"] == kmax)
        & (ft["support"] == "same")
        & (ft["policy"].isin(["transformer", "no-context"]))
    ]
    at = at[at["instruction"] == "full"] if (at["instruction"] == "full").any() else at
    if at.empty:
        return []
    best = at.sort_values("success_iqm", ascending=False).iloc[0]
    lines = [
        f"**Reading (K={kmax}, demonstrations of the level itself).** "
        f"Best training context: `{best['label']}` with success IQM {_fmt(best)}."
    ]
    for other in at.to_dict("records"):
        if other["label"] == best["label"]:
            continue
        separated = other["success_ci_high"] < best["success_ci_low"]
        x = _matrix(
            records,
            k=kmax,
            support="same",
            train_context=best["train_context"],
            instruction=best["instruction"],
            policy=best["policy"],
        )
        y = _matrix(
            records,
            k=kmax,
            support="same",
            train_context=other["train_context"],
            instruction=other["instruction"],
            policy=other["policy"],
        )
        poi = ""
        if x is not None and y is not None and x.shape[1] == y.shape[1]:
            p, lo, hi = probability_of_improvement(x, y)
            poi = f"; P({best['label']} > {other['label']}) = {p:.2f} [{lo:.2f}, {hi:.2f}]"
        verdict = "its CI lies entirely below the best one's" if separated else "the CIs overlap"
        lines.append(f"- `{other['label']}`: {_fmt(other)} — {verdict}{poi}.")
    nos = ft[
        (ft["k"] == kmax)
        & (ft["support"] == "other")
        & (ft["label"] == best["label"])
        & (ft["instruction"] == best["instruction"])
    ]
    if not nos.empty:
        lines.append(
            f"- No-support score of `{best['label']}` (K={kmax} demonstrations of *other* levels): "
            f"{_fmt(nos.iloc[0])} — what remains without same-level demonstrations is in-weights knowledge."
        )
    return [*lines, ""]


def _instruction_section(records: pd.DataFrame, gt: pd.DataFrame, kmax: int) -> list[str]:
    lines = [
        "### Instruction ablation",
        "",
        f"Success IQM [95% CI] at K={kmax} with demonstrations of the level, by what the mission text says.",
        "",
    ]
    sel = gt[(gt["k"] == kmax) & (gt["support"] == "same") & (gt["instruction"] != "-")]
    cols = [c for c in ["full", "empty", "template", "wrong"] if c in set(sel["instruction"])]
    lines += [
        "| training context | split / family | " + " | ".join(cols) + " |",
        "|---|---|" + "---|" * len(cols),
    ]
    for (mode, split, fam), rows in sel.groupby(
        ["train_context", "eval_split", "family"], sort=False
    ):
        by = {r["instruction"]: _fmt(r) for r in rows.to_dict("records")}
        lines.append(
            f"| {mode} | {split} {fam.split('/')[-1]} | "
            + " | ".join(by.get(c, "—") for c in cols)
            + " |"
        )
    lines.append("")
    for mode, rows in sel[sel["eval_split"] == "test_levels"].groupby("train_context", sort=False):
        full = rows[rows["instruction"] == "full"]
        if full.empty:
            continue
        f = full.iloc[0]
        parts = []
        for r in rows.to_dict("records"):
            if r["instruction"] == "full":
                continue
            if r["success_ci_high"] < f["success_ci_low"]:
                rel = "below full (CIs separated)"
            elif r["success_ci_low"] > f["success_ci_high"]:
                rel = "above full (CIs separated)"
            else:
                rel = "not distinguishable from full (CIs overlap)"
            parts.append(f"`{r['instruction']}` {r['success_iqm']:.2f} is {rel}")
        lines.append(
            f"- With `{mode}` training, full-mission success is {_fmt(f)}; "
            + "; ".join(parts)
            + "."
        )
    return [*lines, ""]


# -- plots ------------------------------------------------------------------------------------------
def write_plots(directory: Path, table: pd.DataFrame) -> list[str]:
    """Success by training context (with CIs), k-shot curves, and the instruction ablation."""
    import matplotlib  # only when plotting: it costs half a second at import

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = table.assign(label=table.apply(_label, axis=1))
    written = []

    def save(fig, name: str) -> None:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
        plt.close(fig)
        atomic_write_bytes(directory / name, buf.getvalue())
        written.append(f"plots/{name}")

    for group, gt in table.groupby("group", sort=False):
        tl = gt[(gt["eval_split"] == "test_levels") & (gt["support"] == "same")]
        tl = tl[tl["instruction"].isin(["full", "-"])]
        kmax = int(gt["k"].max())
        at = tl[tl["k"] == kmax].copy()
        if not at.empty:
            at["order"] = at["label"].map(_sort_key)
            at = at.sort_values("order")
            fig, ax = plt.subplots(figsize=(7, 3.2))
            y = at["success_iqm"].to_numpy()
            err = np.vstack(
                [y - at["success_ci_low"].to_numpy(), at["success_ci_high"].to_numpy() - y]
            )
            ax.bar(at["label"], y, yerr=err, capsize=4, color="#4C72B0")
            ax.set_ylim(0, 1.05)
            ax.set_ylabel(f"success IQM (K={kmax})")
            ax.set_title(f"{group}: held-out levels by training context (95% CI)")
            ax.tick_params(axis="x", rotation=20)
            save(fig, f"{group}-success-by-mode.png")
        fig, ax = plt.subplots(figsize=(6, 3.6))
        for label, rows in sorted(tl.groupby("label"), key=lambda x: _sort_key(x[0])):
            rows = rows.sort_values("k")
            ax.plot(rows["k"], rows["success_iqm"], marker="o", label=label)
            ax.fill_between(rows["k"], rows["success_ci_low"], rows["success_ci_high"], alpha=0.15)
        ax.set_xlabel("K demonstrations in context")
        ax.set_ylabel("success IQM")
        ax.set_ylim(-0.02, 1.05)
        ax.set_title(f"{group}: k-shot curves, held-out levels")
        ax.legend(fontsize=8)
        save(fig, f"{group}-kshot.png")
        ab = gt[(gt["k"] == kmax) & (gt["support"] == "same") & (gt["instruction"] != "-")]
        if ab["instruction"].nunique() > 1:
            fig, ax = plt.subplots(figsize=(7, 3.4))
            instrs = [
                c for c in ["full", "empty", "template", "wrong"] if c in set(ab["instruction"])
            ]
            series = list(ab.groupby(["train_context", "eval_split"], sort=False))
            width = 0.8 / max(len(series), 1)
            for i, ((mode, split), rows) in enumerate(series):
                rows = rows.set_index("instruction").reindex(instrs)
                x = np.arange(len(instrs)) + i * width
                y = rows["success_iqm"].to_numpy()
                err = np.vstack(
                    [y - rows["success_ci_low"].to_numpy(), rows["success_ci_high"].to_numpy() - y]
                )
                ax.bar(x, y, width, yerr=err, capsize=3, label=f"{mode} / {split}")
            ax.set_xticks(np.arange(len(instrs)) + width * (len(series) - 1) / 2, instrs)
            ax.set_ylim(0, 1.05)
            ax.set_ylabel(f"success IQM (K={kmax})")
            ax.set_title(f"{group}: instruction ablation (95% CI)")
            ax.legend(fontsize=8)
            save(fig, f"{group}-instructions.png")
    return written


def _plain(value):
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value

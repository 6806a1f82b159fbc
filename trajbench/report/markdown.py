"""``report.md``: the tables and the sentences of a run, generated from its numbers."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from trajbench.records import COMMON, DECOY, DECOY_SUCCESS, EVAL_INSTRUCTION, EVAL_SPLIT, REFERENCES

from ..contexts import MODE_NAMES
from .readings import grounded, guess_reference, sentence
from .tables import Comparison, saturated

_ORDER = [*MODE_NAMES, *REFERENCES]


def render_markdown(
    records: pd.DataFrame,
    table: pd.DataFrame,
    cs: list[Comparison],
    meta: dict,
    plots: list[str],
) -> str:
    """The whole report (``records`` labelled; ``table`` from ``conditions_table``)."""
    episodes = records.groupby(["seed", "family", "level", "label", "k", "support", "format"])
    lines = [
        f"# trajbench report: preset `{meta['preset']}`",
        "",
        f"- trajbench {meta['trajbench_version']} (commit `{meta['git_commit'][:12]}`), "
        f"suite {meta.get('suite_version', '?')}, torch {meta['torch_version']}",
        f"- hardware: {meta['hardware']}; device `{meta['device']}`; wall time "
        f"{meta['wall_time_s']:.0f} s",
        f"- training seeds {meta['seeds']} (evaluation seeds apart); date {meta['date']}",
        f"- scores: **mean success** per (seed, level) cell, each cell over "
        f"{int(episodes.size().min())}+ episodes; 95% CIs from a bootstrap over seeds and "
        "levels; differences are paired on shared levels and seeds, and a difference that is not "
        "distinguishable from 0 comes with the smallest one the run could detect.",
        "",
    ]
    for group, gt in table.groupby("group", sort=False):
        lines += [f"## Group `{group}`", ""]
        grecords = records[records["group"] == group]
        for (family, split), ft in gt.groupby(["family", EVAL_SPLIT], sort=False):
            ft = ft[ft[EVAL_INSTRUCTION] != DECOY]
            kmax = int(ft["k"].max())
            same = ft[(ft["support"] == "same") & (ft["k"] == kmax) & (ft["format"] == COMMON)]
            flag = " — saturated at this preset" if saturated(same) else ""
            lines += [f"### {family} — {split.replace('_', ' ')}{flag}", ""]
            lines += _kshot_table(ft)
            lines += _readings(cs, family, split, kmax)
        lines += _instructions(grecords, gt, cs)
    lines += ["## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in plots] + [""]
    return "\n".join(lines)


def _ci(row, metric: str = "success") -> str:
    return f"{row[f'{metric}_mean']:.2f} [{row[f'{metric}_ci_low']:.2f}, {row[f'{metric}_ci_high']:.2f}]"


def _sort_key(label: str) -> tuple:
    base = label.split("/")[0].split(" ")[0]
    return (_ORDER.index(base) if base in _ORDER else len(_ORDER), label)


def _kshot_table(ft: pd.DataFrame) -> list[str]:
    """Rows: condition x format x support; columns: K; cells: mean success [95% CI]."""
    ks = sorted(ft["k"].unique())
    lines = [
        "| condition | format | support | " + " | ".join(f"K={k}" for k in ks) + " |",
        "|" + "---|" * (3 + len(ks)),
    ]
    body = []
    for (label, fmt, support), rows in ft.groupby(["label", "format", "support"]):
        by_k = {int(r["k"]): _ci(r) for r in rows.to_dict("records")}
        cells = " | ".join(by_k.get(int(k), "—") for k in ks)
        body.append((_sort_key(label), fmt, support, f"| {label} | {fmt} | {support} | {cells} |"))
    return [*lines, *(row[-1] for row in sorted(body)), ""]


def _readings(cs: list[Comparison], family: str, split: str, kmax: int) -> list[str]:
    here = [
        c for c in cs if (c.family, c.eval_split) == (family, split) and c.question != "grounding"
    ]
    if not here:
        return []
    lines = [f"**Readings (K={kmax}, demonstrations of the level, common format).**"]
    lines += [f"- *{c.question}*: {sentence(c)}" for c in here]
    return [*lines, ""]


def _instructions(records: pd.DataFrame, gt: pd.DataFrame, cs: list[Comparison]) -> list[str]:
    """The instruction ablation of a group that trains several instruction modes."""
    if gt.loc[~gt["policy"].isin(REFERENCES), "instruction"].nunique() < 2:
        return []
    lines = ["### Instruction ablation", ""]
    kmax = int(gt["k"].max())
    for (family, split), ft in gt[gt["k"] == kmax].groupby(["family", EVAL_SPLIT], sort=False):
        is_grounded = grounded(cs, family, split)
        where = f"{family} — {split.replace('_', ' ')}"
        if is_grounded is None:
            continue
        grounding = [
            c
            for c in cs
            if c.question == "grounding" and c.family == family and c.eval_split == split
        ]
        lines.append(
            f"**{where}.** Grounding check (no context, so the mission is all there is): {sentence(grounding[0])}"
        )
        if not is_grounded:
            lines += [
                "The model did not ground its missions (full does not beat empty with disjoint "
                "CIs), so the ablation below says nothing about instructions at this preset.",
                "",
            ]
        same = ft[(ft["support"] == "same") & (ft["format"] == COMMON)]
        trained = same[~same["policy"].isin(REFERENCES) & (same[EVAL_INSTRUCTION] != DECOY)]
        levels = sorted(records.loc[records["family"] == family, "level"].unique().tolist())
        guess = guess_reference(family, levels)
        lines += ["", "| condition | mean success [95% CI] |", "|---|---|"]
        lines += [
            f"| {r['label']} | {_ci(r)} |" for r in trained.sort_values("label").to_dict("records")
        ]
        if guess is not None:
            lines.append(f"| random guess (act on a random object) | {guess:.2f} |")
        decoys = same[same[EVAL_INSTRUCTION] == DECOY]
        if not decoys.empty and f"{DECOY_SUCCESS}_mean" in decoys:
            lines += [
                "",
                "Decoy missions on the query (another object of the level), demonstrations to the "
                "true goal:",
                "",
                "| condition | reached the demonstrations' goal | reached the decoy's object |",
                "|---|---|---|",
            ]
            lines += [
                f"| {r['label']} | {_ci(r)} | {_ci(r, DECOY_SUCCESS)} |"
                for r in decoys.sort_values("label").to_dict("records")
            ]
        lines.append("")
    return lines

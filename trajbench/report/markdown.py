"""``report.md``: the tables and the sentences of a run, generated from its numbers.

Per group and family (with its role: headline, control or unclassified; never pooled): the
k-shot table (mean success [95% CI], and normalized to the decoder where the run has one), the
declared questions' answers at every K they were asked at, what an order gap measures there, the
coverage of the intervals at the run's design, and the instruction ablation's 2x2 where declared.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from trajbench.records import COMMON, DECOY, DECOY_SUCCESS, EVAL_INSTRUCTION, EVAL_SPLIT

from ..contexts import MODE_NAMES
from .classes import family_role
from .intervals import interval_note
from .questions import TWO_BY_TWO, Question, Unanswered
from .readings import ORDER_QUESTIONS, guess_reference, order_sentence, sentence
from .tables import REFERENCES, SATURATION, Comparison, saturated

_ORDER = [*MODE_NAMES, *REFERENCES]


def render_markdown(
    records: pd.DataFrame,
    table: pd.DataFrame,
    cs: list[Comparison],
    meta: dict,
    plots: list[str],
    questions: dict[str, tuple[Question, ...]],
    unanswered: dict[str, list[Unanswered]] | None = None,
) -> str:
    """The whole report (``records`` labelled; ``table`` from ``conditions_table`` with
    ``normalized``; ``questions`` declared per group; ``unanswered``: per group, the declared
    questions its records could not answer)."""
    unanswered = unanswered or {}
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
        "distinguishable from 0 comes with the smallest one the run could detect. In "
        "parentheses: the score normalized to the family's decoder, (score - random) / "
        f"(decoder - random); a family whose best trained condition reaches {SATURATION} on that "
        "scale (the expert's, where the run has no decoder) is marked saturated at that K.",
        "- the questions below were declared by the preset before the run; the report answers "
        "exactly those, at every K they are asked at.",
        "",
    ]
    for group, gt in table.groupby("group", sort=False):
        lines += [f"## Group `{group}`", "", "Declared questions:", ""]
        lines += [f"- *{q.name}*: {q.contrast}{_where(q)}" for q in questions.get(group, ())]
        lines.append("")
        grecords = records[records["group"] == group]
        for (family, split), ft in gt.groupby(["family", EVAL_SPLIT], sort=False):
            ft = ft[ft[EVAL_INSTRUCTION] != DECOY]
            here = [c for c in cs if (c.group, c.family, c.eval_split) == (group, family, split)]
            lines += [
                f"### {family} — {split.replace('_', ' ')} ({family_role(family)}){_flag(ft)}",
                "",
            ]
            lines += _kshot_table(ft)
            lines += _readings([c for c in here if c.question not in TWO_BY_TWO], family)
            missing = [
                f"- not answered: *{u.question}* ({u.contrast}) at K={u.k}: {u.reason}"
                for u in unanswered.get(group, ())
                if (u.family, u.eval_split) == (family, split)
            ]
            lines += [*missing, ""] if missing else []
            frecords = grecords[(grecords["family"] == family) & (grecords[EVAL_SPLIT] == split)]
            note = interval_note(frecords)
            lines += [note, ""] if note else []
            lines += _two_by_two(frecords, gt, here, family, split)
    lines += ["## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in plots] + [""]
    return "\n".join(lines)


def _where(q: Question) -> str:
    parts = []
    if q.families:
        parts.append(", ".join(f.split("/")[-1] for f in q.families))
    parts.append("K=" + ", ".join(map(str, q.ks)) if q.ks else "every K")
    if q.support != ("same", "same"):
        parts.append(f"demonstrations: {q.support[0]} vs {q.support[1]} level(s)")
    if q.b_format != COMMON:
        parts.append(f"second side in its {q.b_format} format")
    return " (" + "; ".join(parts) + ")"


def _flag(ft: pd.DataFrame) -> str:
    """' — saturated at K=...' where the best trained condition reaches the bar at those K."""
    same = ft[(ft["support"] == "same") & (ft["format"] == COMMON)]
    ks = [int(k) for k, rows in same.groupby("k") if saturated(rows)]
    return f" — saturated at K={', '.join(map(str, ks))}" if ks else ""


def _ci(row, metric: str = "success") -> str:
    text = f"{row[f'{metric}_mean']:.2f} [{row[f'{metric}_ci_low']:.2f}, {row[f'{metric}_ci_high']:.2f}]"
    norm = row.get("normalized") if metric == "success" else None
    return text if norm is None or pd.isna(norm) else f"{text} ({norm:.2f})"


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


def _readings(here: list[Comparison], family: str) -> list[str]:
    """The declared questions' answers, K by K (demonstrations of the level unless a question
    says otherwise), and what an order gap measures on the family."""
    lines = []
    for k in sorted({c.k for c in here}):
        lines += [f"**Readings at K={k}.**"]
        lines += [f"- *{c.question}*: {sentence(c)}" for c in here if c.k == k]
        lines.append("")
    said = order_sentence(family) if any(c.question in ORDER_QUESTIONS for c in here) else ""
    return [*lines, *([said, ""] if said else [])]


def _two_by_two(
    records: pd.DataFrame, gt: pd.DataFrame, here: list[Comparison], family: str, split: str
) -> list[str]:
    """The instruction ablation of a family whose group declared the 2x2: the four cells (and
    the further instruction rows), its main effects, interaction and simple effects, K by K, and
    the decoy evaluation of both contexts."""
    asked = [c for c in here if c.question in TWO_BY_TWO]
    if not asked:
        return []
    lines = [f"#### Instruction ablation (2x2: context x mission) — {family.split('/')[-1]}", ""]
    ft = gt[
        (gt["family"] == family)
        & (gt[EVAL_SPLIT] == split)
        & (gt["support"] == "same")
        & (gt["format"] == COMMON)
    ]
    trained = ft[~ft["policy"].isin(REFERENCES)]
    levels = sorted(records["level"].unique().tolist())
    guess = guess_reference(family, levels)
    for k in sorted({c.k for c in asked}):
        at = trained[(trained["k"] == k) & (trained[EVAL_INSTRUCTION] != DECOY)]
        by = {r["label"]: r for r in at.to_dict("records")}
        contexts = sorted({label.split("/")[0] for label in by}, key=_sort_key)
        lines += [f"**K={k}.**", "", "| context | mission full | mission empty |", "|---|---|---|"]
        for ctx in contexts:
            cells = [by.get(ctx), by.get(f"{ctx}/empty")]
            lines.append(
                f"| {ctx} | " + " | ".join("—" if r is None else _ci(r) for r in cells) + " |"
            )
        further = [label for label in by if label.split("/")[-1] in ("template", "wrong")]
        if further:
            lines += ["", "| further rows | mean success [95% CI] |", "|---|---|"]
            lines += [f"| {label} | {_ci(by[label])} |" for label in sorted(further)]
        if guess is not None:
            lines.append(f"\nRandom guess (act on a random object): {guess:.2f}.")
        lines += [""] + [f"- *{c.question}*: {sentence(c)}" for c in asked if c.k == k] + [""]
        lines += _decoys(ft[(ft["k"] == k) & (ft[EVAL_INSTRUCTION] == DECOY)])
    return lines


def _decoys(decoys: pd.DataFrame) -> list[str]:
    """Decoy missions on the query, for every condition evaluated with them (both contexts)."""
    if decoys.empty or "decoy_success_mean" not in decoys:
        return []
    lines = [
        "Decoy missions on the query (another object of the level), demonstrations to the true "
        "goal; every full-mission model, with and without context, and the references:",
        "",
        "| condition | reached the demonstrations' goal | reached the decoy's object |",
        "|---|---|---|",
    ]
    rows = sorted(decoys.to_dict("records"), key=lambda r: _sort_key(r["label"]))
    lines += [f"| {r['label']} | {_ci(r)} | {_ci(r, DECOY_SUCCESS)} |" for r in rows]
    return [*lines, ""]

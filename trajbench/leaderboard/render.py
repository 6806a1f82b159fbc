"""Rendering the leaderboard: the Markdown README, the SVG plot and the static HTML page.

:func:`render` returns every generated file of the leaderboard directory; ``build`` writes them
and ``build --check`` compares them with the files on disk. The output is deterministic (no
dates, fixed SVG ids), so the same submissions always give the same bytes.

Example:
    files = render(validate_files(submission_files(Path("leaderboard")))[0])
"""

from __future__ import annotations

import html
import io
from collections.abc import Sequence

import numpy as np

from trajbench.records import MATCHED
from trajbench.report.tables import SATURATION
from trajbench.suite import SUITE

from .ranking import Row, Table, newest_version, tables
from .schema import NO_VALUE, Aggregate, AggregateV1, Entry, Training, schema_text

#: The check column of an entry nobody re-ran.
SELF_REPORTED = "self-reported"


def _ci(value: float, low: float, high: float) -> str:
    return f"{value:.3f} [{low:.3f}, {high:.3f}]"


def _success(agg: Aggregate | AggregateV1) -> str:
    return _ci(agg.success, agg.success_ci_low, agg.success_ci_high)


def _training(t: Training) -> str:
    parts = [v for v in (t.train_context, t.instruction) if v not in NO_VALUE]
    if t.p_bursty is not None:
        parts.append(f"p_bursty={t.p_bursty:g}")
    return " / ".join(parts) or "—"


def checked(sub: Entry) -> str:
    """``verified <date>, <n> cells re-run`` for an entry ``trajbench leaderboard verify``
    re-ran, else ``self-reported``."""
    mark = getattr(sub, "verified", None)
    if mark is None:
        return SELF_REPORTED
    return f"verified {mark.date[:10]}, {mark.cells} cells re-run"


def _formats(table: Table) -> bool:
    """Whether the table's schema has formats (suite version 1 showed whole episodes only)."""
    return table.schema >= 2


def headers(table: Table) -> list[str]:
    """The column titles of a table; the success column names its statistic."""
    success = "Mean success" if table.statistic == "mean" else f"Success {table.statistic}"
    matched = ["Matched-format success [95% CI]"] if _formats(table) else []
    return [
        "#",
        "Entry",
        "Checked",
        "Model",
        "Training",
        f"{success} [95% CI]",
        "Normalized",
        "No-support success",
        *matched,
        "Norm. return IQM [95% CI]",
        "Seeds × levels",
        "Params",
        "Hardware",
        "Date",
    ]


def _cells(row: Row, table: Table) -> list[str]:
    """The cells of one row of ``table``, shared by the Markdown and HTML renderings."""
    s, same, other, matched = row.sub, row.same, row.other, row.matched
    scores = ["—"] * (5 + _formats(table))
    if same is not None:
        norm = table.normalized(row)
        scores = [_success(same), "—" if norm is None else f"{norm:.2f}"]
        scores += ["—" if other is None else f"{other.success:.3f}"]
        scores += ["—" if matched is None else _success(matched)] if _formats(table) else []
        ret = (same.normalized_return_ci_low, same.normalized_return_ci_high)
        scores += [_ci(same.normalized_return_iqm, *ret), f"{same.n_seeds} × {same.n_levels}"]
    model = s.model.name if s.model.name == s.model.policy else f"{s.model.name} ({s.model.policy})"
    if ":" in s.model.policy and s.model.version:  # a policy trajbench did not train: its version
        model += f" {s.model.version}"
    if row.copy_baseline:
        model += " — copy baseline, the floor to clear"
    if row.bar:
        model += " — in-context decoder, the bar"
    return [
        str(row.rank) if row.rank else "—",
        s.name,
        checked(s),
        model,
        _training(s.training),
        *scores,
        f"{s.model.parameters:,}" if s.model.parameters else "—",
        s.hardware,
        s.date[:10],
    ]


INTRO = (
    "In-context learning from trajectories: each policy sees k expert demonstrations of a "
    "held-out level in its context and then plays that level. Each table ranks entries by mean "
    "success over (training seed × level) cells, each cell averaged over its episodes, with "
    "same-level demonstrations shown whole and in order (the common format) and the mission the "
    "entry trained with, at the largest k that every entry of the table evaluated; brackets are "
    "95% bootstrap confidence intervals that resample training seeds and levels. No-support "
    "success gives the same k demonstrations from other levels, so it measures what the weights "
    "alone know. Matched-format success scores a model trained on an unordered mode (shuffled, "
    "isolated) with the demonstrations cut into transitions in random order, as it trained; it "
    "is shown, not ranked. Normalized return is return divided by the expert's return on the "
    "level (its IQM over cells). The copy baselines (hashmap: the context's action at an "
    "identical observation; replay: a demonstration's actions played open-loop) are the floor "
    "to clear: a model that does not beat them has not shown in-context generalization. The "
    "decoder (no learning: it walks to where the level's demonstrations were rewarded, in their "
    "order, or to the object they ended at) is the bar; Normalized is (success - random) / "
    "(decoder - random) where the table holds both. A table "
    f"whose best entry other than the reference policies reaches {SATURATION} on the decoder "
    "scale, (success - random) / (decoder - random), or on the expert's where the table has no "
    "decoder, is marked saturated at this preset: it cannot separate entries near the bar. "
    "Checked says whether anyone but the submitter reproduced an entry. Verified: `trajbench "
    "leaderboard verify` re-ran the evaluations behind a seeded sample of its cells (the date "
    "and the number of cells are shown) -- from its models, or, for a policy trajbench did not "
    "train, from its recorded import path at its recorded version -- on evaluation stores "
    "collected again from their recorded specs to the same content hash, and got exactly the "
    "submitted records. Self-reported: the numbers are the submitter's, as submitted; they "
    "passed validation (the aggregates agree with the records) but nobody re-ran them. Every "
    "policy is scored through the same harness, which shows an outside policy only what the "
    "protocol shows (observations, previous action and reward, the demonstrations' steps, the "
    "mission as shown; never the environment or the level)."
)
HOW_TO = [
    "# a model trained by trajbench: a preset's run (one entry per condition)",
    "trajbench run --preset smoke --out runs/smoke",
    'trajbench leaderboard submit runs/smoke --name NAME --authors "Your Name"',
    "# any policy (package.module:factory returning a trajbench Policy): an evaluate output",
    "trajbench evaluate --policy my_pkg.agent:make_policy --data DATA --out runs/agent",
    'trajbench leaderboard submit runs/agent --name NAME --authors "Your Name"',
    "# then",
    "trajbench leaderboard validate",
    "trajbench leaderboard build",
]


def _md(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def saturation_note(table: Table) -> str:
    """The line under a saturated table (empty for any other)."""
    if not table.saturated:
        return ""
    presets = ", ".join(table.presets)
    return (
        f"Saturated at this preset{f' ({presets})' if presets else ''}: the best entry other than "
        f"the reference policies reaches {SATURATION} or more of the way from random to the "
        "decoder (the expert where the table has no decoder), so this table cannot separate "
        "entries near the bar."
    )


def _sections(boards: Sequence[Table]) -> list[tuple[str, str, list[Table]]]:
    """``(heading, note, tables)`` per suite version: the ranked one, then the archived ones."""
    newest = newest_version()
    out = []
    if not any(t.suite_version == newest for t in boards):
        out.append((f"Suite {SUITE} v{newest}", "No entries yet on this suite version.", []))
    for version in dict.fromkeys(t.suite_version for t in boards):
        mine = [t for t in boards if t.suite_version == version]
        if version == newest:
            out.append((f"Suite {SUITE} v{version}", "", mine))
            continue
        note = (
            f"These entries were measured on suite version {version}, which suite version "
            f"{newest} replaces: they are listed, not ranked."
        )
        if mine and mine[0].statistic != "mean":
            note += (
                f" Their success is the {mine[0].statistic} over training seeds × levels, with "
                "95% confidence intervals that resample training seeds only."
            )
        out.append((f"Archived (suite version {version})", note, mine))
    return out


def render_markdown(subs: Sequence[Entry]) -> str:
    """The leaderboard README.

    Example:
        >>> render_markdown([]).splitlines()[0]
        '# trajbench leaderboard'
    """
    lines = [
        "# trajbench leaderboard",
        "",
        "<!-- Generated by `trajbench leaderboard build` from submissions/*.json; do not edit. -->",
        "",
        INTRO,
        "",
        "To add an entry (its format is `schema.json`), run these and open a pull request with "
        "the new `submissions/*.json` and the rebuilt leaderboard:",
        "",
        "```",
        *HOW_TO,
        "```",
        "",
    ]
    boards = tables(subs)
    if not boards:
        return "\n".join([*lines, "No entries yet.", ""])
    for heading, note, mine in _sections(boards):
        lines += [f"## {heading}", ""] + ([note, ""] if note else [])
        for table in mine:
            lines += [f"### {table.title}", ""]
            if table.saturated:
                lines += [f"**{saturation_note(table)}**", ""]
            lines.append("| " + " | ".join(headers(table)) + " |")
            lines.append("|" + "|".join("---" for _ in headers(table)) + "|")
            lines += [
                "| " + " | ".join(_md(c) for c in _cells(r, table)) + " |" for r in table.rows
            ]
            lines.append("")
    lines += [
        "## How each entry was produced",
        "",
        "| Entry | Authors | Command |",
        "|---|---|---|",
    ]
    for sub in sorted(subs, key=lambda s: s.name):
        command = sub.command.replace("`", "'")
        lines.append(f"| {_md(sub.name)} | {_md(', '.join(sub.authors))} | `{_md(command)}` |")
    return "\n".join([*lines, ""])


def plot_svg(boards: Sequence[Table]) -> str:
    """An inline SVG: mean success with its CI per ranked entry, one panel per table.

    Deterministic: fixed hash salt, text kept as text, no date or creator metadata.
    """
    # matplotlib is slow to import: keep it off the path of validate and submit.
    import matplotlib
    from matplotlib.figure import Figure

    boards = [t for t in boards if t.ranked]
    heights = [0.3 * len(t.ranked) + 0.8 for t in boards]
    style = {"svg.hashsalt": "trajbench-leaderboard", "svg.fonttype": "none", "font.size": 8}
    with matplotlib.rc_context(style):
        fig = Figure(figsize=(7.0, sum(heights) + 0.4), layout="constrained")
        axes = fig.subplots(len(boards), 1, squeeze=False, height_ratios=heights)[:, 0]
        for ax, table in zip(axes, boards, strict=True):
            rows = table.ranked
            y = np.arange(len(rows))
            same = [r.same for r in rows]
            ax.hlines(y, [a.success_ci_low for a in same], [a.success_ci_high for a in same], "C0")
            ax.plot([a.success for a in same], y, "o", color="C0", label="same-level support")
            for label, marker, color, which in (
                ("no support", "o", "C3", "other"),
                ("matched format", "^", "C2", MATCHED),
            ):
                found = [(getattr(r, which), i) for i, r in enumerate(rows)]
                points = [(a.success, i) for a, i in found if a is not None]
                if points:
                    xs, ys = zip(*points, strict=True)
                    ax.plot(xs, ys, marker, mfc="none", color=color, label=label)
            names = [
                f"{r.sub.name} (copy)"
                if r.copy_baseline
                else f"{r.sub.name} (bar)"
                if r.bar
                else r.sub.name
                for r in rows
            ]
            ax.set_yticks(y, names)
            ax.set_ylim(len(rows) - 0.5, -0.5)
            ax.set_xlim(-0.02, 1.02)
            ax.grid(axis="x", alpha=0.3)
            saturated = " — saturated at this preset" if table.saturated else ""
            ax.set_title(table.title + saturated, loc="left")
            ax.legend(loc="lower right", fontsize=7)
        axes[-1].set_xlabel("mean success with 95% CI")
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    svg = buf.getvalue()
    return svg[svg.index("<svg") :].strip()


CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 80em; padding: 0 1em; }
table { border-collapse: collapse; margin-bottom: 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; }
th { background: #f3f3f3; }
td:nth-child(n+5):nth-child(-n+11), td:nth-child(13) { white-space: nowrap; }
tr.unranked { color: #888; }
tr.bar td { background: #fff6dd; }
p.saturated { font-weight: bold; }
code, pre { background: #f6f6f6; }
figure svg { max-width: 100%; height: auto; }
"""


def render_html(subs: Sequence[Entry]) -> str:
    """A static page: the ranked tables and a plot, with no external resources.

    Example:
        >>> "No entries yet." in render_html([])
        True
    """
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        '<head><meta charset="utf-8"><title>trajbench leaderboard</title>',
        f"<style>{CSS}</style></head>",
        "<body>",
        "<h1>trajbench leaderboard</h1>",
        f"<p>{e(INTRO)}</p>",
        f"<pre>{e(chr(10).join(HOW_TO))}</pre>",
    ]
    boards = tables(subs)
    if not boards:
        parts.append("<p>No entries yet.</p>")
    for heading, note, mine in _sections(boards) if boards else ():
        parts += [f"<h2>{e(heading)}</h2>"] + ([f"<p>{e(note)}</p>"] if note else [])
        if any(t.ranked for t in mine):
            parts.append(f"<figure>{plot_svg(mine)}</figure>")
        for table in mine:
            attrs = f'data-family="{e(table.family)}" data-split="{e(table.eval_split)}"'
            if table.saturated:
                attrs += ' data-saturated="true"'
            cls = "board archived" if table.archived else "board"
            parts.append(f"<h3>{e(table.title)}</h3>")
            if table.saturated:
                parts.append(f'<p class="saturated">{e(saturation_note(table))}</p>')
            parts.append(f'<table class="{cls}" {attrs}>')
            parts.append(
                "<thead><tr>"
                + "".join(f"<th>{e(h)}</th>" for h in headers(table))
                + "</tr></thead>"
            )
            parts.append("<tbody>")
            for row in table.rows:
                kinds = ([] if row.rank else ["unranked"]) + (
                    ["bar"] if row.copy_baseline or row.bar else []
                )
                cls = f' class="{" ".join(kinds)}"' if kinds else ""
                cells = "".join(f"<td>{e(c)}</td>" for c in _cells(row, table))
                parts.append(f'<tr{cls} data-entry="{e(row.sub.name)}">{cells}</tr>')
            parts.append("</tbody></table>")
    if boards:
        parts += ["<h2>How each entry was produced</h2>", "<table><thead><tr>"]
        parts.append("<th>Entry</th><th>Authors</th><th>Command</th></tr></thead><tbody>")
        for sub in sorted(subs, key=lambda s: s.name):
            parts.append(
                f"<tr><td>{e(sub.name)}</td><td>{e(', '.join(sub.authors))}</td>"
                f"<td><code>{e(sub.command)}</code></td></tr>"
            )
        parts.append("</tbody></table>")
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)


def render(subs: Sequence[Entry]) -> dict[str, str]:
    """Every generated file of the leaderboard directory: name -> content."""
    return {
        "README.md": render_markdown(subs),
        "index.html": render_html(subs),
        "schema.json": schema_text(),
    }

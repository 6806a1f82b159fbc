"""Tests for trajbench.leaderboard.render, through ``trajbench leaderboard build``."""

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from leaderboard_support import (
    BURSTY,
    DARK_ROOM,
    HASHMAP,
    ISOLATED,
    KEY_DOOR,
    RANDOM,
    REPO,
    TOP,
    V1_FILES,
    add_suite_version,
    board_order,
    bump_aggregate,
    edit,
    entry_path,
    find,
    relabel_levels,
    run_cli,
    set_value,
)
from PIL import Image

from trajbench.leaderboard import (
    load,
    render_html,
    render_markdown,
    schema_text,
    submission_files,
    validate_files,
)
from trajbench.suite import SUITE_VERSION

pytest_plugins = ["leaderboard_support"]
CHROMIUM = Path("/usr/bin/chromium")
ORDER = [BURSTY, HASHMAP, ISOLATED, RANDOM]
DARK_TITLE = f"{DARK_ROOM} — held-out levels (k = 4)"


def _ci(agg: dict, stat: str = "success", value: str = "mean") -> str:
    return (
        f"{agg[f'{stat}_{value}']:.3f} [{agg[f'{stat}_ci_low']:.3f}, {agg[f'{stat}_ci_high']:.3f}]"
    )


def _top(path: Path, fmt: str = "common") -> dict:
    sub = json.loads(path.read_text())
    shown = sub["training"]["instruction"]
    return sub["aggregates"][
        find(sub["aggregates"], **{**TOP, "format": fmt}, eval_instruction=shown)
    ]


def test_build_ranks_the_entries_by_mean_success(built):
    readme = (built / "README.md").read_text()
    assert board_order(readme, DARK_TITLE) == ORDER
    assert f"### {KEY_DOOR} — held-out family (k = 4)" in readme
    assert f"## Suite trajbench v{SUITE_VERSION}" in readme and "Archived" not in readme
    assert "`trajbench run --preset ci --out runs/ci`" in readme
    assert "52,000" in readme and "2x CPU (test)" in readme and "2025-11-25" in readme
    header = (
        "| # | Entry | Checked | Model | Training | Mean success [95% CI] | Normalized | "
        "No-support success | "
        "Matched-format success [95% CI] | Norm. return IQM [95% CI] |"
    )
    assert header in readme and "IQM [95% CI] | Seeds" in readme and "Success IQM" not in readme
    top = _top(entry_path(built))
    row = (
        f"| 1 | {BURSTY} | self-reported | transformer | bursty / full / p_bursty=1 | {_ci(top)} | "
    )
    assert row in readme
    assert f" | — | {_ci(top, 'normalized_return', 'iqm')} | 3 × 4 | 52,000 |" in readme
    assert (built / "schema.json").read_text() == schema_text()
    # nobody re-ran these entries: each says so, and the page says what that means
    rows = [line for line in readme.splitlines() if line.startswith("| ") and " | " in line]
    ranked = [line for line in rows if line.split(" | ")[0].lstrip("| ").isdigit()]
    assert ranked and all(line.split(" | ")[2] == "self-reported" for line in ranked)
    assert "Self-reported: the numbers are the submitter's" in readme


def test_readme_names_the_matched_format_and_marks_the_copy_baselines(built):
    readme = (built / "README.md").read_text()
    isolated = entry_path(built, ISOLATED)
    other = _top(isolated, "common")["success_mean"]  # not the matched score
    matched = _ci(_top(isolated, "matched"))
    line = next(x for x in readme.splitlines() if x.startswith(f"| 3 | {ISOLATED} |"))
    assert f" | {matched} | " in line and f"| {_ci(_top(isolated))} |" in line
    assert f"{other:.3f}" in line
    assert "Matched-format success scores a model trained on an unordered mode" in readme
    assert (
        f"| 2 | {HASHMAP} | self-reported | hashmap — copy baseline, the floor to clear | — |"
        in readme
    )
    assert "copy baseline" not in next(x for x in readme.splitlines() if f"| {RANDOM} |" in x)
    page = (built / "index.html").read_text()
    assert f'<tr class="bar" data-entry="{HASHMAP}">' in page
    assert f'<tr data-entry="{RANDOM}">' in page


def _saturate(root: Path, value: float) -> list:
    """The run's entries with every mean success (and CI) at ``value``, random's at 0.1."""
    subs = [load(p)[0] for p in submission_files(root)]
    out = []
    for sub in subs:
        v = 0.1 if sub.model.policy == "random" else value
        aggs = [
            a.model_copy(update={"success_mean": v, "success_ci_low": v - 0.01})
            for a in sub.aggregates
        ]
        out.append(sub.model_copy(update={"aggregates": aggs}))
    return out


def test_a_saturated_table_is_marked_in_readme_and_html(root):
    note = "Saturated at this preset (ci): the best entry other than the reference policies reaches"
    readme, page = render_markdown(_saturate(root, 0.98)), render_html(_saturate(root, 0.98))
    assert readme.count(f"**{note}") == 2  # both tables
    assert readme.split(f"### {DARK_TITLE}\n\n", 1)[1].startswith(f"**{note}")
    assert page.count(f'<p class="saturated">{note}') == 2
    assert page.count('data-saturated="true"') == 2
    assert "saturated at this preset" in page.split("<svg", 1)[1]  # the plot's panel titles
    readme, page = render_markdown(_saturate(root, 0.5)), render_html(_saturate(root, 0.5))
    assert "Saturated at this preset" not in readme and "data-saturated" not in page
    # the intro explains the mark whether or not a table has it
    assert "is marked saturated at this preset" in readme


def test_build_check_passes_then_fails_after_editing_a_submission(built, capsys):
    rc, out, _ = run_cli(capsys, "build", "--root", str(built), "--check")
    assert rc == 0 and "up to date (4 entries)" in out
    edit(entry_path(built, RANDOM), set_value("hardware", "a bigger machine"))
    rc, _, err = run_cli(capsys, "build", "--root", str(built), "--check")
    assert rc == 1
    assert err.strip().splitlines() == [
        f"{built / name}: stale; run trajbench leaderboard build"
        for name in ("README.md", "index.html")
    ]


def test_build_check_fails_when_a_submission_is_removed(built, capsys):
    entry_path(built, RANDOM).unlink()
    rc, _, err = run_cli(capsys, "build", "--root", str(built), "--check")
    assert rc == 1 and "README.md: stale" in err


def test_build_check_fails_on_hand_edits_and_missing_files(built, capsys):
    readme = built / "README.md"
    readme.write_text(readme.read_text().replace("| 1 |", "| 2 |", 1))
    (built / "schema.json").unlink()
    rc, _, err = run_cli(capsys, "build", "--root", str(built), "--check")
    assert rc == 1
    assert "README.md: stale" in err and "schema.json: stale" in err
    assert "index.html" not in err


def test_build_refuses_invalid_submissions_and_writes_nothing(root, capsys):
    edit(entry_path(root), bump_aggregate)
    rc, _, err = run_cli(capsys, "build", "--root", str(root))
    assert rc == 1 and "fix the submissions" in err
    assert not (root / "README.md").exists()


def test_build_is_deterministic(built, shared, capsys):
    rc, _, _ = run_cli(capsys, "build", "--root", str(built))
    assert rc == 0
    for name in ("README.md", "index.html", "schema.json"):
        assert (built / name).read_bytes() == (shared / "built" / name).read_bytes()
    page = (built / "index.html").read_text()
    svg_head = page.split("<svg", 1)[1].split("</metadata>", 1)[0]
    assert "<dc:date>" not in svg_head and "Matplotlib v" not in svg_head


def test_html_is_self_contained_and_lists_the_entries(built):
    page = (built / "index.html").read_text()
    for name in ORDER:
        assert f'data-entry="{name}"' in page
    for external in ("<script", "<link", "<img", 'src="', 'href="http', "url(http"):
        assert external not in page


def test_build_empty_leaderboard(tmp_path, capsys):
    rc, _, _ = run_cli(capsys, "build", "--root", str(tmp_path))
    assert rc == 0
    assert "No entries yet." in (tmp_path / "README.md").read_text()
    assert "No entries yet." in (tmp_path / "index.html").read_text()
    assert run_cli(capsys, "build", "--root", str(tmp_path), "--check")[0] == 0


def test_repository_leaderboard_is_up_to_date(capsys):
    rc, _, err = run_cli(capsys, "build", "--root", str(REPO / "leaderboard"), "--check")
    assert rc == 0, err


def test_suite_version_1_entries_are_listed_as_archived_with_their_statistic():
    subs, _ = validate_files(V1_FILES)
    readme = render_markdown(subs)
    ranked, archived = readme.split("\n## Archived (suite version 1)\n", 1)
    assert f"## Suite trajbench v{SUITE_VERSION}\n\nNo entries yet on this suite version." in ranked
    assert "Their success is the IQM over training seeds × levels" in archived
    assert "| Success IQM [95% CI] | Normalized | No-support success | Norm. return IQM" in archived
    assert "Matched-format" not in archived and "| 1 |" not in archived
    assert "<svg" not in render_html(subs)  # nothing ranked, nothing plotted


def test_build_gives_each_level_set_its_own_table(root, capsys):
    edit(entry_path(root, RANDOM), relabel_levels(DARK_ROOM))
    assert run_cli(capsys, "build", "--root", str(root))[0] == 0
    readme = (root / "README.md").read_text()
    titles = [line[4:] for line in readme.splitlines() if line.startswith(f"### {DARK_ROOM}")]
    assert len(titles) == 2 and all(", level set " in t for t in titles)
    assert board_order(readme, titles[0]) == ORDER[:3]
    assert board_order(readme, titles[1]) == [RANDOM]
    assert f"| 1 | {RANDOM} |" in readme
    assert f"### {KEY_DOOR} — held-out family (k = 4)\n" in readme


def test_build_lists_older_suite_versions_as_archived(root, capsys, monkeypatch):
    newer, older = add_suite_version(monkeypatch), SUITE_VERSION
    current = entry_path(root, "current")
    current.write_text(entry_path(root).read_text())
    edit(current, set_value("name", "current"))
    edit(current, set_value("suite_version", newer))
    assert run_cli(capsys, "build", "--root", str(root))[0] == 0
    readme = (root / "README.md").read_text()
    ranked, archived = readme.split(f"\n## Archived (suite version {older})\n", 1)
    assert f"## Suite trajbench v{newer}" in ranked and f"## Suite trajbench v{older}" not in readme
    assert f"which suite version {newer} replaces: they are listed, not ranked." in archived
    assert "Their success is" not in archived  # the same statistic as the ranked version's
    assert board_order(ranked, DARK_TITLE) == ["current"] and "| 1 | current |" in ranked
    assert board_order(archived, DARK_TITLE) == sorted(ORDER)
    assert "| 1 |" not in archived.split("## How each entry", 1)[0]
    page = (root / "index.html").read_text()
    assert f"<h2>Archived (suite version {older})</h2>" in page and 'class="board archived"' in page
    assert page.count("<svg") == 1  # the plot shows the ranked version only


# -- a real browser ---------------------------------------------------------------------------
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Appended to a copy of the page: the browser writes the laid-out size of every table and plot
#: into the DOM, which --dump-dom then shows (the page itself stays script-free).
MEASURE = """<script>
const box = (e) => { const r = e.getBoundingClientRect(); return [r.width, r.height]; };
document.body.dataset.layout = JSON.stringify({
  tables: [...document.querySelectorAll("table")].map((t) => [...box(t), t.rows.length]),
  plots: [...document.querySelectorAll("svg")].map((s) => [...box(s), s.querySelectorAll("path").length]),
});
</script>"""


class Page(HTMLParser):
    """The text of every table cell, row by row, and the layout the measuring script wrote."""

    def __init__(self, html: str):
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.layout: dict = {}
        self._cell: list[str] | None = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "body" and dict(attrs).get("data-layout"):
            self.layout = json.loads(dict(attrs)["data-layout"])

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def chromium(tmp_path: Path, *args: str) -> str:
    binary = shutil.which("chromium") or str(CHROMIUM)
    if not Path(binary).exists():
        pytest.fail(
            "no Chromium: apt-get install -y chromium (scripts/test.sh installs it as root)"
        )
    cmd = [binary, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90, check=True).stdout


def test_index_html_renders_in_headless_chromium(built, tmp_path):
    source = (built / "index.html").read_text()
    measured = tmp_path / "measured.html"
    measured.write_text(source.replace("</body>", MEASURE + "</body>"))
    dom = chromium(tmp_path, "--window-size=1280,2400", "--dump-dom", measured.as_uri())
    page, expected = Page(dom), Page(source)
    assert page.tables == expected.tables and len(page.tables) >= 3  # every table, every cell
    board = dom.split('<table class="board"', 1)[1].split("</table>", 1)[0]
    assert [part.split('"', 1)[0] for part in board.split('data-entry="')[1:]] == ORDER
    assert "<svg" in dom and "mean success with 95% CI" in dom
    assert len(page.layout["tables"]) == len(page.tables)
    for (width, height, rows), table in zip(page.layout["tables"], page.tables, strict=True):
        assert rows == len(table) and width > 300 and height > 15 * rows  # laid out, not hidden
    ((width, height, paths),) = page.layout["plots"]
    assert width > 300 and height > 150 and paths > 10

    shot = tmp_path / "leaderboard.png"
    chromium(tmp_path, "--window-size=1280,2400", f"--screenshot={shot}", measured.as_uri())
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape == (2400, 1280, 3)
    colours = np.unique(pixels.reshape(-1, 3), axis=0)
    assert len(colours) > 50 and pixels.std() > 20  # text, tables and the plot, not a blank page

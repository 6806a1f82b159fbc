"""Tests for trajbench.leaderboard.render, through ``trajbench leaderboard build``."""

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_leaderboard_fixtures import (
    DARK_ROOM,
    KEY_DOOR,
    REPO,
    add_suite_version,
    board_order,
    bump_aggregate,
    edit,
    entry_path,
    relabel_levels,
    run_cli,
    set_value,
)

from trajbench.leaderboard import schema_text

pytest_plugins = ["test_leaderboard_fixtures"]
CHROMIUM = Path("/usr/bin/chromium")


def test_build_ranks_the_entries(built):
    readme = (built / "README.md").read_text()
    expected = ["ci-transformer-bursty-full-p1", "ci-transformer-isolated-full-p0", "ci-random"]
    assert board_order(readme, f"{DARK_ROOM} — held-out levels (k = 4)") == expected
    assert f"### {KEY_DOOR} — held-out family (k = 4)" in readme
    assert "`trajbench run --preset ci --out runs/ci`" in readme
    assert "52,000" in readme and "2x CPU (test)" in readme and "2025-11-25" in readme
    bursty = json.loads(entry_path(built).read_text())
    top = next(
        a
        for a in bursty["aggregates"]
        if (a["family"], a["k"], a["support"]) == (DARK_ROOM, 4, "same")
    )
    ci = f"{top['success_iqm']:.3f} [{top['success_ci_low']:.3f}, {top['success_ci_high']:.3f}]"
    row = "| 1 | ci-transformer-bursty-full-p1 | transformer | bursty / full / p_bursty=1 | "
    assert row + ci + " |" in readme
    assert (built / "schema.json").read_text() == schema_text()


def test_build_check_passes_then_fails_after_editing_a_submission(built, capsys):
    rc, out, _ = run_cli(capsys, "build", "--root", str(built), "--check")
    assert rc == 0 and "up to date (3 entries)" in out
    edit(entry_path(built, "ci-random"), set_value("hardware", "a bigger machine"))
    rc, _, err = run_cli(capsys, "build", "--root", str(built), "--check")
    assert rc == 1
    assert err.strip().splitlines() == [
        f"{built / name}: stale; run trajbench leaderboard build"
        for name in ("README.md", "index.html")
    ]


def test_build_check_fails_when_a_submission_is_removed(built, capsys):
    entry_path(built, "ci-random").unlink()
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
    for name in ("ci-random", "ci-transformer-bursty-full-p1", "ci-transformer-isolated-full-p0"):
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


def test_build_gives_each_level_set_its_own_table(root, capsys):
    edit(entry_path(root, "ci-random"), relabel_levels(DARK_ROOM))
    assert run_cli(capsys, "build", "--root", str(root))[0] == 0
    readme = (root / "README.md").read_text()
    titles = [line[4:] for line in readme.splitlines() if line.startswith(f"### {DARK_ROOM}")]
    assert len(titles) == 2 and all(", level set " in t for t in titles)
    assert board_order(readme, titles[0]) == [
        "ci-transformer-bursty-full-p1",
        "ci-transformer-isolated-full-p0",
    ]
    assert board_order(readme, titles[1]) == ["ci-random"]
    assert "| 1 | ci-random |" in readme
    assert f"### {KEY_DOOR} — held-out family (k = 4)\n" in readme


def test_build_lists_older_suite_versions_as_archived(root, capsys, monkeypatch):
    add_suite_version(monkeypatch, "2")
    current = entry_path(root, "current")
    current.write_text(entry_path(root).read_text())
    edit(current, set_value("name", "current"))
    edit(current, set_value("suite_version", "2"))
    assert run_cli(capsys, "build", "--root", str(root))[0] == 0
    readme = (root / "README.md").read_text()
    ranked, archived = readme.split("\n## Archived (suite version 1)\n", 1)
    assert "## Suite trajbench v2" in ranked and "## Suite trajbench v1" not in readme
    assert "which suite version 2 replaces: they are listed, not ranked." in archived
    title = f"{DARK_ROOM} — held-out levels (k = 4)"
    assert board_order(ranked, title) == ["current"] and "| 1 | current |" in ranked
    assert board_order(archived, title) == [
        "ci-random",
        "ci-transformer-bursty-full-p1",
        "ci-transformer-isolated-full-p0",
    ]
    assert "| 1 |" not in archived.split("## How each entry", 1)[0]
    page = (root / "index.html").read_text()
    assert "<h2>Archived (suite version 1)</h2>" in page and 'class="board archived"' in page
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
        pytest.fail("no Chromium: apt-get install -y chromium (.ci/run installs it as root)")
    cmd = [binary, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90, check=True).stdout


def test_index_html_renders_in_headless_chromium(built, tmp_path):
    source = (built / "index.html").read_text()
    measured = tmp_path / "measured.html"
    measured.write_text(source.replace("</body>", MEASURE + "</body>"))
    page = Page(chromium(tmp_path, "--window-size=1280,2400", "--dump-dom", measured.as_uri()))
    expected = Page(source)
    assert page.tables == expected.tables and len(page.tables) >= 3  # every table, every cell
    names = ["ci-transformer-bursty-full-p1", "ci-transformer-isolated-full-p0", "ci-random"]
    boards = [t for t in page.tables if t[0][:2] == ["#", "Entry"]]
    assert len(boards) == 2 and [row[1] for row in boards[0][1:]] == names
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

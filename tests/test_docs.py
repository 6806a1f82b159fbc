"""The README is a short front door, and every file the README and ``docs/*.md`` name exists.

What is checked, in ``README.md`` and every ``docs/*.md``:

- **Markdown links** ``[text](target)``: a target with a scheme (``https:``, ``mailto:``) is left
  alone; any other target is a path relative to the page's folder, which must exist inside the
  repository (a link that leaves it, such as ``../shared``, is an error), and its ``#anchor``, if
  any, must be a heading of the Markdown page it points to (GitHub's heading slugs).
- **Repository paths written in the text**, in inline code and in code blocks: a token that starts
  at one of the repository's tracked top-level folders (:data:`REPO_DIRS`, e.g.
  ``trajbench/suite.py``, ``benchmarks/gpu_check.sh``, ``docs/``) is a path from the repository
  root and must exist; one with ``*`` must match at least one file. A token ending in ``-v<N>``
  (an environment or Minari dataset id such as ``trajbench/DarkRoom-v0``) is a name, not a path.

A run's outputs (``runs/smoke/report.md``, ``data/dr-test``, ``OUT/...``) start at no tracked
folder, so they are not checked: they exist only after the command that writes them.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 350
#: The repository's tracked top-level folders: a token starting at one of them names a repo path.
REPO_DIRS = (
    "trajbench",
    "envs",
    "baselines",
    "tests",
    "benchmarks",
    "docs",
    "leaderboard",
    "examples",
    ".ci",
)

FENCE = re.compile(r"^[ \t]*(```|~~~).*?^[ \t]*\1[^\n]*$", re.M | re.S)
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
INLINE_CODE = re.compile(r"`([^`\n]+)`")
REPO_PATH = re.compile(
    r"(?<![\w./$-])((?:" + "|".join(re.escape(d) for d in REPO_DIRS) + r")/[\w./*-]*)"
)
ENV_ID = re.compile(r"-v\d+$")
SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)


def heading_anchors(text: str) -> set[str]:
    """The anchors GitHub gives a Markdown page's headings (``## A: b`` -> ``a-b``).

    Lower case, punctuation other than ``-`` and ``_`` dropped, spaces to ``-``; a repeated
    heading gets ``-1``, ``-2``, ... Headings inside code blocks are not headings.
    """
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    for line in FENCE.sub("", text).splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(1).lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        anchors.add(slug if n == 0 else f"{slug}-{n}")
    return anchors


def _inside(path: Path, root: Path) -> bool:
    return path.resolve().is_relative_to(root.resolve())


def broken_references(text: str, page: Path, root: Path = ROOT) -> list[str]:
    """Every link or repository path in a Markdown page that does not resolve, one line each.

    Args:
        text: the page's Markdown.
        page: where the page lives (relative links resolve from its folder; it need not exist).
        root: the repository root (repository paths in the text resolve from it).

    Returns:
        One message per broken reference, empty when all resolve.
    """
    problems: list[str] = []
    prose = FENCE.sub("", text)
    for target in LINK.findall(prose):
        if SCHEME.match(target):
            continue
        path_part, _, anchor = target.partition("#")
        if not path_part:
            if anchor not in heading_anchors(text):
                problems.append(f"link {target!r}: no heading #{anchor} on this page")
            continue
        dest = page.parent / path_part
        if not _inside(dest, root):
            problems.append(f"link {target!r} leaves the repository")
            continue
        if not dest.exists():
            problems.append(f"link {target!r}: no such file {dest.relative_to(root)}")
            continue
        if anchor and dest.suffix == ".md" and anchor not in heading_anchors(dest.read_text()):
            problems.append(f"link {target!r}: no heading #{anchor} in {dest.name}")
    code = INLINE_CODE.findall(prose) + [m.group(0) for m in FENCE.finditer(text)]
    for span in code:
        for token in REPO_PATH.findall(span):
            token = token.rstrip(".")
            if ENV_ID.search(token):
                continue
            if not _inside(root / token, root):
                problems.append(f"path {token!r} leaves the repository")
            elif "*" in token:
                if not any(root.glob(token)):
                    problems.append(f"path {token!r} matches no file")
            elif not (root / token).exists():
                problems.append(f"path {token!r} does not exist")
    return problems


def _in_folder(span: str, folder: str) -> bool:
    """Whether inline code names ``folder/`` itself or a file directly in it."""
    if span.endswith("/"):
        return span.rstrip("/") == folder
    return "/" in span and span.rsplit("/", 1)[0] == folder


def unlisted_modules(text: str, modules: list[str]) -> list[str]:
    """The modules a page does not name, in the order given.

    A module ``pkg/sub/mod.py`` is named by inline code that is its path (``pkg/sub/mod.py``) or a
    pattern matching it (``envs/dark_*.py``), or by ``mod.py`` in inline code on a line that also
    names a path in its folder (``pkg/sub/`` or ``pkg/sub/other.py``), as a table row does.
    """
    missing = []
    lines = FENCE.sub("", text).splitlines()
    spans_by_line = [INLINE_CODE.findall(line) for line in lines]
    spans = {s for line in spans_by_line for s in line}
    for module in modules:
        folder, name = module.rsplit("/", 1)
        if any(s == module or ("*" in s and fnmatch.fnmatch(module, s)) for s in spans):
            continue
        if any(name in line and any(_in_folder(s, folder) for s in line) for line in spans_by_line):
            continue
        missing.append(module)
    return missing


def package_modules(root: Path = ROOT) -> list[str]:
    """Every module of the installed packages (``__init__.py`` aside), as a path from the root."""
    found = [
        p.relative_to(root).as_posix()
        for d in ("trajbench", "envs", "baselines")
        for p in (root / d).rglob("*.py")
        if p.name != "__init__.py"
    ]
    return sorted(found)


def pages() -> list[Path]:
    """README.md and every page of docs/."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_readme_is_a_short_front_door():
    n = len((ROOT / "README.md").read_text().splitlines())
    assert n <= README_MAX_LINES, f"README.md has {n} lines (at most {README_MAX_LINES})"


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_and_path_exists(page: Path):
    assert broken_references(page.read_text(), page) == []


def test_architecture_page_names_every_module():
    missing = unlisted_modules((ROOT / "docs" / "architecture.md").read_text(), package_modules())
    assert missing == [], f"docs/architecture.md, 'Where things live', does not name {missing}"


def test_the_module_check_finds_unnamed_modules():
    text = "\n".join(
        [
            "| `envs/dark_*.py` | the dark families |",
            "| `trajbench/data/` | `format.py`, `writer.py` |",
            "| `trajbench/io.py`, `errors.py` | io |",
            "`reader.py` on a line that names no folder",
            "```",
            "trajbench/suite.py in a code block",
            "```",
        ]
    )
    modules = [
        "envs/dark_room.py",
        "envs/minigrid_bot.py",
        "trajbench/data/format.py",
        "trajbench/data/reader.py",
        "trajbench/errors.py",
        "trajbench/format.py",
        "trajbench/suite.py",
        "trajbench/report/tables.py",
    ]
    assert unlisted_modules(text, modules) == [
        "envs/minigrid_bot.py",
        "trajbench/data/reader.py",
        "trajbench/format.py",
        "trajbench/suite.py",
        "trajbench/report/tables.py",
    ]


def test_the_check_finds_broken_references(tmp_path: Path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "trajbench").mkdir()
    (tmp_path / "trajbench" / "suite.py").write_text("")
    (tmp_path / "docs" / "other.md").write_text("# Other page\n\n## The part\n")
    page = tmp_path / "docs" / "page.md"
    text = "\n".join(
        [
            "# Page",
            "[ok](other.md#the-part) [here](#page) [web](https://example.org/x.md) [no](#nowhere)",
            "[missing](gone.md) [bad anchor](other.md#no-such-part) [out](../../shared)",
            "`trajbench/suite.py` `trajbench/report.py` `trajbench/DarkRoom-v0` `runs/x/report.md`",
            "`envs/*.py`",
            "```bash",
            "python benchmarks/missing.py --out runs/smoke  # trajbench/GoToLocal-v1",
            "```",
        ]
    )
    assert broken_references(text, page, tmp_path) == [
        "link '#nowhere': no heading #nowhere on this page",
        "link 'gone.md': no such file docs/gone.md",
        "link 'other.md#no-such-part': no heading #no-such-part in other.md",
        "link '../../shared' leaves the repository",
        "path 'trajbench/report.py' does not exist",
        "path 'envs/*.py' matches no file",
        "path 'benchmarks/missing.py' does not exist",
    ]
    good = "\n".join(text.splitlines()[:2]).replace(" [no](#nowhere)", "")
    good += "\n`trajbench/suite.py` `trajbench/` `trajbench/DarkRoom-v0` `runs/x/report.md`"
    assert broken_references(good, page, tmp_path) == []


def test_heading_anchors_follow_github():
    text = "# trajbench\n## Results: the smoke preset on a 2-core CPU\n## `results.json`\n"
    text += "## Performance (benchmarks)\n## Performance (benchmarks)\n```\n# not a heading\n```\n"
    assert heading_anchors(text) == {
        "trajbench",
        "results-the-smoke-preset-on-a-2-core-cpu",
        "resultsjson",
        "performance-benchmarks",
        "performance-benchmarks-1",
    }

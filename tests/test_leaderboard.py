"""Tests for trajbench.leaderboard: submit, validate and build, through ``trajbench.cli.main``."""

import doctest
import json
import shutil
import subprocess
from pathlib import Path

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest

import trajbench
from trajbench import leaderboard, suite
from trajbench.cli import main
from trajbench.metrics import aggregate

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
DARK_ROOM, KEY_DOOR = "trajbench/DarkRoom-v0", "trajbench/DarkKeyToDoor-v0"
#: (policy, train_context, instruction, p_bursty, params, success probability at the largest k)
CONDITIONS = [
    ("transformer", "bursty", "full", 1.0, 52_000, 0.9),
    ("transformer", "isolated", "full", 0.0, 52_000, 0.4),
    ("random", "-", "-", None, 0, 0.1),
]
KS = (0, 1, 4)


def make_run(path: Path, seeds=(0, 1, 2), levels=(3, 7, 11, 19), episodes=2) -> Path:
    """A small synthetic run directory: records.parquet and a results.json made with aggregate."""
    rng = np.random.default_rng(0)
    rows = []
    for policy, context, instruction, p_bursty, params, p_top in CONDITIONS:
        for family, split in [(DARK_ROOM, "test_levels"), (KEY_DOOR, "test_families")]:
            for k in KS:
                for support in ("same", "other"):
                    if k == 0 and support == "other":
                        continue
                    p = p_top * (k + 1) / (max(KS) + 1) if support == "same" else 0.1
                    for seed in seeds:
                        for level in levels:
                            for episode in range(episodes):
                                success = bool(rng.random() < p)
                                ret = float(success) * rng.uniform(0.5, 1.0)
                                rows.append(
                                    {
                                        "policy": policy,
                                        "train_context": context,
                                        "instruction": instruction,
                                        "p_bursty": np.nan if p_bursty is None else p_bursty,
                                        "family": family,
                                        "eval_split": split,
                                        "k": k,
                                        "support": support,
                                        "seed": seed,
                                        "level": level,
                                        "episode": episode,
                                        "return": ret,
                                        "success": success,
                                        "length": 10,
                                        "normalized_return": ret,
                                        "model_params": params,
                                    }
                                )
    records = pd.DataFrame(rows)
    groups = ["policy", "train_context", "instruction", "family", "eval_split", "k", "support"]
    agg = aggregate(records, ["success", "normalized_return"], groups)
    p_of = {c[0] + c[1]: c[3] for c in CONDITIONS}
    conditions = [
        {
            **{g: row[g] for g in groups},
            "k": int(row["k"]),
            "p_bursty": p_of[row["policy"] + row["train_context"]],
            "success_iqm": row["success_iqm"],
            "success_ci_low": row["success_ci_low"],
            "success_ci_high": row["success_ci_high"],
            "return_iqm": row["normalized_return_iqm"],
            "return_ci_low": row["normalized_return_ci_low"],
            "return_ci_high": row["normalized_return_ci_high"],
            "n_seeds": int(row["n_seeds"]),
            "n_levels": int(row["n_levels"]),
            "model_params": 0,
        }
        for row in agg.to_dict("records")
    ]
    results = {
        "trajbench_version": trajbench.__version__,
        "git_commit": "0123456789abcdef",
        "preset": "ci",
        "suite": suite.SUITE,
        "suite_version": suite.SUITE_VERSION,
        "hardware": "2x CPU (test)",
        "wall_time_s": 12.5,
        "date": "2025-11-25T17:00:00+00:00",
        "seeds": list(seeds),
        "config": {"preset": "ci", "ks": list(KS)},
        "command": "trajbench run --preset ci --out runs/ci",
        "conditions": conditions,
    }
    path.mkdir(parents=True)
    records.to_parquet(path / "records.parquet", index=False)
    (path / "results.json").write_text(json.dumps(results, indent=2))
    return path


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> Path:
    """Made once per module, then copied: the run, its submissions, and a built leaderboard."""
    tmp = tmp_path_factory.mktemp("shared")
    run = make_run(tmp / "run")
    out = tmp / "submitted" / "submissions"
    assert main(["leaderboard", "submit", str(run), "--name", "ci", "--out", str(out)]) == 0
    shutil.copytree(tmp / "submitted", tmp / "built")
    assert main(["leaderboard", "build", "--root", str(tmp / "built")]) == 0
    return tmp


@pytest.fixture
def run(shared, tmp_path) -> Path:
    """A synthetic run directory (a fresh copy per test)."""
    return Path(shutil.copytree(shared / "run", tmp_path / "run"))


@pytest.fixture
def root(shared, tmp_path) -> Path:
    """A leaderboard directory holding the run's three submissions."""
    return Path(shutil.copytree(shared / "submitted", tmp_path / "leaderboard"))


@pytest.fixture
def built(shared, tmp_path) -> Path:
    """``root`` after ``trajbench leaderboard build``."""
    return Path(shutil.copytree(shared / "built", tmp_path / "leaderboard"))


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    rc = main(["leaderboard", *args])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return rc, out, err


def entry_path(root: Path, name: str = "ci-transformer-bursty-full-p1") -> Path:
    return root / "submissions" / f"{name}.json"


def test_docstring_examples_run():
    for module in (leaderboard, suite):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0


def test_suite_version_names_registered_families_and_current_split():
    spec = suite.SUITE_VERSIONS[suite.SUITE_VERSION]
    assert spec["split_version"] == trajbench.envs.SPLIT_VERSION
    assert [f for f in spec["families"] if f not in gym.registry] == []


def test_schema_file_is_up_to_date():
    assert (REPO / "leaderboard" / "schema.json").read_text() == leaderboard.schema_text()


def test_json_schema_agrees_with_the_models(root):
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(json.loads(leaderboard.schema_text()))
    sub = json.loads(entry_path(root).read_text())
    validator.validate(sub)
    for change in (_drop_field, _set("suite_version", "7"), _set("bootstrap", "confidence", 0.5)):
        bad = json.loads(json.dumps(sub))
        change(bad)
        assert not validator.is_valid(bad)


# -- submit -----------------------------------------------------------------------------------
def test_submit_writes_one_entry_per_condition(root):
    names = sorted(p.stem for p in (root / "submissions").glob("*.json"))
    assert names == [
        "ci-random",
        "ci-transformer-bursty-full-p1",
        "ci-transformer-isolated-full-p0",
    ]
    sub = json.loads(entry_path(root).read_text())
    assert sub["model"] == {"name": "transformer", "policy": "transformer", "parameters": 52_000}
    assert sub["training"] == {"train_context": "bursty", "instruction": "full", "p_bursty": 1.0}
    assert sub["seeds"] == [0, 1, 2]
    assert sub["command"] == "trajbench run --preset ci --out runs/ci"
    assert sub["bootstrap"] == {"reps": 2000, "confidence": 0.95, "seed": 0}
    # 2 families x 5 (k, support) x 3 seeds x 4 levels cells of 2 episodes each
    assert len(sub["records"]) == 120 and {r["n_episodes"] for r in sub["records"]} == {2}
    # one line per record and per aggregate keeps the files small and their diffs readable
    assert len(entry_path(root).read_text().splitlines()) < len(sub["records"]) + 60
    random = json.loads(entry_path(root, "ci-random").read_text())
    assert random["training"]["p_bursty"] is None and random["model"]["parameters"] == 0


def test_submitted_aggregates_equal_aggregate_over_raw_episodes(root, run):
    expected = {
        (c["family"], c["eval_split"], c["k"], c["support"]): c
        for c in json.loads((run / "results.json").read_text())["conditions"]
        if c["train_context"] == "bursty"
    }
    aggs = json.loads(entry_path(root).read_text())["aggregates"]
    assert len(aggs) == len(expected) == 10
    for a in aggs:
        want = expected[(a["family"], a["eval_split"], a["k"], a["support"])]
        for ours, theirs in [("success", "success"), ("normalized_return", "return")]:
            for stat in ("iqm", "ci_low", "ci_high"):
                assert a[f"{ours}_{stat}"] == pytest.approx(want[f"{theirs}_{stat}"], abs=1e-12)
        assert (a["n_seeds"], a["n_levels"], a["n_episodes"]) == (3, 4, 24)


def test_submit_single_condition_uses_the_name(run, tmp_path, capsys):
    records = pd.read_parquet(run / "records.parquet")
    records[records.policy == "random"].to_parquet(run / "records.parquet")
    out = tmp_path / "subs"
    rc, stdout, _ = run_cli(capsys, "submit", str(run), "--name", "solo", "--out", str(out))
    assert rc == 0 and [p.name for p in out.iterdir()] == ["solo.json"]
    assert "wrote" in stdout


def test_submit_refuses_an_existing_name(root, run, capsys):
    out = root / "submissions"
    before = {p: p.read_bytes() for p in out.iterdir()}
    rc, _, err = run_cli(capsys, "submit", str(run), "--name", "ci", "--out", str(out))
    assert rc == 2 and "already exists" in err
    assert {p: p.read_bytes() for p in out.iterdir()} == before


def test_submit_records_the_command(run, tmp_path, capsys):
    results = json.loads((run / "results.json").read_text())
    del results["command"], results["preset"]
    (run / "results.json").write_text(json.dumps(results))
    out = str(tmp_path / "subs")
    rc, _, err = run_cli(capsys, "submit", str(run), "--name", "x", "--out", out)
    assert rc == 2 and "no command or preset: pass --command" in err
    cmd = "trajbench run --preset smoke --seeds 0 1 2 --out runs/s"
    rc, _, _ = run_cli(capsys, "submit", str(run), "--name", "x", "--out", out, "--command", cmd)
    assert rc == 0
    assert json.loads((tmp_path / "subs" / "x-random.json").read_text())["command"] == cmd


def test_usage_errors_return_an_exit_status(capsys):
    assert run_cli(capsys, "--help")[0] == 0
    rc, _, err = run_cli(capsys)
    assert rc == 2 and "usage: trajbench leaderboard" in err
    assert run_cli(capsys, "submit", "somewhere")[0] == 2  # --name is required


def test_submit_bad_run_directory_is_one_line(tmp_path, capsys):
    rc, _, err = run_cli(capsys, "submit", str(tmp_path / "nope"), "--name", "x")
    assert rc == 2 and "not found" in err and len(err.strip().splitlines()) == 1


def test_submit_refuses_results_that_disagree_with_records(run, tmp_path, capsys):
    results = json.loads((run / "results.json").read_text())
    results["conditions"][0]["success_iqm"] += 0.05
    (run / "results.json").write_text(json.dumps(results))
    out = tmp_path / "subs"
    rc, _, err = run_cli(capsys, "submit", str(run), "--name", "x", "--out", str(out))
    assert rc == 2 and "disagrees with records.parquet" in err
    assert not out.exists()


def test_submit_refuses_nan_records(run, tmp_path, capsys):
    records = pd.read_parquet(run / "records.parquet")
    records.loc[7, "normalized_return"] = np.nan
    records.to_parquet(run / "records.parquet")
    rc, _, err = run_cli(capsys, "submit", str(run), "--name", "x", "--out", str(tmp_path / "s"))
    assert rc == 2 and "missing or NaN values in ['normalized_return']" in err


def test_submit_refuses_unknown_suite_version(run, tmp_path, capsys):
    results = json.loads((run / "results.json").read_text())
    results["suite_version"] = "99"
    (run / "results.json").write_text(json.dumps(results))
    rc, _, err = run_cli(capsys, "submit", str(run), "--name", "x", "--out", str(tmp_path / "s"))
    assert rc == 2 and "unknown suite version '99'" in err


# -- validate ---------------------------------------------------------------------------------
def test_validate_accepts_the_submissions(root, capsys):
    rc, out, err = run_cli(capsys, "validate", "--root", str(root))
    assert rc == 0 and err == ""
    assert out.count("ok: ") == 3


def test_validate_empty_leaderboard_passes(tmp_path, capsys):
    rc, out, _ = run_cli(capsys, "validate", "--root", str(tmp_path))
    assert rc == 0 and "no submissions" in out


def _edit(path: Path, change) -> None:
    sub = json.loads(path.read_text())
    change(sub)
    path.write_text(json.dumps(sub, indent=2))


def _set(*keys_and_value):
    *keys, value = keys_and_value

    def change(sub):
        for k in keys[:-1]:
            sub = sub[k]
        sub[keys[-1]] = value

    return change


def _bump_aggregate(sub):
    sub["aggregates"][3]["success_iqm"] += 0.01


def _bump_record(sub):
    rec = sub["records"][-1]
    rec["success"] = 1.0 - rec["success"]


def _drop_field(sub):
    del sub["model"]["parameters"]


def _drop_record(sub):
    sub["records"].pop(5)


def _foreign_family(sub):
    for rec in sub["records"]:
        if rec["family"] == KEY_DOOR:
            rec["family"] = "trajbench/NotAFamily-v0"


CASES = {
    "tampered aggregate": (
        _bump_aggregate,
        f"aggregates[3] (family={KEY_DOOR}, eval_split=test_families, k=4, support=other): "
        "success_iqm is 0.01 but the records give 0.0",
    ),
    "tampered record": (_bump_record, "but the records give"),
    "unknown suite version": (
        _set("suite_version", "7"),
        "suite_version: unknown suite version '7'",
    ),
    "unknown suite": (_set("suite", "other"), "suite: unknown suite 'other'"),
    "missing field": (_drop_field, "missing field 'model.parameters'"),
    "unknown field": (_set("extra", 1), "unknown field 'extra'"),
    "NaN string": (_set("aggregates", 0, "success_iqm", "NaN"), "NaN or infinite value 'NaN'"),
    "string number": (_set("wall_time_s", "12.5"), "wall_time_s: Input should be a valid number"),
    "incomplete grid": (_drop_record, "incomplete (seed, level) grid"),
    "foreign family": (_foreign_family, "family 'trajbench/NotAFamily-v0' is not in suite"),
    "seeds mismatch": (_set("seeds", [0, 1]), "do not match the seeds of the records"),
    "bad date": (_set("date", "yesterday"), "not an ISO 8601 date"),
    "narrow bootstrap": (_set("bootstrap", "reps", 10), "bootstrap.reps"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_validate_rejects(root, capsys, case):
    change, message = CASES[case]
    path = entry_path(root)
    _edit(path, change)
    rc, _, err = run_cli(capsys, "validate", str(path))
    assert rc == 1, err
    lines = err.strip().splitlines()
    assert all(line.startswith(f"{path}: ") for line in lines), err
    assert any(message in line for line in lines), err


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"name": NaN}', "invalid JSON: NaN is not allowed"),
        ('{"wall_time_s": Infinity}', "invalid JSON: Infinity is not allowed"),
        ('{"name": "x",', "invalid JSON: Expecting property name"),
        ("[1, 2]", "Input should be a valid dictionary"),
    ],
)
def test_validate_rejects_bad_json(tmp_path, capsys, text, message):
    path = tmp_path / "x.json"
    path.write_text(text)
    rc, _, err = run_cli(capsys, "validate", str(path))
    assert rc == 1 and err.strip().splitlines() == [f"{path}: {err.strip().split(': ', 1)[1]}"]
    assert message in err


def test_nan_written_by_python_json_is_rejected(root, capsys):
    path = entry_path(root)
    _edit(path, _set("aggregates", 0, "normalized_return_iqm", float("nan")))
    rc, _, err = run_cli(capsys, "validate", str(path))
    assert rc == 1 and "NaN is not allowed" in err


def test_validate_rejects_duplicate_name(root, tmp_path, capsys):
    copy = tmp_path / "elsewhere" / entry_path(root).name
    copy.parent.mkdir()
    shutil.copy(entry_path(root), copy)
    rc, _, err = run_cli(capsys, "validate", str(entry_path(root)), str(copy))
    assert rc == 1
    assert err.strip() == (
        f"{copy}: duplicate name 'ci-transformer-bursty-full-p1' (also in {entry_path(root)})"
    )


def test_validate_rejects_a_copied_file_that_keeps_its_name(root, capsys):
    mine = root / "submissions" / "mine.json"
    shutil.copy(entry_path(root), mine)
    rc, _, err = run_cli(capsys, "validate", str(entry_path(root)), str(mine))
    assert rc == 1 and f"{mine}: duplicate name 'ci-transformer-bursty-full-p1'" in err
    _edit(mine, _set("name", "mine2"))
    rc, _, err = run_cli(capsys, "validate", str(mine))
    assert rc == 1 and err.strip() == f"{mine}: name 'mine2' does not match the file name"


def test_validate_reports_every_bad_file(root, capsys):
    _edit(entry_path(root), _bump_aggregate)
    _edit(entry_path(root, "ci-random"), _drop_field)
    rc, out, err = run_cli(capsys, "validate", "--root", str(root))
    assert rc == 1 and len(err.strip().splitlines()) == 2
    assert "ok: ci-transformer-isolated-full-p0" in out


# -- build ------------------------------------------------------------------------------------
def board_order(readme: str, title: str) -> list[str]:
    """Entry names of the table under heading ``title``, in row order."""
    block = readme.split(f"### {title}\n", 1)[1].strip().split("\n\n", 1)[0]
    return [line.split(" | ")[1] for line in block.splitlines()[2:]]


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
    assert (built / "schema.json").read_text() == leaderboard.schema_text()


def test_build_check_passes_then_fails_after_editing_a_submission(built, capsys):
    rc, out, _ = run_cli(capsys, "build", "--root", str(built), "--check")
    assert rc == 0 and "up to date (3 entries)" in out
    _edit(entry_path(built, "ci-random"), _set("hardware", "a bigger machine"))
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
    _edit(entry_path(root), _bump_aggregate)
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


def test_ranking_uses_the_largest_k_every_entry_shares(root):
    subs = [leaderboard.load(p)[0] for p in sorted((root / "submissions").glob("*.json"))]
    # drop k = 4 from the random entry: the table falls back to k = 1 for everyone
    random = subs[0]
    assert random.name == "ci-random"
    kept = [a for a in random.aggregates if a.k != 4]
    subs[0] = random.model_copy(update={"aggregates": kept})
    first = leaderboard.tables(subs)[0]
    assert (first.family, first.eval_split, first.k) == (DARK_ROOM, "test_levels", 1)
    assert {r.same.k for r in first.rows} == {1}
    # at k = 1 isolated and random tie on IQM and CI: they share a rank
    assert [r.rank for r in first.rows] == [1, 2, 2]
    tied = [(r.same.success_iqm, r.same.success_ci_low) for r in first.rows[1:]]
    assert tied[0] == tied[1]
    assert first.rows[0].same.success_iqm > tied[0][0]


# -- a real browser ---------------------------------------------------------------------------
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")
def test_index_html_renders_in_headless_chromium(built, tmp_path):
    cmd = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--dump-dom",
        (built / "index.html").resolve().as_uri(),
    ]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=90, check=True).stdout
    board = dom.split('<table class="board"', 1)[1].split("</table>", 1)[0]
    rows = [part.split('"', 1)[0] for part in board.split('data-entry="')[1:]]
    assert rows == ["ci-transformer-bursty-full-p1", "ci-transformer-isolated-full-p0", "ci-random"]
    assert "<svg" in dom and "success IQM with 95% CI" in dom

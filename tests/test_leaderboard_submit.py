"""Tests for trajbench.leaderboard.submit: a run directory becomes one entry per condition."""

import json

import numpy as np
import pandas as pd
import pytest
from test_leaderboard_fixtures import DARK_ROOM, entry_path, held_out, run_cli

pytest_plugins = ["test_leaderboard_fixtures"]


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


def test_submit_refuses_levels_outside_the_test_split(run, tmp_path, capsys):
    records = pd.read_parquet(run / "records.parquet")
    first = held_out(DARK_ROOM)[0]
    train_level = next(lv for lv in range(first + 100) if lv not in held_out(DARK_ROOM))
    records.loc[(records.family == DARK_ROOM) & (records.level == first), "level"] = train_level
    records.to_parquet(run / "records.parquet")
    out = tmp_path / "subs"
    rc, _, err = run_cli(capsys, "submit", str(run), "--name", "x", "--out", str(out))
    assert rc == 2 and f"1 level(s) of {DARK_ROOM} (test_levels) are not in its test split" in err
    assert f": {train_level}" in err and not out.exists()

"""Tests for trajbench.leaderboard.submit: a run directory becomes one entry per condition."""

import json

import numpy as np
import pandas as pd
import pytest
from leaderboard_support import (
    BURSTY,
    DARK_ROOM,
    HASHMAP,
    ISOLATED,
    KEY_DOOR,
    RANDOM,
    entry_path,
    held_out,
    run_cli,
)

pytest_plugins = ["leaderboard_support"]


def test_submit_writes_one_entry_per_condition(root):
    names = sorted(p.stem for p in (root / "submissions").glob("*.json"))
    assert names == [HASHMAP, RANDOM, BURSTY, ISOLATED]
    sub = json.loads(entry_path(root).read_text())
    assert sub["schema_version"] == 2
    assert sub["model"] == {"name": "transformer", "policy": "transformer", "parameters": 52_000}
    assert sub["training"] == {"train_context": "bursty", "instruction": "full", "p_bursty": 1.0}
    assert sub["seeds"] == [0, 1, 2]
    assert sub["command"] == "trajbench run --preset ci --out runs/ci"
    assert sub["bootstrap"] == {
        "method": "mean, seeds and levels",
        "reps": 2000,
        "confidence": 0.95,
        "seed": 0,
    }
    # Dark Room: 5 (k, support) with the training mission and 5 with a decoy; Key-to-Door: 5;
    # each 3 seeds x 4 levels cells of 4 episodes
    assert len(sub["records"]) == 15 * 12 and {r["n_episodes"] for r in sub["records"]} == {4}
    assert {r["eval_seed"] - r["seed"] for r in sub["records"]} == {1000}
    # one line per record and per aggregate keeps the files small and their diffs readable
    assert len(entry_path(root).read_text().splitlines()) < len(sub["records"]) + 70
    random = json.loads(entry_path(root, RANDOM).read_text())
    assert random["training"]["p_bursty"] is None and random["model"]["parameters"] == 0


def _conditions(run, **where) -> dict:
    """results.json's conditions (the report's numbers), by aggregate key."""
    keys = ("family", "eval_split", "k", "support", "format", "eval_instruction")
    return {
        tuple(c[k] for k in keys): c
        for c in json.loads((run / "results.json").read_text())["conditions"]
        if all(c[k] == v for k, v in where.items())
    }


@pytest.mark.parametrize("name, context", [(BURSTY, "bursty"), (ISOLATED, "isolated")])
def test_submitted_aggregates_equal_the_report_over_raw_episodes(root, run, name, context):
    expected = _conditions(run, train_context=context)
    aggs = json.loads(entry_path(root, name).read_text())["aggregates"]
    assert len(aggs) == len(expected) == (15 if context == "bursty" else 23)
    for a in aggs:
        want = expected[
            tuple(
                a[k] for k in ("family", "eval_split", "k", "support", "format", "eval_instruction")
            )
        ]
        pairs = [(f"success_{s}", f"success_{s}") for s in ("mean", "ci_low", "ci_high")]
        pairs += [(f"normalized_return_{s}", f"return_{s}") for s in ("iqm", "ci_low", "ci_high")]
        if a["eval_instruction"] == "decoy":
            pairs += [(f"decoy_success_{s}",) * 2 for s in ("mean", "ci_low", "ci_high")]
        for ours, theirs in pairs:
            assert a[ours] == pytest.approx(want[theirs], abs=1e-12), ours
        assert (a["n_seeds"], a["n_levels"], a["n_episodes"]) == (3, 4, 48)


def test_matched_format_aggregates_are_present_and_named(root):
    isolated = json.loads(entry_path(root, ISOLATED).read_text())
    matched = [a for a in isolated["aggregates"] if a["format"] == "matched"]
    # every k > 0 and support, both families, with the training mission
    assert len(matched) == 8 and {a["eval_instruction"] for a in matched} == {"full"}
    assert {a["k"] for a in matched} == {1, 4} and {a["family"] for a in matched} == {
        DARK_ROOM,
        KEY_DOOR,
    }
    for name in (BURSTY, HASHMAP, RANDOM):
        sub = json.loads(entry_path(root, name).read_text())
        assert {a["format"] for a in sub["aggregates"]} == {"common"}


def test_decoy_evaluations_are_aggregates_of_their_own(root):
    for name, shown in [(BURSTY, "full"), (HASHMAP, "-")]:
        sub = json.loads(entry_path(root, name).read_text())
        decoy = [a for a in sub["aggregates"] if a["eval_instruction"] == "decoy"]
        right = [a for a in sub["aggregates"] if a["eval_instruction"] == shown]
        assert len(decoy) == 5 and {a["family"] for a in decoy} == {DARK_ROOM}
        assert len(right) == 10
        for a in decoy:
            assert (
                a["decoy_success_ci_low"] <= a["decoy_success_mean"] <= a["decoy_success_ci_high"]
            )
        assert all("decoy_success_mean" not in a for a in right)
        decoys = [r for r in sub["records"] if "decoy_success" in r]
        assert decoys and {r["eval_instruction"] for r in decoys} == {"decoy"}


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
    results["conditions"][0]["success_mean"] += 0.05
    (run / "results.json").write_text(json.dumps(results))
    out = tmp_path / "subs"
    rc, _, err = run_cli(capsys, "submit", str(run), "--name", "x", "--out", str(out))
    assert rc == 2 and "disagrees with records.parquet" in err
    assert not out.exists()


def _nan_return(records: pd.DataFrame) -> pd.DataFrame:
    records.loc[7, "normalized_return"] = np.nan
    return records


def _two_eval_seeds(records: pd.DataFrame) -> pd.DataFrame:
    records.loc[records.index[1], "eval_seed"] = 7
    return records


def _decoy_on_some_episodes(records: pd.DataFrame) -> pd.DataFrame:
    records.loc[records.index[records["eval_instruction"] == "decoy"][0], "decoy_success"] = None
    return records


BAD_RECORDS = {
    "NaN": (_nan_return, "missing or NaN values in ['normalized_return']"),
    "no v2 columns": (
        lambda records: records.drop(columns=["format", "eval_seed"]),
        "lacks column(s) ['format', 'eval_seed']",
    ),
    "two evaluation seeds in a cell": (_two_eval_seeds, "come from 2 evaluation seeds"),
    "decoy success on some episodes of a cell": (
        _decoy_on_some_episodes,
        "only some episodes of (family=trajbench/DarkRoom-v0, eval_split=test_levels, k=0, "
        "support=same, format=common, eval_instruction=decoy, seed=0, level=0) give",
    ),
}


@pytest.mark.parametrize("case", list(BAD_RECORDS))
def test_submit_refuses_bad_records(run, tmp_path, capsys, case):
    change, message = BAD_RECORDS[case]
    change(pd.read_parquet(run / "records.parquet")).to_parquet(run / "records.parquet")
    out = tmp_path / "s"
    rc, _, err = run_cli(capsys, "submit", str(run), "--name", "x", "--out", str(out))
    assert rc == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


@pytest.mark.parametrize(
    "version, message",
    [("99", "unknown suite version '99'"), ("1", "suite version 1 is archived")],
)
def test_submit_refuses_a_suite_version_it_cannot_rank(run, tmp_path, capsys, version, message):
    results = json.loads((run / "results.json").read_text())
    results["suite_version"] = version
    (run / "results.json").write_text(json.dumps(results))
    rc, _, err = run_cli(capsys, "submit", str(run), "--name", "x", "--out", str(tmp_path / "s"))
    assert rc == 2 and message in err


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

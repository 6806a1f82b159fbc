"""Tests for trajbench.leaderboard.validate, through ``trajbench leaderboard validate``."""

import json
import shutil

import pytest
from leaderboard_support import (
    DARK_ROOM,
    HASHMAP,
    ISOLATED,
    KEY_DOOR,
    RANDOM,
    TOP,
    V1_FILES,
    bump_aggregate,
    drop_field,
    edit,
    entry_path,
    find,
    held_out,
    run_cli,
    set_value,
)

from trajbench import suite
from trajbench.leaderboard import SubmissionV1, tables, validate, validate_files

pytest_plugins = ["leaderboard_support"]


def test_validate_accepts_the_submissions(root, capsys):
    rc, out, err = run_cli(capsys, "validate", "--root", str(root))
    assert rc == 0 and err == ""
    assert out.count("ok: ") == 4


def test_validate_empty_leaderboard_passes(tmp_path, capsys):
    rc, out, _ = run_cli(capsys, "validate", "--root", str(tmp_path))
    assert rc == 0 and "no submissions" in out


def test_suite_version_1_entries_still_validate_and_are_archived(capsys):
    rc, out, err = run_cli(capsys, "validate", *map(str, V1_FILES))
    assert rc == 0 and err == "" and out.count("ok: ") == len(V1_FILES) == 19
    subs, problems = validate_files(V1_FILES)
    assert problems == [] and all(isinstance(s, SubmissionV1) for s in subs)
    boards = tables(subs)
    assert boards and all(t.archived and t.ranked == [] and t.statistic == "IQM" for t in boards)


def test_a_tampered_v1_aggregate_is_still_caught(tmp_path, capsys):
    path = tmp_path / V1_FILES[0].name
    shutil.copy(V1_FILES[0], path)
    edit(path, set_value("aggregates", 2, "success_iqm", 0.5))
    rc, _, err = run_cli(capsys, "validate", str(path))
    assert rc == 1 and "aggregates[2] (family=trajbench/GoToLocal-v0, eval_split=test_levels" in err
    assert "success_iqm is 0.5 but the records give" in err


def _bump_record(sub):
    rec = sub["records"][-1]
    rec["success"] = 1.0 - rec["success"]


def _drop_record(sub):
    sub["records"].pop(5)


def _rename_family(family: str, new: str):
    def change(sub):
        for rec in sub["records"]:
            if rec["family"] == family:
                rec["family"] = new

    return change


def _move_level(family: str):
    """Relabel the family's first level as a level of its train split."""
    first = held_out(family)[0]
    train_level = next(lv for lv in range(first + 100) if lv not in held_out(family))

    def change(sub):
        for rec in sub["records"]:
            if (rec["family"], rec["level"]) == (family, first):
                rec["level"] = train_level

    return change, train_level


def _decoy(stat: str, value):
    """Set a statistic of the first decoy-mission aggregate."""

    def change(sub):
        sub["aggregates"][find(sub["aggregates"], eval_instruction="decoy")][stat] = value

    return change


def _drop_decoys(sub):
    agg = sub["aggregates"][find(sub["aggregates"], eval_instruction="decoy")]
    for stat in ("mean", "ci_low", "ci_high"):
        del agg[f"decoy_success_{stat}"]


def _decoy_on_one_record(sub):
    first = find(sub["records"], eval_instruction="decoy")
    del sub["records"][first]["decoy_success"]


def _bumped_message(path) -> str:
    sub = json.loads(path.read_text())
    i = find(sub["aggregates"], **TOP, eval_instruction="full")
    got = sub["aggregates"][i]["success_mean"]
    return (
        f"aggregates[{i}] (family={DARK_ROOM}, eval_split=test_levels, k=4, support=same, "
        f"format=common, eval_instruction=full): success_mean is {got + 0.01!r} but the records "
        f"give {got!r}"
    )


CASES = {
    "tampered mean": (bump_aggregate, _bumped_message),
    "tampered record": (_bump_record, "but the records give"),
    "tampered decoy mean": (_decoy("decoy_success_mean", 0.75), "decoy_success_mean is 0.75"),
    "decoy aggregate left out": (_drop_decoys, "decoy_success_mean is None but the records give"),
    "decoy on a few records only": (_decoy_on_one_record, "only some records give decoy_success"),
    "unknown suite version": (
        set_value("suite_version", "7"),
        "suite_version: unknown suite version '7'",
    ),
    "unknown schema version": (
        set_value("schema_version", 9),
        "schema_version: unknown schema version 9 (1, 2 accepted)",
    ),
    "schema 1 method": (
        set_value("bootstrap", "method", "iqm, seeds"),
        "bootstrap: method must be 'mean, seeds and levels' in schema 2, got 'iqm, seeds'",
    ),
    "unknown format": (set_value("records", 0, "format", "shuffled"), "records[0].format:"),
    "unknown suite": (set_value("suite", "other"), "suite: unknown suite 'other'"),
    "missing field": (drop_field, "missing field 'model.parameters'"),
    "unknown field": (set_value("extra", 1), "unknown field 'extra'"),
    "NaN string": (
        set_value("aggregates", 0, "success_mean", "NaN"),
        "NaN or infinite value 'NaN'",
    ),
    "string number": (
        set_value("wall_time_s", "12.5"),
        "wall_time_s: Input should be a valid number",
    ),
    "incomplete grid": (_drop_record, "incomplete (seed, level) grid"),
    "foreign family": (
        _rename_family(KEY_DOOR, "trajbench/NotAFamily-v0"),
        "family 'trajbench/NotAFamily-v0' is not in suite",
    ),
    "seeds mismatch": (set_value("seeds", [0, 1]), "do not match the seeds of the records"),
    "bad date": (set_value("date", "yesterday"), "not an ISO 8601 date"),
    "narrow bootstrap": (set_value("bootstrap", "reps", 10), "bootstrap.reps"),
    "level outside the test split": (
        _move_level(DARK_ROOM)[0],
        f"records: 1 level(s) of {DARK_ROOM} (test_levels) are not in its test split in suite "
        f"trajbench v{suite.SUITE_VERSION}: {_move_level(DARK_ROOM)[1]}",
    ),
    "held-out family level outside its test split": (
        _move_level(KEY_DOOR)[0],
        f"1 level(s) of {KEY_DOOR} (test_families) are not in its test split",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_validate_rejects(root, capsys, case):
    change, message = CASES[case]
    path = entry_path(root)
    if callable(message):
        message = message(path)
    edit(path, change)
    rc, _, err = run_cli(capsys, "validate", str(path))
    assert rc == 1, err
    lines = err.strip().splitlines()
    assert all(line.startswith(f"{path}: ") for line in lines), err
    assert any(message in line for line in lines), err


def test_a_tampered_matched_aggregate_is_caught(root, capsys):
    path = entry_path(root, ISOLATED)
    sub = json.loads(path.read_text())
    i = find(sub["aggregates"], format="matched")
    edit(path, set_value("aggregates", i, "success_ci_high", 1.0))
    rc, _, err = run_cli(capsys, "validate", str(path))
    assert rc == 1 and f"aggregates[{i}] (" in err and "format=matched" in err
    assert "success_ci_high is 1.0 but the records give" in err


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
    edit(path, set_value("aggregates", 0, "normalized_return_iqm", float("nan")))
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
    edit(mine, set_value("name", "mine2"))
    rc, _, err = run_cli(capsys, "validate", str(mine))
    assert rc == 1 and err.strip() == f"{mine}: name 'mine2' does not match the file name"


def test_validate_reports_every_bad_file(root, capsys):
    edit(entry_path(root), bump_aggregate)
    edit(entry_path(root, RANDOM), drop_field)
    rc, out, err = run_cli(capsys, "validate", "--root", str(root))
    assert rc == 1 and len(err.strip().splitlines()) == 2
    assert f"ok: {ISOLATED}" in out and f"ok: {HASHMAP}" in out


def test_held_out_levels_are_the_family_test_split():
    assert validate.held_out_levels(DARK_ROOM) == frozenset(held_out(DARK_ROOM))
    assert len(validate.held_out_levels(KEY_DOOR)) == len(held_out(KEY_DOOR))


def test_a_suite_family_that_cannot_be_made_is_one_problem_line(root, capsys, monkeypatch):
    spec = suite.SUITE_VERSIONS[suite.SUITE_VERSION]
    gone = "trajbench/Gone-v0"
    families = (*spec["families"], gone)
    monkeypatch.setitem(suite.SUITE_VERSIONS, suite.SUITE_VERSION, {**spec, "families": families})
    path = entry_path(root)
    edit(path, _rename_family(KEY_DOOR, gone))
    rc, _, err = run_cli(capsys, "validate", str(path))
    assert rc == 1 and err.startswith(f"{path}: records: cannot read the test split of {gone}: ")
    assert len(err.strip().splitlines()) == 1

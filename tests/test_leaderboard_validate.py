"""Tests for trajbench.leaderboard.validate, through ``trajbench leaderboard validate``."""

import shutil

import pytest
from test_leaderboard_fixtures import (
    DARK_ROOM,
    KEY_DOOR,
    bump_aggregate,
    drop_field,
    edit,
    entry_path,
    held_out,
    run_cli,
    set_value,
)

from trajbench import suite
from trajbench.leaderboard import validate

pytest_plugins = ["test_leaderboard_fixtures"]


def test_validate_accepts_the_submissions(root, capsys):
    rc, out, err = run_cli(capsys, "validate", "--root", str(root))
    assert rc == 0 and err == ""
    assert out.count("ok: ") == 3


def test_validate_empty_leaderboard_passes(tmp_path, capsys):
    rc, out, _ = run_cli(capsys, "validate", "--root", str(tmp_path))
    assert rc == 0 and "no submissions" in out


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


CASES = {
    "tampered aggregate": (
        bump_aggregate,
        f"aggregates[3] (family={KEY_DOOR}, eval_split=test_families, k=4, support=other): "
        "success_iqm is 0.01 but the records give 0.0",
    ),
    "tampered record": (_bump_record, "but the records give"),
    "unknown suite version": (
        set_value("suite_version", "7"),
        "suite_version: unknown suite version '7'",
    ),
    "unknown suite": (set_value("suite", "other"), "suite: unknown suite 'other'"),
    "missing field": (drop_field, "missing field 'model.parameters'"),
    "unknown field": (set_value("extra", 1), "unknown field 'extra'"),
    "NaN string": (set_value("aggregates", 0, "success_iqm", "NaN"), "NaN or infinite value 'NaN'"),
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
        f"trajbench v1: {_move_level(DARK_ROOM)[1]}",
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
    edit(path, change)
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
    edit(entry_path(root, "ci-random"), drop_field)
    rc, out, err = run_cli(capsys, "validate", "--root", str(root))
    assert rc == 1 and len(err.strip().splitlines()) == 2
    assert "ok: ci-transformer-isolated-full-p0" in out


def test_held_out_levels_are_the_family_test_split():
    assert validate.held_out_levels(DARK_ROOM) == frozenset(held_out(DARK_ROOM))
    assert len(validate.held_out_levels(KEY_DOOR)) == len(held_out(KEY_DOOR))


def test_a_suite_family_that_cannot_be_made_is_one_problem_line(root, capsys, monkeypatch):
    spec = suite.SUITE_VERSIONS["1"]
    gone = "trajbench/Gone-v0"
    monkeypatch.setitem(suite.SUITE_VERSIONS, "1", {**spec, "families": (*spec["families"], gone)})
    path = entry_path(root)
    edit(path, _rename_family(KEY_DOOR, gone))
    rc, _, err = run_cli(capsys, "validate", str(path))
    assert rc == 1 and err.startswith(f"{path}: records: cannot read the test split of {gone}: ")
    assert len(err.strip().splitlines()) == 1

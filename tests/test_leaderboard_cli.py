"""Tests for trajbench.leaderboard.cli: actions, flags, defaults and exit statuses."""

import dataclasses
from pathlib import Path

import pytest
from leaderboard_support import run_cli

from trajbench.cliargs import parse_config
from trajbench.leaderboard.cli import (
    ACTIONS,
    BuildConfig,
    SubmitConfig,
    ValidateConfig,
    VerifyConfig,
)

#: How tyro shows the positional arguments.
METAVARS = {"run_dir": "DIR", "files": "[FILE ...]", "submission": "SUBMISSION"}


def test_usage_errors_return_an_exit_status(capsys):
    assert run_cli(capsys, "--help")[0] == 0
    rc, _, err = run_cli(capsys)
    assert rc == 2 and "usage: trajbench leaderboard" in err
    assert run_cli(capsys, "submit", "somewhere")[0] == 2  # --name is required


@pytest.mark.parametrize("args", [["frob"], ["build", "--chek"], ["submit", "r", "--name"]])
def test_bad_arguments_are_one_line(capsys, args):
    rc, out, err = run_cli(capsys, *args)
    assert rc == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert err.startswith("trajbench leaderboard: error: ")


@pytest.mark.parametrize("action", list(ACTIONS))
def test_help_lists_every_knob(capsys, action):
    rc, out, _ = run_cli(capsys, action, "--help")
    assert rc == 0 and f"usage: trajbench leaderboard {action}" in out
    cls = ACTIONS[action][0]
    assert cls.__doc__ in out
    for field in dataclasses.fields(cls):
        assert METAVARS.get(field.name, "--" + field.name.replace("_", "-")) in out
    overview = run_cli(capsys, "--help")[1]
    assert f"  {action}" in overview and cls.__doc__ in overview


def test_flags_and_defaults():
    def parse(cls, *argv):
        return parse_config(cls, list(argv), "test")

    assert parse(SubmitConfig, "runs/x", "--name", "n") == SubmitConfig(
        Path("runs/x"), "n", ("anonymous",), None, None, Path("leaderboard/submissions"), 2000, 0
    )
    argv = ["r", "--name", "n", "--authors", "A B", "C", "--model-name", "m", "--command", "c"]
    argv += ["--out", "o", "--reps", "1000", "--seed", "3"]
    assert parse(SubmitConfig, *argv) == SubmitConfig(
        Path("r"), "n", ("A B", "C"), "m", "c", Path("o"), 1000, 3
    )
    assert parse(ValidateConfig) == ValidateConfig((), Path("leaderboard"))
    assert parse(ValidateConfig, "a.json", "b.json", "--root", "lb") == ValidateConfig(
        (Path("a.json"), Path("b.json")), Path("lb")
    )
    assert parse(BuildConfig) == BuildConfig(Path("leaderboard"), False)
    assert parse(BuildConfig, "--root", "lb", "--check") == BuildConfig(Path("lb"), True)
    assert parse(VerifyConfig, "s.json") == VerifyConfig(Path("s.json"))
    argv = ["s.json", "--model", "m0", "m1", "--data", "run", "--cells", "3", "--write"]
    assert parse(VerifyConfig, *argv) == VerifyConfig(
        Path("s.json"), (Path("m0"), Path("m1")), Path("run"), cells=3, write=True
    )


def test_submit_checks_the_bootstrap_reps(capsys, tmp_path):
    rc, _, err = run_cli(capsys, "submit", str(tmp_path), "--name", "x", "--reps", "10")
    assert rc == 2 and "--reps must be in 1000..100000, got 10" in err

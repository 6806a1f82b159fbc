"""``trajbench.cliargs``: ``--quiet`` on the long commands (no bars, no chatter, errors one line)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from trajbench import cli
from trajbench.cliargs import QUIET_HELP, quiet_output, split_quiet
from trajbench.data import load


def test_split_quiet():
    assert split_quiet(["--quiet", "--out", "x"]) == (["--out", "x"], True)
    assert split_quiet(["--out", "x"]) == (["--out", "x"], False)


def test_quiet_output_silences_this_process_and_its_children(capfd):
    with quiet_output():
        print("chatter")
        print("a bar", file=sys.stderr)
        subprocess.run([sys.executable, "-c", "import sys; print(1); print(2, file=sys.stderr)"])
    print("after")
    assert capfd.readouterr() == ("after\n", "")


def collect_args(tmp_path, *extra: str) -> list[str]:
    return ["collect", "--env", "DarkRoom-v0", "--levels", "0,1", "--episodes-per-level", "2",
            "--out", str(tmp_path / "ds"), *extra]  # fmt: skip


def test_collect_is_quiet_on_request(tmp_path, capfd):
    assert cli.main(collect_args(tmp_path / "loud")) == 0
    out, err = capfd.readouterr()
    assert out.startswith("collected 4 episodes") and "4/4" in err  # its line and its bar
    assert cli.main(collect_args(tmp_path / "quiet", "--quiet")) == 0
    assert capfd.readouterr() == ("", "")
    assert len(load(tmp_path / "quiet" / "ds")) == 4


def test_evaluate_is_quiet_on_request(tmp_path, capfd):
    assert cli.main(collect_args(tmp_path, "--levels", "test", "--episodes-per-level", "3")) == 0
    capfd.readouterr()
    args = ["evaluate", "--policy", "expert", "--data", str(tmp_path / "ds"), "--ks", "0", "1",
            "--episodes", "1", "--out", str(tmp_path / "eval")]  # fmt: skip
    assert cli.main(args) == 0
    assert "records written to" in capfd.readouterr().out
    assert cli.main([*args[:-1], str(tmp_path / "quiet"), "--quiet"]) == 0
    assert capfd.readouterr() == ("", "")
    assert (tmp_path / "quiet" / "records.parquet").exists()


def test_errors_stay_one_line_when_quiet(tmp_path, capfd):
    assert cli.main(["collect", "--quiet", "--env", "Nope", "--out", str(tmp_path / "x")]) == 2
    out, err = capfd.readouterr()
    assert out == "" and err.count("\n") == 1 and "unknown environment 'Nope'" in err


@pytest.mark.parametrize("name", sorted(cli.QUIET_COMMANDS))
def test_long_commands_document_quiet(name, capsys):
    argv = [name, "--help"] if name != "analyze" else [name, "burstiness", "--help"]
    assert cli.main(argv) == 0
    assert capsys.readouterr().out.rstrip().endswith(QUIET_HELP)


def test_short_commands_refuse_quiet(capsys):
    assert cli.main(["leaderboard", "validate", "--quiet"]) == 2
    assert "--quiet" in capsys.readouterr().err

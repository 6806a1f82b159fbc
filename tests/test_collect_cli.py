"""``trajbench collect`` and ``trajbench envs`` through the CLI: bad input, help, listing."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import re
import shutil
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import pytest

from trajbench import cli
from trajbench.collect import CollectConfig
from trajbench.data import load
from trajbench.envs import env_ids

BASE = ["collect", "--env", "trajbench/DarkRoom-v0", "--levels", "3,4", "--episodes-per-level", "2"]


def _run(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _assert_one_line_error(code: int, err: str) -> None:
    assert code != 0
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("trajbench collect: error: ")


BAD = {
    "unknown env": (["--env", "trajbench/Nope-v0"], "known: trajbench/DarkRoom-v0"),
    "level out of range": (["--levels", "81"], "level 81 is out of range"),
    "negative level": (["--levels=-1"], "level -1 is out of range"),
    "garbled levels": (["--levels", "1,x"], "bad levels"),
    "unknown split": (["--levels", "valid"], "bad levels"),
    "zero episodes": (["--episodes-per-level", "0"], "episodes_per_level must be >= 1"),
    "negative episodes": (["--episodes-per-level", "-2"], "episodes_per_level must be >= 1"),
    "zero workers": (["--workers", "0"], "workers must be >= 1"),
    "negative seed": (["--seed", "-1"], "seed must be >= 0"),
    "shard index too big": (["--shard", "2/2"], "bad shard"),
    "shard of zero": (["--shard", "0/0"], "bad shard"),
    "shard garbled": (["--shard", "a/b"], "bad shard"),
    "epsilon above 1": (["--epsilon", "1.5"], "epsilon must be in [0, 1]"),
    "epsilon below 0": (["--epsilon", "-0.1"], "epsilon must be in [0, 1]"),
    "sticky_p of 1": (["--sticky-p", "1"], "sticky_p must be in [0, 1)"),
    "unknown demonstrator": (["--demonstrator", "oracle"], "invalid choice 'oracle'"),
    "non-integer count": (["--episodes-per-level", "abc"], "--episodes-per-level"),
    "unknown flag": (["--bogus", "1"], "--bogus"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_input_is_one_line_and_writes_nothing(capsys, tmp_path, name):
    extra, expected = BAD[name]
    out = tmp_path / "ds"
    code, stdout, err = _run(capsys, *BASE, "--out", str(out), *extra)
    _assert_one_line_error(code, err)
    assert expected in err
    assert not stdout
    assert list(tmp_path.iterdir()) == []


def test_missing_required_flag(capsys, tmp_path):
    code, _, err = _run(capsys, "collect", "--env", "trajbench/DarkRoom-v0")
    _assert_one_line_error(code, err)
    assert "--out" in err


def test_existing_dataset(capsys, tmp_path):
    out = tmp_path / "ds"
    code, stdout, _ = _run(capsys, *BASE, "--out", str(out), "--no-progress")
    assert code == 0
    assert stdout.strip().splitlines() == [
        f"collected 4 episodes, 80 steps, success 100.0% -> {out}"
    ]
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    code, stdout, _ = _run(capsys, *BASE, "--out", str(out))
    assert code == 0 and "already holds this dataset" in stdout

    code, _, err = _run(capsys, *BASE, "--out", str(out), "--seed", "5")
    _assert_one_line_error(code, err)
    assert "already holds a different dataset (seed 0 there, 5 here)" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before

    code, _, _ = _run(capsys, *BASE, "--out", str(out), "--seed", "5", "--overwrite")
    assert code == 0 and load(out).config["seed"] == 5


def test_corrupt_store_through_the_cli(capsys, tmp_path):
    out = tmp_path / "ds"
    assert _run(capsys, *BASE, "--out", str(out), "--no-progress")[0] == 0
    (out / "actions.npy").unlink()
    code, _, err = _run(capsys, *BASE, "--out", str(out))
    _assert_one_line_error(code, err)
    assert "actions.npy" in err and "--overwrite" in err


def test_sharded_collection_through_the_cli(capsys, tmp_path):
    for i in range(2):
        args = [*BASE, "--levels", "train", "--episodes-per-level", "1", "--out", str(tmp_path)]
        assert _run(capsys, *args, "--shard", f"{i}/2", "--no-progress")[0] == 0
    assert len(load(tmp_path)) == 65


def _console_script() -> str:
    """The ``trajbench`` script installed with this interpreter (else the one on PATH)."""
    beside = Path(sys.executable).parent / "trajbench"
    return str(beside) if beside.is_file() else shutil.which("trajbench") or "trajbench"


def test_console_script_bad_input_and_success(tmp_path):
    bad = subprocess.run(
        [_console_script(), "collect", "--env", "Nope-v0", "--out", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines() == [
        f"trajbench collect: error: unknown environment 'Nope-v0'; known: {', '.join(env_ids())}"
    ]
    assert not bad.stdout and list(tmp_path.iterdir()) == []

    out = tmp_path / "ds"
    good = subprocess.run(
        [_console_script(), *BASE, "--demonstrator", "random", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert good.returncode == 0, good.stderr
    assert len(good.stdout.strip().splitlines()) == 1 and str(out) in good.stdout
    assert "100%" in good.stderr  # the progress bar
    assert set(load(out, verify=True).episodes["demonstrator"]) == {"random"}


def test_envs_lists_every_family(capsys):
    code, out, _ = _run(capsys, "envs")
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0].split()[:4] == ["id", "levels", "train", "test"]
    listed = [line.split()[0] for line in lines[1:]]
    assert listed == env_ids()

    code, out, _ = _run(capsys, "envs", "--json")
    rows = json.loads(out)
    assert [r["id"] for r in rows] == env_ids()
    for row in rows:
        assert row["n_train"] + row["n_test"] == row["n_levels"] > 0
        assert row["n_actions"] > 1 and row["max_steps"] > 0 and row["expert"]
        assert "<function" not in row["observation_space"]
    dark = next(r for r in rows if r["id"] == "trajbench/DarkRoom-v0")
    assert (dark["n_levels"], dark["n_test"], dark["max_steps"]) == (81, 16, 20)


def _field_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings (the string right under each field), as tyro reads them."""
    docs, body = {}, ast.parse(inspect.getsource(cls)).body[0].body
    for node, after in pairwise(body):
        if isinstance(node, ast.AnnAssign) and isinstance(after, ast.Expr):
            docs[node.target.id] = after.value.value
    return docs


def test_collect_help_documents_every_field(capsys):
    code, out, _ = _run(capsys, "collect", "--help")
    assert code == 0
    text = " ".join(re.sub(r"[│╭╮╰╯─]", " ", out).split())
    docs = _field_docs(CollectConfig)
    for field in dataclasses.fields(CollectConfig):
        assert field.name in docs, f"{field.name} has no docstring"
        assert f"--{field.name.replace('_', '-')}" in text
        assert " ".join(docs[field.name].split()[:5]) in text, field.name
    code, out, _ = _run(capsys, "envs", "--help")
    assert code == 0 and "--json" in out

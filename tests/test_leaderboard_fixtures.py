"""Shared by the tests/test_leaderboard_*.py files (loaded with ``pytest_plugins``): a synthetic
run directory, its submissions and a built leaderboard, and helpers to edit submission files."""

import functools
import json
import shutil
from pathlib import Path

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest

import trajbench
from trajbench import suite
from trajbench.cli import main
from trajbench.metrics import aggregate

REPO = Path(__file__).resolve().parents[1]
DARK_ROOM, KEY_DOOR = "trajbench/DarkRoom-v0", "trajbench/DarkKeyToDoor-v0"
#: (policy, train_context, instruction, p_bursty, params, success probability at the largest k)
CONDITIONS = [
    ("transformer", "bursty", "full", 1.0, 52_000, 0.9),
    ("transformer", "isolated", "full", 0.0, 52_000, 0.4),
    ("random", "-", "-", None, 0, 0.1),
]
KS = (0, 1, 4)


@functools.cache
def held_out(family: str) -> tuple[int, ...]:
    """The levels of ``family``'s test split, sorted: the only levels an entry may hold."""
    env = gym.make(family, disable_env_checker=True)
    levels = tuple(sorted(int(x) for x in env.unwrapped.splits()["test"]))
    env.close()
    return levels


def make_run(path: Path, seeds=(0, 1, 2), episodes=2) -> Path:
    """A small synthetic run directory: records.parquet and a results.json made with aggregate.

    Each family is evaluated on the first four levels of its test split.
    """
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
                        for level in held_out(family)[:4]:
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
    agg = aggregate(
        records, ["success", "normalized_return"], groups, statistic="iqm", resample="seeds"
    )
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


@pytest.fixture(scope="session")
def shared(tmp_path_factory) -> Path:
    """Made once per session, then copied: the run, its submissions, and a built leaderboard."""
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


def edit(path: Path, change) -> None:
    sub = json.loads(path.read_text())
    change(sub)
    path.write_text(json.dumps(sub, indent=2))


def set_value(*keys_and_value):
    *keys, value = keys_and_value

    def change(sub):
        for k in keys[:-1]:
            sub = sub[k]
        sub[keys[-1]] = value

    return change


def bump_aggregate(sub):
    sub["aggregates"][3]["success_iqm"] += 0.01


def drop_field(sub):
    del sub["model"]["parameters"]


def board_order(readme: str, title: str) -> list[str]:
    """Entry names of the table under heading ``title``, in row order."""
    block = readme.split(f"### {title}\n", 1)[1].strip().split("\n\n", 1)[0]
    return [line.split(" | ")[1] for line in block.splitlines()[2:]]


def relabel_levels(family: str):
    """Move the family's records to the next four levels of its test split: the entry stays
    valid (its aggregates do not change) but is evaluated on another level set."""
    mapping = dict(zip(held_out(family)[:4], held_out(family)[4:8], strict=True))

    def change(sub):
        for rec in sub["records"]:
            if rec["family"] == family:
                rec["level"] = mapping[rec["level"]]

    return change


def add_suite_version(monkeypatch, version: str = "2") -> None:
    """Register a newer suite version with the families and splits of version 1."""
    monkeypatch.setitem(suite.SUITE_VERSIONS, version, dict(suite.SUITE_VERSIONS["1"]))

"""Shared by the tests/test_leaderboard_*.py files (loaded with ``pytest_plugins``; not itself a test
module, since pytest 9.0 scopes the fixtures of a collected test module to that module): a synthetic
run directory of suite version 2, its submissions and a built leaderboard, the committed
suite-version-1 entries, and helpers to edit submission files."""

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
from trajbench.report import conditions_table

REPO = Path(__file__).resolve().parents[1]
DARK_ROOM, KEY_DOOR = "trajbench/DarkRoom-v0", "trajbench/DarkKeyToDoor-v0"
#: (policy, train_context, instruction, p_bursty, params, success probability at the largest k)
CONDITIONS = [
    ("transformer", "bursty", "full", 1.0, 52_000, 0.9),
    ("transformer", "isolated", "full", 0.0, 52_000, 0.4),
    ("hashmap", "-", "-", None, 0, 0.6),
    ("random", "-", "-", None, 0, 0.1),
]
KS = (0, 1, 4)
EPISODES = 4
#: Names of the run's entries.
BURSTY, ISOLATED = "ci-transformer-bursty-full-p1", "ci-transformer-isolated-full-p0"
HASHMAP, RANDOM = "ci-hashmap", "ci-random"
#: The committed entries of suite version 1 (archived).
SUBMISSIONS = sorted((REPO / "leaderboard" / "submissions").glob("*.json"))
#: The committed entries of suite version 1 (archived by later versions).
V1_FILES = [p for p in SUBMISSIONS if json.loads(p.read_text())["suite_version"] == "1"]


@functools.cache
def held_out(family: str) -> tuple[int, ...]:
    """The levels of ``family``'s test split, sorted: the only levels an entry may hold."""
    env = gym.make(family, disable_env_checker=True)
    levels = tuple(sorted(int(x) for x in env.unwrapped.splits()["test"]))
    env.close()
    return levels


def _evaluations(context: str, instruction: str, family: str):
    """``(k, support, format, eval_instruction)`` evaluated, as ``trajbench run`` does: the
    common format, the matched one for an unordered mode, and decoy missions on Dark Room for
    full-instruction models and reference policies (synthetic: Dark Room has no decoys)."""
    for k in KS:
        for support in ("same", "other"):
            if k == 0 and support == "other":
                continue
            yield k, support, "common", instruction
            if context == "isolated" and k > 0:
                yield k, support, "matched", instruction
            if family == DARK_ROOM and instruction in ("full", "-"):
                yield k, support, "common", "decoy"


def make_run(path: Path, seeds=(0, 1, 2), episodes=EPISODES) -> Path:
    """A small synthetic run directory: records.parquet, and results.json with the conditions
    of :func:`trajbench.report.conditions_table`. Each family is evaluated on the first four
    levels of its test split."""
    rng = np.random.default_rng(0)
    rows = []
    for policy, context, instruction, p_bursty, params, p_top in CONDITIONS:
        for family, split in [(DARK_ROOM, "test_levels"), (KEY_DOOR, "test_families")]:
            for k, support, fmt, shown in _evaluations(context, instruction, family):
                p = p_top * (k + 1) / (max(KS) + 1) if support == "same" else 0.1
                p *= 0.5 if shown == "decoy" else 1.0
                for seed in seeds:
                    for level in held_out(family)[:4]:
                        for episode in range(episodes):
                            success = bool(rng.random() < p)
                            ret = float(success) * rng.uniform(0.5, 1.0)
                            row = {
                                "group": "ci",
                                "policy": policy,
                                "train_context": context,
                                "instruction": instruction,
                                "p_bursty": np.nan if p_bursty is None else p_bursty,
                                "family": family,
                                "eval_split": split,
                                "k": k,
                                "support": support,
                                "format": fmt,
                                "eval_instruction": shown,
                                "seed": seed,
                                "eval_seed": 1000 + seed,
                                "level": level,
                                "episode": episode,
                                "return": ret,
                                "success": success,
                                "length": 10,
                                "normalized_return": ret,
                                "model_params": params,
                            }
                            if shown == "decoy":
                                row["decoy_success"] = not success and bool(rng.random() < 0.3)
                            rows.append(row)
    records = pd.DataFrame(rows)  # decoy_success: True, False or NaN (object), as the runner's
    numeric = records.assign(decoy_success=records["decoy_success"].astype(float))
    conditions = []
    for row in conditions_table(numeric).to_dict("records"):
        item = {k: v.item() if isinstance(v, np.generic) else v for k, v in row.items()}
        item = {k: v for k, v in item.items() if not (isinstance(v, float) and np.isnan(v))}
        item["p_bursty"] = None if item["p_bursty"] == "-" else float(item["p_bursty"])
        conditions.append(item)
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
    """A leaderboard directory holding the run's four submissions."""
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


def entry_path(root: Path, name: str = BURSTY) -> Path:
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


def find(items: list[dict], **where) -> int:
    """The index of the first item (record or aggregate) with the ``where`` values."""
    return next(i for i, a in enumerate(items) if all(a.get(k) == v for k, v in where.items()))


#: Where bump_aggregate bumps: the ranked aggregate of Dark Room at the largest k.
TOP = {"family": DARK_ROOM, "k": max(KS), "support": "same", "format": "common"}


def bump_aggregate(sub):
    sub["aggregates"][find(sub["aggregates"], **TOP, eval_instruction="full")]["success_mean"] += (
        0.01
    )


def drop_field(sub):
    del sub["model"]["parameters"]


def board_order(readme: str, title: str) -> list[str]:
    """Entry names of the table under heading ``title``, in row order."""
    block = readme.split(f"### {title}\n", 1)[1].strip().split("\n\n", 1)
    block = block[1] if block[0].startswith("**") else block[0]  # a saturation note comes first
    return [line.split(" | ")[1] for line in block.split("\n\n", 1)[0].splitlines()[2:]]


def relabel_levels(family: str):
    """Move the family's records to the next four levels of its test split: the entry stays
    valid (its aggregates do not change) but is evaluated on another level set."""
    mapping = dict(zip(held_out(family)[:4], held_out(family)[4:8], strict=True))

    def change(sub):
        for rec in sub["records"]:
            if rec["family"] == family:
                rec["level"] = mapping[rec["level"]]

    return change


def add_suite_version(monkeypatch) -> str:
    """Register a suite version newer than the current one, with the current one's families and
    splits; returns it."""
    newer = str(int(suite.SUITE_VERSION) + 1)
    monkeypatch.setitem(
        suite.SUITE_VERSIONS, newer, dict(suite.SUITE_VERSIONS[suite.SUITE_VERSION])
    )
    return newer

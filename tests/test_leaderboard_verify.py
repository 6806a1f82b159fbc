"""``trajbench leaderboard verify``: entries of a ``ci`` run re-run to the same records; invented
records, other models and other evaluation data are caught."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from trajbench.cli import main as cli
from trajbench.leaderboard.schema import Bootstrap
from trajbench.leaderboard.validate import compute_aggregates


@pytest.fixture(scope="module")
def entries(ci_run: Path, tmp_path_factory) -> Path:
    """The ci run's submissions, in a leaderboard directory of their own."""
    root = tmp_path_factory.mktemp("lb")
    argv = [
        "leaderboard",
        "submit",
        str(ci_run),
        "--name",
        "ci",
        "--out",
        str(root / "submissions"),
    ]
    assert cli(argv) == 0
    return root


def _entry(root: Path, name: str, tmp_path: Path) -> Path:
    """A copy of entry ``name`` (so a test may change it)."""
    path = tmp_path / "submissions" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text((root / "submissions" / f"{name}.json").read_text())
    return path


def _verify(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli(["leaderboard", "verify", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_submissions_record_how_to_rerun_them(entries: Path, ci_run: Path):
    sub = json.loads((entries / "submissions" / "ci-transformer-bursty-full.json").read_text())
    reproduce = sub["reproduce"]
    assert reproduce["group"] == "dark-room" and sub["git_commit"]
    assert reproduce["models"] == {
        str(s): f"jobs/dark-room/bursty-full/seed{s}/model" for s in sub["seeds"]
    }
    (store,) = reproduce["data"]
    assert store["eval_split"] == "test_levels" and store["spec"]["levels"] == "test"
    meta = json.loads(
        (ci_run / "data" / "DarkRoom-v0-test-sample6-expert-n6-s1" / "meta.json").read_text()
    )
    assert store["content_hash"] == meta["content_hash"]
    baseline = json.loads((entries / "submissions" / "ci-random.json").read_text())
    assert baseline["reproduce"]["models"] == {} and "verified" not in baseline


def test_a_trained_entry_verifies_and_is_marked(entries, ci_run, capsys, tmp_path):
    path = _entry(entries, "ci-transformer-bursty-full", tmp_path)
    code, out, err = _verify(
        capsys, str(path), "--model", str(ci_run), "--data", str(ci_run), "--write"
    )
    assert code == 0, err
    assert "verified ci-transformer-bursty-full: 8 sampled cells, 2 evaluation(s) re-run" in out
    assert "records equal exactly" in out
    mark = json.loads(path.read_text())["verified"]
    assert mark["cells"] == 8 and mark["records"] > 8 and mark["tolerance"] == 0.0
    assert cli(["leaderboard", "validate", str(path)]) == 0
    assert cli(["leaderboard", "build", "--root", str(tmp_path)]) == 0
    readme = (tmp_path / "README.md").read_text()
    row = next(line for line in readme.splitlines() if "| ci-transformer-bursty-full |" in line)
    assert f"| verified {mark['date'][:10]}, 8 cells re-run |" in row


def test_a_reference_policy_verifies_from_regenerated_data(entries, capsys, tmp_path):
    path = _entry(entries, "ci-random", tmp_path)
    code, out, err = _verify(capsys, str(path), "--cells", "1", "--seed", "3")
    assert code == 0, err
    assert "1 sampled cells, 1 evaluation(s) re-run" in out
    assert "verified" not in json.loads(path.read_text())  # without --write: untouched


def test_invented_records_are_caught(entries, ci_run, capsys, tmp_path):
    path = _entry(entries, "ci-hashmap", tmp_path)
    sub = json.loads(path.read_text())
    for record in sub["records"]:  # a perfect score, with aggregates to match
        record.update(success=1.0, normalized_return=1.0)
    sub["aggregates"] = compute_aggregates(
        pd.DataFrame(sub["records"]), Bootstrap(**sub["bootstrap"])
    )
    path.write_text(json.dumps(sub))
    assert cli(["leaderboard", "validate", str(path)]) == 0  # the records agree with themselves
    code, out, err = _verify(capsys, str(path), "--data", str(ci_run), "--cells", "1")
    assert code == 1 and "verified" not in out
    lines = err.strip().splitlines()
    assert lines[-1].startswith(f"{path}: rejected: the re-run differs in ")
    assert any("success is 1.0 in the entry, 0." in line for line in lines)


def test_what_cannot_be_rerun_is_one_line(entries, ci_run, capsys, tmp_path):
    def one_line(*argv: str) -> str:
        code, out, err = _verify(capsys, *argv)
        assert code == 2 and not out and len(err.strip().splitlines()) == 1, err
        return err

    trained = _entry(entries, "ci-transformer-bursty-full", tmp_path)
    assert "--model: give the model directory of at least one training seed" in one_line(
        str(trained)
    )
    other = ci_run / "jobs" / "dark-room" / "none-full" / "seed0" / "model"
    assert "was trained as (mode, instruction, p_bursty, parameters)" in one_line(
        str(trained), "--model", str(other)
    )
    baseline = _entry(entries, "ci-replay", tmp_path)
    sub = json.loads(baseline.read_text())
    sub["reproduce"]["data"][0]["content_hash"] = "0" * 64
    baseline.write_text(json.dumps(sub))
    assert "the run's had 000000000000" in one_line(str(baseline), "--data", str(ci_run))
    sub["reproduce"]["group"] = "elsewhere"
    baseline.write_text(json.dumps(sub))
    assert "config records no group 'elsewhere' with an evaluation config" in one_line(
        str(baseline)
    )
    del sub["reproduce"]
    baseline.write_text(json.dumps(sub))
    assert "records no way to re-run its evaluation" in one_line(str(baseline))

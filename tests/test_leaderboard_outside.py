"""An agent trajbench did not train (``examples/tabular_icl.py``) on the leaderboard: evaluated
through the CLI and the API, submitted from the evaluate outputs (``evaluation.json``), validated
and ranked in a built leaderboard; a trained model's evaluate output; what submit refuses."""

from __future__ import annotations

import dataclasses
import json
import shlex
import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from leaderboard_support import DARK_ROOM, board_order, run_cli
from pipeline_support import tiny_model

import trajbench
from trajbench.cli import main
from trajbench.collect import CollectConfig, collect
from trajbench.configs import from_dict
from trajbench.contexts import ContextConfig
from trajbench.data import load
from trajbench.pipeline.evaluate import EvalConfig
from trajbench.provenance import git_commit
from trajbench.suite import SUITE_VERSION

ROOT = Path(__file__).resolve().parent.parent
FACTORY = "examples.tabular_icl:make_policy"
#: The evaluation every output here shares: Dark Room's 16 held-out levels, K in {0, 4}.
FLAGS = ["--ks", "0", "4", "--episodes", "2", "--no-progress"]
SETTINGS = {"ks": (0, 4), "episodes": 2}
TITLE = f"{DARK_ROOM} — held-out levels (k = 4)"
#: dr_test: expert episodes of Dark Room's 16 held-out levels, as the README collects them.
pytest_plugins = ["pipeline_support"]


@pytest.fixture(scope="module")
def outputs(dr_test, tmp_path_factory) -> Path:
    """Evaluate outputs, made once: the example through the CLI (run from the repository root,
    as the README says) and through the API, and the copy baseline ``hashmap`` beside them."""
    out = tmp_path_factory.mktemp("outputs")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(ROOT)
        mp.syspath_prepend(str(ROOT))
        for name, policy in [("cli", FACTORY), ("hashmap", "hashmap")]:
            args = ["--policy", policy, "--data", dr_test, "--out", str(out / name)]
            assert main(["evaluate", *args, *FLAGS]) == 0
        from examples.tabular_icl import make_policy  # importable once the root is on the path

        policy = make_policy(load(dr_test).encoding, seed=0)
        trajbench.evaluate(policy, dr_test, out=str(out / "api"), **SETTINGS)
    return out


def _meta(path: Path) -> dict:
    return json.loads((path / "evaluation.json").read_text())


def test_evaluation_json_records_where_the_records_came_from(outputs, dr_test):
    cli, api, hashmap = (_meta(outputs / n) for n in ("cli", "api", "hashmap"))
    args = ["--policy", FACTORY, "--data", dr_test, "--out", str(outputs / "cli"), *FLAGS]
    assert cli["command"] == shlex.join(["trajbench", "evaluate", *args])
    assert (cli["policy"], cli["policy_version"]) == (FACTORY, "2.0")
    assert (api["policy"], api["policy_version"]) == ("examples.tabular_icl:TabularICL", "2.0")
    assert api["command"] == (
        f"trajbench.evaluate(<examples.tabular_icl:TabularICL>, [{dr_test!r}], "
        f"out={str(outputs / 'api')!r}, ks=(0, 4), episodes=2)"
    )
    # the config is the EvalConfig the records were made with, and reads back as one
    expected = EvalConfig(FACTORY, data=(dr_test,), out=str(outputs / "cli"), progress=False)
    assert from_dict(EvalConfig, cli["config"]) == dataclasses.replace(expected, **SETTINGS)
    for meta in (cli, api, hashmap):
        assert meta["training"] == {"train_context": "-", "instruction": "-", "p_bursty": None}
        assert meta["suite_version"] == SUITE_VERSION and meta["git_commit"] == git_commit()
        assert meta["wall_time_s"] > 0 and "cores" in meta["hardware"]
    # trajbench knows its reference policies run on the CPU, not where an outside policy runs
    assert (hashmap["device"], cli["device"]) == ("cpu", "unknown")
    cli_records = pd.read_parquet(outputs / "cli" / "records.parquet")
    api_records = pd.read_parquet(outputs / "api" / "records.parquet")
    outcome = ["level", "k", "support", "episode", "success", "return"]
    pd.testing.assert_frame_equal(cli_records[outcome], api_records[outcome])


def _submit(capsys, source: Path, name: str, root: Path) -> dict:
    rc, out, err = run_cli(
        capsys, "submit", str(source), "--name", name, "--out", str(root / "submissions")
    )
    assert rc == 0 and err == "" and f"{name}.json" in out
    return json.loads((root / "submissions" / f"{name}.json").read_text())


def test_an_agent_trajbench_did_not_train_is_submitted_and_ranked(outputs, tmp_path, capsys):
    root = tmp_path / "leaderboard"
    cli = _submit(capsys, outputs / "cli", "tabular-cli", root)
    api = _submit(capsys, outputs / "api", "tabular-api", root)
    _submit(capsys, outputs / "hashmap", "hashmap", root)
    meta = _meta(outputs / "cli")
    assert cli["model"] == {"name": FACTORY, "policy": FACTORY, "parameters": 0, "version": "2.0"}
    assert cli["training"] == {"train_context": "-", "instruction": "-", "p_bursty": None}
    assert (cli["command"], cli["config"], cli["seeds"]) == (meta["command"], meta["config"], [0])
    assert (cli["git_commit"], cli["date"]) == (meta["git_commit"], meta["date"])
    assert cli["preset"] is None and "verified" not in cli
    # what re-runs it: the evaluation store's collection and content, read from its meta.json
    store = json.loads((Path(meta["config"]["data"][0]) / "meta.json").read_text())
    (data,) = cli["reproduce"]["data"]
    assert cli["reproduce"]["group"] is None and cli["reproduce"]["models"] == {}
    assert data["content_hash"] == store["content_hash"] and data["eval_split"] == "test_levels"
    assert data["spec"] == {k: store["config"][k] for k in data["spec"]}
    assert api["model"]["policy"] == "examples.tabular_icl:TabularICL"
    # the CLI and the API played the same episodes: the same records and aggregates
    assert (cli["records"], cli["aggregates"]) == (api["records"], api["aggregates"])
    assert len(cli["records"]) == 16 * 3  # 16 levels x (k=0, k=4 same, k=4 other)

    rc, out, err = run_cli(capsys, "validate", "--root", str(root))
    assert rc == 0 and err == "" and out.count("ok: ") == 3
    assert run_cli(capsys, "build", "--root", str(root))[0] == 0
    readme = (root / "README.md").read_text()
    order = board_order(readme, TITLE)
    subs = [json.loads(p.read_text()) for p in sorted((root / "submissions").glob("*.json"))]

    def ranked_score(sub):
        agg = next(a for a in sub["aggregates"] if (a["k"], a["support"]) == (4, "same"))
        return -agg["success_mean"], -agg["success_ci_low"], sub["name"]

    assert order == [s["name"] for s in sorted(subs, key=ranked_score)]
    rows = {line.split(" | ")[1]: line for line in readme.splitlines() if line.startswith("| ")}
    assert rows["tabular-cli"].split(" | ")[0] == rows["tabular-api"].split(" | ")[0]  # a tie
    # the model column names the import path and the version its module declares
    assert f"| {FACTORY} 2.0 |" in rows["tabular-cli"] and "copy baseline" in rows["hashmap"]
    assert "tabular-cli" in (root / "index.html").read_text()


def _verify(capsys, entry: Path, *argv: str) -> tuple[int, str, str]:
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(ROOT)  # the recorded import path imports from the repository root
        return run_cli(capsys, "verify", str(entry), *argv)


def test_an_outside_entry_is_rerun_from_its_import_path_and_marked_verified(
    outputs, tmp_path, capsys
):
    root = tmp_path / "leaderboard"
    _submit(capsys, outputs / "cli", "tabular-cli", root)
    entry = root / "submissions" / "tabular-cli.json"
    rc, out, err = _verify(capsys, entry, "--write")  # the store is collected again from its spec
    assert rc == 0, err
    assert "verified tabular-cli: 8 sampled cells, 1 evaluation(s) re-run" in out
    mark = json.loads(entry.read_text())["verified"]
    assert run_cli(capsys, "build", "--root", str(root))[0] == 0
    row = next(x for x in (root / "README.md").read_text().splitlines() if "| tabular-cli |" in x)
    assert f"| verified {mark['date'][:10]}, 8 cells re-run |" in row


def test_an_outside_entry_of_another_version_or_path_is_not_rerun(outputs, tmp_path, capsys):
    root = tmp_path / "leaderboard"
    sub = _submit(capsys, outputs / "cli", "tabular-cli", root)
    entry = root / "submissions" / "tabular-cli.json"
    entry.write_text(json.dumps({**sub, "model": {**sub["model"], "version": "1.0"}}))
    rc, _, err = _verify(capsys, entry)
    assert rc == 2 and "imports here at version 2.0, the entry's is 1.0" in err
    moved = {**sub["model"], "policy": "examples.gone:make_policy"}
    entry.write_text(json.dumps({**sub, "model": moved}))
    rc, _, err = _verify(capsys, entry)
    assert rc == 2 and "examples.gone:make_policy does not import here" in err
    assert "verified" not in json.loads(entry.read_text())


@pytest.fixture(scope="module")
def bursty_model(tmp_path_factory) -> str:
    """A barely trained Dark Room model (mixed bursty and trajectories sequences, 0.5 bursty)."""
    data = tmp_path_factory.mktemp("data") / "dr-train"
    collect(
        CollectConfig(env=DARK_ROOM, levels="train", episodes_per_level=2, out=data, progress=False)
    )
    context = ContextConfig(mode="bursty", k=1, p_bursty=0.5)
    return tiny_model(data, tmp_path_factory.mktemp("model"), context)


def test_a_trained_models_evaluate_output_records_its_training_condition(
    bursty_model, dr_test, tmp_path, capsys
):
    out = tmp_path / "eval"
    args = ["--policy", bursty_model, "--data", dr_test, "--out", str(out), "--support", "same"]
    assert main(["evaluate", *args, *FLAGS, "--no-offline"]) == 0
    meta = _meta(out)
    assert meta["training"] == {"train_context": "bursty", "instruction": "full", "p_bursty": 0.5}
    assert meta["device"] == "cpu" and meta["policy_version"] == trajbench.__version__
    sub = _submit(capsys, out, "tiny-bursty", tmp_path / "leaderboard")
    assert sub["training"] == meta["training"]
    assert sub["model"]["policy"] == "transformer" and sub["model"]["parameters"] > 0
    assert sub["model"]["version"] == trajbench.__version__


def _rewrite(name: str, change: Callable[[str], str]) -> Callable[[Path], None]:
    def apply(path: Path) -> None:
        target = path / name
        target.write_text(change(target.read_text()))

    return apply


def _edit_meta(**fields):
    def change(text: str) -> str:
        meta = json.loads(text)
        for key, value in fields.items():
            if value is None:
                del meta[key]
            else:
                meta[key] = value
        return json.dumps(meta)

    return _rewrite("evaluation.json", change)


ALLOWED = ('"allow_trained_levels": false', '"allow_trained_levels": true')
REFUSED = {
    "neither output": (
        lambda path: shutil.rmtree(path) or path.mkdir(),
        "is neither a trajbench run directory (results.json) nor a trajbench evaluate output "
        "(evaluation.json)",
    ),
    "evaluation.json missing": (
        lambda path: (path / "evaluation.json").unlink(),
        "nor a trajbench evaluate output (evaluation.json): it has records.parquet only",
    ),
    "evaluation.json garbled": (
        _rewrite("evaluation.json", lambda text: text[: len(text) // 2]),
        "evaluation.json: invalid JSON",
    ),
    "evaluation.json lacks the policy": (_edit_meta(policy=None), "lacks ['policy']"),
    "evaluation.json of another evaluation": (
        _edit_meta(policy="hashmap"),
        "says policy 'hashmap' but records.parquet holds ['examples.tabular_icl:make_policy']",
    ),
    "trained levels allowed": (
        _rewrite("evaluation.json", lambda text: text.replace(ALLOWED[0], ALLOWED[1])),
        "allow_trained_levels false",
    ),
    "both json files": (
        lambda path: (path / "results.json").write_text("{}"),
        "holds both results.json (trajbench run) and evaluation.json (trajbench evaluate)",
    ),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_submit_refuses_what_is_not_a_whole_evaluate_output(outputs, tmp_path, capsys, case):
    change, message = REFUSED[case]
    source = Path(shutil.copytree(outputs / "cli", tmp_path / "cli"))
    change(source)
    out = tmp_path / "submissions"
    rc, _, err = run_cli(capsys, "submit", str(source), "--name", "x", "--out", str(out))
    assert rc == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1 and not out.exists()

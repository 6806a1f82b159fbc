"""``trajbench evaluate``: the reference baselines on Dark Room, formats and instructions in the
records, honest level sets, bad input, and a learning test (bursty beats no-context)."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re
from itertools import pairwise

import gymnasium as gym
import pandas as pd
import pytest
from pipeline_support import DARK_ROOM, GOTO, tiny_model

import trajbench
from trajbench import cli
from trajbench.baselines import HashmapPolicy
from trajbench.baselines.transformer import ModelConfig
from trajbench.collect import CollectConfig, collect
from trajbench.contexts import ContextConfig
from trajbench.errors import TrajbenchError
from trajbench.pipeline.evaluate import EvalConfig, evaluate
from trajbench.pipeline.train import TrainConfig, train

#: dr_test, goto_test: expert episodes of held-out Dark Room and GoToLocal levels.
pytest_plugins = ["pipeline_support"]


# -- reference baselines ----------------------------------------------------------------------------
def test_reference_baselines_score_what_they_must_on_dark_room(dr_test, tmp_path):
    def run(policy: str) -> pd.DataFrame:
        cfg = EvalConfig(
            policy=policy,
            data=(dr_test,),
            out=str(tmp_path / policy),
            ks=(0, 4),
            support="same",
            episodes=2,
            progress=False,
        )
        online, offline = evaluate(cfg)
        assert offline.empty  # offline accuracy is for models
        assert (tmp_path / policy / "records.parquet").exists()
        return online

    expert, hashmap, random = run("expert"), run("hashmap"), run("random")
    replay = run("replay")
    for frame in (expert, hashmap, random, replay):
        assert len(frame) == 16 * 2 * 2  # levels x k x episodes
        assert not frame.duplicated(["level", "k", "support", "episode"]).any()
        assert set(frame["format"]) == {"common"} and set(frame["eval_seed"]) == {0}
    assert expert["success"].all()
    # Returns depend on the start cell; on average the expert scores what its demonstrations do.
    assert expert["normalized_return"].mean() == pytest.approx(1.0, abs=0.15)
    success = {
        name: frame.groupby("k")["success"].mean()
        for name, frame in (("hashmap", hashmap), ("random", random))
    }
    assert success["random"].max() < 0.35
    assert success["hashmap"][4] >= success["random"][4] + 0.3
    assert success["hashmap"][4] >= success["hashmap"][0] + 0.3
    # Replaying a demonstration from another start rarely reaches the goal on Dark Room.
    assert replay[replay.k == 4]["success"].mean() < success["hashmap"][4]


def test_formats_instructions_and_decoys_are_recorded(goto_test, tmp_path):
    """A model trained on an unordered mode is scored in both formats; a decoy evaluation
    records both rates; levels it trained on are refused."""
    env = gym.make(GOTO)
    train_levels = ",".join(str(int(x)) for x in env.unwrapped.splits()["train"][:6])
    train_data = collect(
        CollectConfig(
            env=GOTO, levels=train_levels, episodes_per_level=5, out=tmp_path / "tr", progress=False
        )
    )
    model = tiny_model(train_data, tmp_path / "run", ContextConfig(mode="shuffled", k=2), steps=3)
    base = dict(policy=str(model), data=(goto_test,), ks=(0, 2), episodes=1, progress=False)
    online, _ = evaluate(EvalConfig(**base, out=str(tmp_path / "e1"), offline=False))
    assert set(online["format"]) == {"common", "matched"}
    assert set(online.loc[online.k == 0, "format"]) == {"common"}
    assert set(online["eval_instruction"]) == {"full"} and "decoy_success" not in online
    wrong, _ = evaluate(
        EvalConfig(**base, out=str(tmp_path / "e2"), instruction="decoy", formats=("common",))
    )
    assert set(wrong["eval_instruction"]) == {"decoy"} and wrong["decoy_success"].notna().all()
    with pytest.raises(Exception, match="held-out levels only"):
        evaluate(EvalConfig(**{**base, "data": (str(train_data),)}, out=str(tmp_path / "e3")))


# -- the public API ----------------------------------------------------------------------------------
def test_the_api_scores_a_policy_object_as_the_cli_scores_its_name(dr_test, tmp_path):
    """``trajbench.evaluate`` and ``trajbench evaluate --policy hashmap`` run one implementation:
    the same policy gives the same episodes; only its name differs."""
    result = trajbench.evaluate(
        HashmapPolicy(5, seed=0), dr_test, ks=(0, 4), support="same", episodes=2
    )
    records = result.records
    assert set(records["policy"]) == {"trajbench.baselines.reference:HashmapPolicy"}
    assert set(records["policy_version"]) == {trajbench.__version__}
    assert list(tmp_path.iterdir()) == []  # nothing written without out
    cli_records, _ = evaluate(
        EvalConfig(
            policy="hashmap",
            data=(dr_test,),
            out=str(tmp_path / "cli"),
            ks=(0, 4),
            support="same",
            episodes=2,
            progress=False,
        )
    )
    episode = ["family", "level", "k", "support", "format", "episode"]
    outcome = [*episode, "success", "return", "length"]
    pd.testing.assert_frame_equal(records[outcome], cli_records[outcome])
    # The aggregates: mean success per k with its CI over the 16 levels.
    agg = result.aggregates.set_index("k")
    assert list(agg.index) == [0, 4] and set(agg["n_levels"]) == {16}
    for k in (0, 4):
        assert agg.loc[k, "success_mean"] == pytest.approx(records[records.k == k].success.mean())
        assert agg.loc[k, "success_ci_low"] <= agg.loc[k, "success_mean"]
        assert agg.loc[k, "success_mean"] <= agg.loc[k, "success_ci_high"]
    named = trajbench.evaluate(
        HashmapPolicy(5, seed=0), [dr_test], name="mine", version="3", ks=(1,), out=tmp_path / "api"
    )
    assert set(named.records["policy"]) == {"mine"} and set(named.records["policy_version"]) == {
        "3"
    }
    assert (tmp_path / "api" / "records.parquet").is_file()


def test_the_api_refuses_bad_input(dr_test):
    with pytest.raises(TrajbenchError, match="needs a policy"):
        trajbench.evaluate("hashmap", dr_test)
    with pytest.raises(TrajbenchError, match=r"unknown evaluation setting\(s\) \['k'\]"):
        trajbench.evaluate(HashmapPolicy(5), dr_test, k=(1,))
    with pytest.raises(TrajbenchError, match="episodes"):
        trajbench.evaluate(HashmapPolicy(5), dr_test, episodes=0)
    with pytest.raises(TrajbenchError, match="no episode store"):
        trajbench.evaluate(HashmapPolicy(5), dr_test + "-missing")


# -- bad input ---------------------------------------------------------------------------------------
def _run(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _assert_one_line_error(code: int, err: str, expected: str) -> None:
    assert code != 0
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("trajbench evaluate: error: ")
    assert expected in err, err


@pytest.fixture(scope="module")
def dr_model(dr_test, tmp_path_factory) -> str:
    """A (barely) trained Dark Room model."""
    out = tmp_path_factory.mktemp("run")
    return tiny_model(dr_test, out, ContextConfig(mode="bursty", k=2), steps=4)


def test_bad_input(capsys, tmp_path, dr_test, goto_test, dr_model):
    out = str(tmp_path / "eval")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "trajbench_model.json").write_text('{"format": "something-else"}')
    cases = {
        "missing model": (
            ["--policy", str(tmp_path / "nope"), "--data", dr_test],
            "is not a model directory",
        ),
        "a data dir": (["--policy", dr_test, "--data", dr_test], "is not a trajbench model"),
        "foreign model": (["--policy", str(foreign), "--data", dr_test], "no format marker"),
        "other encoding": (
            ["--policy", dr_model, "--data", goto_test],
            "reads encoding 'dark-room'",
        ),
        "missing data": (["--policy", "random", "--data", str(tmp_path / "x")], "no episode store"),
        "negative k": (["--policy", "random", "--data", dr_test, "--ks", "-1"], "k >= 0"),
        "bad device": (["--policy", dr_model, "--data", dr_test, "--device", "tpu"], "'tpu'"),
        "bad support": (["--policy", "random", "--data", dr_test, "--support", "x"], "--support"),
        "levels it trained on": (
            ["--policy", dr_model, "--data", dr_test],
            "evaluation scores held-out levels only",
        ),
    }
    for name, (flags, expected) in cases.items():
        code, _, err = _run(capsys, "evaluate", *flags, "--out", out, "--no-progress")
        _assert_one_line_error(code, err, expected)
        assert not (tmp_path / "eval").exists(), name


def _field_docs(cls: type) -> dict[str, str]:
    docs, body = {}, ast.parse(inspect.getsource(cls)).body[0].body
    for node, after in pairwise(body):
        if isinstance(node, ast.AnnAssign) and isinstance(after, ast.Expr):
            docs[node.target.id] = after.value.value
    return docs


def test_help_documents_every_field(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    code, out, _ = _run(capsys, "evaluate", "--help")
    assert code == 0
    text = " ".join(re.sub(r"[│╭╮╰╯─]", " ", out).split())
    docs = _field_docs(EvalConfig)
    for field in dataclasses.fields(EvalConfig):
        assert field.name in docs, f"{field.name} has no docstring"
        assert f"--{field.name.replace('_', '-')}" in text, field.name
        assert " ".join(docs[field.name].split()[:4]) in text, field.name


# -- learning ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_bursty_training_beats_no_context_on_held_out_levels(dr_test, tmp_path):
    """A small bursty-trained model finds the hidden goal of held-out levels from K = 4
    demonstrations; the same model trained without context cannot. About 20 CPU-seconds."""
    data = collect(
        CollectConfig(
            env=DARK_ROOM,
            levels="train",
            episodes_per_level=20,
            out=tmp_path / "dr-train",
            progress=False,
        )
    )
    models = {}
    for mode in ("bursty", "none"):
        models[mode] = train(
            TrainConfig(
                data=(str(data),),
                out=str(tmp_path / mode),
                context=ContextConfig(mode=mode),
                model=ModelConfig(d_model=32, n_layers=2, n_heads=2),
                steps=200,
                batch_size=16,
                lr=3e-3,
                warmup_steps=20,
                checkpoint_every=0,
                threads=1,
                progress=False,
            )
        )

    def run(mode: str, out: str, offline: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
        cfg = EvalConfig(
            policy=str(models[mode]),
            data=(dr_test,),
            out=str(tmp_path / out),
            ks=(0, 4),
            episodes=2,
            offline=offline,
            offline_sequences=64,
            progress=False,
        )
        return evaluate(cfg)

    bursty, offline = run("bursty", "eval-bursty", offline=True)
    none, _ = run("none", "eval-none", offline=False)
    assert set(bursty["policy"]) == {"transformer"} and set(none["policy"]) == {"no-context"}

    def success(frame: pd.DataFrame, k: int, support: str) -> float:
        rows = frame[(frame.k == k) & (frame.support == support)]
        assert len(rows) == 16 * 2
        return float(rows["success"].mean())

    b4, n4 = success(bursty, 4, "same"), success(none, 4, "same")
    assert b4 >= 0.8, f"bursty success {b4}"
    assert b4 >= n4 + 0.5, f"bursty {b4} vs no-context {n4}"
    # In context, not in weights: demonstrations of other levels do not help, nor does k = 0.
    assert success(bursty, 4, "other") <= b4 - 0.5
    assert success(bursty, 0, "same") <= b4 - 0.5
    acc = offline.set_index(["k", "support"])["accuracy"]
    assert acc[(4, "same")] > 0.9 and acc[(4, "same")] > acc[(4, "other")] + 0.1

    # Deterministic: the same evaluation again gives the very same records.
    again, _ = run("bursty", "eval-bursty-again", offline=False)
    pd.testing.assert_frame_equal(again, bursty)

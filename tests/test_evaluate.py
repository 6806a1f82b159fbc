"""``trajbench evaluate`` and the policies it drives: KV-cached rollouts against re-encoding, the
reference baselines on Dark Room, bad input, and a learning test (bursty beats no-context)."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re
from itertools import pairwise

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
import torch

from trajbench import cli
from trajbench.baselines.transformer import ModelConfig, TrajectoryTransformer
from trajbench.baselines.transformer_policy import TransformerPolicy
from trajbench.collect import CollectConfig, collect
from trajbench.contexts import ContextConfig
from trajbench.data import load
from trajbench.pipeline.evaluate import EvalConfig, evaluate
from trajbench.pipeline.train import TrainConfig, train
from trajbench.policy import Policy, RowContext
from trajbench.rollout import Demonstrations, demonstrations, rollout
from trajbench.vocab import MissionVocab

DARK_ROOM = "trajbench/DarkRoom-v0"
GOTO = "trajbench/GoToLocal-v0"


@pytest.fixture(scope="module")
def dr_test(tmp_path_factory) -> str:
    """Expert episodes of Dark Room's 16 held-out levels."""
    out = tmp_path_factory.mktemp("data") / "dr-test"
    cfg = CollectConfig(
        env=DARK_ROOM, levels="test", episodes_per_level=8, seed=1, out=out, progress=False
    )
    return str(collect(cfg))


@pytest.fixture(scope="module")
def goto_test(tmp_path_factory) -> str:
    """Expert episodes of 8 held-out GoToLocal levels."""
    env = gym.make(GOTO)
    levels = ",".join(str(int(x)) for x in env.unwrapped.splits()["test"][:8])
    env.close()
    out = tmp_path_factory.mktemp("data") / "goto-test"
    cfg = CollectConfig(env=GOTO, levels=levels, episodes_per_level=3, out=out, progress=False)
    return str(collect(cfg))


def untrained_policy(store, use_cache: bool, sharpen: float = 1.0, **kw) -> TransformerPolicy:
    """A tiny random model for ``store``; ``sharpen`` scales its head so argmaxes are clear-cut."""
    vocab = MissionVocab.build(store.episodes["mission"].unique())
    torch.manual_seed(0)
    model = TrajectoryTransformer(
        ModelConfig(d_model=32, n_layers=2, n_heads=2), store.encoding, vocab
    )
    with torch.no_grad():
        model.head.weight.mul_(sharpen)
    return TransformerPolicy(model, use_cache=use_cache, seed=0, **kw)


class Twin(Policy):
    """Drives a cached and a re-encoding policy in lockstep and checks every action agrees."""

    def __init__(self, cached: Policy, reencoding: Policy):
        self.cached, self.reencoding = cached, reencoding
        self.actions: list[np.ndarray] = []
        self.episode_starts = 0

    def begin(self, rows: list[RowContext]) -> None:
        self.cached.begin(rows)
        self.reencoding.begin(rows)
        self.episode_starts += 1

    def act(self, obs, prev_action, prev_reward, rows, envs) -> np.ndarray:
        a = self.cached.act(obs, prev_action, prev_reward, rows, envs)
        b = self.reencoding.act(obs, prev_action, prev_reward, rows, envs)
        n = len(self.actions)
        assert np.array_equal(a, b), f"step {n}: cached {a.tolist()} != re-encoding {b.tolist()}"
        self.actions.append(a)
        return a


def mixed_rows(store, env_id: str, levels: list[int], ks=(0, 1, 2, 4)):
    """Rows of every level crossed with several k and both supports: contexts of many lengths."""
    demos = Demonstrations(store)
    rows = [(lv, k, s) for k in ks for s in ("same", "other") for lv in levels if k or s == "same"]
    contexts = [demos(env_id, lv, k, s, seed=0) for lv, k, s in rows]
    missions = store.episodes.groupby("level")["mission"].first().to_dict()
    return [lv for lv, _, _ in rows], contexts, missions


# -- cached stepping == re-encoding ----------------------------------------------------------------
def test_cached_rollouts_act_as_re_encoding_on_dark_room(dr_test):
    store = load(dr_test)
    levels, contexts, missions = mixed_rows(store, DARK_ROOM, sorted(store.episodes.level.unique()))
    twin = Twin(
        untrained_policy(store, use_cache=True, sharpen=30.0),
        untrained_policy(store, use_cache=False, sharpen=30.0),
    )
    records = rollout(twin, DARK_ROOM, levels, contexts, missions, n_episodes=3, seed=0)
    # 3 episodes: the second and third add the policy's own episodes to the kept cache.
    assert twin.episode_starts == 3 and len(records) == 3 * len(levels) == 3 * 7 * 16
    actions = np.concatenate(twin.actions)
    assert len(actions) == 3 * 20 * len(levels)
    assert len(np.unique(actions)) >= 3  # the check is not vacuous: the model acts on its input


def test_cached_rollouts_act_as_re_encoding_on_goto_local(goto_test):
    """Episodes end at different steps (rows leave the batch); actions are sampled."""
    store = load(goto_test)
    levels, contexts, missions = mixed_rows(store, GOTO, sorted(store.episodes.level.unique()))
    pool = {GOTO: sorted(store.episodes["mission"].unique())}
    twin = Twin(
        untrained_policy(store, use_cache=True, greedy=False, mission_pool=pool),
        untrained_policy(store, use_cache=False, greedy=False, mission_pool=pool),
    )
    records = pd.DataFrame(rollout(twin, GOTO, levels, contexts, missions, n_episodes=2, seed=0))
    for _, episode in records.groupby("episode"):
        assert episode["length"].nunique() >= 3, "rows should finish at different steps"
    assert records["success"].any() and not records["success"].all()


def test_wrong_missions_are_drawn_once_per_row_in_both_modes(goto_test):
    """The ``wrong`` instruction draws at random: both modes must draw the same missions."""
    store = load(goto_test)
    levels, contexts, missions = mixed_rows(store, GOTO, sorted(store.episodes.level.unique()))
    pool = {GOTO: sorted(store.episodes["mission"].unique())}
    kw = dict(greedy=False, mission_pool=pool, instruction="wrong", sharpen=10.0)
    twin = Twin(untrained_policy(store, True, **kw), untrained_policy(store, False, **kw))
    rollout(twin, GOTO, levels, contexts, missions, n_episodes=2, seed=1)
    shown = twin.cached._shown
    assert shown == twin.reencoding._shown and len(shown) == len(levels)
    vocab = twin.cached.vocab
    for row, lv in zip(shown, levels, strict=True):
        assert row[missions[lv]] != vocab.encode(missions[lv])  # another level's mission


def test_demonstrations_are_nested_and_shared(dr_test):
    store = load(dr_test)
    level = int(store.episodes.level.iloc[0])
    four = demonstrations(store, DARK_ROOM, level, 4, "same", seed=3)
    two = Demonstrations(store)(DARK_ROOM, level, 2, "same", seed=3)
    assert [e.episode_id for e in two] == [e.episode_id for e in four[:2]]
    assert all(e.level == level for e in four)
    other = demonstrations(store, DARK_ROOM, level, 4, "other", seed=3)
    assert all(e.level != level for e in other)
    assert demonstrations(store, DARK_ROOM, level, 0, "same", seed=3) == []


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
    for frame in (expert, hashmap, random):
        assert len(frame) == 16 * 2 * 2  # levels x k x episodes
        assert not frame.duplicated(["level", "k", "support", "episode"]).any()
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
    cfg = TrainConfig(
        data=(dr_test,),
        out=str(out),
        context=ContextConfig(mode="bursty", k=2),
        model=ModelConfig(d_model=16, n_layers=1, n_heads=2),
        steps=4,
        batch_size=4,
        threads=1,
        progress=False,
    )
    return str(train(cfg))


def test_bad_input(capsys, tmp_path, dr_test, goto_test, dr_model):
    out = str(tmp_path / "eval")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "trajbench_model.json").write_text('{"format": "something-else"}')
    cases = {
        "missing model": (["--policy", str(tmp_path / "nope"), "--data", dr_test], "neither"),
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

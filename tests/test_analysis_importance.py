"""``trajbench analyze importance``: its computations on hand-made inputs, and end to end."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

import trajbench  # noqa: F401  (registers the environments)
from trajbench.analysis.common import kl_divergence, markdown_table
from trajbench.analysis.importance import ImportanceConfig, compute, kind_table, spearman
from trajbench.analysis.steps import KINDS
from trajbench.errors import TrajbenchError

DARK_ROOM = "trajbench/DarkRoom-v0"
NOOP, UP, DOWN, LEFT, RIGHT = range(5)


# -- tables -------------------------------------------------------------------------------------
def test_spearman_perfect_reversed_and_undefined():
    x = np.array([0.1, 0.5, 0.2, 0.9])
    assert spearman(x, x**2) == pytest.approx(1.0)
    assert spearman(x, -x) == pytest.approx(-1.0)
    assert math.isnan(spearman(x, np.ones(4)))
    assert math.isnan(spearman(x[:2], x[:2]))


def test_kind_table_compares_each_kind_with_the_rest():
    steps = pd.DataFrame(
        {
            **{kind: [False] * 4 for kind in KINDS},
            "kl_replace": [4.0, 1.0, 1.0, 2.0],
            "kl_delete": [1.0, 0.0, 0.0, 0.0],
            "attention": [0.1, 0.2, 0.3, 0.4],
            "attention_max": [0.2, 0.2, 0.3, 0.4],
            "flip_replace": [1.0, 0.0, 0.0, 0.0],
        }
    )
    steps.loc[0, "goal_reached"] = True
    steps.loc[[0, 3], "turning_point"] = True
    t = kind_table(steps).set_index("kind")
    assert t.loc["goal_reached", "n"] == 1
    assert t.loc["goal_reached", "kl_replace_kind"] == 4.0
    assert t.loc["goal_reached", "kl_replace_rest"] == pytest.approx(4 / 3)
    assert t.loc["goal_reached", "ratio_kl_replace"] == pytest.approx(3.0)
    assert t.loc["turning_point", "kl_replace_kind"] == 3.0
    assert t.loc["turning_point", "share_of_steps"] == 0.5
    assert t.loc["turning_point", "attention_rest"] == pytest.approx(0.25)
    assert t.loc["key_pickup", "n"] == 0 and math.isnan(t.loc["key_pickup", "kl_replace_kind"])
    # The other steps' mean deletion effect is 0: the ratio is undefined.
    assert t.loc["turning_point", "kl_delete_rest"] == 0.0
    assert math.isnan(t.loc["turning_point", "ratio_kl_delete"])
    assert t.loc["goal_reached", "ratio_attention"] == pytest.approx(0.1 / 0.3)
    assert "| kind |" in markdown_table(t.reset_index()[["kind", "n"]])


# -- end to end ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 3-level Dark Room store and an untrained tiny model saved as trajbench train would."""
    from trajbench.baselines.transformer import ModelConfig, TrajectoryTransformer
    from trajbench.collect import CollectConfig, collect
    from trajbench.contexts import ContextConfig
    from trajbench.data import load
    from trajbench.pipeline.train import (
        TrainConfig,
        TrainingRecord,
        save_trained_model,
        trained_levels,
    )
    from trajbench.vocab import MissionVocab

    root = tmp_path_factory.mktemp("importance")
    data = collect(
        CollectConfig(
            env=DARK_ROOM, levels="3,40,77", episodes_per_level=3, out=root / "d", progress=False
        )
    )
    store = load(data)
    torch.manual_seed(0)
    model = TrajectoryTransformer(
        ModelConfig(d_model=16, n_layers=2, n_heads=2), store.encoding, MissionVocab.build([""])
    )
    config = TrainConfig(data=(str(data),), context=ContextConfig(mode="bursty", k=1))
    record = TrainingRecord(config, store.content_hash, trained_levels(store), 0, "test")
    save_trained_model(model, root / "model", record)
    return root, str(data), str(root / "model")


def _cfg(tiny, **kw) -> ImportanceConfig:
    root, data, model = tiny
    base = dict(
        model=model,
        data=(data,),
        out=str(root / "out"),
        k=1,
        sequences=3,
        replace_draws=1,
        online_seeds=1,
        threads=1,
        progress=False,
        device="cpu",
    )
    return ImportanceConfig(**{**base, **kw})


def test_end_to_end_tables_and_a_deletion_recomputed_by_hand(tiny):
    from trajbench.baselines.transformer import TrajectoryTransformer
    from trajbench.contexts import RowPlan, StepTable, assemble
    from trajbench.data import load

    result = compute(_cfg(tiny))
    steps, episodes = result.steps, result.episodes
    assert len(steps) == 3 * 20  # 3 sequences of one 20-step episode
    assert len(episodes) == 3
    for m in ("kl_replace", "kl_delete", "attention", "attention_max"):
        assert (steps[m] >= 0).all() and np.isfinite(steps[m]).all()
    assert (steps.groupby("sequence")["attention"].sum() < 1).all()
    assert (steps["attention_max"] >= steps["attention"] - 1e-7).all()
    assert steps["goal_reached"].any() and steps["episode_start"].sum() == 3
    assert {"success_base", "dsuccess_delete", "dsuccess_replace"} <= set(episodes)
    assert set(result.kinds["kind"]) == set(KINDS)
    assert result.sequences["top_share_kl_replace"].between(0.1 - 1e-9, 1).all()

    # Deleting the only context episode leaves the query alone: recompute that KL by hand.
    store = load(tiny[1])
    eps = store.episodes
    model = TrajectoryTransformer.from_pretrained(tiny[2])
    vocab = model.vocab
    table = StepTable.from_episodes(
        np.asarray(store.obs),
        np.asarray(store.actions),
        np.asarray(store.rewards),
        eps["offset"],
        eps["length"],
        eps["level"],
        eps["episode_id"],
    )
    row = episodes.iloc[0]
    q = eps[eps.episode_id == row["query_episode"]].iloc[0]
    c = eps[eps.episode_id == row["context_episode"]].iloc[0]

    def plan(with_context: bool) -> RowPlan:
        p = RowPlan()
        if with_context:
            p.add_words(vocab.encode(""), c.level, c.episode_id, query=False)
            p.add_steps(range(c.offset, c.offset + c.length), query=False)
        p.add_words(vocab.encode(""), q.level, q.episode_id, query=True)
        p.add_steps(range(q.offset, q.offset + q.length), query=True)
        return p

    logits = []
    for with_context in (True, False):
        b = assemble([plan(with_context)], table, 5)
        with torch.no_grad():
            out, _ = model(b.to_torch())
        logits.append(out[0][torch.from_numpy(b.loss_mask[0])])
    by_hand = float(kl_divergence(logits[0], logits[1]).mean())
    assert row["kl_delete"] == pytest.approx(by_hand, rel=1e-4, abs=1e-7)


def test_main_writes_the_outputs_and_the_report_reads_the_numbers(tiny, capsys):
    from trajbench.analysis import main

    root = tiny[0]
    out = root / "main-out"
    argv = ["importance", "--model", tiny[2], "--data", tiny[1], "--out", str(out), "--k", "1"]
    argv += ["--sequences", "2", "--replace-draws", "1", "--no-online", "--threads", "1"]
    assert main([*argv, "--no-progress", "--device", "cpu"]) == 0
    for suffix in (".csv", ".md", ".png", "_episodes.csv", "_kinds.csv", "_summary.csv"):
        assert (out / f"importance{suffix}").is_file()
    md = (out / "importance.md").read_text()
    summary = pd.read_csv(out / "importance_summary.csv").set_index("measure")["value"]
    share = summary["top_share_kl_replace"]
    assert f"hold {100 * share:.0f}% of the replacement effect" in md
    assert "Online" not in md  # --no-online
    assert (out / "importance.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_inputs_get_clear_errors(tiny, tmp_path):
    from trajbench.cli import main as cli
    from trajbench.collect import CollectConfig, collect

    with pytest.raises(TrajbenchError, match="k must be"):
        compute(_cfg(tiny, k=0))
    with pytest.raises(TrajbenchError, match="context_demonstrators"):
        compute(_cfg(tiny, context_demonstrators=("robot",)))
    with pytest.raises(TrajbenchError, match="does not exist"):
        compute(_cfg(tiny, model=str(tmp_path / "nope")))
    one_level = collect(
        CollectConfig(
            env=DARK_ROOM, levels="5", episodes_per_level=2, out=tmp_path / "one", progress=False
        )
    )
    with pytest.raises(TrajbenchError, match="another level"):
        compute(_cfg(tiny, data=(str(one_level),), out=str(tmp_path / "out")))
    key_door = collect(
        CollectConfig(
            env="trajbench/DarkKeyToDoor-v0",
            levels="0,1",
            episodes_per_level=1,
            out=tmp_path / "ktd",
            progress=False,
        )
    )
    with pytest.raises(TrajbenchError, match="encoding"):
        compute(_cfg(tiny, data=(str(key_door),)))
    assert cli(["analyze", "importance", "--model", tiny[2], "--data", tiny[1]]) == 2  # no --out
    assert not (tmp_path / "out").exists()

"""``trajbench analyze importance``: its computations on hand-made inputs, and end to end."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
import torch

import trajbench  # noqa: F401  (registers the environments)
from trajbench.analysis.common import kl_divergence, markdown_table, top_share
from trajbench.analysis.importance import ImportanceConfig, compute, kind_table, spearman
from trajbench.analysis.steps import KINDS, off_plan_steps, step_kinds
from trajbench.errors import TrajbenchError

DARK_ROOM = "trajbench/DarkRoom-v0"
NOOP, UP, DOWN, LEFT, RIGHT = range(5)


# -- core computations --------------------------------------------------------------------------
def test_kl_is_zero_for_identical_and_matches_a_known_pair():
    logits = torch.tensor([[0.3, -1.0, 2.0], [0.0, 0.0, 0.0]])
    assert torch.allclose(kl_divergence(logits, logits), torch.zeros(2, dtype=torch.float64))
    p, q = np.array([0.5, 0.5]), np.array([0.9, 0.1])
    expected = float(np.sum(p * np.log(p / q)))
    got = kl_divergence(torch.log(torch.tensor(p)), torch.log(torch.tensor(q)))
    assert float(got) == pytest.approx(expected, rel=1e-9)
    # Not symmetric: KL(q || p) differs.
    other = kl_divergence(torch.log(torch.tensor(q)), torch.log(torch.tensor(p)))
    assert float(other) == pytest.approx(float(np.sum(q * np.log(q / p))), rel=1e-9)
    assert float(other) != pytest.approx(expected)


def test_top_share_of_known_vectors():
    assert top_share([1.0] * 20) == pytest.approx(0.1)
    assert top_share([7.0] + [0.0] * 9) == 1.0
    assert top_share(np.arange(1, 11)) == pytest.approx(10 / 55)
    # 30 values: the top 10% is 3 values, not 4 (0.1 * 30 is 3.0000000000000004 in floats).
    assert top_share([3.0, 2.0, 1.0] + [0.0] * 27 + []) == 1.0
    assert top_share([1.0] * 3 + [1.0] * 27) == pytest.approx(3 / 30)
    assert top_share(np.arange(1, 21), fraction=0.25) == pytest.approx(sum(range(16, 21)) / 210)
    assert math.isnan(top_share([0.0, 0.0]))
    with pytest.raises(TrajbenchError):
        top_share([1.0, -1.0])
    with pytest.raises(TrajbenchError):
        top_share([1.0], fraction=0.0)


def test_spearman_perfect_reversed_and_undefined():
    x = np.array([0.1, 0.5, 0.2, 0.9])
    assert spearman(x, x**2) == pytest.approx(1.0)
    assert spearman(x, -x) == pytest.approx(-1.0)
    assert math.isnan(spearman(x, np.ones(4)))
    assert math.isnan(spearman(x[:2], x[:2]))


def test_dark_room_step_kinds_on_a_hand_made_episode():
    # Walk right twice, down once onto the goal, stay twice.
    obs = np.array([[0, 0], [1, 0], [2, 0], [2, 1], [2, 1]], np.uint8)
    actions = np.array([RIGHT, RIGHT, DOWN, NOOP, NOOP])
    rewards = np.array([0, 0, 1, 1, 1], np.float32)
    k = step_kinds(obs, actions, rewards, "dark-room")
    assert set(k) == set(KINDS)
    assert k["goal_reached"].tolist() == [False, False, True, True, True]
    assert k["goal_arrival"].tolist() == [False, False, True, False, False]
    assert k["turning_point"].tolist() == [False, False, True, True, False]
    assert k["episode_start"].tolist() == [True, False, False, False, False]
    assert k["episode_end"].tolist() == [False, False, False, False, True]
    assert not k["off_plan"].any() and not k["recovery"].any()
    assert not k["key_pickup"].any() and not k["door_opened"].any()
    # With a plan: step 1 left it, step 2 came back.
    k = step_kinds(obs, actions, rewards, "dark-room", off_plan=[False, True, False, False, False])
    assert k["off_plan"].tolist() == [False, True, False, False, False]
    assert k["recovery"].tolist() == [False, False, True, False, False]
    with pytest.raises(TrajbenchError):
        step_kinds(obs, actions, rewards[:3], "dark-room")


def test_key_to_door_step_kinds():
    # obs (x, y, has_key); the key reward at step 1, the door reward at step 3.
    obs = np.array([[0, 0, 0], [1, 0, 0], [2, 0, 1], [2, 1, 1]], np.uint8)
    actions = np.array([RIGHT, RIGHT, DOWN, DOWN])
    rewards = np.array([0, 1, 0, 1], np.float32)
    k = step_kinds(obs, actions, rewards, "dark-key-to-door")
    assert k["key_pickup"].tolist() == [False, True, False, False]
    assert k["door_opened"].tolist() == [False, False, False, True]
    assert k["goal_reached"].tolist() == [False, False, False, True]


def _minigrid_obs(agent_obj: int, front_obj: int, front_state: int) -> np.ndarray:
    from minigrid.core.constants import OBJECT_TO_IDX

    o = np.zeros(148, np.uint8)
    o[0:147:3] = OBJECT_TO_IDX["wall"]
    # image[x, y, c] flattened in C order: the agent's cell is (3, 6), the one in front (3, 5).
    o[(3 * 7 + 6) * 3] = agent_obj
    o[(3 * 7 + 5) * 3] = front_obj
    o[(3 * 7 + 5) * 3 + 2] = front_state
    return o


def test_minigrid_step_kinds_on_hand_made_views():
    from minigrid.core.actions import Actions
    from minigrid.core.constants import OBJECT_TO_IDX, STATE_TO_IDX

    empty, key, door = OBJECT_TO_IDX["empty"], OBJECT_TO_IDX["key"], OBJECT_TO_IDX["door"]
    opened, locked = STATE_TO_IDX["open"], STATE_TO_IDX["locked"]
    obs = np.stack(
        [
            _minigrid_obs(empty, key, 0),  # facing the key: pickup succeeds
            _minigrid_obs(key, door, locked),  # carrying it, facing a locked door: toggle
            _minigrid_obs(key, door, opened),  # the door is open now: forward
            _minigrid_obs(key, empty, 0),  # toggle on nothing
            _minigrid_obs(key, door, locked),  # a failed toggle: the door stays locked
            _minigrid_obs(key, door, locked),
        ]
    )
    a = [Actions.pickup, Actions.toggle, Actions.forward, Actions.toggle, Actions.toggle, 2]
    rewards = np.array([0, 0, 0, 0, 0, 0.9], np.float32)
    k = step_kinds(obs, np.array([int(x) for x in a]), rewards, "minigrid")
    assert k["key_pickup"].tolist() == [True, False, False, False, False, False]
    assert k["door_opened"].tolist() == [False, True, False, False, False, False]
    assert k["goal_reached"].tolist() == [False] * 5 + [True]
    # A pickup facing a key that does not end up carried (hands full with a ball) is not one.
    ball = OBJECT_TO_IDX["ball"]
    obs2 = np.stack([_minigrid_obs(ball, key, 0), _minigrid_obs(ball, key, 0)])
    k2 = step_kinds(obs2, np.array([int(Actions.pickup)] * 2), np.zeros(2), "minigrid")
    assert not k2["key_pickup"].any()


def test_a_real_door_key_episode_has_one_pickup_and_one_opening():
    env = gym.make("trajbench/DoorKey-v0", levels="test")
    obs, _ = env.reset(seed=3)
    raw = env.unwrapped
    o, a, r = [], [], []
    done = False
    while not done:
        o.append(raw.encode_obs(obs))
        action = raw.expert_action()
        obs, reward, term, trunc, _ = env.step(action)
        a.append(action)
        r.append(reward)
        done = term or trunc
    env.close()
    k = step_kinds(np.stack(o), np.array(a), np.array(r, np.float32), "minigrid")
    assert k["key_pickup"].sum() == 1
    assert k["door_opened"].sum() == 1
    assert k["goal_reached"].sum() == 1 and k["goal_reached"][-1]
    assert np.flatnonzero(k["key_pickup"])[0] < np.flatnonzero(k["door_opened"])[0]


def test_off_plan_steps_replays_an_episode_and_finds_its_detours():
    env = gym.make(DARK_ROOM, levels="all")
    level, seed = 40, 11
    obs, _ = env.reset(seed=seed, options={"level": level})
    raw = env.unwrapped
    detours = {1, 2, 6}
    o, a, expected = [], [], []
    for t in range(12):
        o.append(raw.encode_obs(obs))
        best = raw.expert_action()
        action = (best + 1) % 5 if t in detours else best
        expected.append(action != best)
        obs, *_ = env.step(action)
        a.append(action)
    env.close()
    o = np.stack(o)
    off = off_plan_steps(DARK_ROOM, seed, level, o, np.array(a))
    assert off.tolist() == expected
    k = step_kinds(o, np.array(a), np.zeros(12), "dark-room", off)
    assert np.flatnonzero(k["recovery"]).tolist() == [3, 7]
    wrong = o.copy()
    wrong[5, 0] = (wrong[5, 0] + 1) % 9
    assert off_plan_steps(DARK_ROOM, seed, level, wrong, np.array(a)) is None


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

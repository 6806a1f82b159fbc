"""Batched online rollouts of any policy: cached == re-encoding, formats, starts, decoys."""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pandas as pd
import pytest
import torch
from pipeline_support import DARK_ROOM, GOTO

from trajbench.baselines import ExpertPolicy
from trajbench.baselines.backbones import BACKBONES
from trajbench.baselines.transformer import ModelConfig, TrajectoryTransformer
from trajbench.baselines.transformer_policy import TransformerPolicy
from trajbench.contexts.formats import in_structure
from trajbench.data import load
from trajbench.errors import TrajbenchError
from trajbench.policy import Policy
from trajbench.privileged import PrivilegedPolicy, PrivilegedRow
from trajbench.rollout import Demonstrations, demonstrations, first_observations, rollout
from trajbench.vocab import MissionVocab, mission_key

#: dr_test, goto_test: expert episodes of held-out Dark Room and GoToLocal levels.
pytest_plugins = ["pipeline_support"]


def untrained_policy(
    store, use_cache: bool, sharpen: float = 1.0, backbone: str = "llama", **kw
) -> TransformerPolicy:
    """A tiny random model for ``store``; ``sharpen`` scales its head so argmaxes are clear-cut."""
    vocab = MissionVocab.build(store.episodes["mission"].unique())
    torch.manual_seed(0)
    model = TrajectoryTransformer(
        ModelConfig(d_model=32, n_layers=2, n_heads=2, backbone=backbone), store.encoding, vocab
    )
    with torch.no_grad():
        model.head.weight.mul_(sharpen)
    return TransformerPolicy(model, use_cache=use_cache, seed=0, **kw)


class Twin(PrivilegedPolicy):
    """Drives a cached and a re-encoding policy in lockstep and checks every action agrees."""

    def __init__(self, cached: PrivilegedPolicy, reencoding: PrivilegedPolicy):
        self.cached, self.reencoding = cached, reencoding
        self.actions: list[np.ndarray] = []
        self.episode_starts = 0

    def begin(self, rows: list[PrivilegedRow]) -> None:
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
@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_cached_rollouts_act_as_re_encoding_on_dark_room(dr_test, backbone):
    store = load(dr_test)
    levels, contexts, missions = mixed_rows(store, DARK_ROOM, sorted(store.episodes.level.unique()))
    twin = Twin(
        untrained_policy(store, use_cache=True, sharpen=30.0, backbone=backbone),
        untrained_policy(store, use_cache=False, sharpen=30.0, backbone=backbone),
    )
    assert twin.cached.cached and not twin.reencoding.cached
    records = rollout(
        twin, DARK_ROOM, levels, contexts, missions, n_episodes=3, seed=0, own_episodes=True
    )
    # 3 episodes: the second and third add the policy's own episodes to the kept cache.
    assert twin.episode_starts == 3 and len(records) == 3 * len(levels) == 3 * 7 * 16
    actions = np.concatenate(twin.actions)
    assert len(actions) == 3 * 20 * len(levels)
    assert len(np.unique(actions)) >= 3  # the check is not vacuous: the model acts on its input


@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_cached_rollouts_act_as_re_encoding_on_goto_local(goto_test, backbone):
    """Episodes end at different steps (rows leave the batch); actions are sampled; missions are
    words of several lengths (left-padded in the middle of a recurrent state)."""
    store = load(goto_test)
    levels, contexts, missions = mixed_rows(store, GOTO, sorted(store.episodes.level.unique()))
    pool = {GOTO: sorted(store.episodes["mission"].unique())}
    kw = dict(greedy=False, mission_pool=pool, backbone=backbone)
    twin = Twin(untrained_policy(store, True, **kw), untrained_policy(store, False, **kw))
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
        said = vocab.decode(row[missions[lv]][1:])
        assert mission_key(said) != mission_key(missions[lv])  # never the true one, up to articles


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


def test_independent_episodes_reuse_the_context_cache_and_match_re_encoding(dr_test):
    """The evaluation protocol: every episode of a row shows the same context (reused as is)."""
    store = load(dr_test)
    levels, contexts, missions = mixed_rows(store, DARK_ROOM, sorted(store.episodes.level.unique()))
    twin = Twin(
        untrained_policy(store, use_cache=True, sharpen=30.0),
        untrained_policy(store, use_cache=False, sharpen=30.0),
    )
    records = pd.DataFrame(rollout(twin, DARK_ROOM, levels, contexts, missions, 3, seed=2))
    assert twin.episode_starts == 3 and len(records) == 3 * len(levels)
    assert len(np.unique(np.concatenate(twin.actions))) >= 3


def test_shuffled_transition_contexts_match_re_encoding(goto_test):
    """The matched format of an unordered mode: segments of transitions with their own prev."""
    store = load(goto_test)
    levels, contexts, missions = mixed_rows(store, GOTO, sorted(store.episodes.level.unique()))
    rng = np.random.default_rng(0)
    shuffled = [in_structure(c, ordered=False, rng=rng) for c in contexts]
    for whole, parts in zip(contexts, shuffled, strict=True):
        assert [len(p) for p in parts] == [len(w) for w in whole]
        if whole:
            key = lambda a, o: sorted(zip(a.tolist(), map(bytes, o), strict=True))  # noqa: E731
            cat = lambda eps, f: np.concatenate([getattr(e, f) for e in eps])  # noqa: E731
            assert key(cat(parts, "actions"), cat(parts, "obs")) == key(
                cat(whole, "actions"), cat(whole, "obs")
            )
    twin = Twin(
        untrained_policy(store, use_cache=True, sharpen=20.0),
        untrained_policy(store, use_cache=False, sharpen=20.0),
    )
    rollout(twin, GOTO, levels, shuffled, missions, n_episodes=2, seed=0)
    # The shuffled context is not the whole one: the model sees another token sequence.
    plain = untrained_policy(store, use_cache=True, sharpen=20.0)
    rows = [
        PrivilegedRow(GOTO, lv, missions[lv], c) for lv, c in zip(levels, contexts, strict=True)
    ]
    mixed = [
        PrivilegedRow(GOTO, lv, missions[lv], c) for lv, c in zip(levels, shuffled, strict=True)
    ]
    plain.begin(rows)
    a = plain.model(plain._left_padded(rows, [r.episodes for r in rows], query=True)[0])[0]
    b = plain.model(plain._left_padded(mixed, [r.episodes for r in mixed], query=True)[0])[0]
    assert a.shape != b.shape or not torch.equal(a, b)


def test_episodes_never_start_where_a_demonstration_started(goto_test):
    store = load(goto_test)
    demos = Demonstrations(store)
    levels = sorted(int(x) for x in store.episodes.level.unique())
    missions = store.episodes.groupby("level")["mission"].first().to_dict()
    contexts = [demos(GOTO, lv, 4, "same", seed=0) for lv in levels]
    avoid = [first_observations(c) for c in contexts]
    seen = []

    class Recorder(Policy):
        def begin(self, rows):
            pass

        def act(self, obs, prev_action, prev_reward, rows):
            for j, i in enumerate(rows):
                if prev_action[j] == 7:  # the first step of an episode (start_action)
                    seen.append((i, obs[j].tobytes()))
            return np.zeros(len(rows), np.int64)

    rollout(Recorder(), GOTO, levels, contexts, missions, 6, seed=0, avoid_starts=avoid)
    assert len(seen) == 6 * len(levels)
    assert all(start not in avoid[i] for i, start in seen)
    # Without the rule some episode does start where a demonstration did (the test can fail).
    seen.clear()
    rollout(Recorder(), GOTO, levels, contexts, missions, 6, seed=0)
    assert any(start in avoid[i] for i, start in seen)


def test_decoys_name_another_object_and_are_recorded(goto_test):
    store = load(goto_test)
    levels = sorted(int(x) for x in store.episodes.level.unique())
    missions = store.episodes.groupby("level")["mission"].first().to_dict()
    shown = {}

    class Expert(ExpertPolicy):
        def begin(self, rows):
            shown.update({r.level: r.shown_mission for r in rows})

    records = pd.DataFrame(
        rollout(Expert(), GOTO, levels, [[] for _ in levels], missions, 2, seed=0, decoys=True)
    )
    assert records["success"].all()  # the environment keeps its true mission
    assert "decoy_success" in records and records["decoy_success"].mean() < 0.5
    for lv in levels:
        assert shown[lv].startswith("go to") and mission_key(shown[lv]) != mission_key(missions[lv])
    with pytest.raises(TrajbenchError, match="no decoy missions"):
        rollout(Expert(), DARK_ROOM, [3], [[]], {3: ""}, 1, seed=0, decoys=True)


def test_demonstrations_are_distinct_or_refused(goto_test):
    store = load(goto_test)
    level = int(store.episodes.level.iloc[0])
    five = demonstrations(store, GOTO, level, 5, "same", seed=0)
    assert len({e.episode_id for e in five}) == 5
    with pytest.raises(TrajbenchError, match="6 distinct expert demonstrations"):
        demonstrations(store, GOTO, level, 6, "same", seed=0)


def test_a_backbone_without_a_cache_falls_back_to_re_encoding(dr_test, monkeypatch, caplog):
    store = load(dr_test)
    monkeypatch.setitem(
        BACKBONES, "gpt2-uncached", dataclasses.replace(BACKBONES["gpt2"], cache=None)
    )
    levels, contexts, missions = mixed_rows(store, DARK_ROOM, sorted(store.episodes.level.unique()))
    with caplog.at_level(logging.WARNING, logger="trajbench.baselines.transformer_policy"):
        asked = untrained_policy(store, use_cache=True, sharpen=30.0, backbone="gpt2-uncached")
    assert not asked.cached
    assert "gpt2-uncached has no usable cache" in caplog.text
    assert "re-encode the whole sequence every step" in caplog.text
    # It acts as the cached gpt2 does (the same weights: same seed, same architecture).
    twin = Twin(untrained_policy(store, use_cache=True, sharpen=30.0, backbone="gpt2"), asked)
    assert twin.cached.cached
    rollout(twin, DARK_ROOM, levels[:8], contexts[:8], missions, n_episodes=1, seed=0)

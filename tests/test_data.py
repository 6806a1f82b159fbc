"""The episode store: round trip, determinism, workers and shards, merging, corruption, atomicity."""

from __future__ import annotations

import io
import json
import shutil
from collections import defaultdict
from pathlib import Path

import gymnasium as gym
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import trajbench
import trajbench.collect as collect_mod
from trajbench.collect import CollectConfig, collect, episode_seeds
from trajbench.data import ARRAY_FILES, EPISODE_COLUMNS, Episode, load
from trajbench.envs import FAMILIES, NAMESPACE
from trajbench.envs.dark_room import DarkRoomEnv
from trajbench.envs.demonstrators import Demonstrator
from trajbench.errors import TrajbenchError

ENV = "trajbench/DarkRoom-v0"
LEVELS = "0,5,40,80"
N = 3  # episodes per level
FILES = ["meta.json", "episodes.parquet", *ARRAY_FILES.values()]


def _collect(out: Path, **overrides) -> Path:
    fields = dict(
        env=ENV,
        levels=LEVELS,
        episodes_per_level=N,
        demonstrator="noisy",
        epsilon=0.3,
        out=out,
        progress=False,
    )
    fields.update(overrides)
    return collect(CollectConfig(**fields))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return _collect(tmp_path_factory.mktemp("store") / "ds")


@pytest.fixture
def copy(dataset, tmp_path) -> Path:
    return Path(shutil.copytree(dataset, tmp_path / "copy"))


def _fresh_rollout(level: int, index: int, seed: int = 0, epsilon: float = 0.3):
    """Written independently of trajbench.collect.rollout, to check what the store holds."""
    env = gym.make(ENV)
    env_seed, rng = episode_seeds(seed, level, index)
    demo = Demonstrator("noisy", env, rng, epsilon)
    obs, _ = env.reset(seed=env_seed, options={"level": level})
    steps = defaultdict(list)
    done = False
    while not done:
        steps["obs"].append(np.asarray(obs, dtype=np.uint8))
        action = demo.act()
        obs, reward, terminated, truncated, info = env.step(action)
        steps["actions"].append(action)
        steps["rewards"].append(reward)
        done = terminated or truncated
    return env_seed, np.stack(steps["obs"]), steps["actions"], steps["rewards"], info["success"]


def test_round_trip_matches_fresh_rollouts(dataset):
    store = load(dataset)
    df = store.episodes
    assert list(df.columns) == list(EPISODE_COLUMNS)
    levels = [int(x) for x in LEVELS.split(",")]
    assert len(store) == len(df) == len(levels) * N
    assert df["episode_id"].tolist() == [L * N + i for L in levels for i in range(N)]
    assert df["level"].tolist() == [L for L in levels for _ in range(N)]
    test_levels = set(DarkRoomEnv().splits()["test"].tolist())
    assert df["split"].tolist() == ["test" if L in test_levels else "train" for L in df["level"]]
    assert set(df["demonstrator"]) == {"noisy"} and set(df["mission"]) == {""}
    assert store.missions == [""] and store.env_ids == [ENV]
    assert store.encoding == DarkRoomEnv().encoding
    assert store.config["levels"] == LEVELS and store.config["episodes_per_level"] == N
    assert isinstance(store.obs, np.memmap) and store.obs.dtype == np.uint8
    assert store.actions.dtype == np.uint8 and store.rewards.dtype == np.float32
    assert len(store.obs) == store.n_steps == int(df["length"].sum())

    for row in df.to_dict("records"):
        index = row["episode_id"] - row["level"] * N
        env_seed, obs, actions, rewards, success = _fresh_rollout(row["level"], index)
        ep = store.episode(row["episode_id"])
        assert isinstance(ep, Episode)
        assert np.shares_memory(ep.obs, store.obs) and np.shares_memory(ep.rewards, store.rewards)
        assert row["seed"] == env_seed and row["length"] == len(obs)
        np.testing.assert_array_equal(ep.obs, obs)
        np.testing.assert_array_equal(ep.actions, actions)
        np.testing.assert_array_equal(ep.rewards, np.float32(rewards))
        start = row["offset"]
        np.testing.assert_array_equal(store.obs[start : start + row["length"]], obs)
        assert row["success"] == success and row["return"] == pytest.approx(sum(rewards))
    assert df["success"].dtype == bool and df["episode_id"].dtype == np.int64


def test_same_seed_same_bytes_other_seed_other_hash(dataset, tmp_path):
    again = _collect(tmp_path / "again")
    for name in FILES:
        assert (again / name).read_bytes() == (dataset / name).read_bytes(), name
    store = load(dataset, verify=True)
    assert load(again).content_hash == store.content_hash
    assert json.loads((dataset / "meta.json").read_text())["content_hash"] == store.content_hash
    # The streamed .npy files are exactly what np.save writes.
    buf = io.BytesIO()
    np.save(buf, np.asarray(store.obs))
    assert buf.getvalue() == (dataset / "obs.npy").read_bytes()
    assert load(_collect(tmp_path / "seed1", seed=1)).content_hash != store.content_hash


def test_workers_and_shards_give_the_same_dataset(dataset, tmp_path):
    base = load(dataset)
    parallel = _collect(tmp_path / "w2", workers=2)
    for name in FILES:
        assert (parallel / name).read_bytes() == (dataset / name).read_bytes(), name
    shard_paths = [_collect(tmp_path / "sh", shard=f"{i}/2") for i in range(2)]
    assert [p.name for p in shard_paths] == ["shard-0-of-2", "shard-1-of-2"]
    assert load(shard_paths[1]).episodes["level"].unique().tolist() == [5, 80]
    sharded = load(tmp_path / "sh", verify=True)
    assert sharded.content_hash == base.content_hash
    cols = [c for c in EPISODE_COLUMNS if c != "offset"]
    assert sharded.episodes[cols].equals(base.episodes[cols])
    for eid in base.episodes["episode_id"]:
        for a, b in zip(sharded.episode(eid), base.episode(eid), strict=True):
            np.testing.assert_array_equal(a, b)
    for row in sharded.episodes.itertuples():  # global offsets index the concatenated arrays
        np.testing.assert_array_equal(
            sharded.obs[row.offset : row.offset + row.length], base.episode(row.episode_id).obs
        )


def test_incomplete_or_mixed_shards_are_refused(tmp_path):
    _collect(tmp_path / "sh", shard="1/3")
    with pytest.raises(TrajbenchError, match=r"missing shard-0-of-3, shard-2-of-3"):
        load(tmp_path / "sh")
    with pytest.raises(TrajbenchError, match="from a split into 3 shards, not 2"):
        _collect(tmp_path / "sh", shard="0/2")
    _collect(tmp_path / "mix", shard="0/2")
    with pytest.raises(TrajbenchError, match="shard-0-of-2 of a different config"):
        _collect(tmp_path / "mix", shard="1/2", seed=7)
    assert sorted(p.name for p in (tmp_path / "mix").iterdir()) == ["shard-0-of-2"]
    # Shards of different collections assembled by hand are refused on load.
    other = _collect(tmp_path / "other", shard="1/2", seed=7)
    other.rename(tmp_path / "mix" / other.name)
    with pytest.raises(TrajbenchError, match="different collections"):
        load(tmp_path / "mix")
    with pytest.raises(TrajbenchError, match="no episode store"):
        load(tmp_path / "nothing")


def test_empty_shard_is_written_and_loads(tmp_path):
    """More shards than levels: the spare shard is an empty dataset, so the set stays complete."""
    paths = [_collect(tmp_path / "sh", levels="3,4", shard=f"{i}/3") for i in range(3)]
    assert len(load(paths[2])) == 0
    assert (
        load(tmp_path / "sh").content_hash
        == load(_collect(tmp_path / "one", levels="3,4")).content_hash
    )


@pytest.fixture
def dark_room_variant():
    """A second family with Dark Room's encoding (30-step episodes), registered for this test."""
    env_id = f"{NAMESPACE}/DarkRoomTestVariant-v0"
    gym.register(id=env_id, entry_point=DarkRoomEnv, kwargs={"max_steps": 30})
    yield env_id
    del gym.registry[env_id]


def test_merge_families_sharing_an_encoding(dataset, dark_room_variant, tmp_path):
    other = _collect(tmp_path / "variant", env=dark_room_variant, levels="5,6")
    merged = load([dataset, other])
    assert merged.env_ids == sorted([ENV, dark_room_variant])
    assert len(merged) == len(load(dataset)) + len(load(other))
    assert load([other, dataset]).content_hash == merged.content_hash
    assert merged.content_hash not in {load(dataset).content_hash, load(other).content_hash}
    assert len(merged.configs) == 2
    with pytest.raises(TrajbenchError, match="configs"):
        _ = merged.config
    # Episode 15 exists in both (level 5, index 0): the env id tells them apart.
    a, b = merged.episode(15, ENV), merged.episode(15, dark_room_variant)
    assert len(a.obs) == 20 and len(b.obs) == 30
    np.testing.assert_array_equal(b.actions, load(other).episode(15).actions)
    with pytest.raises(TrajbenchError, match="pass env_id"):
        merged.episode(15)
    for row in merged.episodes.itertuples():
        ep = merged.episode(row.episode_id, row.env_id)
        np.testing.assert_array_equal(
            merged.actions[row.offset : row.offset + row.length], ep.actions
        )
    with pytest.raises(TrajbenchError, match="appears twice"):
        load([dataset, dataset])
    with pytest.raises(TrajbenchError, match="no episode 999"):
        merged.episode(999, ENV)


def test_merge_train_and_test_collections_of_one_family(tmp_path):
    train = _collect(
        tmp_path / "train", levels="train", episodes_per_level=1, demonstrator="expert"
    )
    test = _collect(tmp_path / "test", levels="test", episodes_per_level=1, demonstrator="expert")
    store = load([train, test])
    assert len(store) == 81 and sorted(store.episodes["level"]) == list(range(81))
    assert store.episodes["success"].all()


def _has_mission(env_id: str) -> bool:
    env = gym.make(env_id)
    try:
        return bool(env.unwrapped.has_mission)
    finally:
        env.close()


def test_merge_real_families_sharing_an_encoding(tmp_path):
    """Two registered families with one encoding (the MiniGrid/BabyAI families) merge."""
    by_encoding = defaultdict(list)
    for name in FAMILIES:
        env = gym.make(f"{NAMESPACE}/{name}")
        by_encoding[env.unwrapped.encoding].append(f"{NAMESPACE}/{name}")
        env.close()
    groups = [ids for ids in by_encoding.values() if len(ids) >= 2]
    if not groups:
        pytest.skip("no two registered families share an encoding yet")
    group = groups[0]
    with_mission = [e for e in group if gym.spec(e).entry_point and _has_mission(e)]
    env_ids = [
        group[0],
        with_mission[0] if with_mission and with_mission[0] != group[0] else group[1],
    ]
    paths = []
    for i, env_id in enumerate(env_ids):
        env = gym.make(env_id)
        levels = ",".join(str(x) for x in env.unwrapped.splits()["train"][:2])
        has_mission = env.unwrapped.has_mission
        paths.append(_collect(tmp_path / str(i), env=env_id, levels=levels, episodes_per_level=1))
    merged = load(paths, verify=True)
    assert merged.env_ids == sorted(env_ids) and len(merged) == 4
    assert merged.obs.shape == (merged.n_steps, merged.encoding.n_features)
    for row in merged.episodes.to_dict("records"):
        ep = merged.episode(row["episode_id"], row["env_id"])
        assert len(ep.actions) == row["length"]
    if has_mission:
        assert all(merged.missions)


def test_different_encodings_are_refused(dataset, tmp_path):
    other = _collect(tmp_path / "k2d", env="trajbench/DarkKeyToDoor-v0", levels="7")
    with pytest.raises(TrajbenchError, match="different observation encodings"):
        load([dataset, other])


def _edit_meta(path: Path, **changes) -> None:
    meta = json.loads((path / "meta.json").read_text())
    meta.update(changes)
    (path / "meta.json").write_text(json.dumps(meta))


def _edit_parquet(path: Path, edit) -> None:
    df = pq.read_table(path / "episodes.parquet").to_pandas()
    pq.write_table(pa.Table.from_pandas(edit(df), preserve_index=False), path / "episodes.parquet")


def _truncate(path: Path, name: str, n_bytes: int = 7) -> None:
    data = (path / name).read_bytes()
    (path / name).write_bytes(data[:-n_bytes])


CORRUPTIONS = {
    "truncated obs": (lambda p: _truncate(p, "obs.npy"), "obs.npy"),
    "truncated rewards": (lambda p: _truncate(p, "rewards.npy", 4), "rewards.npy"),
    "truncated parquet": (lambda p: _truncate(p, "episodes.parquet", 100), "episodes.parquet"),
    "missing actions": (lambda p: (p / "actions.npy").unlink(), "actions.npy"),
    "missing parquet": (lambda p: (p / "episodes.parquet").unlink(), "episodes.parquet"),
    "missing meta": (lambda p: (p / "meta.json").unlink(), "not a trajbench episode store"),
    "bad json": (lambda p: (p / "meta.json").write_text("{oops"), "meta.json"),
    "wrong format": (lambda p: _edit_meta(p, format="something-else"), "meta.json"),
    "newer format": (lambda p: _edit_meta(p, format_version=99), "format_version"),
    "n_steps edited": (lambda p: _edit_meta(p, n_steps=5), "meta.json"),
    "n_episodes edited": (lambda p: _edit_meta(p, n_episodes=3), "episodes.parquet"),
    "hash edited": (lambda p: _edit_meta(p, content_hash="0" * 64), "content hash"),
    "return edited": (
        lambda p: _edit_parquet(p, lambda df: df.assign(**{"return": df["return"] + 1})),
        "episodes.parquet",
    ),
    "level edited": (
        lambda p: _edit_parquet(p, lambda df: df.assign(level=df["level"].where(df.index != 2, 7))),
        "episodes.parquet",
    ),
    "row dropped": (lambda p: _edit_parquet(p, lambda df: df.iloc[1:]), "episodes.parquet"),
    "column dropped": (
        lambda p: _edit_parquet(p, lambda df: df.drop(columns="mission")),
        "mission",
    ),
    "rewards as float64": (
        lambda p: np.save(p / "rewards.npy", np.load(p / "rewards.npy").astype(np.float64)),
        "rewards.npy",
    ),
}


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_corrupt_store_raises_naming_the_file(copy, name):
    corrupt, expected = CORRUPTIONS[name]
    corrupt(copy)
    with pytest.raises(TrajbenchError, match=expected.replace(".", r"\.")):
        load(copy)


def test_flipped_step_byte_is_caught_by_verify(copy):
    obs = np.load(copy / "obs.npy")
    obs[25, 0] = (obs[25, 0] + 1) % 9  # inside episode 1 (steps 20..39), still a valid cell
    np.save(copy / "obs.npy", obs)
    load(copy)  # structurally fine: only the step bytes changed
    with pytest.raises(TrajbenchError, match="episode 1 "):
        load(copy, verify=True)


def test_failure_mid_collection_leaves_nothing(monkeypatch, tmp_path):
    calls = {"n": 0}
    real = collect_mod.rollout

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 5:
            raise RuntimeError("simulated crash")
        return real(*args, **kwargs)

    monkeypatch.setattr(collect_mod, "rollout", failing)
    with pytest.raises(RuntimeError, match="simulated crash"):
        _collect(tmp_path / "ds")
    calls["n"] = 0
    with pytest.raises(RuntimeError, match="simulated crash"):
        _collect(tmp_path / "sharded", shard="0/2")
    calls["n"] = 0
    with pytest.raises(RuntimeError, match="simulated crash"):
        _collect(tmp_path / "a" / "b" / "ds")
    assert list(tmp_path.iterdir()) == []  # no dataset, no temporary, no empty parent


def test_crashed_collection_resumes_from_its_finished_chunks(dataset, monkeypatch, tmp_path):
    calls = {"n": 0}
    real = collect_mod.rollout

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2 * N + 1:  # in the level after the first chunk (one level each)
            raise RuntimeError("simulated crash")
        return real(*args, **kwargs)

    monkeypatch.setattr(collect_mod, "rollout", failing)
    out = tmp_path / "ds"
    with pytest.raises(RuntimeError, match="simulated crash"):
        _collect(out, chunk_levels=2)
    partial = tmp_path / ".ds.partial"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".ds.partial"]  # no lock, no store
    assert sorted(p.name for p in partial.iterdir()) == ["chunk-000000", "manifest.json"]

    with pytest.raises(TrajbenchError, match=r"unfinished collection of a different config \(seed"):
        _collect(out, chunk_levels=2, seed=3)
    calls["n"] = -100
    assert _collect(out, chunk_levels=2) == out
    assert calls["n"] == -100 + 2 * N  # the finished chunk was kept, not rolled out again
    for name in FILES:
        assert (out / name).read_bytes() == (dataset / name).read_bytes(), name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_existing_output(dataset, tmp_path):
    out = Path(shutil.copytree(dataset, tmp_path / "ds"))
    before = {n: ((out / n).read_bytes(), (out / n).stat().st_mtime_ns) for n in FILES}
    assert _collect(out) == out  # same config: already there, untouched
    with pytest.raises(TrajbenchError, match=r"different dataset \(seed 0 there, 1 here\)"):
        _collect(out, seed=1)
    assert {n: ((out / n).read_bytes(), (out / n).stat().st_mtime_ns) for n in FILES} == before
    _collect(out, seed=1, overwrite=True)
    assert load(out).config["seed"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("precious")
    for overwrite in (False, True):
        with pytest.raises(TrajbenchError, match="not a trajbench dataset"):
            _collect(tmp_path / "mine", overwrite=overwrite)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "precious"
    (tmp_path / "empty").mkdir()
    assert len(load(_collect(tmp_path / "empty"))) == 12


def test_corrupt_output_is_not_mistaken_for_done(copy):
    _truncate(copy, "obs.npy")
    with pytest.raises(TrajbenchError, match="corrupt dataset"):
        _collect(copy)
    _collect(copy, overwrite=True)
    load(copy, verify=True)


def test_trajbench_version_recorded(dataset):
    meta = json.loads((dataset / "meta.json").read_text())
    assert meta["trajbench_version"] == trajbench.__version__
    assert meta["split_version"] == 1 and meta["shard"] is None
    assert meta["encoding"] == {"name": "dark-room", "feature_sizes": [9, 9], "n_actions": 5}

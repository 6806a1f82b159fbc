"""Episode stores to and from Minari: round trips keep everything, the datasets are Minari's own
(``minari.load_dataset``, ``recover_environment``), and bad input is one clear line."""

from __future__ import annotations

import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from trajbench import cli
from trajbench.collect import CollectConfig, collect
from trajbench.data import from_minari, load, to_minari
from trajbench.errors import TrajbenchError

# The optional extra (pip install -e ".[minari]"): without it these tests skip, never error.
minari = pytest.importorskip("minari")
EpisodeBuffer = pytest.importorskip("minari.data_collector.episode_buffer").EpisodeBuffer

pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning"),  # Minari's advice on dataset metadata
    pytest.mark.filterwarnings("ignore:.*is out of date:DeprecationWarning"),
]


@pytest.fixture(autouse=True)
def datasets(tmp_path, monkeypatch) -> Path:
    """Minari's local folder, private to each test (offline: nothing is downloaded)."""
    root = tmp_path / "minari"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return root


def store(tmp_path: Path, env: str, levels: str, **kw) -> Path:
    cfg = CollectConfig(env=env, levels=levels, episodes_per_level=3, out=tmp_path / env.split("/")[1],
                        progress=False, **kw)  # fmt: skip
    return collect(cfg)


def same_store(a, b) -> None:
    columns = ["episode_id", "level", "split", "demonstrator", "length", "return", "success",
               "mission", "seed"]  # fmt: skip
    assert a.episodes[columns].equals(b.episodes[columns])
    for name in ("obs", "actions", "rewards"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)
    assert a.content_hash == b.content_hash


@pytest.mark.parametrize(
    ("env", "levels", "kw"),
    [
        ("trajbench/DarkRoom-v0", "0,3", {"demonstrator": "noisy", "sticky_p": 0.2}),
        ("trajbench/DarkKeyToDoor-v0", "5", {"demonstrator": "random"}),
        ("trajbench/DarkSequence-v0", "2", {}),
        ("trajbench/GoToLocal-v1", "1,2", {}),
        ("trajbench/DoorKey-v0", "4", {"demonstrator": "noisy"}),
    ],
)
def test_round_trip_keeps_every_episode(tmp_path, env, levels, kw):
    original = store(tmp_path, env, levels, **kw)
    to_minari(original, "trajbench/test-v0")
    back = from_minari("trajbench/test-v0", tmp_path / "back")
    same_store(load(original), load(back))
    assert load(back).config == {
        "minari_dataset": "trajbench/test-v0",
        "env": env,
        "sticky_p": kw.get("sticky_p", 0.0),
    }


def test_the_dataset_is_the_familys_own(tmp_path):
    original = load(store(tmp_path, "trajbench/GoToLocal-v1", "1,2"))
    to_minari(original, "goto-v0")
    dataset = minari.load_dataset("goto-v0")
    assert dataset.total_episodes == len(original) and dataset.total_steps == original.n_steps
    env = dataset.recover_environment()
    assert env.spec.id == "trajbench/GoToLocal-v1"
    assert isinstance(dataset.observation_space["mission"], gym.spaces.Text)
    for episode, row in zip(
        dataset.iterate_episodes(), original.episodes.itertuples(), strict=True
    ):
        n = len(episode.actions)
        assert n == row.length and len(episode.observations["mission"]) == n + 1
        assert set(episode.observations["mission"]) == {row.mission}
        assert episode.infos["level"].tolist() == [row.level] * (n + 1)
        assert bool(episode.terminations[-1]) == row.success  # BabyAI ends on success only
        obs, _ = env.reset(seed=row.seed, options={"level": row.level})
        np.testing.assert_array_equal(obs["image"], episode.observations["image"][0])


def test_cli_export_then_import(tmp_path, capsys):
    original = store(tmp_path, "trajbench/DarkRoom-v0", "0,1")
    assert cli.main(["export", str(original), "--to-minari", "ns/dr-v0"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("wrote Minari dataset ns/dr-v0") and "6/6" in err  # the progress bar
    assert "ns/dr-v0" in minari.list_local_datasets()
    back = tmp_path / "back"
    assert cli.main(["import-minari", "ns/dr-v0", "--out", str(back), "--quiet"]) == 0
    assert capsys.readouterr() == ("", "")
    same_store(load(original), load(back))
    rc = cli.main(["export", str(original), "--to-minari", "ns/dr-v0"])
    assert rc == 2 and "already exists" in capsys.readouterr().err
    assert cli.main(["export", str(original), "--to-minari", "ns/dr-v0", "--overwrite"]) == 0


def foreign_dataset(dataset_id: str, infos: dict | None, env: str | None = "trajbench/DarkRoom-v0"):
    """A dataset written by Minari itself, not by trajbench."""
    steps = 4
    buffer = EpisodeBuffer(
        observations=np.tile([1, 2], (steps + 1, 1)),
        actions=[0] * steps,
        rewards=[0.0] * steps,
        terminations=[False] * steps,
        truncations=[False] * (steps - 1) + [True],
        infos=infos,
    )
    space = gym.spaces.MultiDiscrete([9, 9])
    kw = (
        {"env": env}
        if env
        else {"observation_space": space, "action_space": gym.spaces.Discrete(5)}
    )
    minari.create_dataset_from_buffers(dataset_id, [buffer], data_format="arrow", **kw)


def test_a_dataset_without_levels_is_refused(tmp_path):
    foreign_dataset("nolevels-v0", infos=None)
    with pytest.raises(TrajbenchError, match="no level in its infos"):
        from_minari("nolevels-v0", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_foreign_dataset_with_levels_imports(tmp_path):
    foreign_dataset("levels-v0", infos={"level": [7] * 5})
    imported = load(from_minari("levels-v0", tmp_path / "out"))
    row = imported.episodes.iloc[0]
    split = "test" if 7 in gym.make("trajbench/DarkRoom-v0").unwrapped.splits()["test"] else "train"
    assert (row.level, row.seed, row.split, row.length) == (7, -1, split, 4)
    assert row.demonstrator == "minari" and imported.episodes.mission[0] == ""
    assert imported.obs.tolist() == [[1, 2]] * 4
    with pytest.raises(TrajbenchError, match="no env seed"):
        to_minari(imported, "again-v0")  # a replay needs the seed
    assert "again-v0" not in minari.list_local_datasets()


def test_a_dataset_of_no_trajbench_family_needs_env(tmp_path):
    foreign_dataset("anon-v0", infos={"level": [7] * 5}, env=None)
    with pytest.raises(TrajbenchError, match="names no environment; pass --env"):
        from_minari("anon-v0", tmp_path / "out")
    assert load(from_minari("anon-v0", tmp_path / "out", env="DarkRoom-v0")).episodes.level[0] == 7
    with pytest.raises(TrajbenchError, match="has observations"):
        from_minari("anon-v0", tmp_path / "other", env="DarkKeyToDoor-v0")


def test_bad_input(tmp_path, capsys):
    rc = cli.main(["import-minari", "missing-v0", "--out", str(tmp_path / "x")])
    assert rc == 2 and "cannot load Minari dataset missing-v0" in capsys.readouterr().err
    dr = store(tmp_path, "trajbench/DarkRoom-v0", "0")
    rc = cli.main(["export", str(dr), "--to-minari", "no version"])
    assert rc == 2 and "is not a Minari dataset id" in capsys.readouterr().err
    both = [
        store(tmp_path, "trajbench/DoorKey-v1", "0"),
        store(tmp_path, "trajbench/Unlock-v1", "0"),
    ]
    with pytest.raises(TrajbenchError, match="mixes families"):
        to_minari(load(both), "mixed-v0")
    sticky = [store(tmp_path / "a", "trajbench/DarkRoom-v0", "0"),
              store(tmp_path / "b", "trajbench/DarkRoom-v0", "0", sticky_p=0.1)]  # fmt: skip
    with pytest.raises(TrajbenchError, match="mixes sticky_p values"):
        to_minari(load(sticky), "sticky-v0")
    changed = store(tmp_path / "edited", "trajbench/DarkRoom-v0", "0")
    obs = np.load(changed / "obs.npy", mmap_mode="r+")
    obs[3] = (obs[3] + 1) % 9
    obs.flush()
    with pytest.raises(TrajbenchError, match="does not replay"):
        to_minari(load(changed), "edited-v0")
    assert "edited-v0" not in minari.list_local_datasets()


def test_without_minari_the_error_names_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "minari", None)
    rc = cli.main(["import-minari", "any-v0", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and 'pip install "trajbench[minari]"' in err[0]

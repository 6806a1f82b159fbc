"""``trajbench render``: frames of a policy's episode after K demonstrations, GIFs, bad input, and
the run's episode GIFs (``write_episode_gifs``; the runner's own run is in ``test_runner.py``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pipeline_support import tiny_model

from trajbench import cli
from trajbench.baselines import ExpertPolicy, RandomPolicy
from trajbench.collect import CollectConfig, collect
from trajbench.contexts import ContextConfig
from trajbench.envs.dark_render import CELL_PX, GOAL
from trajbench.pipeline.presets import PRESETS
from trajbench.pipeline.render import make_recording_env, play, write_episode_gifs, write_gif
from trajbench.pipeline.runner import jobs_of

DARK_ROOM = "trajbench/DarkRoom-v0"


@pytest.fixture(scope="module")
def dr_model(tmp_path_factory) -> str:
    """A (barely) trained Dark Room model."""
    data = collect(
        CollectConfig(
            env=DARK_ROOM,
            levels="0,1,2,4",
            episodes_per_level=3,
            out=tmp_path_factory.mktemp("data") / "dr",
            progress=False,
        )
    )
    return tiny_model(data, tmp_path_factory.mktemp("run"), ContextConfig(mode="bursty", k=2))


def test_play_shows_the_episode_after_its_demonstrations():
    env = make_recording_env(DARK_ROOM)
    frames, record = play(ExpertPolicy(), env, level=40, k=2, seed=0)
    assert record["success"] and len(frames) == record["length"] + 1  # the start, then each step
    goal = env.unwrapped.goal
    assert tuple(frames[0][goal[1] * CELL_PX + 5, goal[0] * CELL_PX + 5]) == GOAL
    with_demos, again = play(ExpertPolicy(), env, level=40, k=2, seed=0, show_demos=True)
    assert again == record and len(with_demos) > len(frames)
    for a, b in zip(with_demos[-len(frames) :], frames, strict=True):
        np.testing.assert_array_equal(a, b)  # the same episode, after the demonstrations
    plain = make_recording_env(DARK_ROOM, hidden=False)
    hidden_frames, _ = play(ExpertPolicy(), plain, level=40, k=2, seed=0)
    assert not np.array_equal(hidden_frames[0], frames[0])


def test_play_avoids_the_demonstrations_starts():
    env = make_recording_env(DARK_ROOM)
    _, record = play(RandomPolicy(5, seed=0), env, level=3, k=4, seed=1)
    assert record["length"] == env.unwrapped.max_steps


def test_write_gif_round_trips_the_frames(tmp_path):
    frames = [np.full((16, 16, 3), (v, 0, 255 - v), np.uint8) for v in (0, 128, 255)]
    gif = Image.open(write_gif(frames, tmp_path / "x.gif", fps=5))
    assert gif.n_frames == 3 and gif.info["loop"] == 0
    for i, frame in enumerate(frames):
        gif.seek(i)
        np.testing.assert_array_equal(np.asarray(gif.convert("RGB")), frame)


def test_cli_renders_a_trained_model_and_a_reference_policy(dr_model, tmp_path, capsys):
    out = tmp_path / "dr.gif"
    rc = cli.main(["render", "--model", dr_model, "--env", "DarkRoom-v0", "--level", "7",
                   "--k", "2", "--out", str(out)])  # fmt: skip
    printed = capsys.readouterr().out.strip().splitlines()
    assert rc == 0 and len(printed) == 1 and printed[0].endswith(f"-> {out}")
    assert Image.open(out).n_frames >= 2
    goto = tmp_path / "goto.gif"
    rc = cli.main(["render", "--policy", "expert", "--env", "trajbench/GoToLocal-v1",
                   "--level", "17", "--out", str(goto), "--quiet"])  # fmt: skip
    assert rc == 0 and capsys.readouterr() == ("", "")
    frame = Image.open(goto)
    assert frame.n_frames >= 2 and frame.size == (256, 256)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--level", "1"], "one of --model DIR or --policy NAME"),
        (["--level", "1", "--policy", "expert", "--model", "m"], "one of --model"),
        (["--level", "81", "--policy", "expert"], "out of range"),
        (["--level", "1", "--policy", "nobody"], "is not a model directory"),
        (["--level", "1", "--policy", "expert", "--k", "-1"], "k must be >= 0"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(args, message, tmp_path, capsys):
    out = tmp_path / "x.gif"
    rc = cli.main(["render", "--env", DARK_ROOM, "--out", str(out), *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and message in err[0]
    assert not out.exists() and not list(tmp_path.iterdir())


def test_out_must_be_a_gif(tmp_path, capsys):
    rc = cli.main(["render", "--env", DARK_ROOM, "--level", "1", "--policy", "expert",
                   "--out", str(tmp_path / "x.png")])  # fmt: skip
    assert rc == 2 and ".gif" in capsys.readouterr().err


def test_run_gifs_skip_a_family_that_fails_with_a_warning(tmp_path, capsys):
    jobs = jobs_of(PRESETS["ci"], (0,))  # nothing trained under tmp_path: no model to play
    report = tmp_path / "report.md"
    report.write_text("# report\n")
    assert write_episode_gifs(tmp_path, jobs) == []
    err = capsys.readouterr().err.strip().splitlines()
    families = {s.env for j in jobs for s in (*j.group.test_data, *j.group.heldout_family_data)}
    assert len(err) == len(families) and all(e.startswith("warning: no episode GIFs") for e in err)
    assert report.read_text() == "# report\n"


def test_run_gifs_replace_their_report_section(tmp_path, dr_model, monkeypatch):
    jobs = [j for j in jobs_of(PRESETS["ci"], (0,)) if j.condition is not None][:1]
    model = jobs[0].directory(tmp_path) / "model"
    model.parent.mkdir(parents=True)
    model.symlink_to(Path(dr_model).resolve())
    (tmp_path / "report.md").write_text("# report\n\ntext\n")
    for _ in range(2):
        written = write_episode_gifs(tmp_path, jobs)
    report = (tmp_path / "report.md").read_text()
    assert report.startswith("# report\n\ntext\n\n## Episodes\n")
    assert report.count("## Episodes") == 1
    names = sorted(p.name for p in written)
    assert names == sorted(["DarkRoom-v0-expert.gif", f"DarkRoom-v0-{jobs[0].name}.gif"])
    for name in names:
        assert f"(episodes/{name})" in report  # a model that stays put makes a one-frame GIF
        assert Image.open(tmp_path / "episodes" / name).format == "GIF"

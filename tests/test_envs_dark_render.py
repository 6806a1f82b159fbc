"""The dark families' frames: grid and agent always, the hidden goal, key, door or waypoints on
request (``render_hidden=True``)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import trajbench  # noqa: F401  (registers the families)
from trajbench.envs.dark_render import (
    AGENT,
    BACKGROUND,
    CELL_PX,
    DOOR,
    GOAL,
    KEY,
    LABEL,
    VISITED,
    WAYPOINT,
    Mark,
    draw_grid,
)

DARK = ["trajbench/DarkRoom-v0", "trajbench/DarkKeyToDoor-v0", "trajbench/DarkSequence-v0"]


def colour_at(frame: np.ndarray, cell, dx: int = 5, dy: int = 5) -> tuple[int, ...]:
    """The colour of a pixel near the top-left corner of ``cell``, inside any mark."""
    return tuple(int(c) for c in frame[cell[1] * CELL_PX + dy, cell[0] * CELL_PX + dx])


def centre(frame: np.ndarray, cell) -> tuple[int, ...]:
    return colour_at(frame, cell, CELL_PX // 2, CELL_PX // 2)


def made(env_id: str, level: int, hidden: bool = True):
    env = gym.make(env_id, render_mode="rgb_array", render_hidden=hidden)
    env.reset(seed=0, options={"level": level})
    return env, env.unwrapped


def test_draw_grid_places_marks_agent_and_labels():
    frame = draw_grid(4, (1, 2), [Mark((3, 0), GOAL), Mark((0, 3), WAYPOINT, label=7)])
    assert frame.shape == (4 * CELL_PX, 4 * CELL_PX, 3) and frame.dtype == np.uint8
    assert centre(frame, (1, 2)) == AGENT
    assert colour_at(frame, (3, 0)) == GOAL
    assert colour_at(frame, (2, 2)) == BACKGROUND
    label = frame[3 * CELL_PX : 4 * CELL_PX, 0:CELL_PX]
    assert (label == LABEL).all(axis=-1).sum() > 20  # the digit is drawn in the waypoint


def test_draw_grid_shows_what_the_agent_carries():
    frame = draw_grid(2, (0, 0), carrying=KEY)
    assert centre(frame, (0, 0)) == KEY
    assert colour_at(frame, (0, 0), CELL_PX // 2, 7) == AGENT


@pytest.mark.parametrize("env_id", DARK)
def test_frames_hide_the_level_unless_asked(env_id):
    level = 7
    shown, u = made(env_id, level, hidden=True)
    plain, _ = made(env_id, level, hidden=False)
    a, b = shown.render(), plain.render()
    assert a.shape == b.shape == (u.size * CELL_PX, u.size * CELL_PX, 3)
    assert centre(b, u.pos) == AGENT
    assert set(map(tuple, b.reshape(-1, 3).tolist())) <= {BACKGROUND, (58, 58, 74), AGENT}
    assert not np.array_equal(a, b)


def test_dark_room_frame_shows_the_goal_and_follows_the_agent():
    env, u = made("trajbench/DarkRoom-v0", 40)
    before = env.render()
    assert colour_at(before, u.goal) == GOAL
    env.step(u.expert_action())
    after = env.render()
    assert centre(after, u.pos) == AGENT and not np.array_equal(before, after)


def test_key_to_door_frame_drops_the_key_once_carried():
    env, u = made("trajbench/DarkKeyToDoor-v0", 42)
    assert colour_at(env.render(), u.door) == DOOR
    assert centre(env.render(), u.key) in (KEY, AGENT)
    while not u.has_key:
        env.step(u.expert_action())
    frame = env.render()
    assert centre(frame, u.pos) == KEY  # the dot of the carried key on the agent
    assert colour_at(frame, u.door) == DOOR


def test_sequence_frame_numbers_the_waypoints_and_greys_visited_ones():
    env, u = made("trajbench/DarkSequence-v0", 11)
    frame = env.render()
    assert [colour_at(frame, c, 4, 4) for c in u.waypoints] == [WAYPOINT] * u.n_waypoints
    while u.stage == 0:
        env.step(u.expert_action())
    frame = env.render()
    assert colour_at(frame, u.waypoints[0], 4, 4) == VISITED
    assert colour_at(frame, u.waypoints[-1], 4, 4) == WAYPOINT


@pytest.mark.parametrize("env_id", DARK)
def test_render_modes(env_id):
    assert gym.make(env_id).unwrapped.render() is None
    with pytest.raises(ValueError, match="render_mode"):
        type(gym.make(env_id).unwrapped)(render_mode="ansi")


@pytest.mark.filterwarnings("ignore:.*HumanRendering wrapper:UserWarning")
@pytest.mark.parametrize("env_id", DARK)
def test_human_mode_is_gymnasiums_window_over_the_frames(env_id, monkeypatch):
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    env = gym.make(env_id, render_mode="human", render_hidden=True)
    assert isinstance(env, gym.wrappers.HumanRendering)
    env.reset(seed=0)
    env.step(env.unwrapped.expert_action())
    env.close()

"""Reading what a level's demonstrations did: the targets of the in-context decoder.

Everything here reads the stored demonstration records (observations, actions, rewards) and
nothing the level hides:

- on the dark grids the observation starts with the agent's ``(x, y)``, so the cell a rewarded
  step entered is ``move(obs[t][:2], actions[t])`` (:func:`rewarded_cells`);
- a MiniGrid observation is the egocentric 7x7 view and the direction, without the agent's
  position. :func:`localize` finds it: it keeps the start poses of the level whose view equals the
  demonstration's first observation, replays the demonstration's actions from each with
  MiniGrid's own dynamics, and keeps the poses under which every later view matches too. The
  survivor's path says which cells the demonstration acted on (:func:`minigrid_plan`). The level's
  map is used to *interpret* the views, as a navigator would; a demonstration of another level
  matches no pose and yields no plan.
"""

from __future__ import annotations

import copy
from collections import Counter
from typing import Any, NamedTuple

import numpy as np
from minigrid.core.actions import Actions
from minigrid.minigrid_env import MiniGridEnv

from trajbench.envs.dark_grid import move
from trajbench.envs.minigrid_levels import encode_minigrid_obs
from trajbench.policy import EpisodeRecord

_INTERACTIONS = (int(Actions.pickup), int(Actions.drop), int(Actions.toggle))
_FORWARD, _DONE = int(Actions.forward), int(Actions.done)


class Step(NamedTuple):
    """One step of a MiniGrid plan: face ``cell``, then take ``action``."""

    cell: tuple[int, int]
    action: int


def rewarded_cells(episode: EpisodeRecord, size: int) -> list[tuple[int, int]]:
    """The dark-grid cells the episode's rewarded steps entered, in order, repeats merged.

    Example:
        >>> ep = EpisodeRecord(np.array([[0, 0], [1, 0], [1, 0]], np.uint8), np.array([4, 0, 0]),
        ...                    np.array([0.0, 1.0, 1.0], np.float32), level=1)
        >>> rewarded_cells(ep, size=3)
        [(1, 0)]
    """
    cells: list[tuple[int, int]] = []
    for t in np.flatnonzero(np.asarray(episode.rewards) > 0):
        pos = np.asarray(episode.obs[t][:2], dtype=np.int64)
        cell = tuple(int(v) for v in move(pos, int(episode.actions[t]), size))
        if not cells or cells[-1] != cell:
            cells.append(cell)
    return cells


def dark_plan(episodes: list[EpisodeRecord], size: int) -> list[tuple[int, int]]:
    """The most common rewarded-cell sequence among the demonstrations ([] if none has one)."""
    seqs = Counter(tuple(c) for ep in episodes if (c := rewarded_cells(ep, size)))
    return list(seqs.most_common(1)[0][0]) if seqs else []


def _pose_view(sim: Any, cell: tuple[int, int], direction: int) -> np.ndarray:
    sim.agent_pos, sim.agent_dir = cell, direction
    return encode_minigrid_obs(sim.gen_obs())


def localize(env: Any, episode: EpisodeRecord) -> Any | None:
    """A copy of ``env`` replayed through ``episode`` from the start pose its views imply.

    Args:
        env: An unwrapped MiniGrid family environment in the initial state of the episode's level
            (right after ``reset``; the agent's own pose is ignored).
        episode: A demonstration of that level.

    Returns:
        The copy after the demonstration's last action (its ``agent_pos``, ``agent_dir``, grid and
        ``carrying`` are where the demonstration ended), with ``demo_path``: the
        ``(cell, direction)`` before each action. None if no start pose explains every view.
    """
    if not len(episode):
        return None
    obs = np.asarray(episode.obs, dtype=np.uint8)
    base = copy.deepcopy(env)
    base.carrying = None
    grid = base.grid
    poses = [
        ((x, y), d)
        for y in range(grid.height)
        for x in range(grid.width)
        if grid.get(x, y) is None or grid.get(x, y).can_overlap()
        for d in range(4)
        if d == int(obs[0][-1])
    ]
    starts = [p for p in poses if np.array_equal(_pose_view(base, *p), obs[0])]
    for cell, direction in starts:
        sim = copy.deepcopy(base)
        sim.agent_pos, sim.agent_dir = cell, direction
        path = []
        for t, action in enumerate(np.asarray(episode.actions, dtype=np.int64)):
            if not np.array_equal(encode_minigrid_obs(sim.gen_obs()), obs[t]):
                break
            path.append(((int(sim.agent_pos[0]), int(sim.agent_pos[1])), int(sim.agent_dir)))
            MiniGridEnv.step(sim, int(action))
        else:
            sim.demo_path = path
            return sim
    return None


def minigrid_plan(env: Any, episode: EpisodeRecord, decoder: str) -> list[Step]:
    """The cells a demonstration acted on, in order, as steps to repeat ([] if it does not localize).

    Every interaction (pickup, drop, toggle) is a step on the cell it faced; then ``goal_cell``
    adds stepping onto the cell the demonstration ended on, ``final_object`` facing the cell it
    ended facing (unless it ended with an interaction, which is already the last step).
    """
    sim = localize(env, episode)
    if sim is None:
        return []
    steps = []
    for ((x, y), d), action in zip(sim.demo_path, episode.actions, strict=True):
        if int(action) in _INTERACTIONS:
            dx, dy = ((1, 0), (0, 1), (-1, 0), (0, -1))[d]
            steps.append(Step((x + dx, y + dy), int(action)))
    end = (int(sim.agent_pos[0]), int(sim.agent_pos[1]))
    if decoder == "goal_cell":
        steps.append(Step(end, _FORWARD))
    elif int(episode.actions[-1]) not in _INTERACTIONS:
        front = sim.front_pos
        steps.append(Step((int(front[0]), int(front[1])), _DONE))
    return steps

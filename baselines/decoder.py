"""The bar and the no-context reference: the in-context decoder and the query-only solver.

Neither learns. Both navigate with privileged knowledge of the layout, as the expert does (the
grid's moves; MiniGrid's :class:`~trajbench.envs.minigrid_planner.GridPlanner`), but choose
*where to go* only from what their inputs show:

- ``query-only`` (:class:`QueryOnlyPolicy`) sees no context: the mission, its own view and a
  systematic search. Per family (``query_solver``): ``sweep`` stays put once (a reward counts
  where a step ends), then walks to the nearest cell no step has ended on (dark grids: a found key
  restarts the sweep for the door); ``explore`` walks to face
  the nearest cell its view has not shown until a goal has been in view, then takes the expert's
  path (picking up a key it has seen when nothing else is reachable); ``mission`` is the expert,
  whose target the mission and the view name (BabyAI, Unlock).
- ``decoder`` (:class:`DecoderPolicy`) reads the K demonstrations of the level (per family,
  ``demo_decoder``): ``goal_cell`` walks to the cell where a demonstration succeeded,
  ``ordered_cells`` visits the rewarded cells in the demonstrated order (Dark Key-to-Door: key
  then door; Dark Sequence: the waypoints, never entering a later one early), ``final_object``
  repeats the demonstration's interactions and faces the object it ended at. The targets come from
  :mod:`trajbench.baselines.demo_reading`; with no demonstration (K = 0), or none it can read, a
  row falls back to the query-only solver. It is the bar a learned in-context policy is measured
  against: scores are also shown as (score - random) / (decoder - random).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from minigrid.core.actions import Actions
from minigrid.core.constants import OBJECT_TO_IDX

from trajbench.envs.dark_grid import DarkGridEnv, move, step_toward
from trajbench.envs.dark_sequence import distance_fields
from trajbench.envs.levels import DEMO_DECODERS, QUERY_SOLVERS
from trajbench.envs.minigrid_planner import GridPlanner
from trajbench.privileged import PrivilegedPolicy, PrivilegedRow
from trajbench.records import DECODER, QUERY_ONLY

from .demo_reading import Step, dark_plan, minigrid_plan

_FORWARD, _PICKUP, _LEFT = int(Actions.forward), int(Actions.pickup), int(Actions.left)
_GOAL = OBJECT_TO_IDX["goal"]


def dark_step(pos: np.ndarray, target: tuple[int, int], avoid: list, size: int) -> int:
    """First move of a shortest path from ``pos`` to ``target`` that never enters ``avoid``."""
    if not avoid:
        return int(step_toward(np.asarray(pos), np.asarray(target)))
    cell = target[1] * size + target[0]
    blocked = np.array([[c[1] * size + c[0] for c in avoid]])
    dist = distance_fields(size, np.array([cell]), blocked)[0]
    ahead = move(np.asarray(pos, dtype=np.int64)[None, :], np.arange(5), size)
    return int(dist[ahead[:, 1] * size + ahead[:, 0]].argmin())


def family_attr(env, name: str, known: tuple[str, ...]) -> str:
    """The family's ``demo_decoder`` / ``query_solver``, refused if unknown."""
    value = getattr(type(env.unwrapped), name, "")
    if value not in known:
        raise ValueError(
            f"{type(env.unwrapped).__name__}.{name} is {value!r}; expected one of {', '.join(known)}"
        )
    return value


class QueryOnlyPolicy(PrivilegedPolicy):
    """The family's best solver without context (see the module docstring)."""

    name = QUERY_ONLY

    def begin(self, rows: list[PrivilegedRow]) -> None:
        self.state: list[dict | None] = [None] * len(rows)

    def act(self, obs, prev_action, prev_reward, rows, envs) -> np.ndarray:
        out = np.zeros(len(rows), dtype=np.int64)
        for j, i in enumerate(rows.tolist()):
            env = envs[j].unwrapped
            if self.state[i] is None:
                self.state[i] = {"solver": family_attr(envs[j], "query_solver", QUERY_SOLVERS)}
            out[j] = getattr(self, "_" + self.state[i]["solver"])(self.state[i], obs[j], env)
        return out

    @staticmethod
    def _sweep(state: dict, obs: np.ndarray, env) -> int:
        pos = (int(obs[0]), int(obs[1]))
        phase = tuple(int(v) for v in obs[2:])  # Dark Key-to-Door: a found key starts a new sweep
        if state.get("phase") != phase:  # a reward counts where a step ends: stay first
            state["phase"], state["visited"] = phase, set()
        else:
            state["visited"].add(pos)
        size = env.size
        todo = [(x, y) for y in range(size) for x in range(size) if (x, y) not in state["visited"]]
        if not todo:
            return 0
        near = min(todo, key=lambda c: abs(c[0] - pos[0]) + abs(c[1] - pos[1]))
        return int(step_toward(np.asarray(pos), np.asarray(near)))

    @staticmethod
    def _mission(state: dict, obs: np.ndarray, env) -> int:
        return int(env.expert_action())

    @staticmethod
    def _explore(state: dict, obs: np.ndarray, env) -> int:
        if "planner" not in state:
            state["planner"], state["seen"] = GridPlanner(env), set()
        planner, seen = state["planner"], state["seen"]
        _, vis = env.gen_obs_grid()
        top_x, top_y, bot_x, bot_y = env.get_view_exts()
        for y in range(max(top_y, 0), min(bot_y, env.height)):
            for x in range(max(top_x, 0), min(bot_x, env.width)):
                vx, vy = env.get_view_coords(x, y)
                if 0 <= vx < vis.shape[0] and 0 <= vy < vis.shape[1] and vis[vx, vy]:
                    seen.add((x, y))
        # A goal counts as found once the agent's own view shows one (a hidden goal never does).
        view = env.gen_obs()["image"]
        if state.get("goal_seen") or (view[..., 0] == _GOAL).any():
            state["goal_seen"] = True
            return int(env.expert_action())
        unseen = {(x, y) for y in range(env.height) for x in range(env.width)} - seen
        action = planner.next_action(unseen, _FORWARD)
        if action is None and env.carrying is None:
            action = planner.next_action(planner.find("key") & seen, _PICKUP)
        return _LEFT if action is None else int(action)


class DecoderPolicy(PrivilegedPolicy):
    """Go where the level's demonstrations went (see the module docstring)."""

    name = DECODER

    def __init__(self, read: Callable[[Any, PrivilegedRow], list] | None = None) -> None:
        """``read(env, row)``: the plan of a row (cells to visit, or MiniGrid steps); default:
        the family's ``demo_decoder`` on the row's demonstrations. Analyses pass other readers
        (e.g. the chain decoder of shuffled steps, :mod:`trajbench.analysis.order`)."""
        self.read = read or self._plan
        self.fallback = QueryOnlyPolicy()
        self.rows: list[PrivilegedRow] = []
        # Plans by (family, level, demonstrations): a row's later episodes reuse its plan.
        self.cache: dict[tuple, list] = {}

    def begin(self, rows: list[PrivilegedRow]) -> None:
        self.rows = rows
        self.plans: list[list | None] = [None] * len(rows)
        self.done = np.zeros(len(rows), dtype=np.int64)  # plan steps achieved
        self.steps = np.zeros(len(rows), dtype=np.int64)  # actions taken this episode
        self.fallback.begin(rows)

    def act(self, obs, prev_action, prev_reward, rows, envs) -> np.ndarray:
        out = np.zeros(len(rows), dtype=np.int64)
        lost = []
        for j, i in enumerate(rows.tolist()):
            env = envs[j].unwrapped
            if self.plans[i] is None:
                row = self.rows[i]
                demos = [(ep.obs.tobytes(), ep.actions.tobytes()) for ep in row.episodes]
                key = (row.env_id, row.level, hash(tuple(demos)))
                if key not in self.cache:
                    self.cache[key] = self.read(env, row)
                self.plans[i] = self.cache[key]
            plan = self.plans[i]
            if not plan:
                lost.append(j)
            elif isinstance(env, DarkGridEnv):
                out[j] = self._dark(i, plan, obs[j], env)
            else:
                out[j] = self._minigrid(i, plan, env)
        if lost:
            sub = np.asarray(lost)
            out[sub] = self.fallback.act(
                obs[sub], prev_action[sub], prev_reward[sub], rows[sub], [envs[j] for j in lost]
            )
        return out

    @staticmethod
    def _plan(env, row: PrivilegedRow) -> list:
        decoder = family_attr(env, "demo_decoder", DEMO_DECODERS)
        if isinstance(env, DarkGridEnv):
            return dark_plan(row.episodes, env.size)
        for episode in row.episodes:
            if plan := minigrid_plan(env, episode, decoder):
                return plan
        return []

    def _dark(self, i: int, plan: list, obs: np.ndarray, env) -> int:
        pos = (int(obs[0]), int(obs[1]))
        # A cell counts where a step ended on it (entering is rewarded), not at the start.
        while self.steps[i] and self.done[i] < len(plan) and pos == plan[self.done[i]]:
            self.done[i] += 1
        self.steps[i] += 1
        if self.done[i] == len(plan):
            return int(step_toward(np.asarray(pos), np.asarray(plan[-1])))  # stay on the last
        k = int(self.done[i])
        ahead = [c for c in plan[k + 1 :] if c != plan[k] and c not in plan[:k]]
        return dark_step(np.asarray(pos), plan[k], ahead, env.size)

    def _minigrid(self, i: int, plan: list[Step], env) -> int:
        if self.done[i] >= len(plan):
            return _LEFT
        step = plan[self.done[i]]
        action = GridPlanner(env).next_action({step.cell}, step.action)
        front = (int(env.front_pos[0]), int(env.front_pos[1]))
        if front == step.cell and action == step.action:
            self.done[i] += 1
        return _LEFT if action is None else int(action)

"""Labels of single steps: the step kinds of ``importance`` and the routine/decision split of ``phases``.

What is family-specific comes from the families themselves (``trajbench.envs``), so a new family
brings its own labels: :func:`family_events` reads a family's ``step_events`` (reaching the goal,
key pickups, door openings, waypoints) and :func:`interaction_actions` its ``interaction_actions``
(actions that are decisions whenever they are taken). Everything else is generic: turning points,
the expert's plan, episode starts and ends.

Step kinds (a step may have several):

============== ==================================================================================
goal_reached   a step that earns the task's reward: Dark Room, every step ending on the goal
               (reward > 0); Key-to-Door, the door reward; MiniGrid/BabyAI, reward > 0
goal_arrival   the first step of a run of goal_reached steps (Dark Room: arriving on the goal;
               elsewhere the same as goal_reached)
key_pickup     Key-to-Door: the key reward (``has_key`` still 0 on the step); MiniGrid: ``pickup``
               facing a key that then shows as carried
door_opened    Key-to-Door: the door reward; MiniGrid: ``toggle`` facing a closed or locked door
               that is then open
waypoint       Dark Sequence: entering the next waypoint of the level's order
turning_point  the action differs from the previous step's action
off_plan       the demonstrator's action differs from the expert's action in that state (noisy
               or random demonstrations; found by replaying the episode from its seed)
recovery       the first on-plan step after one or more off-plan steps: the recovery after a
               dead end
episode_start  the first step of an episode
episode_end    the last step of an episode
============== ==================================================================================


Example:
    >>> obs = np.array([[0, 0], [1, 0], [1, 1]], np.uint8)
    >>> kinds = step_kinds(
    ...     obs, np.array([4, 2, 0]), np.array([0.0, 1.0, 1.0]), "trajbench/DarkRoom-v0"
    ... )
    >>> kinds["goal_arrival"].tolist(), kinds["turning_point"].tolist()
    ([False, True, False], [False, True, True])
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from trajbench.envs.registration import family_class
from trajbench.errors import TrajbenchError
from trajbench.families import make_env

#: Step kinds, in report order (definitions in :mod:`trajbench.analysis.importance`).
KINDS = (
    "goal_reached",
    "goal_arrival",
    "key_pickup",
    "door_opened",
    "waypoint",
    "turning_point",
    "off_plan",
    "recovery",
    "episode_start",
    "episode_end",
)
#: The events families name in their ``step_events`` (a family lacking one never has it).
EVENTS = ("goal_reached", "key_pickup", "door_opened", "waypoint")


def family_events(
    obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, env_id: str
) -> dict[str, np.ndarray]:
    """The :data:`EVENTS` of one stored episode of ``env_id``, as its family names them
    (:meth:`~trajbench.envs.levels.LevelMixin.step_events`)."""
    events = family_class(env_id).step_events(obs, actions, rewards)
    n = len(actions)
    return {e: np.asarray(events.get(e, np.zeros(n, dtype=bool)), dtype=bool) for e in EVENTS}


def step_kinds(
    obs: np.ndarray,
    actions: np.ndarray,
    rewards: np.ndarray,
    env_id: str,
    off_plan: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Label every step of one episode with the :data:`KINDS` (boolean arrays of its length).

    Args:
        obs: ``[L, F]`` encoded observations (``obs[t]`` is what action ``t`` was chosen on).
        actions: ``[L]`` actions.
        rewards: ``[L]`` rewards that followed them.
        env_id: The episode's family (its ``step_events`` name goal, keys, doors, waypoints).
        off_plan: ``[L]`` whether each action left the expert's plan (None: all on plan).
    """
    obs = np.asarray(obs)
    a = np.asarray(actions).astype(np.int64)
    r = np.asarray(rewards, dtype=np.float64)
    n = len(a)
    if obs.shape[0] != n or r.shape != (n,):
        raise TrajbenchError(f"episode arrays disagree: obs {obs.shape}, {n} actions, {r.shape}")
    kinds = {k: np.zeros(n, dtype=bool) for k in KINDS}
    if n == 0:
        return kinds
    kinds.update(family_events(obs, a, r, env_id))
    prev_goal = np.concatenate([[False], kinds["goal_reached"][:-1]])
    kinds["goal_arrival"] = kinds["goal_reached"] & ~prev_goal
    kinds["turning_point"][1:] = a[1:] != a[:-1]
    if off_plan is not None:
        off = np.asarray(off_plan, dtype=bool)
        if off.shape != (n,):
            raise TrajbenchError(f"off_plan must have {n} entries, got {off.shape}")
        kinds["off_plan"] = off.copy()
        kinds["recovery"][1:] = ~off[1:] & off[:-1]
    kinds["episode_start"][0] = True
    kinds["episode_end"][-1] = True
    return kinds


def off_plan_steps(
    env_id: str,
    env_seed: int,
    level: int,
    obs: np.ndarray,
    actions: np.ndarray,
    sticky_p: float = 0.0,
) -> np.ndarray | None:
    """Replay an episode from its seed and mark the actions that differ from the expert's.

    Returns None when the replay does not reproduce the stored observations (then the episode's
    plan is unknown).
    """
    env = make_env(env_id, sticky_p, levels="all")
    try:
        o, _ = env.reset(seed=int(env_seed), options={"level": int(level)})
        off = np.zeros(len(actions), dtype=bool)
        for t, action in enumerate(np.asarray(actions).astype(np.int64)):
            if not np.array_equal(env.unwrapped.encode_obs(o), obs[t]):
                return None
            off[t] = int(action) != int(env.unwrapped.expert_action())
            o, *_ = env.step(int(action))
        return off
    finally:
        env.close()


def interaction_actions(env_id: str) -> tuple[int, ...]:
    """Actions of a family that are decisions whenever they are taken (pickup, drop, toggle)."""
    return tuple(family_class(env_id).interaction_actions)


def is_decision(
    actions: np.ndarray, prev_actions: np.ndarray, n_actions: int, env_id: str
) -> np.ndarray:
    """Whether each expert step is a decision step (else routine; see :mod:`~trajbench.analysis.phases`).

    A step is a decision when it is the first of its episode, when its action differs from the
    previous one, or when its action is one of the family's :func:`interaction_actions`.

    Args:
        actions: The expert's actions ``a_t``.
        prev_actions: ``a_{t-1}``, with ``start_action = n_actions`` at the first step.
        n_actions: Size of the action space (``start_action``).
        env_id: The family the steps come from.
    """
    a = np.asarray(actions, dtype=np.int64)
    prev = np.asarray(prev_actions, dtype=np.int64)
    if a.shape != prev.shape:
        raise TrajbenchError(f"actions {a.shape} and prev_actions {prev.shape} differ in shape")
    interaction = np.isin(a, interaction_actions(env_id))
    return (prev == n_actions) | (a != prev) | interaction


def episode_kinds(store, eps: pd.DataFrame, rows: list[int]) -> tuple[dict[int, dict], int]:
    """Step kinds of the episodes ``rows`` of ``eps`` (the store's episode table with a 0..n-1
    index); returns ``(kinds by row, non-expert episodes that could not be replayed)``."""
    sticky: dict[str, set[float]] = {}
    for meta in store.metas:
        sticky.setdefault(meta["env_id"], set()).add(float(meta["config"].get("sticky_p", 0.0)))
    out, unreplayable = {}, 0
    for row in rows:
        ep = eps.loc[row]
        s, n = int(ep["offset"]), int(ep["length"])
        obs = np.asarray(store.obs[s : s + n])
        actions = np.asarray(store.actions[s : s + n])
        off = None
        if ep["demonstrator"] != "expert":
            p = min(sticky.get(ep["env_id"], {0.0}))
            off = off_plan_steps(ep["env_id"], int(ep["seed"]), int(ep["level"]), obs, actions, p)
            unreplayable += off is None
        rewards = np.asarray(store.rewards[s : s + n])
        out[row] = step_kinds(obs, actions, rewards, str(ep["env_id"]), off)
    return out, unreplayable

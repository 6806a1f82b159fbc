"""Labels of single steps: the step kinds of ``importance`` and the routine/decision split of ``phases``.

What is family-specific sits in two small functions, so that both can later be read from the
families themselves: :func:`family_events` (key pickups, door openings, reaching the goal, decoded
from a family's observation encoding) and :func:`interaction_actions` (actions that are decisions
whenever they are taken). Everything else is generic: turning points, the expert's plan, episode
starts and ends.

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
    >>> kinds = step_kinds(obs, np.array([4, 2, 0]), np.array([0.0, 1.0, 1.0]), "dark-room")
    >>> kinds["goal_arrival"].tolist(), kinds["turning_point"].tolist()
    ([False, True, False], [False, True, True])
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from minigrid.core.actions import Actions
from minigrid.core.constants import OBJECT_TO_IDX, STATE_TO_IDX

from trajbench.envs.minigrid_levels import VIEW_CELLS
from trajbench.errors import TrajbenchError
from trajbench.families import make_env

#: Step kinds, in report order (definitions in :mod:`trajbench.analysis.importance`).
KINDS = (
    "goal_reached",
    "goal_arrival",
    "key_pickup",
    "door_opened",
    "turning_point",
    "off_plan",
    "recovery",
    "episode_start",
    "episode_end",
)
#: The kinds :func:`family_events` decodes from a family's observations and rewards.
EVENTS = ("goal_reached", "key_pickup", "door_opened")
#: Actions that are decisions whenever they are taken, by observation encoding (MiniGrid's
#: pickup, drop, toggle, done); the dark grids have none (their 5 actions are moves and stay).
INTERACTION_ACTIONS: dict[str, tuple[int, ...]] = {"minigrid": (3, 4, 5, 6)}


def _minigrid_view() -> dict:
    """Feature indices of MiniGrid's encoded view: the agent's own cell (shows what it carries)
    and the cell in front of it, plus the object, state and action ids used by the labels."""
    side = round(VIEW_CELLS**0.5)
    # encode_minigrid_obs flattens image[x, y, channel] in C order; the agent sits at
    # (side // 2, side - 1) looking towards y - 1.
    agent = ((side // 2) * side + side - 1) * 3
    front = ((side // 2) * side + side - 2) * 3
    return dict(
        agent_obj=agent,
        front_obj=front,
        front_state=front + 2,
        key=OBJECT_TO_IDX["key"],
        door=OBJECT_TO_IDX["door"],
        open=STATE_TO_IDX["open"],
        shut=(STATE_TO_IDX["closed"], STATE_TO_IDX["locked"]),
        pickup=int(Actions.pickup),
        toggle=int(Actions.toggle),
    )


_VIEW = _minigrid_view()


def family_events(
    obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, encoding: str
) -> dict[str, np.ndarray]:
    """The :data:`EVENTS` of one episode, decoded from its family's observation encoding.

    - ``dark-key-to-door``: the key reward (``has_key`` still 0 on the step) and the door reward,
      which is also the goal;
    - ``minigrid``: ``pickup`` facing a key that then shows as carried, ``toggle`` facing a closed
      or locked door that is then open (on the last step: the reward stands for what follows);
      the goal is reward > 0;
    - ``dark-room`` and any other encoding: the goal is reward > 0, no keys or doors.
    """
    obs = np.asarray(obs)
    a = np.asarray(actions).astype(np.int64)
    rewarded = np.asarray(rewards, dtype=np.float64) > 0
    n = len(a)
    none = np.zeros(n, dtype=bool)
    if encoding == "dark-key-to-door":
        has_key = obs[:, 2] > 0
        door = rewarded & has_key
        return {"goal_reached": door.copy(), "key_pickup": rewarded & ~has_key, "door_opened": door}
    if encoding != "minigrid":
        return {"goal_reached": rewarded, "key_pickup": none, "door_opened": none.copy()}
    v = _VIEW
    nxt = np.concatenate([obs[1:], obs[-1:]])  # the view after each action (last: itself)
    last = np.arange(n) == n - 1
    carried_key = nxt[:, v["agent_obj"]] == v["key"]
    key_pickup = (
        (a == v["pickup"])
        & (obs[:, v["front_obj"]] == v["key"])
        & (obs[:, v["agent_obj"]] != v["key"])
        & (carried_key | (last & rewarded))
    )
    opened = (nxt[:, v["front_obj"]] == v["door"]) & (nxt[:, v["front_state"]] == v["open"])
    door_opened = (
        (a == v["toggle"])
        & (obs[:, v["front_obj"]] == v["door"])
        & np.isin(obs[:, v["front_state"]], v["shut"])
        & (opened & ~last | (last & rewarded))
    )
    return {"goal_reached": rewarded, "key_pickup": key_pickup, "door_opened": door_opened}


def step_kinds(
    obs: np.ndarray,
    actions: np.ndarray,
    rewards: np.ndarray,
    encoding: str,
    off_plan: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Label every step of one episode with the :data:`KINDS` (boolean arrays of its length).

    Args:
        obs: ``[L, F]`` encoded observations (``obs[t]`` is what action ``t`` was chosen on).
        actions: ``[L]`` actions.
        rewards: ``[L]`` rewards that followed them.
        encoding: The family's observation encoding name (see :func:`family_events`).
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
    kinds.update(family_events(obs, a, r, encoding))
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


def interaction_actions(encoding: str) -> tuple[int, ...]:
    """Actions of a family that are decisions whenever they are taken (see :data:`INTERACTION_ACTIONS`)."""
    return INTERACTION_ACTIONS.get(encoding, ())


def is_decision(
    actions: np.ndarray, prev_actions: np.ndarray, n_actions: int, encoding: str = ""
) -> np.ndarray:
    """Whether each expert step is a decision step (else routine; see :mod:`~trajbench.analysis.phases`).

    A step is a decision when it is the first of its episode, when its action differs from the
    previous one, or when its action is one of the family's :func:`interaction_actions`.

    Args:
        actions: The expert's actions ``a_t``.
        prev_actions: ``a_{t-1}``, with ``start_action = n_actions`` at the first step.
        n_actions: Size of the action space (``start_action``).
        encoding: Observation encoding name.
    """
    a = np.asarray(actions, dtype=np.int64)
    prev = np.asarray(prev_actions, dtype=np.int64)
    if a.shape != prev.shape:
        raise TrajbenchError(f"actions {a.shape} and prev_actions {prev.shape} differ in shape")
    interaction = np.isin(a, interaction_actions(encoding))
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
        out[row] = step_kinds(obs, actions, rewards, store.encoding.name, off)
    return out, unreplayable

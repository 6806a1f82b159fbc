"""Where an imperfect episode went wrong, and the episode cut there (``trajbench analyze failures``).

Replay the episode in the environment (same level, same reset seed, same actions; the replayed
observations must equal the stored ones) and compute, after every step, the expert's remaining
distance ``d[t]``: the number of steps the family's expert needs from that state to succeed (0 once
the episode has succeeded, infinite if it cannot; the expert is rolled out on a copy of the
environment, with no time limit but a cap of 4 x the family's episode length). Then, for an
episode of ``T`` steps with ``d[0..T]``:

- a **successful** episode went wrong at its first step ``t`` whose action *increased* the
  remaining distance, ``d[t+1] > d[t]`` (a random deviation the expert then had to undo);
  wasted steps that leave the distance unchanged (a no-op, a bump into a wall) do not count;
- a **failed** episode went wrong at the step after which the distance never recovered: the
  last ``t`` at which ``d[t]`` equals its minimum over the episode (its closest approach to
  success); everything after it moved away for good, or stalled.

The cut keeps steps ``0 .. t-1`` (the actions before the wrong one); it can be empty, leaving only
the episode's mission words. Episodes in which nothing goes wrong (a successful episode that
never increases the distance, a failed one that ends at its closest approach) are not imperfect
and are left out of the pool; a level with no imperfect episode is dropped from every condition.

Example:
    >>> cut_point([3, 2, 3, 2, 1, 0], success=True)  # the 2nd action moved away: keep 1 step
    1
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from trajbench.errors import TrajbenchError
from trajbench.families import make_env
from trajbench.policy import EpisodeRecord

#: The expert's distance-to-go is searched for at most this many times the family's episode length.
DISTANCE_CAP_FACTOR = 4


def steps_to_success(env, cap: int) -> float:
    """Steps the family's expert needs from ``env``'s current state to succeed (``inf``: never
    within ``cap``). ``env`` is an unwrapped trajbench environment; it is not modified."""
    sim = copy.deepcopy(env)
    sim.max_steps = 1 << 30  # distance, not time left: no truncation
    for n in range(1, cap + 1):
        _, _, terminated, _, info = sim.step(int(sim.expert_action()))
        if info.get("success", False):
            return float(n)
        if terminated:
            return math.inf
    return math.inf


def expert_distances(
    env_id: str, level: int, env_seed: int, actions: Sequence[int], obs: np.ndarray | None = None
) -> np.ndarray:
    """The expert's remaining distance ``d[0..T]`` along a recorded episode (see the module doc).

    The episode is replayed from ``reset(seed=env_seed, options={"level": level})``; with ``obs``
    (the stored encoded observations) every replayed observation is checked against it.

    Raises:
        TrajbenchError: the replay does not reproduce the stored observations.
    """
    env = make_env(env_id, levels=[int(level)], disable_env_checker=True)
    u = env.unwrapped
    try:
        cap = DISTANCE_CAP_FACTOR * int(u.max_steps)
        o, info = u.reset(seed=int(env_seed), options={"level": int(level)})
        done = False
        d = [steps_to_success(u, cap)]
        for t, a in enumerate(actions):
            if done:
                raise TrajbenchError(
                    f"{env_id} level {level}: the replay ended after {t} of {len(actions)} steps"
                )
            if obs is not None and not np.array_equal(u.encode_obs(o), obs[t]):
                raise TrajbenchError(
                    f"{env_id} level {level}: replaying the episode (reset seed {env_seed}) does not "
                    f"reproduce its observation at step {t}; was it collected with sticky actions?"
                )
            u.expert_action()  # keeps a stateful expert (the BabyAI bot) in step, so copies are cheap
            o, _, terminated, truncated, info = u.step(int(a))
            done = terminated or truncated
            if info.get("success", False):
                d.append(0.0)
            elif terminated:
                d.append(math.inf)
            else:
                d.append(steps_to_success(u, cap))
    finally:
        env.close()
    return np.asarray(d, dtype=float)


def cut_point(d: Sequence[float], success: bool) -> int | None:
    """Number of steps kept when cutting an episode where it went wrong (see the module doc).

    Args:
        d: The expert's remaining distance before every step and after the last, ``T + 1`` values.
        success: Whether the episode succeeded.

    Returns:
        ``t`` (keep steps ``0 .. t-1``), or None when nothing went wrong (``t`` would be ``T``).

    Example:
        >>> cut_point([3, 2, 3, 2, 1, 0], success=True)      # the 2nd action moved away
        1
        >>> cut_point([4, 3, 2, 3, 4, 3], success=False)     # closest approach after 2 steps
        2
        >>> cut_point([3, 2, 1, 0], success=True) is None
        True
    """
    d = np.asarray(d, dtype=float)
    if d.ndim != 1 or len(d) < 1 or np.isnan(d).any():
        raise TrajbenchError(f"distances must be a non-empty 1-d sequence without NaN, got {d!r}")
    T = len(d) - 1
    if success:
        up = np.flatnonzero(d[1:] > d[:-1])
        return int(up[0]) if len(up) else None
    last_best = int(np.flatnonzero(d == d.min())[-1])
    return last_best if last_best < T else None


def imperfect_pool(store, env_id: str, progress: bool = False) -> pd.DataFrame:
    """Every episode of ``store`` with where it went wrong: one row per episode with ``cut``
    (steps kept; -1 when nothing went wrong), ``length``, ``success``, ``level`` and ``row``
    (its index in ``store.episodes``)."""
    eps = store.episodes
    rows = []
    for i in tqdm(range(len(eps)), desc="failures: where it went wrong", disable=not progress):
        row = eps.iloc[i]
        s, n = int(row.offset), int(row.length)
        d = expert_distances(
            env_id,
            int(row.level),
            int(row.seed),
            np.asarray(store.actions[s : s + n]),
            np.asarray(store.obs[s : s + n]),
        )
        c = cut_point(d, bool(row.success))
        rows.append(
            {
                "row": i,
                "level": int(row.level),
                "success": bool(row.success),
                "length": n,
                "cut": -1 if c is None else c,
                "start_distance": d[0],
            }
        )
    return pd.DataFrame(rows)


def cut_episode(ep: EpisodeRecord, n: int) -> EpisodeRecord:
    """The first ``n`` steps of ``ep``."""
    return replace(ep, obs=ep.obs[:n], actions=ep.actions[:n], rewards=ep.rewards[:n])

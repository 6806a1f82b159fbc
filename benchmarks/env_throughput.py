"""Environment throughput: batched dark grids vs SyncVectorEnv, level-wrapper overhead, collection.

Measures, in one run on this machine:

1. Dark Room and Dark Sequence steps/s with the native batched env (``vector_entry_point``) vs
   Gymnasium's ``SyncVectorEnv`` of the single env, both at N = 1024 with the same random actions
   (target for Dark Room: >= 100x);
2. the level wrapper's overhead: ``trajbench/FourRooms-v0`` unwrapped ``step`` vs the bare MiniGrid
   class it extends, same actions, taking turns episode by episode, resets untimed
   (target: <= 10%);
3. expert episodes collected per second (``trajbench.collect.collect`` to a temporary directory,
   one worker) for Dark Room, Dark Sequence and a BabyAI family.

Rounds of the project and its reference alternate and the median is reported, which keeps the
ratios honest on a shared machine. Ends with ``RESULT env_throughput ratio=<Dark Room batched/sync>
target=100``.

Example:
    python benchmarks/env_throughput.py           # about a minute on 2 cores
    python benchmarks/env_throughput.py --quick   # a few seconds, for a sanity check
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import gymnasium as gym
import numpy as np
from machine import describe

import trajbench
from trajbench.collect import CollectConfig, collect
from trajbench.data import load

DARK_ROOM = "trajbench/DarkRoom-v0"
DARK_SEQUENCE = "trajbench/DarkSequence-v0"
WRAPPED_MINIGRID = "trajbench/FourRooms-v0"
BABYAI = "trajbench/GoToLocal-v0"
N_ENVS = 1024


def machine() -> str:
    return describe(
        f"numpy {np.__version__}, gymnasium {gym.__version__}, minigrid {version('minigrid')}, "
        f"trajbench {trajbench.__version__}"
    )


def vector_steps_per_s(env_id: str, mode: str, n_steps: int, seed: int = 0) -> float:
    """Env steps/s of ``N_ENVS`` copies of ``env_id`` stepped ``n_steps`` times with random actions."""
    envs = gym.make_vec(env_id, num_envs=N_ENVS, vectorization_mode=mode)
    actions = np.random.default_rng(seed).integers(5, size=(n_steps, N_ENVS))
    envs.reset(seed=seed)
    start = time.perf_counter()
    for a in actions:
        envs.step(a)
    elapsed = time.perf_counter() - start
    envs.close()
    return N_ENVS * n_steps / elapsed


def _minigrid_base(env: gym.Env) -> type:
    """The MiniGrid class a trajbench family extends (first ``minigrid.*`` class in its MRO)."""
    for cls in type(env).__mro__:
        if cls.__module__.startswith("minigrid.") and cls.__name__ != "MiniGridEnv":
            return cls
    raise TypeError(f"{type(env).__name__} does not extend a MiniGrid environment class")


Player = tuple[gym.Env, Callable[[int], object]]  # an env and how to reset it for episode k


def interleaved_step_seconds(players: dict[str, Player], actions: np.ndarray) -> dict[str, float]:
    """Seconds each env spends in ``step`` playing the same ``actions``, resets untimed.

    The envs take turns one episode at a time, so load from other processes hits them alike.
    """
    spent = dict.fromkeys(players, 0.0)
    pos = dict.fromkeys(players, 0)
    episode = 0
    while any(p < len(actions) for p in pos.values()):
        for name, (env, reset) in players.items():
            reset(episode)
            i, done = pos[name], False
            start = time.perf_counter()
            while not done and i < len(actions):
                _, _, terminated, truncated, _ = env.step(int(actions[i]))
                done = terminated or truncated
                i += 1
            spent[name] += time.perf_counter() - start
            pos[name] = i
        episode += 1
    return spent


def same_trajectory(players: dict[str, Player], actions: np.ndarray) -> bool:
    """Whether every player sees the same observations along episode 0."""
    seen = []
    for env, reset in players.values():
        reset(0)
        images = []
        for a in actions:
            obs, _, terminated, truncated, _ = env.step(int(a))
            images.append(obs["image"].copy())
            if terminated or truncated:
                break
        seen.append(images)
    return all(len(s) == len(seen[0]) and all(map(np.array_equal, s, seen[0])) for s in seen)


def wrapper_players(wrapped: gym.Env) -> tuple[dict[str, Player], str]:
    """The trajbench env and its bare MiniGrid class, set up to build the same grid per episode."""
    base_cls = _minigrid_base(wrapped)
    bare = base_cls(max_steps=wrapped.max_steps, **type(wrapped).env_kwargs)
    levels = wrapped.splits()["train"]

    def level(k: int) -> int:
        return int(levels[k % len(levels)])

    def reset_wrapped(k: int) -> None:
        wrapped.reset(seed=k, options={"level": level(k)})

    try:
        from trajbench.envs.minigrid_levels import level_rng
    except ImportError:  # another level scheme: same actions, different grids
        return {
            "bare": (bare, lambda k: bare.reset(seed=k)),
            "trajbench": (wrapped, reset_wrapped),
        }, base_cls.__name__

    def reset_bare(k: int) -> None:
        bare.np_random = level_rng(wrapped.family, level(k))  # MiniGrid draws the grid from it
        bare.reset()

    return {"bare": (bare, reset_bare), "trajbench": (wrapped, reset_wrapped)}, base_cls.__name__


def collect_rate(env_id: str, levels: str, episodes_per_level: int) -> tuple[float, float, int]:
    """(episodes/s, steps/s, episodes) of an expert collection written to a temporary dir."""
    with tempfile.TemporaryDirectory() as tmp:
        config = CollectConfig(
            env=env_id,
            levels=levels,
            episodes_per_level=episodes_per_level,
            out=Path(tmp) / "ds",
            progress=False,
        )
        start = time.perf_counter()
        path = collect(config)
        elapsed = time.perf_counter() - start
        store = load(path)
        return len(store) / elapsed, store.n_steps / elapsed, len(store)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short sanity run (noisier figures)")
    args = parser.parse_args()
    rounds = 3 if args.quick else 5
    print(machine())

    # 1. Batched vs SyncVectorEnv.
    ratios = {}
    for env_id in (DARK_ROOM, DARK_SEQUENCE):
        batched, sync = [], []
        for r in range(rounds):
            n_batched, n_sync = (100, 5) if args.quick else (1000, 40)
            batched.append(vector_steps_per_s(env_id, "vector_entry_point", n_batched, r))
            sync.append(vector_steps_per_s(env_id, "sync", n_sync, r))
        b, s = statistics.median(batched), statistics.median(sync)
        ratios[env_id] = b / s
        print(f"\n{env_id}, N={N_ENVS}, median of {rounds} alternating rounds")
        print(f"  batched (vector_entry_point): {b:14,.0f} steps/s")
        print(f"  gymnasium SyncVectorEnv:      {s:14,.0f} steps/s")
        target = " (target >= 100x)" if env_id == DARK_ROOM else ""
        print(f"  ratio: {b / s:.0f}x{target}")
    ratio = ratios[DARK_ROOM]

    # 2. Level wrapper overhead over the bare MiniGrid class.
    if WRAPPED_MINIGRID in gym.registry:
        players, base_name = wrapper_players(gym.make(WRAPPED_MINIGRID).unwrapped)
        n = 2_000 if args.quick else 20_000
        actions = np.random.default_rng(0).integers(7, size=n)
        same = same_trajectory(players, actions)
        runs = [interleaved_step_seconds(players, actions) for _ in range(rounds)]
        step_us = {k: statistics.median(run[k] for run in runs) / n * 1e6 for k in players}
        overhead = step_us["trajbench"] / step_us["bare"] - 1
        print(f"\nLevel wrapper: {WRAPPED_MINIGRID} (unwrapped) vs minigrid {base_name}")
        print(f"  {n} random actions, episodes alternating, same grids: {same}")
        print(f"  bare MiniGrid step:  {step_us['bare']:7.1f} us")
        print(f"  trajbench step:      {step_us['trajbench']:7.1f} us")
        print(f"  step overhead: {overhead:+.1%} (target <= 10%)")
    else:
        print(f"\nLevel wrapper: skipped, {WRAPPED_MINIGRID} is not registered")

    # 3. Expert collection rate.
    print("\nExpert episodes collected per second (trajbench.collect, 1 worker, written to disk)")
    first_levels = ",".join(str(x) for x in range(100 if args.quick else 400))
    jobs = [
        (DARK_ROOM, "all", 4 if args.quick else 20),
        (DARK_SEQUENCE, first_levels, 2 if args.quick else 5),
        (BABYAI, "test", 1),
    ]
    if args.quick:
        jobs[2] = (BABYAI, ",".join(str(x) for x in range(50)), 1)
    for env_id, levels, n_per_level in jobs:
        if env_id not in gym.registry:
            print(f"  {env_id}: skipped, not registered")
            continue
        eps, steps, n_eps = collect_rate(env_id, levels, n_per_level)
        print(f"  {env_id:24s} {eps:9,.0f} episodes/s {steps:11,.0f} steps/s ({n_eps} episodes)")

    print(f"\nRESULT env_throughput ratio={ratio:.1f} target=100")


if __name__ == "__main__":
    main()

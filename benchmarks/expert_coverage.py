"""Expert coverage: the expert on every level of every MiniGrid/BabyAI family of the suite.

For each family, one expert episode per level (all 10,000 levels by default) from a random start
(the episode seed of level ``L`` is :func:`trajbench.collect.episode_seeds` ``(seed, L, 0)``, as a
collection would draw it), reporting the success rate and the mean and longest episode length
next to the family's ``max_steps`` (which must stay >= 1.5x the longest). Failures are listed,
never dropped.

Then the copy measure on ``--copy-levels`` sampled levels: 5 expert episodes per level (seeds
``episode_seeds(seed, L, i)``, ``i < 5``), the share of levels where two episodes have identical
action sequences, and the share of (query, 4-demonstration context) pairs where a demonstration's
action sequence equals the query's (:func:`trajbench.envs.demonstrators.copy_shares`), next to the
share of levels where two of the 5 episodes drew the same start pose (a family whose start region
holds few poses repeats one often: 5 draws among 25 poses repeat one in about a third of levels).

Runs over ``--workers`` processes. Ends with
``RESULT expert_coverage ratio=<lowest success rate over the families> target=1.0``.

Example:
    python benchmarks/expert_coverage.py                    # about 10 minutes on 2 busy cores
    python benchmarks/expert_coverage.py --quick            # 300 levels, 100 copy levels
    python benchmarks/expert_coverage.py --families DoorKey-v1 Unlock-v1
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time
from collections import defaultdict

import gymnasium as gym
import minigrid
import numpy as np
from machine import describe

import trajbench
from trajbench.collect import episode_seeds, make_env, rollout
from trajbench.envs import NAMESPACE
from trajbench.envs.demonstrators import Demonstrator, copy_shares
from trajbench.suite import SUITE_VERSION, SUITE_VERSIONS

#: The suite's families that are not MiniGrid/BabyAI.
DARK = ("DarkRoom-v0", "DarkKeyToDoor-v0", "DarkSequence-v0")
#: Episodes per copy-measure level: a query and its 4-demonstration context.
COPY_EPISODES = 5
_ENVS: dict[str, gym.Env] = {}


def suite_minigrid_ids() -> list[str]:
    """Every MiniGrid/BabyAI id of the current suite version (the ``-v2`` ids and the families
    new in suite 3); ``--families`` names older ones (``-v1``)."""
    return [i for i in SUITE_VERSIONS[SUITE_VERSION]["families"] if i.split("/")[1] not in DARK]


def _episodes(task: tuple[str, int, int, int]) -> tuple[str, int, list[tuple[bool, tuple, tuple]]]:
    """``n`` expert episodes of one level: (success, actions, start pose) each.

    The start pose is read from a reset with the episode's seed (copy-measure levels only).
    One environment per id per worker.
    """
    env_id, level, n, seed = task
    env = _ENVS.get(env_id)
    if env is None:
        env = _ENVS[env_id] = make_env(env_id, disable_env_checker=True)
    u, out = env.unwrapped, []
    for i in range(n):
        env_seed, rng = episode_seeds(seed, level, i)
        start = ()
        if n > 1:
            env.reset(seed=env_seed, options={"level": level})
            start = (*map(int, u.agent_pos), int(u.agent_dir))
        r = rollout(env, Demonstrator("expert", env, rng), level, env_seed)
        out.append((r.success, tuple(r.actions.tolist()), start))
    return env_id, level, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--families", nargs="+", default=None, help="ids (default: the suite's MiniGrid/BabyAI ids)"
    )
    parser.add_argument("--levels", type=int, default=10_000, help="first N levels per family")
    parser.add_argument("--copy-levels", type=int, default=1_000, help="sampled levels per family")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="300 levels, 100 copy levels")
    args = parser.parse_args()
    if args.quick:
        args.levels, args.copy_levels = 300, 100
    ids = [i if "/" in i else f"{NAMESPACE}/{i}" for i in args.families or suite_minigrid_ids()]
    print(describe(f"trajbench {trajbench.__version__}, minigrid {minigrid.__version__}"))

    # Copy-measure levels get all 5 episodes; episode 0 is also the level's coverage episode.
    tasks, copy_levels = [], {}
    for env_id in ids:
        n_levels = min(args.levels, make_env(env_id).unwrapped.n_levels)
        rng = np.random.default_rng([args.seed, len(tasks)])
        sample = set(rng.choice(n_levels, size=min(args.copy_levels, n_levels), replace=False))
        copy_levels[env_id] = sample
        tasks += [
            (env_id, level, COPY_EPISODES if level in sample else 1, args.seed)
            for level in range(n_levels)
        ]
    start = time.perf_counter()
    results: dict[str, dict[int, list]] = defaultdict(dict)
    with mp.Pool(args.workers) as pool:
        for env_id, level, eps in pool.imap_unordered(_episodes, tasks, chunksize=32):
            results[env_id][level] = eps
    elapsed = time.perf_counter() - start

    header = (
        f"{'family':<24}{'levels':>7}{'success':>9}{'mean len':>9}{'longest':>8}"
        f"{'max steps':>10}{'copy levels':>12}{'copy pairs':>11}{'same start':>11}"
    )
    print(f"\n{header}\n{'-' * len(header)}")
    worst, failures = 1.0, {}
    for env_id in ids:
        eps = results[env_id]
        firsts = [eps[level][0] for level in sorted(eps)]
        lengths = np.array([len(actions) for _, actions, _ in firsts])
        success = float(np.mean([ok for ok, _, _ in firsts]))
        worst = min(worst, success)
        failures[env_id] = [level for level in sorted(eps) if not eps[level][0][0]]
        sampled = [eps[level] for level in sorted(copy_levels[env_id])]
        level_share, pair_share = copy_shares([[a for _, a, _ in e] for e in sampled])
        same_start = np.mean([len({s for *_, s in e}) < len(e) for e in sampled])
        max_steps = make_env(env_id).unwrapped.max_steps
        flag = "" if max_steps >= 1.5 * lengths.max() else "  max_steps < 1.5x longest!"
        print(
            f"{env_id.removeprefix(NAMESPACE + '/'):<24}{len(firsts):>7}{success:>9.2%}"
            f"{lengths.mean():>9.1f}{lengths.max():>8}{max_steps:>10}"
            f"{level_share:>12.1%}{pair_share:>11.1%}{same_start:>11.1%}{flag}"
        )
    for env_id, levels in failures.items():
        if levels:
            print(f"failed: {env_id} levels {levels[:20]}{' ...' if len(levels) > 20 else ''}")
    n_eps = sum(len(e) for r in results.values() for e in r.values())
    print(f"\n{n_eps} expert episodes in {elapsed:.0f} s over {args.workers} workers")
    print(
        f"copy measure: {COPY_EPISODES} episodes on {args.copy_levels} sampled levels per family; "
        "same start: levels where two of them drew the same start pose"
    )
    print(f"\nRESULT expert_coverage ratio={worst:.4f} target=1.0")


if __name__ == "__main__":
    main()

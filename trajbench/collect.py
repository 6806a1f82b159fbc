"""Collection: roll a demonstrator out on a family's levels and write an episode store.

Episode ``i`` of level ``L`` has ``episode_id = L * episodes_per_level + i`` and is rolled out with
an env seed and a demonstrator RNG derived from ``np.random.SeedSequence([seed, L, i])``, on a
fresh environment per level; its content therefore never depends on ``--workers`` or ``--shard``.

A collection resumes: its levels are rolled out in chunks of ``--chunk-levels`` levels, each
committed atomically into ``.OUT.partial/`` beside ``OUT`` (with a manifest of the config), and
the store is assembled from the chunks at the end, byte for byte what an uninterrupted run
writes. A rerun with the same arguments keeps the finished chunks and does the rest. While it
writes, a collection holds the lock ``.OUT.lock`` (its pid and host): a second live process
writing the same ``OUT`` is refused, a dead one's lock is taken over and its temporaries removed.

Command line::

    trajbench collect --env trajbench/DarkRoom-v0 --levels train --episodes-per-level 10 \\
        --demonstrator noisy --epsilon 0.25 --out runs/data/darkroom --workers 2
    trajbench envs [--json]

Example:
    >>> import tempfile, trajbench
    >>> from trajbench.collect import CollectConfig, collect
    >>> path = collect(CollectConfig(env="trajbench/DarkRoom-v0", levels="test",
    ...                              episodes_per_level=2, out=tempfile.mkdtemp() + "/ds",
    ...                              progress=False))
    >>> trajbench.data.load(path).episodes["split"].unique().tolist()
    ['test']
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import multiprocessing as mp
import re
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import gymnasium as gym
import numpy as np
import tyro
from tqdm.auto import tqdm

from .cliargs import parse_config
from .data import META_FILE, SHARD_DIR_RE, load, read_meta, shard_dirname
from .data.partial import PartialStore
from .envs.demonstrators import DEFAULT_EPSILON, DEMONSTRATORS, Demonstrator
from .envs.registration import NAMESPACE
from .errors import TrajbenchError
from .families import make_env, parse_levels, resolve_env_id
from .io import output_lock, remove_stale_temporaries

#: Config fields that decide a dataset's content (and so appear in its ``meta.json``).
CONTENT_FIELDS = (
    "env",
    "levels",
    "episodes_per_level",
    "demonstrator",
    "epsilon",
    "seed",
    "sticky_p",
)


@dataclass(kw_only=True)
class CollectConfig:
    """Roll a demonstrator out on a family's levels and write an episode store."""

    env: str
    """Environment id, e.g. trajbench/DarkRoom-v0 (see `trajbench envs`)."""
    levels: Annotated[str, tyro.conf.arg(metavar="train|test|all|L1,L2,...")] = "train"
    """Levels to collect: train, test, all, or a comma-separated list of level numbers (0,5,7)."""
    episodes_per_level: int = 10
    """Episodes rolled out on each level."""
    demonstrator: Literal["expert", "noisy", "random"] = "expert"
    """Who acts: the expert, the expert with random actions (noisy), or uniform random."""
    epsilon: float = DEFAULT_EPSILON
    """Probability of a random action for the noisy demonstrator, in [0, 1]."""
    out: Path
    """Output dataset directory (with --shard, the shard goes to OUT/shard-I-of-N/)."""
    workers: int = 1
    """Parallel worker processes; each handles whole levels. The data does not depend on it."""
    chunk_levels: int = 64
    """Levels per resumable chunk: finished chunks survive a crash and a rerun with the same
    arguments does the rest. The data does not depend on it."""
    seed: int = 0
    """Base seed (>= 0); episode i of level L is seeded by SeedSequence([seed, L, i])."""
    shard: Annotated[str | None, tyro.conf.arg(metavar="I/N")] = None
    """Collect only shard I/N: the levels whose position in the level list is I modulo N."""
    sticky_p: float = 0.0
    """Sticky actions: probability in [0, 1) that the environment repeats the previous action."""
    overwrite: bool = False
    """Replace OUT if it already holds a different dataset."""
    progress: bool = True
    """Show a progress bar on stderr."""


@dataclass(frozen=True)
class Rollout:
    """One episode's encoded steps, as rolled out by :func:`rollout`."""

    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    mission: str
    success: bool


def episode_seeds(seed: int, level: int, index: int) -> tuple[int, np.random.Generator]:
    """Env reset seed and demonstrator RNG of episode ``index`` of ``level``.

    Example:
        >>> env_seed, rng = episode_seeds(0, 3, 1)
        >>> env_seed == episode_seeds(0, 3, 1)[0]
        True
    """
    env_ss, demo_ss = np.random.SeedSequence([seed, level, index]).spawn(2)
    return int(env_ss.generate_state(1)[0]), np.random.default_rng(demo_ss)


def rollout(env: gym.Env, demonstrator: Demonstrator, level: int, env_seed: int) -> Rollout:
    """Run one episode of ``level`` from ``reset(seed=env_seed)`` to termination or truncation.

    ``obs[t]`` is the encoded observation ``actions[t]`` was chosen on and ``rewards[t]`` the
    reward that followed; the final observation is not kept. ``actions[t]`` is the
    demonstrator's choice, also when sticky actions made the environment repeat the previous one.

    Example:
        >>> import trajbench
        >>> env = gym.make("trajbench/DarkRoom-v0")
        >>> r = rollout(env, Demonstrator("expert", env, np.random.default_rng(0)), 40, 0)
        >>> r.obs.shape, r.success
        ((20, 2), True)
    """
    unwrapped = env.unwrapped
    obs, info = env.reset(seed=env_seed, options={"level": int(level)})
    mission = unwrapped.mission_text
    observations, actions, rewards = [], [], []
    total, terminated, truncated = 0.0, False, False
    while not (terminated or truncated):
        observations.append(unwrapped.encode_obs(obs))
        action = demonstrator.act()
        obs, reward, terminated, truncated, info = env.step(action)
        actions.append(action)
        rewards.append(reward)
        total += float(reward)
    success = info.get("success", terminated and total > 0)
    return Rollout(
        obs=np.stack(observations),
        actions=np.asarray(actions, dtype=np.int64),
        rewards=np.asarray(rewards, dtype=np.float64),
        mission=str(mission),
        success=bool(success),
    )


def parse_shard(spec: str) -> tuple[int, int]:
    """``"I/N"`` -> ``(I, N)`` with ``0 <= I < N``.

    Raises:
        TrajbenchError: anything else.
    """
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", spec)
    if not m or not 0 <= int(m.group(1)) < int(m.group(2)):
        raise TrajbenchError(f"bad shard {spec!r}: expected I/N with 0 <= I < N, e.g. 0/4")
    return int(m.group(1)), int(m.group(2))


@dataclass(frozen=True)
class _Plan:
    env_id: str
    content: dict[str, Any]
    levels: np.ndarray  # the whole collection's levels
    mine: list[int]  # positions (in ``levels``) this run collects
    split_of: dict[int, str]
    shard: tuple[int, int] | None
    out: Path
    encoding: Any


def _plan(config: CollectConfig) -> _Plan:
    if config.demonstrator not in DEMONSTRATORS:
        raise TrajbenchError(
            f"unknown demonstrator {config.demonstrator!r}; expected one of {DEMONSTRATORS}"
        )
    checks = [
        (
            config.episodes_per_level >= 1,
            f"episodes_per_level must be >= 1, got {config.episodes_per_level}",
        ),
        (config.workers >= 1, f"workers must be >= 1, got {config.workers}"),
        (config.chunk_levels >= 1, f"chunk_levels must be >= 1, got {config.chunk_levels}"),
        (config.seed >= 0, f"seed must be >= 0, got {config.seed}"),
        (0.0 <= config.epsilon <= 1.0, f"epsilon must be in [0, 1], got {config.epsilon}"),
        (0.0 <= config.sticky_p < 1.0, f"sticky_p must be in [0, 1), got {config.sticky_p}"),
    ]
    for ok, message in checks:
        if not ok:
            raise TrajbenchError(message)
    shard = None if config.shard is None else parse_shard(config.shard)
    env_id = resolve_env_id(config.env)
    env = make_env(env_id, config.sticky_p)
    try:
        levels_spec, levels = parse_levels(config.levels, env)
        splits = env.unwrapped.splits()
        encoding = env.unwrapped.encoding
    finally:
        env.close()
    test = set(splits["test"].tolist())
    content = dataclasses.asdict(config)
    content = {k: content[k] for k in CONTENT_FIELDS}
    content.update(
        env=env_id,
        levels=levels_spec,
        epsilon=float(config.epsilon),
        sticky_p=float(config.sticky_p),
    )
    out = Path(config.out)
    blocked = next((p for p in (out, *out.parents) if p.exists() and not p.is_dir()), None)
    if blocked is not None and blocked != out:
        raise TrajbenchError(f"cannot write --out {out}: {blocked} is a file, not a directory")
    positions = range(len(levels))
    if shard is not None:
        positions = [p for p in positions if p % shard[1] == shard[0]]
        out = out / shard_dirname(*shard)
    return _Plan(
        env_id=env_id,
        content=content,
        levels=levels,
        mine=list(positions),
        split_of={int(L): ("test" if int(L) in test else "train") for L in levels},
        shard=shard,
        out=out,
        encoding=encoding,
    )


def _existing(plan: _Plan, overwrite: bool) -> str:
    """``"new"``, ``"same"`` (already collected) or ``"replace"``; raises if OUT must stay."""
    out = plan.out
    if plan.shard is not None:
        _check_sibling_shards(plan, overwrite)
    if not out.exists():
        return "new"
    if not out.is_dir():
        raise TrajbenchError(f"--out {out} exists and is not a directory")
    if not any(out.iterdir()):
        return "replace"
    if not (out / META_FILE).exists():
        what = (
            "a sharded collection" if any(out.glob("shard-*-of-*")) else "not a trajbench dataset"
        )
        raise TrajbenchError(
            f"--out {out} exists and is {what}; refusing to touch it, choose another --out"
        )
    try:
        meta = load(out).metas[0]
    except TrajbenchError as err:
        same, what = False, f"a corrupt dataset ({err})"
    else:
        diff = _differences(plan, meta)
        same, what = not diff, f"a different dataset ({diff})"
    if overwrite:
        return "replace"
    if same:
        return "same"
    raise TrajbenchError(
        f"--out {out} already holds {what}; pass --overwrite to replace it or choose another --out"
    )


def _differences(plan: _Plan, meta: dict[str, Any]) -> str:
    """How the collection ``meta`` describes (a store's or a manifest's) differs from ``plan``
    ('' when it is the same)."""
    there = {**meta["config"], "shard": meta["shard"]}
    here = {**plan.content, "shard": None if plan.shard is None else list(plan.shard)}
    diff = [
        f"{k} {there.get(k)!r} there, {here[k]!r} here" for k in here if there.get(k) != here[k]
    ]
    return "; ".join(diff)


def _check_sibling_shards(plan: _Plan, overwrite: bool) -> None:
    """Refuse to add a shard next to shards of another split or config (unless overwriting)."""
    root = plan.out.parent
    if (root / META_FILE).exists():
        raise TrajbenchError(f"--out {root} is an unsharded dataset; shards cannot go inside it")
    if overwrite or not root.is_dir():
        return
    for sibling in sorted(root.iterdir()):
        m = SHARD_DIR_RE.fullmatch(sibling.name)
        if not m or sibling == plan.out:
            continue
        if int(m.group(2)) != plan.shard[1]:
            raise TrajbenchError(
                f"--out {root} holds {sibling.name}, from a split into {m.group(2)} shards, not "
                f"{plan.shard[1]}; choose another --out (or --overwrite every shard)"
            )
        try:
            same = read_meta(sibling)["config"] == plan.content
        except TrajbenchError:
            continue  # a corrupt sibling is reported when the collection is loaded
        if not same:
            raise TrajbenchError(
                f"--out {root} holds {sibling.name} of a different config; choose another "
                "--out (or --overwrite every shard)"
            )


# -- collection ---------------------------------------------------------------------------------


def _collect_level(task: tuple) -> list[tuple[dict[str, Any], Rollout]]:
    """Every episode of one level, on a fresh environment (so workers cannot leak state)."""
    env_id, sticky_p, level, split, n, seed, kind, epsilon = task
    # levels=[level] keeps construction cheap on 10k-level families; the checker ran in tests.
    env = make_env(env_id, sticky_p, levels=[level], disable_env_checker=True)
    out = []
    try:
        for i in range(n):
            env_seed, rng = episode_seeds(seed, level, i)
            r = rollout(env, Demonstrator(kind, env, rng, epsilon), level, env_seed)
            row = {
                "episode_id": level * n + i,
                "env_id": env_id,
                "level": level,
                "split": split,
                "demonstrator": kind,
                "success": r.success,
                "mission": r.mission,
                "seed": env_seed,
            }
            out.append((row, r))
    finally:
        env.close()
    return out


def _ignore_sigint() -> None:
    """Workers leave Ctrl-C to the parent, which stops the pool (finished chunks are kept)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@dataclass(frozen=True)
class _Outcome:
    path: Path
    meta: dict[str, Any]
    existed: bool  # the store was already there
    resumed: tuple[int, int] = (0, 0)  # chunks found finished, chunks in all


def _collect(config: CollectConfig) -> _Outcome:
    plan = _plan(config)
    missing_parents = [d for d in plan.out.parents if not d.exists()]  # deepest first
    try:
        with output_lock(plan.out):
            return _collect_locked(config, plan)
    except OSError as err:  # a full disk, a read-only or forbidden --out
        where = err.filename or plan.out
        raise TrajbenchError(f"cannot write {where}: {err.strerror or err}") from None
    finally:
        for d in missing_parents:  # leave no empty directories we created behind
            with contextlib.suppress(OSError):
                d.rmdir()


def _collect_locked(config: CollectConfig, plan: _Plan) -> _Outcome:
    state = _existing(plan, config.overwrite)
    remove_stale_temporaries(plan.out.parent, target=plan.out.name)
    c = plan.content
    chunks = [
        plan.mine[i : i + config.chunk_levels]
        for i in range(0, len(plan.mine), config.chunk_levels)
    ]
    layout = {"chunk_levels": config.chunk_levels, "n_chunks": len(chunks)}
    partial = PartialStore(
        plan.out, plan.encoding, env_id=plan.env_id, config=c, shard=plan.shard, layout=layout
    )
    if state == "same":
        partial.discard()  # left by a collection killed right after it published the store
        return _Outcome(plan.out, read_meta(plan.out), existed=True)
    there = partial.recorded()
    diff = there and _differences(plan, there)
    if diff and not config.overwrite:
        raise TrajbenchError(
            f"--out {plan.out} has an unfinished collection of a different config ({diff}) in "
            f"{partial.directory}; rerun it with its arguments to finish it, or pass --overwrite"
        )
    done = partial.start(len(chunks))
    todo = [i for i in range(len(chunks)) if i not in done]
    tasks = [
        (
            plan.env_id,
            c["sticky_p"],
            int(plan.levels[p]),
            plan.split_of[int(plan.levels[p])],
            c["episodes_per_level"],
            c["seed"],
            c["demonstrator"],
            c["epsilon"],
        )
        for i in todo
        for p in chunks[i]
    ]
    bar = tqdm(
        total=len(plan.mine) * c["episodes_per_level"],
        initial=(len(plan.mine) - len(tasks)) * c["episodes_per_level"],
        unit="ep",
        desc=plan.env_id.removeprefix(f"{NAMESPACE}/"),
        disable=not config.progress,
        file=sys.stderr,
    )
    try:
        workers = min(config.workers, len(tasks))
        with contextlib.ExitStack() as stack:
            if workers > 1:
                ctx = mp.get_context("spawn")
                pool = stack.enter_context(ctx.Pool(workers, initializer=_ignore_sigint))
                chunksize = max(1, min(16, len(tasks) // (8 * workers)))
                results = pool.imap(_collect_level, tasks, chunksize=chunksize)
            else:
                results = map(_collect_level, tasks)
            for i in todo:
                with partial.chunk(i) as writer:
                    for episodes in itertools.islice(results, len(chunks[i])):
                        for row, r in episodes:
                            writer.add(row, r.obs, r.actions, r.rewards)
                        bar.update(len(episodes))
        meta = partial.assemble(len(chunks), overwrite=state == "replace")
    except BaseException:
        partial.discard(unless_resumable=True)
        raise
    finally:
        bar.close()
    return _Outcome(plan.out, meta, existed=False, resumed=(len(done), len(chunks)))


def collect(config: CollectConfig) -> Path:
    """Collect the episodes ``config`` describes and write them atomically.

    Re-running the same config is a no-op when the store is there, and finishes an interrupted
    collection from its finished chunks otherwise (see the module docstring).

    Args:
        config: What to collect and where.

    Returns:
        The dataset directory written (``out``, or ``out/shard-I-of-N`` with a shard).

    Raises:
        TrajbenchError: bad config, unknown env, level out of range, an ``out`` that holds a
            different dataset (without ``overwrite``), another live process writing ``out``, or
            a full or unwritable disk. Nothing is left half-written.
    """
    return _collect(config).path


def main(argv: list[str] | None = None) -> int:
    """``trajbench collect``: parse flags into :class:`CollectConfig` and collect."""
    config = parse_config(
        CollectConfig, list(sys.argv[1:] if argv is None else argv), "trajbench collect"
    )
    if config is None:  # --help
        return 0
    outcome = _collect(config)
    path, meta = outcome.path, outcome.meta
    if outcome.existed:
        print(
            f"{path} already holds this dataset ({meta['n_episodes']} episodes, "
            f"content {meta['content_hash'][:12]}); nothing to do"
        )
        return 0
    store = load(path)
    rate = float(store.episodes["success"].mean()) if len(store) else float("nan")
    done, total = outcome.resumed
    resumed = f" (resumed: {done} of {total} chunks were done)" if done else ""
    print(
        f"collected {len(store)} episodes, {store.n_steps} steps, success {rate:.1%} -> "
        f"{path}{resumed}"
    )
    return 0

"""Collection: roll a demonstrator out on a family's levels and write an episode store.

Episode ``i`` of level ``L`` has ``episode_id = L * episodes_per_level + i`` and is rolled out with
an env seed and a demonstrator RNG derived from ``np.random.SeedSequence([seed, L, i])``, on a
fresh environment per level; its content therefore never depends on ``--workers`` or ``--shard``.

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
import json
import multiprocessing as mp
import os
import re
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import gymnasium as gym
import numpy as np
import tyro

from .cliargs import parse_config
from .envs.demonstrators import DEFAULT_EPSILON, DEMONSTRATORS, Demonstrator
from .envs.levels import LevelMixin
from .envs.registration import NAMESPACE, env_ids
from .errors import TrajbenchError

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


# -- validation ---------------------------------------------------------------------------------


def resolve_env_id(name: str) -> str:
    """Full registered id of a trajbench family; accepts ``DarkRoom-v0`` for short.

    Raises:
        TrajbenchError: the id is not registered (the message lists the known ones).
    """
    name = name.removeprefix("trajbench:")
    for candidate in (name, f"{NAMESPACE}/{name}"):
        if candidate in gym.registry:
            return candidate
    raise TrajbenchError(f"unknown environment {name!r}; known: {', '.join(env_ids())}")


def make_env(env_id: str, sticky_p: float = 0.0, **kwargs: Any) -> gym.Env:
    """``gym.make`` a level-controlled family, turning constructor errors into TrajbenchError."""
    if sticky_p:
        kwargs["sticky_p"] = sticky_p
    try:
        env = gym.make(env_id, **kwargs)
    except (ValueError, TypeError, gym.error.Error) as err:
        raise TrajbenchError(f"cannot make {env_id}: {err}") from None
    if not isinstance(env.unwrapped, LevelMixin):
        env.close()
        raise TrajbenchError(
            f"{env_id} is not a trajbench family (no level control); known: {', '.join(env_ids())}"
        )
    return env


def parse_shard(spec: str) -> tuple[int, int]:
    """``"I/N"`` -> ``(I, N)`` with ``0 <= I < N``.

    Raises:
        TrajbenchError: anything else.
    """
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", spec)
    if not m or not 0 <= int(m.group(1)) < int(m.group(2)):
        raise TrajbenchError(f"bad shard {spec!r}: expected I/N with 0 <= I < N, e.g. 0/4")
    return int(m.group(1)), int(m.group(2))


def parse_levels(spec: str, env: gym.Env) -> tuple[str, np.ndarray]:
    """Normalized levels spec and the sorted level array it names in ``env``'s family."""
    spec = spec.strip()
    unwrapped = env.unwrapped
    if spec in ("train", "test", "all"):
        return spec, unwrapped.resolve_levels(spec)
    try:
        numbers = [int(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        raise TrajbenchError(
            f"bad levels {spec!r}: expected train, test, all, or comma-separated level numbers"
        ) from None
    try:
        levels = unwrapped.resolve_levels(numbers)
    except ValueError as err:
        raise TrajbenchError(str(err)) from None
    return ",".join(str(x) for x in levels), levels


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
    positions = range(len(levels))
    if shard is not None:
        from .data import shard_dirname

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
    from .data import META_FILE, load

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
        there = {**meta["config"], "shard": meta["shard"]}
        here = {**plan.content, "shard": None if plan.shard is None else list(plan.shard)}
        diff = [
            f"{k} {there.get(k)!r} there, {here[k]!r} here" for k in here if there.get(k) != here[k]
        ]
        same, what = not diff, f"a different dataset ({'; '.join(diff)})"
    if overwrite:
        return "replace"
    if same:
        return "same"
    raise TrajbenchError(
        f"--out {out} already holds {what}; pass --overwrite to replace it or choose another --out"
    )


def _check_sibling_shards(plan: _Plan, overwrite: bool) -> None:
    """Refuse to add a shard next to shards of another split or config (unless overwriting)."""
    from .data import META_FILE, SHARD_DIR_RE, read_meta

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
    """Workers leave Ctrl-C to the parent, which stops the pool and removes the partial output."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _make_shareable(directory: Path) -> None:
    """Give the temporary build directory (mkdtemp: mode 0700) the umask's usual permissions."""
    umask = os.umask(0)
    os.umask(umask)
    directory.chmod(0o777 & ~umask)


def _collect(config: CollectConfig) -> tuple[Path, dict[str, Any], bool]:
    """Returns (dataset path, its meta, whether it was already there)."""
    from tqdm.auto import tqdm

    from .data import EpisodeWriter, read_meta
    from .io import atomic_directory

    plan = _plan(config)
    state = _existing(plan, config.overwrite)
    if state == "same":
        return plan.out, read_meta(plan.out), True
    c = plan.content
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
        for p in plan.mine
    ]
    missing_parents = [d for d in plan.out.parents if not d.exists()]  # deepest first
    bar = tqdm(
        total=len(tasks) * c["episodes_per_level"],
        unit="ep",
        desc=plan.env_id.removeprefix(f"{NAMESPACE}/"),
        disable=not config.progress,
        file=sys.stderr,
    )
    try:
        with atomic_directory(plan.out, overwrite=state == "replace") as tmp:
            _make_shareable(tmp)
            writer = EpisodeWriter(tmp, plan.encoding)
            workers = min(config.workers, len(tasks))
            with contextlib.ExitStack() as stack:
                if workers > 1:
                    ctx = mp.get_context("spawn")
                    pool = stack.enter_context(ctx.Pool(workers, initializer=_ignore_sigint))
                    chunk = max(1, min(16, len(tasks) // (8 * workers)))
                    results = pool.imap(_collect_level, tasks, chunksize=chunk)
                else:
                    results = map(_collect_level, tasks)
                for episodes in results:
                    for row, r in episodes:
                        writer.add(row, r.obs, r.actions, r.rewards)
                    bar.update(len(episodes))
            meta = writer.close(env_id=plan.env_id, config=plan.content, shard=plan.shard)
    except BaseException:
        for d in missing_parents:  # leave no empty directories we created behind
            with contextlib.suppress(OSError):
                d.rmdir()
        raise
    finally:
        bar.close()
    return plan.out, meta, False


def collect(config: CollectConfig) -> Path:
    """Collect the episodes ``config`` describes and write them atomically.

    Re-running the same config is a no-op (useful to resume a sharded or interrupted job).

    Args:
        config: What to collect and where.

    Returns:
        The dataset directory written (``out``, or ``out/shard-I-of-N`` with a shard).

    Raises:
        TrajbenchError: bad config, unknown env, level out of range, or an ``out`` that holds a
            different dataset (without ``overwrite``). Nothing is left half-written.
    """
    return _collect(config)[0]


def main(argv: list[str] | None = None) -> int:
    """``trajbench collect``: parse flags into :class:`CollectConfig` and collect."""
    config = parse_config(
        CollectConfig, list(sys.argv[1:] if argv is None else argv), "trajbench collect"
    )
    if config is None:  # --help
        return 0
    path, meta, existed = _collect(config)
    if existed:
        print(
            f"{path} already holds this dataset ({meta['n_episodes']} episodes, "
            f"content {meta['content_hash'][:12]}); nothing to do"
        )
        return 0
    from .data import load

    store = load(path)
    rate = float(store.episodes["success"].mean()) if len(store) else float("nan")
    print(f"collected {len(store)} episodes, {store.n_steps} steps, success {rate:.1%} -> {path}")
    return 0


# -- trajbench envs -----------------------------------------------------------------------------


@dataclass
class EnvsConfig:
    """List every registered environment family."""

    json: bool = False
    """Print a JSON list instead of a table."""


def _space_summary(space: gym.Space) -> str:
    if isinstance(space, gym.spaces.Dict):
        return (
            "Dict(" + ", ".join(f"{k}: {_space_summary(v)}" for k, v in space.spaces.items()) + ")"
        )
    if isinstance(space, gym.spaces.Box):
        return f"Box{tuple(space.shape)} {space.dtype}"
    if isinstance(space, gym.spaces.MultiDiscrete):
        return f"MultiDiscrete({space.nvec.tolist()})"
    if isinstance(space, gym.spaces.Text) or not type(space).__module__.startswith("gymnasium"):
        return type(space).__name__  # e.g. MiniGrid's MissionSpace, whose repr is a function
    return str(space)


def family_info(env_id: str) -> dict[str, Any]:
    """What ``trajbench envs`` shows about one family (instantiates it).

    Example:
        >>> import trajbench
        >>> family_info("trajbench/DarkRoom-v0")["n_levels"]
        81
    """
    env = make_env(env_id)
    try:
        u, splits = env.unwrapped, env.unwrapped.splits()
        max_steps = getattr(u, "max_steps", None) or (env.spec and env.spec.max_episode_steps)
        return {
            "id": env_id,
            "n_levels": int(u.n_levels),
            "n_train": len(splits["train"]),
            "n_test": len(splits["test"]),
            "observation_space": _space_summary(env.observation_space),
            "encoding": u.encoding.name,
            "n_features": u.encoding.n_features,
            "n_actions": int(u.encoding.n_actions),
            "max_steps": None if max_steps is None else int(max_steps),
            "has_mission": bool(u.has_mission),
            "expert": u.expert_name,
            "version": env.spec.version if env.spec else None,
            "version_note": u.version_note,
            "level_fixes": u.level_fixes,
            "episode_draws": u.episode_draws,
        }
    finally:
        env.close()


def envs_main(argv: list[str] | None = None) -> int:
    """``trajbench envs``: a table (or ``--json``) of every registered family."""
    config = parse_config(
        EnvsConfig, list(sys.argv[1:] if argv is None else argv), "trajbench envs"
    )
    if config is None:  # --help
        return 0
    rows = [family_info(env_id) for env_id in env_ids()]
    if config.json:
        print(json.dumps(rows, indent=2))
        return 0
    headers = {
        "id": "id",
        "n_levels": "levels",
        "n_train": "train",
        "n_test": "test",
        "max_steps": "max steps",
        "n_actions": "actions",
        "encoding": "encoding",
        "has_mission": "mission",
        "observation_space": "observation",
        "expert": "expert",
        "version": "version",
        "level_fixes": "a level fixes",
        "episode_draws": "each episode draws",
    }
    cells = [[str(h) for h in headers.values()]]
    for row in rows:
        shown = {**row, "version": f"v{row['version']}"}
        if row["version_note"]:
            shown["version"] += f", {row['version_note']}"
        cells.append(
            [
                "yes" if v is True else "no" if v is False else str(v)
                for v in map(shown.get, headers)
            ]
        )
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for r in cells:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return 0

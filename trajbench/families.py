"""Looking up and making the registered families, and reading level specs, for every command.

Example:
    >>> import trajbench
    >>> resolve_env_id("DarkRoom-v0")
    'trajbench/DarkRoom-v0'
    >>> env = make_env("trajbench/DarkRoom-v0")
    >>> parse_levels("0,5,5", env)[0]
    '0,5'
    >>> len(sample_levels(env, "test", 4))
    4
"""

from __future__ import annotations

import zlib
from typing import Any

import gymnasium as gym
import numpy as np

from .envs.levels import LevelMixin
from .envs.registration import NAMESPACE, env_ids
from .errors import TrajbenchError


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


def sample_levels(env: gym.Env, split: str, n: int) -> np.ndarray:
    """``n`` levels drawn uniformly without replacement from ``env``'s ``split``, sorted.

    The draw depends only on (family, split, n), so every store that names the same subset (the
    expert and the noisy collection of a preset, say) holds the same levels; ``n = 0`` or ``n`` at
    least the split's size gives the whole split.
    """
    family = env.unwrapped.family
    return subset(env.unwrapped.resolve_levels(split), n, family, split)


def subset(levels: np.ndarray | list[int], n: int, *key: str) -> np.ndarray:
    """A seeded uniform draw of ``n`` of ``levels`` (sorted), the same for the same ``key``.

    ``n = 0`` or ``n`` at least ``len(levels)`` keeps them all. Never "the first n": sorted level
    numbers are not a random sample of a family (e.g. Dark Key-to-Door numbers levels by key cell).
    """
    levels = np.sort(np.asarray(levels, dtype=np.int64))
    if n <= 0 or n >= len(levels):
        return levels
    seed = [zlib.crc32(k.encode()) for k in key] + [len(levels), n]
    return np.sort(np.random.default_rng(seed).choice(levels, size=n, replace=False))

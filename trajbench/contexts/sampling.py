"""Vectorized random draws of the prompt builder: whole batches at once, no Python per row.

Every function takes the builder's ``numpy.random.Generator`` and draws in a fixed order, so a
batch stays a pure function of its seed.

Example:
    >>> rng = np.random.default_rng(0)
    >>> picks = first_k_of_permutations(rng, np.array([5, 3]), 2)
    >>> picks.shape, bool((picks[1] < 3).all())
    ((2, 2), True)
"""

from __future__ import annotations

import numpy as np

from ..errors import TrajbenchError

_IOTA = np.arange(1 << 16, dtype=np.int64)


def iota(n: int) -> np.ndarray:
    """``np.arange(n)`` from a cached array (read-only use)."""
    global _IOTA
    if len(_IOTA) < n:
        _IOTA = np.arange(max(n, 2 * len(_IOTA)), dtype=np.int64)
    return _IOTA[:n]


def csr(groups: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of ``groups`` sorted by group (stable), with each group's start and count."""
    order = np.argsort(groups, kind="stable").astype(np.int64)
    count = np.bincount(groups, minlength=n_groups).astype(np.int64)
    return order, np.cumsum(count) - count, count


def floor(u: np.ndarray, n) -> np.ndarray:
    """``floor(u * n)`` as int64 for uniforms ``u`` in [0, 1): a uniform index below ``n``.

    ``Generator.random`` draws multiples of 2**-53 below 1, and for those ``u * n < n`` holds in
    float64 for every integer ``n < 2**53`` (the product rounds down, or is exact), so no clip.
    """
    return (u * n).astype(np.int64)


def first_k_of_permutations(rng: np.random.Generator, m: np.ndarray, k: int) -> np.ndarray:
    """Per row, the first ``k`` of a uniformly random permutation of ``range(m[row])``."""
    width = int(m.max())
    r = rng.random((len(m), width))
    if int(m.min()) < width:
        r[iota(width)[None, :] >= m[:, None]] = 2.0
    return np.argsort(r, axis=1)[:, :k]


def k_distinct(rng: np.random.Generator, m: np.ndarray, k: int) -> np.ndarray:
    """Per row, ``k`` distinct values of ``range(m[row])`` (``m >= k``) in a uniformly random order.

    Floyd's algorithm gives a uniformly random ``k``-subset in ``k`` vectorized draws; a random
    permutation of the ``k`` columns then makes every order equally likely.
    """
    out = np.empty((len(m), k), dtype=np.int64)
    u = rng.random((len(m), k))
    for i in range(k):
        j = m - k + i
        t = floor(u[:, i], j + 1)
        out[:, i] = np.where((out[:, :i] == t[:, None]).any(1), j, t)
    return np.take_along_axis(out, np.argsort(rng.random((len(m), k)), axis=1), axis=1)


def check_seed(seed) -> int:
    """``seed`` as an int; a negative or non-integer seed is a TrajbenchError."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise TrajbenchError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


class Randrange:
    """``random.Random``-style ``randrange`` over a NumPy generator (for :func:`shown_mission`)."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def randrange(self, n: int) -> int:
        return int(self.rng.integers(n))

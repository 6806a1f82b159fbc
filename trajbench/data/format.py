"""The episode store's on-disk format: file names, the episode table's schema, content hashing.

The content hash is a two-level sha256 over the episodes in ``(env_id, episode_id)`` order: each
episode's digest covers its metadata fields and a digest of its step bytes (stored per row in
``step_digest``), and the content hash covers the episode digests. The same collection therefore
has the same hash whatever the number of workers or shards, and the hash of a sharded or merged
store is computed from the Parquet tables alone.

Example:
    >>> shard_dirname(1, 4), actions_dtype(7)
    ('shard-1-of-4', dtype('uint8'))
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa

from ..errors import TrajbenchError

FORMAT_NAME = "trajbench-episodes"
FORMAT_VERSION = 1
META_FILE = "meta.json"
EPISODES_FILE = "episodes.parquet"
ARRAY_FILES = {"obs": "obs.npy", "actions": "actions.npy", "rewards": "rewards.npy"}

_SCHEMA = pa.schema(
    [
        ("episode_id", pa.int64()),
        ("env_id", pa.string()),
        ("level", pa.int64()),
        ("split", pa.string()),
        ("demonstrator", pa.string()),
        ("length", pa.int64()),
        ("return", pa.float64()),
        ("success", pa.bool_()),
        ("mission", pa.string()),
        ("seed", pa.int64()),
        ("offset", pa.int64()),
        ("step_digest", pa.string()),
    ]
)
#: Columns of ``episodes.parquet`` and of :attr:`EpisodeStore.episodes`.
EPISODE_COLUMNS: tuple[str, ...] = tuple(_SCHEMA.names)
#: Per-episode metadata covered by the content hash (``offset`` is not: it depends on sharding).
HASHED_FIELDS: tuple[str, ...] = (
    "episode_id",
    "env_id",
    "level",
    "split",
    "demonstrator",
    "length",
    "return",
    "success",
    "mission",
    "seed",
)
_META_FIELDS = (
    "format",
    "format_version",
    "env_id",
    "encoding",
    "config",
    "n_episodes",
    "n_steps",
    "content_hash",
    "trajbench_version",
    "split_version",
    "shard",
)
#: Name of a shard directory inside a sharded dataset directory.
SHARD_DIR_RE = re.compile(r"shard-(\d+)-of-(\d+)")


class Episode(NamedTuple):
    """One episode's step arrays (read-only views into the store)."""

    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray


def shard_dirname(index: int, count: int) -> str:
    """Directory name of shard ``index`` of ``count`` inside a sharded dataset directory."""
    return f"shard-{index}-of-{count}"


def actions_dtype(n_actions: int) -> np.dtype:
    """Storage dtype of actions: uint8 up to 256 actions, else int16."""
    if n_actions <= 256:
        return np.dtype(np.uint8)
    if n_actions <= 32768:
        return np.dtype("<i2")
    raise TrajbenchError(f"{n_actions} actions do not fit the int16 action array")


def step_digest(obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray) -> str:
    """Hex sha256 over an episode's step bytes (obs, then actions, then rewards)."""
    h = hashlib.sha256()
    for a in (obs, actions, rewards):
        h.update(np.ascontiguousarray(a).data)
    return h.hexdigest()


def _episode_digest(fields: Sequence[Any], step_hex: str) -> bytes:
    eid, env, level, split, demo, length, ret, success, mission, seed = fields
    # Numbers, then length-prefixed strings: unambiguous, and much faster than json.dumps.
    head = (
        f"{int(eid)},{int(level)},{int(length)},{float(ret)!r},{int(bool(success))},{int(seed)};"
        f"{len(env)}:{env}{len(split)}:{split}{len(demo)}:{demo}{len(mission)}:{mission}"
    )
    return hashlib.sha256(head.encode("utf-8") + bytes.fromhex(step_hex)).digest()


def episode_digests(episodes: pd.DataFrame) -> list[bytes]:
    """Per-episode sha256 (hashed metadata fields + ``step_digest``), in table order."""
    columns = [episodes[c].tolist() for c in (*HASHED_FIELDS, "step_digest")]
    return [_episode_digest(row[:-1], row[-1]) for row in zip(*columns, strict=True)]


def _combine(env_ids: Sequence[str], episode_ids: Sequence[int], digests: Sequence[bytes]) -> str:
    order = sorted(range(len(digests)), key=lambda i: (env_ids[i], episode_ids[i]))
    return hashlib.sha256(b"".join(digests[i] for i in order)).hexdigest()


def content_hash(episodes: pd.DataFrame) -> str:
    """Content hash of a table with :data:`EPISODE_COLUMNS`, in ``(env_id, episode_id)`` order.

    Reads only the table: step bytes enter through the ``step_digest`` column, which
    :meth:`EpisodeStore.verify` checks against the arrays.
    """
    return _combine(
        episodes["env_id"].tolist(), episodes["episode_id"].tolist(), episode_digests(episodes)
    )

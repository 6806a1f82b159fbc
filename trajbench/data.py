"""The episode store: episodes on disk as one Parquet table plus memory-mapped step arrays.

A dataset directory holds::

    meta.json         format, env id, observation encoding, generating config, counts, content hash
    episodes.parquet  one row per episode (EPISODE_COLUMNS); ``offset`` is its first step row
    obs.npy           uint8 [n_steps, n_features]: the observation each action was chosen on
    actions.npy       uint8 (int16 past 256 actions) [n_steps]
    rewards.npy       float32 [n_steps]: the reward that followed each action

A collection split with ``--shard I/N`` is a directory of ``shard-I-of-N/`` dataset directories;
loading that directory sees one dataset. Step arrays are opened with ``np.load(mmap_mode="r")``,
so loading never copies the whole dataset.

The content hash is a two-level sha256 over the episodes in ``(env_id, episode_id)`` order: each
episode's digest covers its metadata fields and a digest of its step bytes (stored per row in
``step_digest``), and the content hash covers the episode digests. The same collection therefore
has the same hash whatever the number of workers or shards, and the hash of a sharded or merged
store is computed from the Parquet tables alone.

Example:
    >>> import tempfile, trajbench
    >>> from trajbench.collect import CollectConfig, collect
    >>> from trajbench.data import load
    >>> out = collect(CollectConfig(env="trajbench/DarkRoom-v0", levels="0,1",
    ...                             episodes_per_level=2, out=tempfile.mkdtemp() + "/ds",
    ...                             progress=False))
    >>> store = load(out)
    >>> len(store), int(store.episodes.loc[0, "length"]), store.episode(0).obs.shape
    (4, 20, (20, 2))
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .envs.levels import ObsEncoding
from .errors import TrajbenchError

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


class _NpyAppender:
    """Streams rows into a ``.npy`` file whose length is only known at the end.

    NumPy pads the header so the first axis can grow in place; the finished file is
    byte-identical to ``np.save`` of the whole array.
    """

    def __init__(self, path: Path, dtype: np.dtype, row_shape: tuple[int, ...]):
        self.dtype, self.row_shape, self.n = np.dtype(dtype), tuple(row_shape), 0
        self.file = open(path, "wb")  # noqa: SIM115 - closed in finish()
        self._write_header()
        self.data_start = self.file.tell()

    def _write_header(self) -> None:
        descr = np.lib.format.dtype_to_descr(self.dtype)
        header = {"descr": descr, "fortran_order": False, "shape": (self.n, *self.row_shape)}
        np.lib.format.write_array_header_1_0(self.file, header)

    def append(self, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        if rows.shape[1:] != self.row_shape:
            raise ValueError(f"rows of shape {rows.shape[1:]} appended to {self.row_shape}")
        self.file.write(rows.data)
        self.n += len(rows)

    def finish(self) -> None:
        self.file.seek(0)
        self._write_header()
        if self.file.tell() != self.data_start:  # cannot happen with NumPy's growth padding
            raise RuntimeError("npy header changed size while finishing")
        self.file.close()


class EpisodeWriter:
    """Writes one dataset directory, episode by episode.

    Build into a temporary directory (``trajbench.io.atomic_directory``) so a failure leaves
    nothing behind. Episodes are stored in the order they are added; add them in a deterministic
    order so that the files, not just the content hash, are reproducible.

    Args:
        directory: An existing, empty directory.
        encoding: The family's observation encoding.

    Example:
        >>> import tempfile, numpy as np
        >>> from trajbench.envs import ObsEncoding
        >>> d = Path(tempfile.mkdtemp())
        >>> w = EpisodeWriter(d, ObsEncoding("dark-room", (9, 9), 5))
        >>> w.add(dict(episode_id=0, env_id="trajbench/DarkRoom-v0", level=0, split="train",
        ...            demonstrator="expert", success=True, mission="", seed=1),
        ...       obs=np.zeros((3, 2), np.uint8), actions=[0, 0, 0], rewards=[1.0, 1.0, 1.0])
        >>> meta = w.close(env_id="trajbench/DarkRoom-v0", config={}, shard=None)
        >>> load(d).episodes.loc[0, "return"]
        np.float64(3.0)
    """

    def __init__(self, directory: str | Path, encoding: ObsEncoding):
        self.directory = Path(directory)
        self.encoding = encoding
        self.rows: list[dict[str, Any]] = []
        self._obs = _NpyAppender(
            self.directory / ARRAY_FILES["obs"], np.uint8, (encoding.n_features,)
        )
        self._actions = _NpyAppender(
            self.directory / ARRAY_FILES["actions"], actions_dtype(encoding.n_actions), ()
        )
        self._rewards = _NpyAppender(self.directory / ARRAY_FILES["rewards"], np.dtype("<f4"), ())

    @property
    def n_steps(self) -> int:
        return self._obs.n

    def add(self, row: dict[str, Any], obs: Any, actions: Any, rewards: Any) -> None:
        """Append one episode.

        Args:
            row: ``episode_id, env_id, level, split, demonstrator, success, mission, seed``;
                ``length``, ``return``, ``offset`` and ``step_digest`` are computed here.
            obs: ``[T, n_features]`` observation features (each must fit uint8).
            actions: ``[T]`` actions.
            rewards: ``[T]`` rewards (stored as float32; ``return`` is their float64 sum).
        """
        obs = np.asarray(obs)
        length = len(obs)
        if obs.ndim != 2 or obs.shape[1] != self.encoding.n_features:
            raise ValueError(f"obs must be [T, {self.encoding.n_features}], got {obs.shape}")
        if obs.size and (obs.min() < 0 or obs.max() > 255):
            raise ValueError("observation features must lie in 0..255 to be stored as uint8")
        obs = obs.astype(np.uint8, copy=False)
        actions = np.asarray(actions).astype(self._actions.dtype, copy=False)
        rewards = np.asarray(rewards, dtype=np.float64).astype("<f4")
        if actions.shape != (length,) or rewards.shape != (length,):
            raise ValueError(
                f"episode arrays disagree in length: obs {length}, actions {actions.shape}, "
                f"rewards {rewards.shape}"
            )
        full = {
            "episode_id": int(row["episode_id"]),
            "env_id": str(row["env_id"]),
            "level": int(row["level"]),
            "split": str(row["split"]),
            "demonstrator": str(row["demonstrator"]),
            "length": length,
            "return": float(rewards.sum(dtype=np.float64)),
            "success": bool(row["success"]),
            "mission": str(row["mission"]),
            "seed": int(row["seed"]),
            "offset": self.n_steps,
            "step_digest": step_digest(obs, actions, rewards),
        }
        self._obs.append(obs)
        self._actions.append(actions)
        self._rewards.append(rewards)
        self.rows.append(full)

    def close(
        self, *, env_id: str, config: dict[str, Any], shard: tuple[int, int] | None
    ) -> dict[str, Any]:
        """Finish the arrays, write ``episodes.parquet`` and ``meta.json``; returns the meta."""
        from . import __version__
        from .envs.levels import SPLIT_VERSION

        for appender in (self._obs, self._actions, self._rewards):
            appender.finish()
        columns = {name: [r[name] for r in self.rows] for name in EPISODE_COLUMNS}
        table = pa.Table.from_pydict(columns, schema=_SCHEMA)
        pq.write_table(table, self.directory / EPISODES_FILE, compression="zstd")
        meta = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "env_id": env_id,
            "encoding": {
                "name": self.encoding.name,
                "feature_sizes": list(self.encoding.feature_sizes),
                "n_actions": self.encoding.n_actions,
            },
            "config": config,
            "n_episodes": len(self.rows),
            "n_steps": self.n_steps,
            "content_hash": content_hash(pd.DataFrame(columns)),
            "trajbench_version": __version__,
            "split_version": SPLIT_VERSION,
            "shard": None if shard is None else [int(shard[0]), int(shard[1])],
        }
        # The whole directory is moved into place atomically, so a plain write suffices here.
        (self.directory / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        for name in (META_FILE, EPISODES_FILE, *ARRAY_FILES.values()):
            fd = os.open(self.directory / name, os.O_RDONLY)
            try:
                os.fsync(fd)  # on disk before the directory is renamed into place
            finally:
                os.close(fd)
        return meta


# -- reading ----------------------------------------------------------------------------------


@dataclass
class _Part:
    """One dataset directory, opened."""

    path: Path
    meta: dict[str, Any]
    episodes: pd.DataFrame
    digests: list[bytes]
    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray

    @property
    def encoding(self) -> ObsEncoding:
        e = self.meta["encoding"]
        return ObsEncoding(
            str(e["name"]), tuple(int(x) for x in e["feature_sizes"]), int(e["n_actions"])
        )


def read_meta(directory: str | Path) -> dict[str, Any]:
    """Read and check a dataset directory's ``meta.json``.

    Raises:
        TrajbenchError: missing file, invalid JSON, another format, or a missing field.
    """
    file = Path(directory) / META_FILE
    try:
        meta = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TrajbenchError(f"corrupt episode store: {file} is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise TrajbenchError(f"corrupt episode store: {file} is not valid JSON ({err})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise TrajbenchError(
            f"{file} is not a trajbench episode store (format is not {FORMAT_NAME!r})"
        )
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise TrajbenchError(
            f"{file}: format_version {version!r} is not the one this trajbench reads "
            f"({FORMAT_VERSION}); use a matching trajbench version"
        )
    missing = [k for k in _META_FIELDS if k not in meta]
    if missing:
        raise TrajbenchError(f"corrupt episode store: {file} lacks {', '.join(missing)}")
    try:
        for key in ("n_episodes", "n_steps"):
            if int(meta[key]) != meta[key] or meta[key] < 0:
                raise ValueError(key)
        enc = meta["encoding"]
        ObsEncoding(
            str(enc["name"]), tuple(int(x) for x in enc["feature_sizes"]), int(enc["n_actions"])
        )
    except (TypeError, ValueError, KeyError) as err:
        raise TrajbenchError(
            f"corrupt episode store: {file} has a malformed field ({err})"
        ) from None
    return meta


def _read_episodes(directory: Path, meta: dict[str, Any]) -> tuple[pd.DataFrame, list[bytes]]:
    file = directory / EPISODES_FILE
    if not file.is_file():
        raise TrajbenchError(f"corrupt episode store: {file} is missing")
    try:
        table = pq.read_table(file)
    except (OSError, pa.ArrowException) as err:
        raise TrajbenchError(f"corrupt episode store: cannot read {file} ({err})") from None
    missing = [c for c in EPISODE_COLUMNS if c not in table.column_names]
    if missing:
        raise TrajbenchError(f"corrupt episode store: {file} lacks columns {', '.join(missing)}")
    try:
        table = table.select(list(EPISODE_COLUMNS)).cast(_SCHEMA)
    except (pa.ArrowException, ValueError) as err:
        raise TrajbenchError(
            f"corrupt episode store: {file} has wrong column types ({err})"
        ) from None
    nulls = [c for c in EPISODE_COLUMNS if table.column(c).null_count]
    if nulls:
        raise TrajbenchError(f"corrupt episode store: {file} has empty cells in {', '.join(nulls)}")
    if table.num_rows != meta["n_episodes"]:
        raise TrajbenchError(
            f"corrupt episode store: {file} holds {table.num_rows} episodes but "
            f"{directory / META_FILE} says {meta['n_episodes']}"
        )
    df = table.to_pandas()
    lengths, offsets = df["length"].to_numpy(), df["offset"].to_numpy()
    expected = np.cumsum(lengths) - lengths
    if (
        (lengths < 0).any()
        or not np.array_equal(offsets, expected)
        or lengths.sum() != meta["n_steps"]
    ):
        raise TrajbenchError(
            f"corrupt episode store: the length/offset columns of {file} do not tile the "
            f"{meta['n_steps']} steps of {directory / META_FILE}"
        )
    if (df["env_id"] != meta["env_id"]).any():
        raise TrajbenchError(
            f"corrupt episode store: {file} holds episodes of another env than {meta['env_id']}"
        )
    if df["episode_id"].duplicated().any():
        raise TrajbenchError(f"corrupt episode store: {file} repeats an episode_id")
    digests = episode_digests(df)
    if _combine(df["env_id"].tolist(), df["episode_id"].tolist(), digests) != meta["content_hash"]:
        raise TrajbenchError(
            f"corrupt episode store: the content hash of {file} does not match "
            f"{directory / META_FILE} (one of them was edited)"
        )
    return df, digests


def _load_array(
    file: Path, n_steps: int, dtypes: tuple[np.dtype, ...], row_shape: tuple[int, ...]
) -> np.ndarray:
    if not file.is_file():
        raise TrajbenchError(f"corrupt episode store: {file} is missing")
    try:
        array = np.load(file, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise TrajbenchError(f"corrupt episode store: cannot read {file} ({err})") from None
    if array.dtype not in dtypes or array.shape[1:] != row_shape:
        raise TrajbenchError(
            f"corrupt episode store: {file} is {array.dtype} {array.shape}, expected "
            f"{dtypes[0]} [n_steps{''.join(f', {s}' for s in row_shape)}]"
        )
    if array.shape[0] != n_steps:
        raise TrajbenchError(
            f"corrupt episode store: {file} holds {array.shape[0]} steps but meta.json says {n_steps}"
        )
    return array


def _read_part(directory: Path) -> _Part:
    meta = read_meta(directory)
    episodes, digests = _read_episodes(directory, meta)
    n, enc = meta["n_steps"], meta["encoding"]
    obs = _load_array(
        directory / ARRAY_FILES["obs"], n, (np.dtype(np.uint8),), (len(enc["feature_sizes"]),)
    )
    actions = _load_array(
        directory / ARRAY_FILES["actions"], n, (actions_dtype(int(enc["n_actions"])),), ()
    )
    rewards = _load_array(directory / ARRAY_FILES["rewards"], n, (np.dtype("<f4"),), ())
    return _Part(directory, meta, episodes, digests, obs, actions, rewards)


def dataset_parts(path: str | Path) -> list[Path]:
    """The dataset directories that make up ``path``: itself, or its complete set of shards.

    Raises:
        TrajbenchError: no such directory, not a dataset, or shards missing or mixed.
    """
    path = Path(path)
    if (path / META_FILE).exists():
        return [path]
    if not path.is_dir():
        raise TrajbenchError(f"no episode store at {path}")
    shards: dict[int, set[int]] = {}
    for child in path.iterdir():
        m = SHARD_DIR_RE.fullmatch(child.name)
        if m and child.is_dir():
            shards.setdefault(int(m.group(2)), set()).add(int(m.group(1)))
    if not shards:
        raise TrajbenchError(
            f"{path} is not a trajbench episode store: no {META_FILE} and no shard-I-of-N directories"
        )
    if len(shards) > 1:
        raise TrajbenchError(f"{path} mixes shards of different counts: N = {sorted(shards)}")
    ((count, present),) = shards.items()
    missing = [shard_dirname(i, count) for i in range(count) if i not in present]
    if missing:
        raise TrajbenchError(
            f"{path} is incomplete: missing {', '.join(missing)} "
            f"(collect it with --shard {missing[0].split('-')[1]}/{count})"
        )
    extra = sorted(i for i in present if i >= count)
    if extra:
        raise TrajbenchError(
            f"{path} holds {shard_dirname(extra[0], count)}, beyond {count} shards"
        )
    return [path / shard_dirname(i, count) for i in range(count)]


def _check_shards(root: Path, parts: list[_Part]) -> None:
    first = parts[0].meta
    for i, part in enumerate(parts):
        if part.meta["shard"] != [i, len(parts)]:
            raise TrajbenchError(
                f"{part.path / META_FILE} says shard {part.meta['shard']}, not [{i}, {len(parts)}]"
            )
        for key in ("env_id", "config", "encoding"):
            if part.meta[key] != first[key]:
                raise TrajbenchError(
                    f"shards of {root} come from different collections: {key} of "
                    f"{part.path.name} differs from {parts[0].path.name}"
                )


class EpisodeStore:
    """Episodes of one or more dataset directories sharing one observation encoding.

    Build it with :func:`load`. ``episodes`` is sorted by ``(env_id, episode_id)`` and its
    ``offset`` column indexes the store-wide ``obs`` / ``actions`` / ``rewards`` arrays.
    """

    def __init__(self, parts: list[_Part]):
        if not parts:
            raise TrajbenchError("an episode store needs at least one dataset")
        encodings = {p.encoding for p in parts}
        if len(encodings) > 1:
            desc = "; ".join(
                sorted(
                    f"{e.name} {list(e.feature_sizes)} x {e.n_actions} actions" for e in encodings
                )
            )
            raise TrajbenchError(
                f"cannot merge datasets with different observation encodings: {desc}"
            )
        self._parts = parts
        self.encoding: ObsEncoding = encodings.pop()
        bases = np.cumsum([0] + [len(p.obs) for p in parts])
        frames = []
        # Episode ids are unique within one collection (all its shards). When a second
        # collection of the same family joins (e.g. noisy episodes beside expert ones), its ids
        # are shifted past the earlier ones; the same collection loaded twice still overlaps.
        first_id: dict[tuple[str, str], int] = {}
        next_id: dict[str, int] = {}
        for i, p in enumerate(parts):
            df = p.episodes.copy()
            df["offset"] += int(bases[i])
            df["_part"] = i
            env_id = p.meta["env_id"]
            collection = (env_id, json.dumps(p.meta["config"], sort_keys=True))
            if collection not in first_id:
                first_id[collection] = next_id.get(env_id, 0)
            df["episode_id"] += first_id[collection]
            if len(df):
                next_id[env_id] = max(next_id.get(env_id, 0), int(df["episode_id"].max()) + 1)
            frames.append(df)
        df = pd.concat(frames, ignore_index=True)
        dup = df.duplicated(["env_id", "episode_id"])
        if dup.any():
            row = df[dup].iloc[0]
            raise TrajbenchError(
                f"datasets overlap: episode {row['episode_id']} of {row['env_id']} appears twice "
                f"(in {', '.join(str(p.path) for p in parts)})"
            )
        df = df.sort_values(["env_id", "episode_id"], kind="stable")
        digests = [d for p in parts for d in p.digests]
        self.content_hash: str = hashlib.sha256(
            b"".join(digests[i] for i in df.index.tolist())
        ).hexdigest()
        df = df.reset_index(drop=True)
        self._row_part = df.pop("_part").to_numpy()
        self._local_offset = df["offset"].to_numpy() - bases[self._row_part]
        self._lengths = df["length"].to_numpy()
        # Plain ndarray views of the memmaps: slicing them is much cheaper than slicing a memmap.
        self._views = [
            (np.asarray(p.obs), np.asarray(p.actions), np.asarray(p.rewards)) for p in parts
        ]
        self.episodes: pd.DataFrame = df

    @property
    def paths(self) -> list[Path]:
        """The dataset directories this store reads."""
        return [p.path for p in self._parts]

    @property
    def env_ids(self) -> list[str]:
        """Sorted env ids present in the store."""
        return sorted({p.meta["env_id"] for p in self._parts})

    @property
    def configs(self) -> list[dict[str, Any]]:
        """Distinct generating configs, in load order."""
        out: list[dict[str, Any]] = []
        for p in self._parts:
            if p.meta["config"] not in out:
                out.append(p.meta["config"])
        return out

    @property
    def config(self) -> dict[str, Any]:
        """The generating config (a store merged from several collections has :attr:`configs`)."""
        configs = self.configs
        if len(configs) != 1:
            raise TrajbenchError(
                f"this store merges {len(configs)} collections; read store.configs instead"
            )
        return configs[0]

    @property
    def metas(self) -> list[dict[str, Any]]:
        """``meta.json`` of every dataset directory, in load order."""
        return [p.meta for p in self._parts]

    @cached_property
    def missions(self) -> list[str]:
        """Sorted unique mission strings ('' for families without missions)."""
        return sorted(self.episodes["mission"].unique().tolist())

    @property
    def n_steps(self) -> int:
        return int(sum(len(p.obs) for p in self._parts))

    def __len__(self) -> int:
        return len(self.episodes)

    def __repr__(self) -> str:
        return (
            f"EpisodeStore({len(self)} episodes, {self.n_steps} steps, envs={self.env_ids}, "
            f"encoding={self.encoding.name!r}, content_hash={self.content_hash[:12]}...)"
        )

    def _whole(self, name: str) -> np.ndarray:
        arrays = [getattr(p, name) for p in self._parts]
        return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)

    @cached_property
    def obs(self) -> np.ndarray:
        """uint8 ``[n_steps, n_features]``: a memmap for one dataset, concatenated once for several."""
        return self._whole("obs")

    @cached_property
    def actions(self) -> np.ndarray:
        """``[n_steps]`` actions (uint8, or int16 past 256 actions)."""
        return self._whole("actions")

    @cached_property
    def rewards(self) -> np.ndarray:
        """float32 ``[n_steps]`` rewards."""
        return self._whole("rewards")

    @cached_property
    def _index(self) -> dict[tuple[str, int], int]:
        keys = zip(
            self.episodes["env_id"].tolist(), self.episodes["episode_id"].tolist(), strict=True
        )
        return {key: row for row, key in enumerate(keys)}

    def episode(self, episode_id: int, env_id: str | None = None) -> Episode:
        """Step arrays of one episode, as views (never a copy of the dataset).

        Args:
            episode_id: The episode's ``episode_id``.
            env_id: Its env id; may be left out when the store holds a single env.

        Raises:
            TrajbenchError: unknown episode, or ``env_id`` left out on a multi-env store.
        """
        if env_id is None:
            if len(self.env_ids) != 1:
                raise TrajbenchError(f"this store holds {self.env_ids}; pass env_id")
            env_id = self.env_ids[0]
        row = self._index.get((env_id, int(episode_id)))
        if row is None:
            raise TrajbenchError(f"no episode {episode_id} of {env_id} in this store")
        obs, actions, rewards = self._views[self._row_part[row]]
        start = int(self._local_offset[row])
        stop = start + int(self._lengths[row])
        return Episode(obs[start:stop], actions[start:stop], rewards[start:stop])

    def verify(self) -> None:
        """Recompute every episode's step digest from the arrays and check value ranges.

        Raises:
            TrajbenchError: naming the file and episode whose bytes do not match.
        """
        sizes = np.asarray(self.encoding.feature_sizes)
        for p in self._parts:
            names = ", ".join(ARRAY_FILES.values())
            for eid, start, length, expected in zip(
                p.episodes["episode_id"].tolist(),
                p.episodes["offset"].tolist(),
                p.episodes["length"].tolist(),
                p.episodes["step_digest"].tolist(),
                strict=True,
            ):
                stop = start + length
                got = step_digest(p.obs[start:stop], p.actions[start:stop], p.rewards[start:stop])
                if got != expected:
                    raise TrajbenchError(
                        f"corrupt episode store: in {p.path}, the steps of episode {eid} "
                        f"({names}) do not match their digest in {EPISODES_FILE}"
                    )
            if len(p.obs) and (p.obs.max(axis=0) >= sizes).any():
                raise TrajbenchError(
                    f"corrupt episode store: {p.path / ARRAY_FILES['obs']} has features outside the encoding"
                )
            if len(p.actions) and int(p.actions.max()) >= self.encoding.n_actions:
                raise TrajbenchError(
                    f"corrupt episode store: {p.path / ARRAY_FILES['actions']} has actions >= {self.encoding.n_actions}"
                )


def load(path_or_paths: str | Path | Sequence[str | Path], *, verify: bool = False) -> EpisodeStore:
    """Open one dataset, a directory of shards, or several datasets to merge.

    Args:
        path_or_paths: A dataset directory, a directory of ``shard-I-of-N`` datasets, or a list
            of either. Merged datasets must share one observation encoding and must not repeat an
            ``(env_id, episode_id)``.
        verify: Also recompute the content hash from the step bytes (reads everything).

    Returns:
        The :class:`EpisodeStore`.

    Raises:
        TrajbenchError: a missing, corrupt, truncated or incomplete store, or an impossible merge.

    Example:
        >>> import tempfile
        >>> from trajbench.collect import CollectConfig, collect
        >>> root = tempfile.mkdtemp()
        >>> for i in range(2):  # two shards, as two Slurm array tasks would write them
        ...     _ = collect(CollectConfig(env="trajbench/DarkRoom-v0", levels="0,1,2",
        ...                               episodes_per_level=1, out=root, shard=f"{i}/2",
        ...                               progress=False))
        >>> load(root, verify=True).episodes["level"].tolist()
        [0, 1, 2]
    """
    if isinstance(path_or_paths, str | Path):
        path_or_paths = [path_or_paths]
    parts: list[_Part] = []
    for root in path_or_paths:
        dirs = dataset_parts(root)
        opened = [_read_part(d) for d in dirs]
        if dirs != [Path(root)]:
            _check_shards(Path(root), opened)
        parts += opened
    store = EpisodeStore(parts)
    if verify:
        store.verify()
    return store

"""Reading episode stores: one dataset, a directory of shards, or several datasets merged."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..envs.levels import ObsEncoding
from ..errors import TrajbenchError
from .format import (
    _META_FIELDS,
    _SCHEMA,
    ARRAY_FILES,
    EPISODE_COLUMNS,
    EPISODES_FILE,
    FORMAT_NAME,
    FORMAT_VERSION,
    META_FILE,
    SHARD_DIR_RE,
    Episode,
    _combine,
    actions_dtype,
    episode_digests,
    shard_dirname,
    step_digest,
)


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

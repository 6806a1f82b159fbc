"""Writing a dataset directory, episode by episode (see :mod:`trajbench.data`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .. import __version__
from ..envs.levels import SPLIT_VERSION, ObsEncoding
from . import format as fmt
from .reader import _read_part


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
            self.directory / fmt.ARRAY_FILES["obs"], np.uint8, (encoding.n_features,)
        )
        self._actions = _NpyAppender(
            self.directory / fmt.ARRAY_FILES["actions"], fmt.actions_dtype(encoding.n_actions), ()
        )
        self._rewards = _NpyAppender(
            self.directory / fmt.ARRAY_FILES["rewards"], np.dtype("<f4"), ()
        )

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
            "step_digest": fmt.step_digest(obs, actions, rewards),
        }
        self._obs.append(obs)
        self._actions.append(actions)
        self._rewards.append(rewards)
        self.rows.append(full)

    def extend(self, directory: str | Path) -> None:
        """Append every episode of the dataset directory ``directory``, in its order (e.g. a
        finished chunk of a collection: see :mod:`trajbench.data.partial`)."""
        part = _read_part(Path(directory))
        if part.encoding != self.encoding:
            raise ValueError(f"{directory} holds another observation encoding")
        episodes = part.episodes[list(fmt.EPISODE_COLUMNS)]
        self.rows += episodes.assign(offset=episodes["offset"] + self.n_steps).to_dict("records")
        self._obs.append(part.obs)
        self._actions.append(part.actions)
        self._rewards.append(part.rewards)

    def close(
        self, *, env_id: str, config: dict[str, Any], shard: tuple[int, int] | None
    ) -> dict[str, Any]:
        """Finish the arrays, write ``episodes.parquet`` and ``meta.json``; returns the meta."""
        for appender in (self._obs, self._actions, self._rewards):
            appender.finish()
        columns = {name: [r[name] for r in self.rows] for name in fmt.EPISODE_COLUMNS}
        table = pa.Table.from_pydict(columns, schema=fmt._SCHEMA)
        pq.write_table(table, self.directory / fmt.EPISODES_FILE, compression="zstd")
        meta = {
            "format": fmt.FORMAT_NAME,
            "format_version": fmt.FORMAT_VERSION,
            "env_id": env_id,
            "encoding": {
                "name": self.encoding.name,
                "feature_sizes": list(self.encoding.feature_sizes),
                "n_actions": self.encoding.n_actions,
            },
            "config": config,
            "n_episodes": len(self.rows),
            "n_steps": self.n_steps,
            "content_hash": fmt.content_hash(pd.DataFrame(columns)),
            "trajbench_version": __version__,
            "split_version": SPLIT_VERSION,
            "shard": None if shard is None else [int(shard[0]), int(shard[1])],
        }
        # The whole directory is moved into place atomically, so a plain write suffices here.
        (self.directory / fmt.META_FILE).write_text(
            json.dumps(meta, indent=2) + "\n", encoding="utf-8"
        )
        for name in (fmt.META_FILE, fmt.EPISODES_FILE, *fmt.ARRAY_FILES.values()):
            fd = os.open(self.directory / name, os.O_RDONLY)
            try:
                os.fsync(fd)  # on disk before the directory is renamed into place
            finally:
                os.close(fd)
        return meta

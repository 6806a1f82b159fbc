"""A store written in chunks that survive a crash: the work in progress of a collection.

``.OUT.partial/`` beside the store ``OUT`` holds ``manifest.json`` (what is being written) and one
finished dataset directory per chunk, ``chunk-NNNNNN/``, each committed atomically.
:meth:`PartialStore.assemble` writes ``OUT`` from the chunks in order (byte for byte what one
:class:`EpisodeWriter` fed the same episodes writes) and removes the work in progress.

Example:
    >>> import tempfile, numpy as np
    >>> from trajbench.envs import ObsEncoding
    >>> out = Path(tempfile.mkdtemp()) / "ds"
    >>> part = PartialStore(out, ObsEncoding("dark-room", (9, 9), 5), env_id="e", config={},
    ...                     shard=None, layout={"chunks": 2})
    >>> part.start(2)
    set()
    >>> for i in range(2):
    ...     with part.chunk(i) as writer:
    ...         writer.add(dict(episode_id=i, env_id="e", level=i, split="train",
    ...                         demonstrator="expert", success=True, mission="", seed=1),
    ...                    obs=np.zeros((3, 2), np.uint8), actions=[0, 0, 0], rewards=[0, 0, 1])
    >>> part.assemble(2, overwrite=False)["n_episodes"], part.directory.exists()
    (2, False)
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..envs.levels import ObsEncoding
from ..errors import TrajbenchError
from ..io import atomic_directory, atomic_write_json, remove_tree
from .reader import read_meta
from .writer import EpisodeWriter

MANIFEST = "manifest.json"


class PartialStore:
    """The chunks of the store ``out`` while it is written.

    Args:
        out: The store the chunks become.
        encoding: Its observation encoding.
        env_id, config, shard: Its ``meta.json`` fields (every chunk carries them too).
        layout: How the work is cut into chunks (JSON); chunks of another layout are not reused.
    """

    def __init__(
        self,
        out: Path,
        encoding: ObsEncoding,
        *,
        env_id: str,
        config: dict[str, Any],
        shard: tuple[int, int] | None,
        layout: dict[str, Any],
    ):
        self.out, self.encoding = Path(out), encoding
        self.directory = self.out.with_name(f".{self.out.name}.partial")
        self.meta = {"env_id": env_id, "config": config, "shard": shard}
        shard_list = None if shard is None else [int(shard[0]), int(shard[1])]
        self.manifest = {"env_id": env_id, "config": config, "shard": shard_list, "layout": layout}

    def recorded(self) -> dict[str, Any] | None:
        """The manifest of the work in progress found on disk (None: none, or unreadable)."""
        try:
            found = json.loads((self.directory / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return found if isinstance(found, dict) and {"config", "shard"} <= set(found) else None

    def start(self, n_chunks: int) -> set[int]:
        """Keep the finished chunks of the same work, start anything else over; returns the
        indices of the chunks already finished. The caller holds the store's output lock."""
        if self.recorded() != self.manifest:
            remove_tree(self.directory)
            self.directory.mkdir(parents=True)
            atomic_write_json(self.directory / MANIFEST, self.manifest)
        names = {self.chunk_dir(i).name: i for i in range(n_chunks)}
        done = set()
        for entry in sorted(self.directory.iterdir()):
            if entry.name == MANIFEST:
                continue
            try:
                meta = read_meta(entry)
                if entry.name not in names or any(meta[k] != v for k, v in self._chunk_meta()):
                    raise TrajbenchError(f"{entry} is no chunk of this store")
                done.add(names[entry.name])
            except TrajbenchError:  # a dead writer's temporary, or a stray
                remove_tree(entry) if entry.is_dir() else entry.unlink()
        return done

    def _chunk_meta(self) -> list[tuple[str, Any]]:
        return [(k, self.manifest[k]) for k in ("env_id", "config", "shard")]

    def chunk_dir(self, index: int) -> Path:
        return self.directory / f"chunk-{index:06d}"

    @contextlib.contextmanager
    def chunk(self, index: int) -> Iterator[EpisodeWriter]:
        """Write chunk ``index``: add its episodes to the writer yielded; committed on exit."""
        with atomic_directory(self.chunk_dir(index)) as tmp:
            writer = EpisodeWriter(tmp, self.encoding)
            yield writer
            writer.close(**self.meta)

    def assemble(self, n_chunks: int, *, overwrite: bool) -> dict[str, Any]:
        """Write the store from chunks ``0 .. n_chunks - 1``, atomically, and remove the work in
        progress; returns the store's meta."""
        with atomic_directory(self.out, overwrite=overwrite) as tmp:
            writer = EpisodeWriter(tmp, self.encoding)
            for i in range(n_chunks):
                try:
                    writer.extend(self.chunk_dir(i))
                except TrajbenchError as err:
                    raise TrajbenchError(f"{err}; delete {self.directory} to start over") from None
            meta = writer.close(**self.meta)
        remove_tree(self.directory)
        return meta

    def discard(self, *, unless_resumable: bool = False) -> None:
        """Remove the work in progress (``unless_resumable``: only when no chunk is finished)."""
        if unless_resumable and any(self.directory.glob("chunk-*")):
            return
        remove_tree(self.directory)

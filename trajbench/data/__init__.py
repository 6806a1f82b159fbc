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

Every store has a content hash that does not depend on how it was collected (workers, shards):
see :mod:`trajbench.data.format`. Writing is :mod:`~trajbench.data.writer`, reading
:mod:`~trajbench.data.reader`.

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

from .format import (
    ARRAY_FILES,
    EPISODE_COLUMNS,
    EPISODES_FILE,
    META_FILE,
    SHARD_DIR_RE,
    Episode,
    content_hash,
    shard_dirname,
)
from .minari import from_minari, to_minari
from .reader import EpisodeStore, dataset_parts, load, read_meta
from .writer import EpisodeWriter

__all__ = [
    "ARRAY_FILES",
    "EPISODES_FILE",
    "EPISODE_COLUMNS",
    "META_FILE",
    "SHARD_DIR_RE",
    "Episode",
    "EpisodeStore",
    "EpisodeWriter",
    "content_hash",
    "dataset_parts",
    "from_minari",
    "load",
    "read_meta",
    "shard_dirname",
    "to_minari",
]

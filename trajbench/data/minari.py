"""Episode stores to and from Minari datasets (the optional extra: ``pip install "trajbench[minari]"``).

Minari (the Farama Foundation's offline-RL format) keeps what the environment returned: the raw
observations, one more than the actions (the observation after the last action too), and
whether each step terminated or truncated. A store keeps the encoded observations each action was
chosen on, and the episode's env seed. So :func:`to_minari` replays every episode in its family
from that seed with the stored actions, checks that the replay shows the stored observations and
rewards, and writes what the environment returned: a dataset of the family itself
(``recover_environment()`` makes it), with the level and success in the step infos and the
episode's seed and ``options={"level": L}`` in its metadata. :func:`from_minari` goes back: it
takes each episode's level from its infos (a dataset without them is refused: a store without
levels cannot be a benchmark), encodes the observations as the family does, and drops the final
observation. A round trip store -> Minari -> store gives the same content hash.

Datasets live where Minari keeps them, ``MINARI_DATASETS_PATH`` (else ``~/.minari/datasets``);
nothing is downloaded.

Command line::

    trajbench export data/dr-test --to-minari trajbench/DarkRoom-test-v0
    trajbench import-minari trajbench/DarkRoom-test-v0 --out data/dr-test-again
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import gymnasium as gym
import numpy as np
import tyro
from tqdm.auto import tqdm

from .. import __version__
from ..cliargs import parse_config
from ..errors import TrajbenchError
from ..families import make_env, resolve_env_id
from ..io import atomic_directory
from .reader import EpisodeStore, load
from .writer import EpisodeWriter

#: Per-episode metadata of an exported dataset that a store keeps and Minari does not.
EXTRA_KEY = "trajbench"


@dataclass(kw_only=True)
class ExportConfig:
    """Write an episode store as a Minari dataset."""

    store: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="STORE")]
    """The episode store (a dataset directory or a directory of shards) of one family."""
    to_minari: Annotated[str, tyro.conf.arg(metavar="ID")]
    """Minari dataset id to write, e.g. trajbench/DarkRoom-test-v0."""
    overwrite: bool = False
    """Replace a dataset of that id."""
    progress: bool = True
    """Show a progress bar."""


@dataclass(kw_only=True)
class ImportConfig:
    """Build an episode store from a Minari dataset."""

    dataset: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="ID")]
    """Minari dataset id, read from MINARI_DATASETS_PATH (else ~/.minari/datasets)."""
    out: Path
    """Output store directory."""
    env: str = ""
    """The trajbench family the episodes come from (default: the dataset's own environment)."""
    overwrite: bool = False
    """Replace OUT."""
    progress: bool = True
    """Show a progress bar."""


def _minari() -> Any:
    """The minari package, imported on first use (an optional extra)."""
    try:
        import minari  # optional dependency: only the Minari commands need it
    except ImportError:
        raise TrajbenchError(
            'Minari is not installed; install the extra: pip install "trajbench[minari]"'
        ) from None
    return minari


def _stack(steps: list) -> Any:
    """Per-step observations -> what a Minari episode buffer holds (a dict of columns for a
    ``Dict`` space, a list of strings for text, else an array)."""
    if isinstance(steps[0], dict):
        return {key: _stack([s[key] for s in steps]) for key in steps[0]}
    if isinstance(steps[0], str):
        return list(steps)
    return np.stack(steps)


def _replay(env: gym.Env, store: EpisodeStore, row) -> dict[str, Any]:
    """Replay one stored episode from its seed; what Minari needs of it.

    Raises:
        TrajbenchError: the replay shows other observations or rewards than the store.
    """
    obs_stored, actions, rewards = store.episode(row.episode_id, row.env_id)
    where = f"episode {row.episode_id} (level {row.level}, seed {row.seed})"
    if row.seed < 0:
        raise TrajbenchError(f"{where} has no env seed, so it cannot be replayed for Minari")
    u = env.unwrapped
    obs, info = env.reset(seed=int(row.seed), options={"level": int(row.level)})
    observations, infos, ended = [obs], [info], (False, False)
    for t, action in enumerate(actions.tolist()):
        if ended != (False, False) or not np.array_equal(u.encode_obs(obs), obs_stored[t]):
            raise TrajbenchError(
                f"{where} does not replay in {row.env_id} at step {t}: the store was made with "
                "another version of the family"
            )
        obs, reward, terminated, truncated, info = env.step(action)
        if np.float32(reward) != rewards[t]:
            raise TrajbenchError(f"{where} does not replay: reward {reward} at step {t}")
        observations.append(obs)
        infos.append(info)
        ended = (bool(terminated), bool(truncated))
    if ended == (False, False):
        raise TrajbenchError(f"{where} stops before its episode ends")
    n = len(actions)
    return {
        "observations": _stack(observations),
        "actions": actions.astype(np.int64),
        "rewards": rewards.astype(np.float64),
        "terminations": [False] * (n - 1) + [ended[0]],
        "truncations": [False] * (n - 1) + [ended[1]],
        # Plain lists: Minari's Arrow storage cannot read back a 1-D array in the infos.
        "infos": {
            "level": [int(i["level"]) for i in infos],
            "success": [bool(i["success"]) for i in infos],
        },
    }


def _one(values: set, what: str, where: str) -> Any:
    if len(values) != 1:
        raise TrajbenchError(f"{where} mixes {what} {sorted(values)}; export one at a time")
    return values.pop()


def to_minari(
    store: str | Path | EpisodeStore,
    dataset_id: str,
    overwrite: bool = False,
    progress: bool = False,
) -> Path:
    """Write the episodes of ``store`` (one family) as the Minari dataset ``dataset_id``.

    Returns:
        The dataset's directory (``minari.load_dataset(dataset_id)`` reads it).

    Raises:
        TrajbenchError: no Minari, a store of several families or sticky settings, an episode
            that does not replay, or an existing dataset (without ``overwrite``). The dataset is
            built aside and moved into place, so a failure leaves nothing behind.
    """
    minari = _minari()
    # The optional extra, imported like minari itself: only when a dataset is written.
    from minari.data_collector.episode_buffer import EpisodeBuffer
    from minari.dataset.minari_dataset import parse_dataset_id
    from minari.dataset.minari_storage import MinariStorage
    from minari.namespace import create_namespace, list_local_namespaces
    from minari.storage import get_dataset_path

    store = store if isinstance(store, EpisodeStore) else load(store)
    where = f"the store {', '.join(map(str, store.paths))}"
    env_id = _one(set(store.env_ids), "families", where)
    sticky = _one({float(c.get("sticky_p", 0.0)) for c in store.configs}, "sticky_p values", where)
    try:
        namespace = parse_dataset_id(dataset_id)[0]
    except (TypeError, ValueError):
        raise TrajbenchError(
            f"{dataset_id!r} is not a Minari dataset id: (namespace/)name-vN, e.g. trajbench/dr-v0"
        ) from None
    target = get_dataset_path(dataset_id)
    if target.exists() and not overwrite:
        raise TrajbenchError(
            f"Minari dataset {dataset_id} already exists at {target}; pass --overwrite to replace it"
        )
    env = make_env(env_id, sticky, levels="all")
    eps = store.episodes
    try:
        with atomic_directory(target, overwrite=overwrite) as tmp:
            storage = MinariStorage.new(
                tmp / "data",
                observation_space=env.observation_space,
                action_space=env.action_space,
                env_spec=env.spec,
                data_format="arrow",
                jpeg_encoding=False,
            )
            storage.update_metadata(
                {
                    "dataset_id": dataset_id,
                    "minari_version": minari.__version__,
                    "algorithm_name": ",".join(sorted(eps["demonstrator"].unique())),
                    "description": (
                        f"trajbench episode store of {env_id} (content hash "
                        f"{store.content_hash[:12]}), exported by trajbench {__version__}"
                    ),
                    "requirements": [f"trajbench>={__version__}"],
                }
            )
            bar = tqdm(eps.itertuples(), total=len(eps), unit="ep", disable=not progress)
            for i, row in enumerate(bar):
                episode = _replay(env, store, row)
                buffer = EpisodeBuffer(
                    id=i, seed=int(row.seed), options={"level": int(row.level)}, **episode
                )
                storage.update_episodes([buffer])
                extra = {k: getattr(row, k) for k in ("episode_id", "demonstrator", "split")}
                storage.update_episode_metadata(
                    [{EXTRA_KEY: {**extra, "episode_id": int(row.episode_id)}}], [i]
                )
            if namespace is not None and namespace not in list_local_namespaces():
                create_namespace(namespace)
    finally:
        env.close()
    return target


def _env_of(dataset: Any, env: str) -> str:
    if env:
        return resolve_env_id(env)
    spec = dataset.env_spec
    if spec is None:
        raise TrajbenchError(
            f"Minari dataset {dataset.spec.dataset_id} names no environment; pass --env with the "
            "trajbench family it was recorded on"
        )
    try:
        return resolve_env_id(spec.id)
    except TrajbenchError:
        raise TrajbenchError(
            f"Minari dataset {dataset.spec.dataset_id} was recorded on {spec.id}, not a trajbench "
            "family; pass --env with the family its episodes come from"
        ) from None


def _encoded(u: Any, observations: Any, n: int) -> np.ndarray:
    """The first ``n`` observations of a Minari episode, encoded as the family encodes them."""
    if isinstance(observations, dict):
        steps = [{key: column[t] for key, column in observations.items()} for t in range(n)]
    else:
        steps = list(np.asarray(observations)[:n])
    return np.stack([u.encode_obs(o) for o in steps]) if n else np.zeros((0, u.encoding.n_features))


def from_minari(
    dataset_id: str,
    out: str | Path,
    env: str = "",
    overwrite: bool = False,
    progress: bool = False,
) -> Path:
    """Build an episode store at ``out`` from the Minari dataset ``dataset_id``.

    Args:
        dataset_id: A local Minari dataset id.
        out: The store directory to write.
        env: The trajbench family of the episodes (default: the dataset's environment).
        overwrite: Replace ``out`` if it exists.

    Raises:
        TrajbenchError: no Minari, no such dataset, no trajbench family, an observation space
            that is not the family's, or an episode without its level in its infos. Nothing is
            left half-written.
    """
    minari = _minari()
    try:
        dataset = minari.load_dataset(dataset_id)
    except (FileNotFoundError, ValueError) as err:
        raise TrajbenchError(f"cannot load Minari dataset {dataset_id}: {err}") from None
    env_id = _env_of(dataset, env)
    kwargs = dataset.env_spec.kwargs if dataset.env_spec is not None else {}
    sticky = float(kwargs.get("sticky_p", 0.0))
    family = make_env(env_id, sticky, levels="all")
    u, splits = family.unwrapped, family.unwrapped.splits()
    family.close()
    if dataset.observation_space != u.observation_space or dataset.action_space != u.action_space:
        raise TrajbenchError(
            f"Minari dataset {dataset_id} has observations {dataset.observation_space} and actions "
            f"{dataset.action_space}; {env_id} has {u.observation_space} and {u.action_space}"
        )
    test = set(splits["test"].tolist())
    metas = list(dataset.storage.get_episode_metadata(dataset.episode_indices))
    algorithm = str(dataset.storage.metadata.get("algorithm_name", "minari"))
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise TrajbenchError(f"--out {out} already exists; pass --overwrite to replace it")
    with atomic_directory(out, overwrite=overwrite) as tmp:
        writer = EpisodeWriter(tmp, u.encoding)
        episodes = dataset.iterate_episodes()
        for ep, meta in tqdm(zip(episodes, metas, strict=True), total=len(metas), unit="ep",
                             disable=not progress):  # fmt: skip
            writer.add(_row(ep, meta, env_id, test, algorithm), *_steps(u, ep, dataset_id))
        config = {"minari_dataset": dataset_id, "env": env_id, "sticky_p": sticky}
        writer.close(env_id=env_id, config=config, shard=None)
    return out


def _row(ep: Any, meta: dict, env_id: str, test: set[int], algorithm: str) -> dict[str, Any]:
    """The store row of one Minari episode: its level from its infos, the rest from metadata."""
    where = f"episode {ep.id}"
    levels = np.unique(np.asarray(ep.infos.get("level", []))) if ep.infos else np.array([])
    if len(levels) != 1:
        raise TrajbenchError(
            f"{where} has {'no level' if not len(levels) else 'several levels'} in its infos; a "
            "store needs one level per episode, as info['level'] (every trajbench family says it)"
        )
    level = int(levels[0])
    extra = meta.get(EXTRA_KEY, {})
    rewards = np.asarray(ep.rewards)
    success = ep.infos.get("success")
    done = bool(len(ep.terminations) and ep.terminations[-1])
    return {
        "episode_id": int(extra.get("episode_id", ep.id)),
        "env_id": env_id,
        "level": level,
        "split": extra.get("split", "test" if level in test else "train"),
        "demonstrator": extra.get("demonstrator", algorithm),
        "success": bool(success[-1]) if success is not None else done and rewards.sum() > 0,
        "mission": _mission(ep.observations),
        "seed": int(meta.get("seed", -1)),
    }


def _mission(observations: Any) -> str:
    return str(observations["mission"][0]) if isinstance(observations, dict) else ""


def _steps(u: Any, ep: Any, dataset_id: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Encoded observations (the final one dropped), actions and rewards of one episode."""
    actions = np.asarray(ep.actions, dtype=np.int64)
    obs = _encoded(u, ep.observations, len(actions))
    sizes = np.asarray(u.encoding.feature_sizes)
    if (obs >= sizes).any() or (actions < 0).any() or (actions >= u.encoding.n_actions).any():
        raise TrajbenchError(
            f"episode {ep.id} of {dataset_id} holds observations or actions outside "
            f"{u.encoding.name}'s encoding"
        )
    return obs, actions, np.asarray(ep.rewards, dtype=np.float64)


def export_main(argv: list[str]) -> int:
    """``trajbench export STORE --to-minari ID``."""
    cfg = parse_config(ExportConfig, list(argv), "trajbench export")
    if cfg is None:  # --help
        return 0
    path = to_minari(cfg.store, cfg.to_minari, cfg.overwrite, cfg.progress)
    print(f"wrote Minari dataset {cfg.to_minari} -> {path}")
    return 0


def import_main(argv: list[str]) -> int:
    """``trajbench import-minari ID --out STORE``."""
    cfg = parse_config(ImportConfig, list(argv), "trajbench import-minari")
    if cfg is None:  # --help
        return 0
    path = from_minari(cfg.dataset, cfg.out, cfg.env, cfg.overwrite, cfg.progress)
    store = load(path)
    print(f"imported {len(store)} episodes, {store.n_steps} steps of {store.env_ids[0]} -> {path}")
    return 0

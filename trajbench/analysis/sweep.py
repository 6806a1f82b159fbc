"""The machinery of ``trajbench analyze burstiness``: a sweep of training runs and their scores.

- :func:`train_sweep`: train every :class:`~trajbench.pipeline.train.TrainConfig` of a sweep
  whose ``model/`` is missing (refusing a run directory trained with other settings), in parallel
  processes on the CPU;
- :func:`held_out_records`: ``trajbench evaluate`` on held-out levels, once per independent
  episode, reused when its records cover every (K, support, level);
- :func:`training_counts` and :func:`in_weights_records`: the levels a model was trained on most
  often, replayed from its batch stream, and its success there with other levels' demonstrations;
- :func:`evaluate_sweep`: both for every model of the sweep; :func:`sweep_table`: the records
  aggregated per condition, in sweep order.
"""

from __future__ import annotations

import json
import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from trajbench.configs import to_dict
from trajbench.contexts import ContextBuilder
from trajbench.data import load
from trajbench.device import resolve_device, torch_threads
from trajbench.errors import TrajbenchError
from trajbench.metrics import aggregate
from trajbench.pipeline.checkpoints import TRAJECTORY_FIELDS
from trajbench.pipeline.evaluate import EvalConfig, evaluate
from trajbench.pipeline.policies import load_trained_policy
from trajbench.pipeline.train import TrainConfig, batch_seed, train
from trajbench.records import RECORDS_FILE
from trajbench.rollout import Demonstrations, rollout

from .common import mission_pool

HELD_OUT, TRAIN = "held-out", "train"
#: Record columns, in order (in-weights records add ``train_level`` and ``train_count``).
COLUMNS = ["levels", "k", "support", "level", "episode", "success"]


# -- training -------------------------------------------------------------------------------------
def check_reusable(tcfg: TrainConfig) -> None:
    """Refuse to reuse a run directory trained with other settings (its ``train_config.json``)."""
    path = Path(tcfg.out) / "train_config.json"
    if not path.exists():
        return
    try:
        there = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise TrajbenchError(f"cannot read {path}: {err}") from None
    here = to_dict(tcfg)
    diff = [k for k in TRAJECTORY_FIELDS if there.get(k) != here.get(k)]
    if diff:
        raise TrajbenchError(
            f"{tcfg.out} holds a model trained with other settings ({', '.join(diff)} differ); "
            "use another --out or the settings it was trained with"
        )


def train_sweep(jobs: list[TrainConfig], workers: int, progress: bool) -> None:
    """Train every job whose ``model/`` is missing; ``workers`` processes at once on the CPU."""
    for tcfg in jobs:
        check_reusable(tcfg)
    todo = [t for t in jobs if not (Path(t.out) / "model").exists()]
    bar = tqdm(total=len(todo), desc="train", unit="model", disable=not progress or not todo)
    cpu = all(resolve_device(t.device).type == "cpu" for t in todo)
    if workers > 1 and len(todo) > 1 and cpu:
        spawn = mp.get_context("spawn")
        with ProcessPoolExecutor(min(workers, len(todo)), mp_context=spawn) as pool:
            for done in as_completed([pool.submit(train, t) for t in todo]):
                done.result()
                bar.update(1)
    else:
        for t in todo:
            train(t)
            bar.update(1)
    bar.close()


# -- scores ---------------------------------------------------------------------------------------
def held_out_records(
    template: EvalConfig, run: Path, test_data: Path, levels: list[int], seeds: range
) -> pd.DataFrame:
    """Held-out records of the model in ``run``: ``trajbench evaluate`` once per independent
    episode (one episode at evaluation seed ``e``, into ``run/eval/seed<e>/``), for every K of
    ``template.ks`` with same- and other-level support; an evaluation whose records cover every
    (K, support, level) is reused."""
    supports = [(k, s) for k in template.ks for s in ("same", "other") if k or s == "same"]
    expected = {(k, s, lv) for k, s in supports for lv in levels}
    frames = []
    for e in seeds:
        ecfg = replace(
            template,
            policy=str(run / "model"),
            data=(str(test_data),),
            out=str(run / "eval" / f"seed{e}"),
            episodes=1,
            support="both",
            seed=e,
            offline=False,
            progress=False,
        )
        path = Path(ecfg.out) / RECORDS_FILE
        online = pd.read_parquet(path) if path.exists() else None
        done = (
            online is not None
            and set(online[["k", "support", "level"]].itertuples(index=False, name=None))
            == expected
        )
        if not done:
            online, _ = evaluate(ecfg)
        frames.append(online.assign(levels=HELD_OUT, episode=e)[COLUMNS])
    return pd.concat(frames, ignore_index=True)


def training_counts(tcfg: TrainConfig) -> pd.Series:
    """How often each level was the query of a training sequence of the model ``tcfg`` trains.

    Replays the training batch stream exactly: batch ``step`` is ``ContextBuilder(store,
    seed, config).sample(batch_size, seed=batch_seed(seed, step))``, as in ``trajbench train``.
    """
    store = load(list(tcfg.data))
    builder = ContextBuilder(store, seed=tcfg.seed, config=tcfg.context)
    counts = pd.Series(0, index=sorted(store.episodes.level.unique().tolist()), dtype=np.int64)
    for step in range(tcfg.steps):
        batch = builder.sample(tcfg.batch_size, seed=batch_seed(tcfg.seed, step))
        query_level = np.where(batch.is_query, batch.level, -1).max(axis=1)
        levels, n = np.unique(query_level, return_counts=True)
        counts[levels] += n
    return counts


def most_trained(counts: pd.Series, n: int) -> list[int]:
    """The ``n`` levels trained on most often (ties: lower level first; 0: every level)."""
    order = sorted(counts.index, key=lambda lv: (-int(counts[lv]), lv))
    return [int(lv) for lv in (order[:n] if n else order)]


def in_weights_records(
    template: EvalConfig, tcfg: TrainConfig, train_store, env_id: str, n_levels: int, seeds: range
) -> pd.DataFrame:
    """In-weights records of the model ``tcfg`` trained: its ``n_levels`` most-trained levels,
    ``max(template.ks)`` demonstrations of other train levels, one independent episode per seed.

    ``level`` is the frequency rank (seeds train different levels most often), ``train_level``
    the level itself. Empty when the largest K is 0 or fewer than two levels are trained.
    """
    kmax = max(template.ks)
    counts = training_counts(tcfg)
    levels = most_trained(counts, n_levels)
    if not kmax or len(levels) < 2:
        return pd.DataFrame(columns=COLUMNS)
    policy, _ = load_trained_policy(
        Path(tcfg.out) / "model",
        mission_pool=mission_pool(train_store),
        use_cache=template.use_cache,
        greedy=template.greedy,
        device=resolve_device(template.device),
        seed=template.seed,
    )
    eps = train_store.episodes
    missions = eps[eps.env_id == env_id].groupby("level")["mission"].first().to_dict()
    demos = Demonstrations(train_store)
    rows = []
    with torch_threads(template.threads):
        for e in seeds:
            contexts = [demos(env_id, lv, kmax, "other", e) for lv in levels]
            for rec in rollout(policy, env_id, levels, contexts, missions, 1, e):
                lv = rec["level"]
                rank = levels.index(lv)
                rows.append([TRAIN, kmax, "other", rank, e, rec["success"], lv, int(counts[lv])])
    return pd.DataFrame(rows, columns=[*COLUMNS, "train_level", "train_count"])


def evaluate_sweep(
    jobs: dict[tuple[float, float, int], TrainConfig],
    template: EvalConfig,
    train_data: Path,
    test_data: Path,
    env_id: str,
    n_levels: int,
    progress: bool,
) -> pd.DataFrame:
    """Held-out and in-weights records of every model ``jobs[(p_bursty, zipf, seed)]`` trained,
    one independent episode per evaluation seed ``template.seed .. template.seed + episodes - 1``."""
    train_store = load(train_data)
    levels = sorted(int(x) for x in load(test_data).episodes.level.unique())
    seeds = range(template.seed, template.seed + template.episodes)
    frames = []
    for (p, z, s), tcfg in tqdm(jobs.items(), desc="evaluate", unit="model", disable=not progress):
        held = held_out_records(template, Path(tcfg.out), test_data, levels, seeds)
        weights = in_weights_records(template, tcfg, train_store, env_id, n_levels, seeds)
        both = pd.concat([f for f in (held, weights) if len(f)], ignore_index=True)
        frames.append(both.assign(p_bursty=p, zipf=z, seed=s))
    return pd.concat(frames, ignore_index=True)


def sweep_table(
    records: pd.DataFrame,
    p_bursty: tuple[float, ...],
    zipf: tuple[float, ...],
    zipf_p_bursty: float,
) -> pd.DataFrame:
    """The records aggregated: one row per (sweep, p_bursty, zipf, levels, k, support) with the mean success, its 95% CI,
    the mean and the numbers of seeds, levels and episodes. ``sweep`` is ``p_bursty`` for the
    Zipf-0 models and ``zipf`` for the models at ``zipf_p_bursty`` (the model they share appears
    in both)."""
    group = ["p_bursty", "zipf", "levels", "k", "support"]
    table = aggregate(records, "success", group)
    in_p = table.p_bursty.isin([float(p) for p in p_bursty]) & (table.zipf == 0.0)
    zipfs = [float(z) for z in zipf]
    in_zipf = (table.p_bursty == float(zipf_p_bursty)) & table.zipf.isin(zipfs)
    table = pd.concat(
        [table[in_p].assign(sweep="p_bursty"), table[in_zipf].assign(sweep="zipf")],
        ignore_index=True,
    )
    table = table.assign(
        _w=table.sweep.map({"p_bursty": 0, "zipf": 1}),
        _o=table.levels.map({HELD_OUT: 0, TRAIN: 1}),
        _s=table.support.map({"same": 0, "other": 1}),
    )
    table = table.sort_values(["_w", "p_bursty", "zipf", "_o", "_s", "k"])
    cols = ["sweep", *group]
    rest = [c for c in table.columns if c not in cols and not c.startswith("_")]
    return table[cols + rest].reset_index(drop=True)

"""``trajbench analyze burstiness``: in-context vs in-weights learning against p_bursty, K and Zipf.

Trains one model per (p_bursty, Zipf exponent, seed) on the train levels of a family (Dark Room by
default) and measures, with no weight updates:

- **in-context success**: held-out (test) levels, K expert demonstrations *of the level itself* in
  the context, for every K of ``--ks`` (the k-shot curve);
- **no-support score**: held-out levels, K demonstrations of *other* levels: what is left is the
  model's prior, not the demonstrations;
- **in-weights success**: *train* levels with K demonstrations of other train levels: a model can
  only succeed there by having memorized the level's goal in its weights (Chan et al. 2022 score
  in-weights learning the same way: trained classes, no exemplar of the class in context). It is
  measured on each model's ``--train-eval-levels`` most-trained levels, counted by replaying the
  model's training batch stream exactly; with a Zipf exponent > 0 these are the frequent levels a
  model can memorize. In the records their ``level`` is the frequency rank (0 = most trained), so
  that seeds line up, and ``train_level`` the level itself.

Two sweeps share the models where they meet:

- ``p_bursty`` in {0, 0.25, 0.5, 0.75, 1} at Zipf exponent 0: each training sequence has
  same-level context with probability p_bursty and other-level context otherwise (Raparthy et
  al. 2023);
- the Zipf exponent of how often each training level is the query, {0, 1, 2}, at ``p_bursty``
  = ``--zipf-p-bursty`` (0.5 by default). At 0.5 half the sequences reward memorizing the goal and
  half reward reading it from the context, so both kinds of learning are possible and the Zipf
  exponent decides which one a few frequent levels pull towards (at 1.0 nothing rewards
  memorization; at 0 nothing rewards reading the context).

Every evaluation episode sees exactly its K demonstrations (episodes are independent, unlike
``trajbench evaluate`` where later episodes also see earlier ones). Demonstrations and start
states depend only on (level, episode), so all models are compared on the same contexts.
Scores are the success rate per (training seed, level), aggregated as IQM over seeds x levels with
95% stratified-bootstrap CIs.

The run is resumable: models live in ``OUT/models/p<P>-zipf<Z>/seed<S>/`` and their evaluation
records beside them; a rerun with the same ``--out`` reuses what is finished (and refuses a
model trained with other settings).

Example:
    trajbench analyze burstiness --out runs/burstiness            # ~10 min on a busy 2-core CPU
    trajbench analyze burstiness --out /tmp/b --quick             # seconds: tiny models
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from trajbench.errors import TrajbenchError

from .common import compare, fmt_ci, parse, pyplot, write_outputs

NAME = "burstiness"
HELD_OUT, TRAIN = "held-out", "train"


@dataclass
class BurstinessConfig:
    """Success on held-out levels against p_bursty, K and the Zipf exponent, with the
    no-support and in-weights scores beside it."""

    out: str
    """Output directory: OUT/burstiness.{csv,md,png}, models under OUT/models/, data under OUT/data/.
    Rerunning with the same OUT reuses finished models and evaluations."""
    env: str = "trajbench/DarkRoom-v0"
    """Family to train and evaluate on; one whose goal only same-level demonstrations reveal
    (DarkRoom-v0, DarkKeyToDoor-v0) separates in-context from in-weights learning."""
    p_bursty: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    """Probabilities that a training sequence is bursty (same-level context), at Zipf exponent 0."""
    zipf: tuple[float, ...] = (0.0, 1.0, 2.0)
    """Zipf exponents of the training level frequencies, at p_bursty = zipf_p_bursty."""
    zipf_p_bursty: float = 0.5
    """p_bursty of the Zipf sweep (0.5: both in-context and in-weights learning are rewarded)."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Training seeds (the CIs are over seeds x levels)."""
    ks: tuple[int, ...] = (0, 1, 2, 4)
    """Numbers of demonstrations in the evaluation context (the k-shot sweep)."""
    train_k: int = 4
    """Context episodes per training sequence."""
    train_episodes: int = 20
    """Expert episodes collected per train level."""
    test_episodes: int = 4
    """Expert episodes collected per held-out level (the demonstrations)."""
    max_train_levels: int = 0
    """Train on the first N train levels only (0: all)."""
    max_test_levels: int = 0
    """Evaluate on the first N held-out levels only (0: all)."""
    train_eval_levels: int = 16
    """Train levels on which the in-weights score is measured: each model's N most-trained levels
    (by how often they were the query in its training batches; 0: all)."""
    eval_episodes: int = 2
    """Independent evaluation episodes per (level, K, support)."""
    steps: int = 200
    """Optimizer steps per model."""
    batch_size: int = 16
    """Sequences per optimizer step."""
    lr: float = 1e-3
    """Peak learning rate."""
    warmup_steps: int = 30
    """Linear warm-up steps."""
    d_model: int = 64
    """Model width."""
    n_layers: int = 2
    """Transformer blocks."""
    n_heads: int = 4
    """Attention heads."""
    device: str = "auto"
    """auto (CUDA if available), cpu, cuda or cuda:N."""
    threads: int = 1
    """CPU threads for torch (1 is fastest for these small models on a shared CPU; 0: torch's default)."""
    workers: int = 2
    """Models trained in parallel processes, one CPU thread each (1 on CUDA)."""
    quick: bool = False
    """Tiny settings for tests (overrides the sizes): p_bursty (0, 1), Zipf (0, 2) at p_bursty 1,
    one seed, K in (0, 1), a few steps of a 16-wide model, 4 held-out levels, one worker."""
    progress: bool = True
    """Show progress bars."""


def quick_config(cfg: BurstinessConfig) -> BurstinessConfig:
    """The ``--quick`` settings (seconds on a CPU)."""
    return replace(
        cfg,
        p_bursty=(0.0, 1.0),
        zipf=(0.0, 2.0),
        zipf_p_bursty=1.0,
        seeds=(0,),
        ks=(0, 1),
        train_k=1,
        train_episodes=2,
        test_episodes=2,
        max_test_levels=4,
        train_eval_levels=4,
        eval_episodes=1,
        steps=4,
        batch_size=4,
        warmup_steps=1,
        d_model=16,
        n_layers=1,
        n_heads=2,
        workers=1,
    )


def validate(cfg: BurstinessConfig) -> None:
    def need(ok: bool, message: str) -> None:
        if not ok:
            raise TrajbenchError(message)

    need(len(cfg.p_bursty) > 0, "--p-bursty needs at least one value")
    need(
        all(0.0 <= p <= 1.0 for p in cfg.p_bursty),
        f"p_bursty must be in [0, 1], got {cfg.p_bursty}",
    )
    need(
        0.0 <= cfg.zipf_p_bursty <= 1.0, f"zipf_p_bursty must be in [0, 1], got {cfg.zipf_p_bursty}"
    )
    need(
        all(np.isfinite(z) and z >= 0 for z in cfg.zipf),
        f"zipf exponents must be finite and >= 0, got {cfg.zipf}",
    )
    need(
        len(cfg.seeds) > 0 and all(s >= 0 for s in cfg.seeds),
        f"seeds must be >= 0 and non-empty, got {cfg.seeds}",
    )
    need(len(set(cfg.seeds)) == len(cfg.seeds), f"seeds must be distinct, got {cfg.seeds}")
    need(
        len(cfg.ks) > 0 and all(k >= 0 for k in cfg.ks),
        f"ks must be non-empty and >= 0, got {cfg.ks}",
    )
    for name in (
        "train_k",
        "train_episodes",
        "test_episodes",
        "eval_episodes",
        "steps",
        "batch_size",
    ):
        need(getattr(cfg, name) >= 1, f"{name} must be >= 1, got {getattr(cfg, name)}")
    for name in (
        "max_train_levels",
        "max_test_levels",
        "train_eval_levels",
        "warmup_steps",
        "threads",
    ):
        need(getattr(cfg, name) >= 0, f"{name} must be >= 0, got {getattr(cfg, name)}")
    need(cfg.workers >= 1, f"workers must be >= 1, got {cfg.workers}")


# -- the conditions ------------------------------------------------------------------------------
def conditions(cfg: BurstinessConfig) -> list[tuple[float, float]]:
    """Every (p_bursty, zipf) trained: the p_bursty sweep at Zipf 0, then the Zipf sweep."""
    pairs = [(float(p), 0.0) for p in cfg.p_bursty]
    pairs += [(float(cfg.zipf_p_bursty), float(z)) for z in cfg.zipf]
    return list(dict.fromkeys(pairs))


def model_dir(out: Path, p: float, zipf: float, seed: int) -> Path:
    """Run directory of one model (the model itself is its ``model/``)."""
    return out / "models" / f"p{p:g}-zipf{zipf:g}" / f"seed{seed}"


def data_specs(cfg: BurstinessConfig):
    from trajbench.pipeline.presets import DataSpec

    train = DataSpec(cfg.env, "train", cfg.train_episodes, max_levels=cfg.max_train_levels)
    test = DataSpec(cfg.env, "test", cfg.test_episodes, seed=1, max_levels=cfg.max_test_levels)
    return train, test


def train_config(
    cfg: BurstinessConfig, out: Path, train_data: Path, p: float, zipf: float, seed: int
):
    from trajbench.baselines.transformer import ModelConfig as ModelSize
    from trajbench.contexts import ContextConfig
    from trajbench.pipeline.train import TrainConfig

    return TrainConfig(
        data=(str(train_data),),
        out=str(model_dir(out, p, zipf, seed)),
        context=ContextConfig(mode="bursty", k=cfg.train_k, p_bursty=p, zipf=zipf),
        model=ModelSize(d_model=cfg.d_model, n_layers=cfg.n_layers, n_heads=cfg.n_heads),
        steps=cfg.steps,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        warmup_steps=cfg.warmup_steps,
        seed=seed,
        device=cfg.device,
        threads=cfg.threads,
        resume=True,
        progress=False,
    )


#: TrainConfig fields that decide what a model is; a reused model must match them.
_IDENTITY = (
    "context",
    "model",
    "steps",
    "batch_size",
    "lr",
    "min_lr_ratio",
    "warmup_steps",
    "weight_decay",
    "grad_clip",
    "seed",
)


def _check_reusable(tcfg) -> None:
    """Refuse to reuse a model directory trained with other settings."""
    from trajbench.configs import to_dict as config_dict

    path = Path(tcfg.out) / "train_config.json"
    if not path.exists():
        return
    try:
        there = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise TrajbenchError(f"cannot read {path}: {err}") from None
    here = config_dict(tcfg)
    diff = [k for k in _IDENTITY if there.get(k) != here.get(k)]
    if diff:
        raise TrajbenchError(
            f"{tcfg.out} holds a model trained with other settings ({', '.join(diff)} differ); "
            "use another --out or the settings it was trained with"
        )


def _train_one(tcfg) -> str:
    from trajbench.pipeline.train import train

    return str(train(tcfg))


def train_models(cfg: BurstinessConfig, out: Path, train_data: Path) -> dict[tuple, object]:
    """Train every missing model; returns {(p, zipf, seed): its TrainConfig} (model in OUT/model)."""
    from tqdm.auto import tqdm

    jobs = {}
    for p, z in conditions(cfg):
        for s in cfg.seeds:
            tcfg = train_config(cfg, out, train_data, p, z, s)
            _check_reusable(tcfg)
            jobs[(p, z, s)] = tcfg
    todo = [t for t in jobs.values() if not (Path(t.out) / "model").exists()]
    bar = tqdm(
        total=len(todo),
        desc="burstiness: train",
        unit="model",
        disable=not cfg.progress or not todo,
    )
    from trajbench.device import resolve_device

    parallel = cfg.workers > 1 and len(todo) > 1 and resolve_device(cfg.device).type == "cpu"
    if parallel:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(
            min(cfg.workers, len(todo)), mp_context=mp.get_context("spawn")
        ) as pool:
            for f in as_completed([pool.submit(_train_one, t) for t in todo]):
                f.result()
                bar.update(1)
    else:
        for t in todo:
            _train_one(t)
            bar.update(1)
    bar.close()
    return jobs


# -- evaluation ----------------------------------------------------------------------------------
def eval_settings(cfg: BurstinessConfig) -> dict:
    """What an evaluation cache depends on (besides the model)."""
    return {
        "ks": list(cfg.ks),
        "eval_episodes": cfg.eval_episodes,
        "train_eval_levels": cfg.train_eval_levels,
        "train_eval_choice": "most-trained",
        "max_test_levels": cfg.max_test_levels,
        "test_episodes": cfg.test_episodes,
        "env": cfg.env,
    }


def independent_episodes(
    policy, store, env_id: str, levels: list[int], k: int, support: str, n: int
) -> list[dict]:
    """``n`` independent episodes per level, each with only its ``k`` demonstrations in context.

    Episode ``e`` draws its demonstrations and start state from seed ``e``, for every model alike.
    """
    from trajbench.rollout import demonstrations, rollout

    eps = store.episodes
    missions = eps[eps.env_id == env_id].groupby("level")["mission"].first().to_dict()
    rows = []
    for e in range(n):
        contexts = [demonstrations(store, env_id, lv, k, support, e) for lv in levels]
        for rec in rollout(policy, env_id, levels, contexts, missions, 1, e):
            rows.append({"level": rec["level"], "episode": e, "success": rec["success"]})
    return rows


def training_counts(tcfg) -> pd.Series:
    """How often each level was the query of a training sequence of the model ``tcfg`` trains.

    Replays the training batch stream exactly: batch ``step`` is ``ContextBuilder(store,
    seed, config).sample(batch_size, seed=batch_seed(seed, step))``, as in ``trajbench train``.
    """
    from trajbench.contexts import ContextBuilder
    from trajbench.data import load
    from trajbench.pipeline.train import batch_seed

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


def evaluate_model(cfg: BurstinessConfig, tcfg, test_store, train_store, device) -> pd.DataFrame:
    """Records of one model: held-out levels for every (K, support); its most-trained train levels
    at the largest K with other-level support (the in-weights score). Cached beside the model."""
    from trajbench.io import write_parquet
    from trajbench.pipeline.policies import load_trained_policy

    run = Path(tcfg.out)
    cache, meta = run / "burstiness-records.parquet", run / "burstiness-eval.json"
    settings = eval_settings(cfg)
    if cache.exists() and meta.exists():
        try:
            if json.loads(meta.read_text()) == settings:
                return pd.read_parquet(cache)
        except (OSError, ValueError):
            pass
    pool = {
        env: sorted(test_store.episodes.loc[test_store.episodes.env_id == env, "mission"].unique())
        for env in test_store.env_ids
    }
    policy, _ = load_trained_policy(run / "model", mission_pool=pool, device=device)
    env_id = cfg.env if cfg.env in test_store.env_ids else test_store.env_ids[0]
    test_levels = sorted(test_store.episodes.level.unique().tolist())
    counts = training_counts(tcfg)
    train_levels = most_trained(counts, cfg.train_eval_levels)
    rows = []
    for k in cfg.ks:
        for support in ("same", "other"):
            if k == 0 and support == "other":
                continue
            for r in independent_episodes(
                policy, test_store, env_id, test_levels, k, support, cfg.eval_episodes
            ):
                rows.append({"levels": HELD_OUT, "k": k, "support": support, **r})
    kmax = max(cfg.ks)
    if kmax and len(train_levels) > 1:
        for r in independent_episodes(
            policy, train_store, env_id, train_levels, kmax, "other", cfg.eval_episodes
        ):
            # Seeds train different levels most often: the stratum is the rank, not the level.
            rank = train_levels.index(r["level"])
            rows.append(
                {
                    "levels": TRAIN,
                    "k": kmax,
                    "support": "other",
                    **r,
                    "level": rank,
                    "train_level": r["level"],
                    "train_count": int(counts[r["level"]]),
                }
            )
    records = pd.DataFrame(rows)
    write_parquet(cache, records)
    from trajbench.io import atomic_write_json

    atomic_write_json(meta, settings)
    return records


# -- the analysis --------------------------------------------------------------------------------
def burstiness(cfg: BurstinessConfig) -> pd.DataFrame:
    """Train (or reuse) the models, evaluate them and return the aggregated table.

    One row per (sweep, p_bursty, zipf, levels, k, support) with the success IQM, its 95% CI,
    the mean and the numbers of seeds, levels and episodes. ``sweep`` is ``p_bursty`` for the
    Zipf-0 models and ``zipf`` for the models at ``zipf_p_bursty`` (the model they share appears
    in both). The per-episode records are written to ``OUT/burstiness-records.parquet``.
    """
    import torch

    from trajbench.data import load
    from trajbench.device import resolve_device
    from trajbench.io import write_parquet
    from trajbench.metrics import aggregate
    from trajbench.pipeline.runner import collect_data

    if cfg.quick:
        cfg = quick_config(cfg)
    validate(cfg)
    from trajbench.families import resolve_env_id

    cfg = replace(cfg, env=resolve_env_id(cfg.env))
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise TrajbenchError(f"--out {out} exists and is not a directory")
    device = resolve_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    train_spec, test_spec = data_specs(cfg)
    train_data = collect_data(train_spec, out, 1, cfg.progress)
    test_data = collect_data(test_spec, out, 1, cfg.progress)
    models = train_models(cfg, out, train_data)
    train_store, test_store = load(train_data), load(test_data)
    from tqdm.auto import tqdm

    frames = []
    for (p, z, s), tcfg in tqdm(
        models.items(), desc="burstiness: evaluate", unit="model", disable=not cfg.progress
    ):
        rec = evaluate_model(cfg, tcfg, test_store, train_store, device)
        frames.append(rec.assign(p_bursty=p, zipf=z, seed=s))
    records = pd.concat(frames, ignore_index=True)
    write_parquet(out / f"{NAME}-records.parquet", records)

    group = ["p_bursty", "zipf", "levels", "k", "support"]
    table = aggregate(records, "success", group)
    in_p = table.p_bursty.isin([float(p) for p in cfg.p_bursty]) & (table.zipf == 0.0)
    parts = [table[in_p].assign(sweep="p_bursty")]
    zipfs = [float(z) for z in cfg.zipf]
    in_zipf = (table.p_bursty == float(cfg.zipf_p_bursty)) & table.zipf.isin(zipfs)
    parts.append(table[in_zipf].assign(sweep="zipf"))
    table = pd.concat(parts, ignore_index=True)
    order = {HELD_OUT: 0, TRAIN: 1}
    table = table.assign(
        _w=table.sweep.map({"p_bursty": 0, "zipf": 1}),
        _o=table.levels.map(order),
        _s=table.support.map({"same": 0, "other": 1}),
    )
    table = table.sort_values(["_w", "p_bursty", "zipf", "_o", "_s", "k"])
    cols = ["sweep", *group]
    rest = [c for c in table.columns if c not in cols and not c.startswith("_")]
    return table[cols + rest].reset_index(drop=True)


# -- report --------------------------------------------------------------------------------------
def _pick(table: pd.DataFrame, **where) -> pd.Series | None:
    sel = table
    for col, val in where.items():
        sel = sel[sel[col] == val]
    return None if sel.empty else sel.iloc[0]


def _cell(row) -> str:
    return "—" if row is None else fmt_ci(row)


def _mean(row) -> str:
    return "—" if row is None else f"{row['success_mean']:.2f}"


def render(table: pd.DataFrame, cfg: BurstinessConfig, wall_s: float) -> str:
    """The Markdown report: three tables and a reading generated from their numbers."""
    kmax = int(table["k"].max())
    ks = sorted(int(k) for k in table["k"].unique())
    p_sweep = table[table.sweep == "p_bursty"]
    z_sweep = table[table.sweep == "zipf"]
    n_seeds = int(table["n_seeds"].max())
    lines = [
        f"# Burstiness, shots and Zipf: in-context vs in-weights learning ({cfg.env})",
        "",
        f"Success rate, IQM over {n_seeds} training seed(s) x levels with 95% stratified-bootstrap "
        f"CIs. Models: d_model {cfg.d_model}, {cfg.n_layers} layers, {cfg.steps} steps of "
        f"{cfg.batch_size} sequences with {cfg.train_k} context episodes; {cfg.eval_episodes} "
        f"independent episode(s) per level and condition. Wall time {wall_s:.0f} s.",
        "",
        "- **in context**: held-out levels, K demonstrations of the level itself;",
        "- **no support**: held-out levels, K demonstrations of other levels (the model's prior);",
        f"- **in weights**: each model's {cfg.train_eval_levels or 'all'} most-trained train levels, "
        "K demonstrations of other train levels (only a memorized goal helps); its mean is shown "
        "beside the IQM because a steep Zipf exponent concentrates memorization on a few levels, "
        "which the IQM trims.",
        "",
    ]

    def sweep_table(sweep: pd.DataFrame, key: str) -> list[str]:
        out = [
            f"| {key} | in context (K={kmax}) | no support (K={kmax}) | in weights (K={kmax}) "
            "| in weights, mean |",
            "|---|---|---|---|---|",
        ]
        for val in sorted(sweep[key].unique()):
            at = sweep[sweep[key] == val]
            out.append(
                f"| {val:g} | {_cell(_pick(at, levels=HELD_OUT, k=kmax, support='same'))} | "
                f"{_cell(_pick(at, levels=HELD_OUT, k=kmax, support='other'))} | "
                f"{_cell(_pick(at, levels=TRAIN, k=kmax, support='other'))} | "
                f"{_mean(_pick(at, levels=TRAIN, k=kmax, support='other'))} |"
            )
        return [*out, ""]

    if not p_sweep.empty:
        lines += ["## Against p_bursty (Zipf exponent 0)", ""]
        lines += sweep_table(p_sweep, "p_bursty")
        lines += _reading_sweep(p_sweep, "p_bursty", kmax)
        lines += ["## Against K (held-out levels; same = in context, other = no support)", ""]
        lines += [
            "| p_bursty | support | " + " | ".join(f"K={k}" for k in ks) + " |",
            "|---|---|" + "---|" * len(ks),
        ]
        held = p_sweep[p_sweep.levels == HELD_OUT]
        for p in sorted(held.p_bursty.unique()):
            for support in ("same", "other"):
                at = held[(held.p_bursty == p) & (held.support == support)]
                if at.empty:
                    continue
                cells = []
                for k in ks:
                    row = _pick(at, k=k)
                    if row is None and k == 0:
                        row = _pick(held[(held.p_bursty == p) & (held.support == "same")], k=0)
                    cells.append(_cell(row))
                lines.append(f"| {p:g} | {support} | " + " | ".join(cells) + " |")
        lines += ["", *_reading_k(held, ks), ""]
    if not z_sweep.empty and z_sweep.zipf.nunique() > 1:
        p0 = float(z_sweep.p_bursty.iloc[0])
        lines += [f"## Against the Zipf exponent of the training levels (p_bursty {p0:g})", ""]
        lines += sweep_table(z_sweep, "zipf")
        lines += _reading_sweep(z_sweep, "zipf", kmax)
    lines += [f"![{NAME}]({NAME}.png)", ""]
    return "\n".join(lines)


def _reading_sweep(sweep: pd.DataFrame, key: str, kmax: int) -> list[str]:
    """Sentences from the numbers of one sweep (p_bursty or Zipf)."""
    vals = sorted(sweep[key].unique())
    if len(vals) < 2 or kmax == 0:
        return []
    lo, hi = vals[0], vals[-1]
    same = sweep[(sweep.levels == HELD_OUT) & (sweep.support == "same") & (sweep.k == kmax)]
    other = sweep[(sweep.levels == HELD_OUT) & (sweep.support == "other") & (sweep.k == kmax)]
    train = sweep[(sweep.levels == TRAIN) & (sweep.k == kmax)]
    a, b = _pick(same, **{key: lo}), _pick(same, **{key: hi})
    lines = []
    if a is not None and b is not None:
        best = same.sort_values("success_iqm", ascending=False).iloc[0]
        lines.append(
            f"- In-context success (held-out levels, K={kmax}) is {fmt_ci(a)} at {key}={lo:g} and "
            f"{fmt_ci(b)} at {key}={hi:g}: {compare(b, a, f'{key}={hi:g}', f'{key}={lo:g}')}. "
            f"Highest at {key}={best[key]:g} ({fmt_ci(best)})."
        )
    if not other.empty and not same.empty:
        gap = same.set_index(key)["success_iqm"] - other.set_index(key)["success_iqm"]
        top = other.sort_values("success_iqm", ascending=False).iloc[0]
        lines.append(
            f"- The no-support score is at most {fmt_ci(top)} (at {key}={top[key]:g}); the in-context "
            f"gain (same-level minus other-level IQM) ranges from {gap.min():.2f} "
            f"({key}={gap.idxmin():g}) to {gap.max():.2f} ({key}={gap.idxmax():g})."
        )
    if len(train):
        ta, tb = _pick(train, **{key: lo}), _pick(train, **{key: hi})
        best = train.sort_values("success_iqm", ascending=False).iloc[0]
        if ta is not None and tb is not None:
            lines.append(
                f"- In-weights success (train levels, other-level demonstrations) is {fmt_ci(ta)} at "
                f"{key}={lo:g} and {fmt_ci(tb)} at {key}={hi:g} ({compare(tb, ta, f'{key}={hi:g}', f'{key}={lo:g}')}); highest at "
                f"{key}={best[key]:g} ({fmt_ci(best)})."
            )
    return [*lines, ""]


def _reading_k(held: pd.DataFrame, ks: list[int]) -> list[str]:
    """For every p_bursty: the smallest K whose in-context CI lies above the K=0 CI."""
    if len(ks) < 2:
        return []
    parts = []
    for p in sorted(held.p_bursty.unique()):
        same = held[(held.p_bursty == p) & (held.support == "same")]
        base = _pick(same, k=ks[0])
        if base is None:
            continue
        first = next(
            (
                k
                for k in ks[1:]
                if (r := _pick(same, k=k)) is not None
                and r["success_ci_low"] > base["success_ci_high"]
            ),
            None,
        )
        top = _pick(same, k=ks[-1])
        what = (
            f"first separated from K={ks[0]} at K={first}"
            if first is not None
            else f"never separated from K={ks[0]}"
        )
        parts.append(
            f"p_bursty={p:g}: {base['success_iqm']:.2f} -> {top['success_iqm']:.2f}, {what}"
        )
    return (
        ["- In-context success from K=" + f"{ks[0]} to K={ks[-1]} — " + "; ".join(parts) + "."]
        if parts
        else []
    )


def plot(table: pd.DataFrame):
    """Three panels: success vs p_bursty, k-shot curves, success vs Zipf exponent."""
    plt = pyplot()
    kmax = int(table["k"].max())
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    series = [
        (HELD_OUT, "same", "in context (held-out, same-level demos)", "-"),
        (HELD_OUT, "other", "no support (held-out, other-level demos)", "--"),
        (TRAIN, "other", "in weights (most-trained train levels, other-level demos)", ":"),
    ]
    for ax, (sweep, key) in zip(
        (axes[0], axes[2]), (("p_bursty", "p_bursty"), ("zipf", "zipf")), strict=True
    ):
        sub = table[(table.sweep == sweep) & (table.k == kmax)]
        for levels, support, label, style in series:
            rows = sub[(sub.levels == levels) & (sub.support == support)].sort_values(key)
            if rows.empty:
                continue
            ax.plot(rows[key], rows["success_iqm"], style, marker="o", label=label)
            ax.fill_between(rows[key], rows["success_ci_low"], rows["success_ci_high"], alpha=0.15)
        ax.set_xlabel(key if key == "p_bursty" else "Zipf exponent of training levels")
        ax.set_ylabel(f"success IQM (K={kmax})")
        ax.set_ylim(-0.02, 1.05)
        ax.legend(fontsize=7)
    axes[0].set_title("against p_bursty (95% CI)")
    axes[2].set_title("against the Zipf exponent (95% CI)")
    held = table[(table.sweep == "p_bursty") & (table.levels == HELD_OUT)]
    for p in sorted(held.p_bursty.unique()):
        rows = held[(held.p_bursty == p) & ((held.support == "same") | (held.k == 0))].sort_values(
            "k"
        )
        line = axes[1].plot(rows["k"], rows["success_iqm"], marker="o", label=f"p_bursty={p:g}")
        axes[1].fill_between(
            rows["k"],
            rows["success_ci_low"],
            rows["success_ci_high"],
            alpha=0.12,
            color=line[0].get_color(),
        )
    axes[1].set_xlabel("K demonstrations of the level in context")
    axes[1].set_ylabel("success IQM (held-out levels)")
    axes[1].set_ylim(-0.02, 1.05)
    axes[1].set_title("k-shot curves (95% CI)")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    return fig


def main(argv: list[str]) -> int:
    cfg = parse(BurstinessConfig, argv, NAME)
    if cfg is None:
        return 0
    started = time.perf_counter()
    table = burstiness(cfg)
    if cfg.quick:
        cfg = quick_config(cfg)
    wall = time.perf_counter() - started
    md = write_outputs(cfg.out, NAME, table, render(table, cfg, wall), plot(table))
    print(md.read_text())
    print(f"written: {md}, {md.with_suffix('.csv')}, {md.with_suffix('.png')}")
    return 0

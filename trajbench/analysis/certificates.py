"""``trajbench analyze certificates``: does a family need its demonstrations?

For every family (by default the newest version of each registered family, so families added to
the registry are covered), on a seeded sample of its test levels:

- ``query-only``: :class:`~trajbench.baselines.QueryOnlyPolicy`, no context;
- ``decoder``: :class:`~trajbench.baselines.DecoderPolicy` with K expert demonstrations of the
  level (K = 0 is its query-only fallback), for each K of ``--ks``;
- ``random``: the floor of the normalized scores;
- ``hashmap`` and ``replay``: the copy baselines, with the largest K.

Each policy plays ``--episodes`` episodes per level from the same seeded starts, never one a
demonstration started from. The demonstrations are fresh expert episodes of the level (seeded
apart from the evaluation starts). The family's class follows
:func:`trajbench.certificates.classify`, on the decoder's best K >= 1. ``--table`` writes the JSON
that ``trajbench envs`` reads (``trajbench/certificates.json`` in a checkout).

Example:
    trajbench analyze certificates --families trajbench/DarkRoom-v0 --levels 20 --out runs/cert
"""

from __future__ import annotations

import re
import shlex
import sys
from dataclasses import asdict, dataclass

import numpy as np
from tqdm.auto import tqdm

from trajbench.baselines import (
    DecoderPolicy,
    HashmapPolicy,
    QueryOnlyPolicy,
    RandomPolicy,
    ReplayPolicy,
)
from trajbench.certificates import classify
from trajbench.envs.dark_grid import DarkGridEnv
from trajbench.envs.registration import env_ids, family_class
from trajbench.errors import TrajbenchError
from trajbench.families import make_env, resolve_env_id, sample_levels
from trajbench.records import DECODER, HASHMAP, REPLAY
from trajbench.rollout import first_observations, rollout

from .common import expert_demos
from .order import order_certificate


@dataclass
class CertificatesConfig:
    """Information certificates: the query-only solver vs the in-context decoder per family."""

    out: str = ""
    """Directory for certificates.json and certificates.md ('' prints the table only)."""
    families: tuple[str, ...] = ()
    """Family ids; empty: the newest version of every registered family."""
    levels: int = 40
    """Test levels per family (a seeded sample; 0: the whole test split)."""
    episodes: int = 2
    """Episodes per level and policy."""
    ks: tuple[int, ...] = (0, 1, 4)
    """Numbers of demonstrations the decoder reads."""
    seed: int = 0
    """Seed of the evaluation starts and of the demonstrations."""
    order_levels: int = 200
    """Test levels of each order family for the chain decoder (0: skip;
    :mod:`trajbench.analysis.order`)."""
    table: str = ""
    """Also write the JSON table here, keeping the families of a table already there that this
    run did not measure (the package's stored table is trajbench/certificates.json)."""
    progress: bool = True
    """Show a progress bar."""


def newest_versions(ids: list[str]) -> list[str]:
    """The highest ``-vN`` of each family name, in registry order.

    Example:
        >>> newest_versions(["t/A-v0", "t/B-v0", "t/A-v1"])
        ['t/B-v0', 't/A-v1']
    """
    best: dict[str, tuple[int, str]] = {}
    for env_id in ids:
        name, version = re.fullmatch(r"(.*)-v(\d+)", env_id).groups()
        if name not in best or int(version) > best[name][0]:
            best[name] = (int(version), env_id)
    keep = {env_id for _, env_id in best.values()}
    return [env_id for env_id in ids if env_id in keep]


def certify(env_id: str, cfg: CertificatesConfig) -> dict:
    """One family's certificate (see the module docstring)."""
    env = make_env(env_id, levels="all")
    try:
        levels = [int(v) for v in sample_levels(env, "test", cfg.levels)]
        demos = {lv: expert_demos(env, lv, max(cfg.ks), cfg.seed) for lv in levels}
        n_actions = int(env.action_space.n)
    finally:
        env.close()
    full = [demos[lv] for lv in levels]

    def score(policy, k: int) -> float:
        contexts = [d[:k] for d in full]
        avoid_all = [d[: max(cfg.ks)] for d in full]
        return success(policy, env_id, levels, contexts, avoid_all, cfg)

    decoder = {str(k): score(DecoderPolicy(), k) for k in cfg.ks}
    query_only = score(QueryOnlyPolicy(), 0)
    random = score(RandomPolicy(n_actions, cfg.seed), 0)
    kmax = max(cfg.ks)
    copies = {
        HASHMAP: score(HashmapPolicy(n_actions, cfg.seed), kmax),
        REPLAY: score(ReplayPolicy(n_actions, cfg.seed), kmax),
    }
    best = max((v for k, v in decoder.items() if int(k) >= 1), default=decoder[str(cfg.ks[0])])
    return {
        "query_only": query_only,
        DECODER: decoder,
        "random": random,
        "copy_k": kmax,
        **copies,
        "gap": best - query_only,
        "class": classify(query_only, best),
        "levels": len(levels),
        "episodes": cfg.episodes,
    }


def success(policy, env_id, levels, contexts, avoid_from, cfg: CertificatesConfig) -> float:
    """Mean success of ``policy`` over every level and episode. Every policy starts from the same
    seeded starts, none of which a demonstration in ``avoid_from`` (all of them) started from."""
    missions = {}
    envs = [make_env(env_id, levels="all") for _ in levels]
    for env, lv in zip(envs, levels, strict=True):
        env.reset(options={"level": lv})
        missions[lv] = env.unwrapped.mission_text
    try:
        out = rollout(
            policy,
            env_id,
            levels,
            contexts,
            missions,
            cfg.episodes,
            cfg.seed,
            envs=envs,
            avoid_starts=[first_observations(d) for d in avoid_from],
        )
    finally:
        for env in envs:
            env.close()
    return float(np.mean([r["success"] for r in out]))


def order_families(ids: list[str]) -> list[str]:
    """The families a chain decoder can read: dark grids whose decoder visits cells in order."""
    out = []
    for env_id in ids:
        cls = family_class(env_id)
        if issubclass(cls, DarkGridEnv) and cls.demo_decoder == "ordered_cells":
            out.append(env_id)
    return out


def compute(cfg: CertificatesConfig) -> dict:
    """Every family's certificate, with the command and configuration that produced them."""
    if not cfg.ks or min(cfg.ks) < 0 or cfg.levels < 0 or cfg.episodes < 1:
        raise TrajbenchError("--ks must be K >= 0 values, --levels >= 0, --episodes >= 1")
    ids = [resolve_env_id(f) for f in cfg.families] or newest_versions(env_ids())
    families = {}
    for env_id in tqdm(ids, desc="certificates", disable=not cfg.progress):
        families[env_id] = certify(env_id, cfg)
    order = {}
    if cfg.order_levels:
        ks = tuple(k for k in cfg.ks if k >= 1)
        for env_id in tqdm(order_families(ids), desc="order", disable=not cfg.progress):
            order[env_id] = order_certificate(env_id, cfg.order_levels, ks, cfg.seed)
    argv = [a for a in sys.argv[1:] if a]
    command = "trajbench " + shlex.join(argv) if argv else "trajbench analyze certificates"
    for entry in [*families.values(), *order.values()]:
        entry["command"] = command
    return {"command": command, "config": asdict(cfg), "families": families, "order": order}

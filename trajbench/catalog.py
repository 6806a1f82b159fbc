"""``trajbench envs``: a table (or JSON) of every registered family, its levels and its expert.

Example:
    >>> import trajbench
    >>> family_info("trajbench/DarkRoom-v0")["n_levels"]
    81
"""

from __future__ import annotations

import json
import sys
import warnings
from dataclasses import dataclass
from typing import Any

import gymnasium as gym

from .certificates import stored_certificates
from .cliargs import parse_config
from .envs.level_contents import distinct_contents
from .envs.registration import env_ids
from .families import make_env
from .records import DECODER


@dataclass
class EnvsConfig:
    """List every registered environment family."""

    json: bool = False
    """Print a JSON list instead of a table."""


def _space_summary(space: gym.Space) -> str:
    if isinstance(space, gym.spaces.Dict):
        return (
            "Dict(" + ", ".join(f"{k}: {_space_summary(v)}" for k, v in space.spaces.items()) + ")"
        )
    if isinstance(space, gym.spaces.Box):
        return f"Box{tuple(space.shape)} {space.dtype}"
    if isinstance(space, gym.spaces.MultiDiscrete):
        return f"MultiDiscrete({space.nvec.tolist()})"
    if isinstance(space, gym.spaces.Text) or not type(space).__module__.startswith("gymnasium"):
        return type(space).__name__  # e.g. MiniGrid's MissionSpace, whose repr is a function
    return str(space)


def family_info(env_id: str) -> dict[str, Any]:
    """What ``trajbench envs`` shows about one family (instantiates it)."""
    with warnings.catch_warnings():  # listing a superseded version is not using it
        warnings.simplefilter("ignore", DeprecationWarning)
        env = make_env(env_id)
    try:
        u, splits = env.unwrapped, env.unwrapped.splits()
        max_steps = getattr(u, "max_steps", None) or (env.spec and env.spec.max_episode_steps)
        return {
            "id": env_id,
            "n_levels": int(u.n_levels),
            "n_train": len(splits["train"]),
            "n_test": len(splits["test"]),
            # measured over all levels by benchmarks/level_contents.py (None: not measured)
            "distinct_contents": distinct_contents(u.family),
            "content_split": bool(getattr(u, "content_split", False)),
            "observation_space": _space_summary(env.observation_space),
            "encoding": u.encoding.name,
            "n_features": u.encoding.n_features,
            "n_actions": int(u.encoding.n_actions),
            "max_steps": None if max_steps is None else int(max_steps),
            "has_mission": bool(u.has_mission),
            "expert": u.expert_name,
            "version": env.spec.version if env.spec else None,
            "version_note": u.version_note,
            "level_fixes": u.level_fixes,
            "episode_draws": u.episode_draws,
            "demo_decoder": u.demo_decoder,
            **certificate_info(env_id),
        }
    finally:
        env.close()


def certificate_info(env_id: str) -> dict[str, Any]:
    """A family's stored certificate (``trajbench analyze certificates``): its class, and the
    query-only and best decoder (K >= 1) success; class "uncertified" where the table has none."""
    entry = stored_certificates()["families"].get(env_id)
    if entry is None:
        return {"class": "uncertified", "query_only": None, DECODER: None}
    best = max(v for k, v in entry[DECODER].items() if int(k) >= 1)
    return {"class": entry["class"], "query_only": entry["query_only"], DECODER: best}


def envs_main(argv: list[str] | None = None) -> int:
    """``trajbench envs``: a table (or ``--json``) of every registered family."""
    config = parse_config(
        EnvsConfig, list(sys.argv[1:] if argv is None else argv), "trajbench envs"
    )
    if config is None:  # --help
        return 0
    rows = [family_info(env_id) for env_id in env_ids()]
    if config.json:
        print(json.dumps(rows, indent=2))
        return 0
    headers = {
        "id": "id",
        "n_levels": "levels",
        "n_train": "train",
        "n_test": "test",
        "distinct_contents": "distinct contents",
        "max_steps": "max steps",
        "n_actions": "actions",
        "encoding": "encoding",
        "has_mission": "mission",
        "observation_space": "observation",
        "expert": "expert",
        "version": "version",
        "level_fixes": "a level fixes",
        "episode_draws": "each episode draws",
        "class": "class",
        "certificate": "query-only / decoder",
    }
    cells = [[str(h) for h in headers.values()]]
    for row in rows:
        shown = {**row, "version": f"v{row['version']}", "certificate": "—"}
        if row[DECODER] is not None:
            shown["certificate"] = f"{row['query_only']:.2f} / {row[DECODER]:.2f}"
        if row["version_note"]:
            shown["version"] += f", {row['version_note']}"
        cells.append(
            [
                "yes" if v is True else "no" if v is False else str(v)
                for v in map(shown.get, headers)
            ]
        )
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for r in cells:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return 0

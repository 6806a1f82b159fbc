"""``trajbench evaluate``'s config: every knob of an evaluation, and its checks (a module of its
own: the evaluation file, the presets and the runner read it without the evaluation).

Example:
    cfg = EvalConfig(policy="hashmap", data=("data/dr-test",), out="runs/hashmap", ks=(0, 4))
    validate(cfg)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from trajbench.errors import TrajbenchError
from trajbench.records import FORMATS, TEST_LEVELS, EvalInstruction, Format


@dataclass
class EvalConfig:
    """Evaluate a policy in context on held-out levels."""

    policy: str = ""
    """A model directory written by trajbench train, a reference policy (random, expert, hashmap,
    replay, decoder, query-only), or package.module:factory: an importable callable that returns a trajbench Policy
    (given encoding and seed where it takes them)."""
    policy_kwargs: str = ""
    """Keyword arguments for a package.module:factory policy, as a JSON object, e.g.
    '{"fallback": "nearest"}'."""
    data: tuple[str, ...] = ()
    """Evaluation episode stores: expert episodes of held-out levels (or held-out families)."""
    out: str = ""
    """Output directory for records.parquet and offline.parquet."""
    ks: tuple[int, ...] = (0, 1, 2, 4)
    """Numbers of demonstrations in the context (the k-shot sweep)."""
    episodes: int = 4
    """Independent online episodes per level, k, support and format (each from its own start)."""
    support: Literal["same", "other", "both"] = "both"
    """Demonstrations from the level itself (same), from other levels (other: the no-support
    score), or both."""
    formats: tuple[Format, ...] = FORMATS
    """common: whole demonstrations in order, for every policy; matched: a model trained on an
    unordered mode also sees them as it trained (transitions in random order)."""
    instruction: EvalInstruction = "train"
    """What the query's mission says: as the model trained (train), full, empty, template, or
    decoy (another object of the level, while the demonstrations go to the true goal; BabyAI)."""
    own_episodes: bool = False
    """Keep the row's earlier episodes in its context after the demonstrations."""
    max_levels: int = 0
    """Evaluate a seeded random draw of this many levels per family (0: every level in the store)."""
    allow_trained_levels: bool = False
    """Also score levels the model trained on (for in-weights analyses only: such records never
    measure in-context generalization and the leaderboard refuses them)."""
    eval_split: str = TEST_LEVELS
    """Label of what is held out: test_levels or test_families."""
    offline: bool = True
    """Also measure offline in-context action accuracy (transformer only)."""
    offline_sequences: int = 256
    """Sequences per (k, support) for the offline accuracy."""
    batch_rows: int = 128
    """Rollouts run together in one batch: every (level, k, support, format) is one row."""
    seed: int = 0
    """Evaluation seed (start states, demonstration choice, shuffles, decoys, reference policies),
    recorded as eval_seed; keep it apart from the training seed."""
    device: str = "auto"
    """auto, cpu or cuda[:N]."""
    threads: int = 1
    """CPU threads for torch on the CPU (0: torch's default). One is fastest for the small models
    of the benchmark, and never oversubscribes a machine that runs other jobs."""
    use_cache: bool = True
    """Step a trained model with its backbone's cache (False: re-encode the sequence every step)."""
    greedy: bool = True
    """Act with the most likely action (False: sample)."""
    progress: bool = True
    """Show a progress bar."""


def validate(cfg: EvalConfig, need_out: bool = True) -> None:
    """Raise :class:`TrajbenchError` naming the first bad knob."""
    if cfg.episodes < 1 or cfg.batch_rows < 1 or any(k < 0 for k in cfg.ks) or not cfg.ks:
        raise TrajbenchError(
            "episodes and batch_rows must be >= 1 and ks a non-empty list of k >= 0"
        )
    if cfg.max_levels < 0 or cfg.offline_sequences < 0 or cfg.threads < 0:
        raise TrajbenchError("max_levels, offline_sequences and threads must be >= 0")
    if not cfg.formats:
        raise TrajbenchError("--formats needs common, matched or both")
    if not cfg.policy:
        raise TrajbenchError(
            "--policy needs a model directory, a reference policy name or package.module:factory"
        )
    if not cfg.data:
        raise TrajbenchError("--data needs at least one episode store directory")
    if need_out and not cfg.out:
        raise TrajbenchError("--out needs an output directory")
    policy_kwargs(cfg)


def policy_kwargs(cfg: EvalConfig) -> dict[str, Any]:
    """``--policy-kwargs`` as a dict ({} when not given)."""
    if not cfg.policy_kwargs:
        return {}
    try:
        kwargs = json.loads(cfg.policy_kwargs)
    except ValueError as err:
        raise TrajbenchError(f"--policy-kwargs is not valid JSON: {err}") from None
    if not isinstance(kwargs, dict):
        raise TrajbenchError(f"--policy-kwargs must be a JSON object, got {cfg.policy_kwargs!r}")
    return kwargs

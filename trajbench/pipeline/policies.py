"""What ``--policy`` names: a reference policy, or a model directory written by ``trajbench train``.

Example:
    >>> import trajbench
    >>> from trajbench.envs import ObsEncoding
    >>> policy, info = load_policy("hashmap", ObsEncoding("dark-room", (9, 9), 5), seed=0)
    >>> info.policy, info.model_params
    ('hashmap', 0)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from trajbench.baselines import ExpertPolicy, HashmapPolicy, RandomPolicy, ReplayPolicy
from trajbench.baselines.transformer import TrajectoryTransformer
from trajbench.baselines.transformer_policy import TransformerPolicy
from trajbench.envs import ObsEncoding
from trajbench.errors import TrajbenchError
from trajbench.policy import Policy

from .train import TrainingRecord, read_training_record

REFERENCE_POLICIES = ("random", "expert", "hashmap", "replay")


@dataclass
class PolicyInfo:
    """How a policy is described in every evaluation record."""

    policy: str
    """random, expert, hashmap, replay, transformer, or no-context (a transformer trained with
    mode none)."""
    train_context: str = "-"
    """The context mode it was trained with ('-' for reference policies)."""
    instruction: str = "-"
    """The instruction mode it was trained with ('-' for reference policies)."""
    train_seed: int = 0
    """Its training seed (0 for reference policies)."""
    model_params: int = 0
    """Its parameter count (0 for reference policies)."""


def load_policy(
    spec: str,
    encoding: ObsEncoding,
    seed: int,
    device: torch.device | str = "cpu",
    mission_pool: dict[str, list[str]] | None = None,
    use_cache: bool = True,
    greedy: bool = True,
) -> tuple[Policy, PolicyInfo]:
    """The policy ``spec`` names, ready to act on families with ``encoding``.

    Args:
        spec: ``random``, ``expert``, ``hashmap``, ``replay``, or a model directory.
        encoding: The observation encoding of the families it will act on.
        seed: Seed of the policy's own randomness (random actions, sampling, wrong missions).
        device: Torch device of a trained model.
        mission_pool: Missions of each family, the source of ``wrong`` missions.
        use_cache: Step a trained model with its KV cache.
        greedy: A trained model takes its most likely action (else samples).

    Raises:
        TrajbenchError: ``spec`` is neither, or the model reads another observation encoding.
    """
    n_actions = int(encoding.n_actions)
    if spec in REFERENCE_POLICIES:
        reference = {
            "random": lambda: RandomPolicy(n_actions, seed),
            "expert": ExpertPolicy,
            "hashmap": lambda: HashmapPolicy(n_actions, seed),
            "replay": lambda: ReplayPolicy(n_actions, seed),
        }[spec]()
        return reference, PolicyInfo(policy=spec)
    if not Path(spec).is_dir():
        raise TrajbenchError(
            f"policy {spec!r} is neither a model directory written by trajbench train nor "
            f"one of the reference policies {', '.join(REFERENCE_POLICIES)}"
        )
    policy, record = load_trained_policy(
        spec,
        mission_pool=mission_pool,
        use_cache=use_cache,
        greedy=greedy,
        device=device,
        seed=seed,
    )
    check_compatible(policy.model.encoding, encoding, spec)
    config = record.config
    info = PolicyInfo(
        policy="transformer" if policy.use_context else "no-context",
        train_context=config.context.mode,
        instruction=config.context.instruction,
        train_seed=config.seed,
        model_params=policy.model.num_parameters(),
    )
    return policy, info


def load_trained_policy(
    model_dir: str | Path, **kwargs
) -> tuple[TransformerPolicy, TrainingRecord]:
    """The model in ``model_dir`` as a policy that shows missions as it was trained to.

    Its training record (returned beside it) sets the instruction mode and whether the policy
    sees any context (a model trained with mode ``none`` never does); ``kwargs`` go to
    :class:`~trajbench.baselines.transformer_policy.TransformerPolicy`.
    """
    model = TrajectoryTransformer.from_pretrained(model_dir)
    record = read_training_record(model_dir)
    context = record.config.context
    policy = TransformerPolicy(
        model, instruction=context.instruction, use_context=context.mode != "none", **kwargs
    )
    return policy, record


def check_compatible(model: ObsEncoding, data: ObsEncoding, where: str) -> None:
    """Refuse families the model cannot read (another observation encoding)."""
    if model.feature_sizes != data.feature_sizes or model.n_actions != data.n_actions:
        raise TrajbenchError(
            f"model {where} reads encoding {model.name!r} ({model.n_features} features, "
            f"{model.n_actions} actions) but the data uses {data.name!r} "
            f"({data.n_features} features, {data.n_actions} actions)"
        )


def trained_levels_of(spec: str) -> dict[str, list[int]]:
    """Family -> the levels the policy ``spec`` trained on ({} for reference policies)."""
    if spec in REFERENCE_POLICIES:
        return {}
    return read_training_record(spec).trained_levels


def refuse_trained_levels(
    spec: str, env_id: str, levels: list[int], trained: dict[str, list[int]]
) -> None:
    """Raise :class:`TrajbenchError` if any of ``levels`` of ``env_id`` is one ``spec`` trained on."""
    seen = sorted(set(levels) & set(trained.get(env_id, ())))
    if seen:
        shown = ", ".join(map(str, seen[:5])) + (" ..." if len(seen) > 5 else "")
        raise TrajbenchError(
            f"model {spec} trained on {len(seen)} of the {len(levels)} levels of {env_id} to "
            f"evaluate ({shown}); evaluation scores held-out levels only: use a store of its "
            "family's test split"
        )

"""What ``--policy`` names: a reference policy, a model directory written by ``trajbench train``, or
``package.module:factory``, an importable callable that returns any :class:`~trajbench.policy.Policy`.

A factory's policy is an outside policy: it implements :class:`~trajbench.policy.Policy` and is
shown only the protocol's view (:mod:`trajbench.policy`); a factory that returns one of trajbench's
privileged policies (:mod:`trajbench.privileged`) is refused (:func:`check_outside`).

A factory is called with the keyword arguments of ``--policy-kwargs``, plus ``encoding`` (the
evaluation data's :class:`~trajbench.envs.ObsEncoding`, which holds ``n_actions``) and ``seed``
where its signature takes them. Its policy is named by the import path in every record, and
versioned by the ``__version__`` of its module or of a package above it ("unknown" if none).

Example:
    >>> import trajbench
    >>> from trajbench.envs import ObsEncoding
    >>> policy, info = load_policy("hashmap", ObsEncoding("dark-room", (9, 9), 5), seed=0)
    >>> info.policy, info.model_params
    ('hashmap', 0)
    >>> policy, info = load_policy(
    ...     "trajbench.baselines:RandomPolicy", ObsEncoding("dark-room", (9, 9), 5), seed=0,
    ...     policy_kwargs={"n_actions": 5})
    >>> info.policy, info.policy_version == trajbench.__version__
    ('trajbench.baselines:RandomPolicy', True)
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from trajbench import __version__
from trajbench.baselines import (
    DecoderPolicy,
    ExpertPolicy,
    HashmapPolicy,
    QueryOnlyPolicy,
    RandomPolicy,
    ReplayPolicy,
)
from trajbench.baselines.transformer import TrajectoryTransformer
from trajbench.baselines.transformer_policy import TransformerPolicy
from trajbench.contexts.modes import get_mode
from trajbench.envs import ObsEncoding
from trajbench.errors import TrajbenchError
from trajbench.policy import Policy
from trajbench.privileged import PrivilegedPolicy
from trajbench.records import (
    DECODER,
    EXPERT,
    HASHMAP,
    QUERY_ONLY,
    RANDOM,
    REFERENCES,
    REPLAY,
)

from .training_record import TrainingRecord, read_training_record

#: ``package.module:factory`` (the factory may be a dotted attribute path).
IMPORT_PATH = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


@dataclass
class PolicyInfo:
    """How a policy is described in every evaluation record."""

    policy: str
    """random, expert, hashmap, replay, transformer, no-context (a model trained with mode none),
    or the import path of a policy trajbench did not train (package.module:factory)."""
    policy_version: str = __version__
    """The policy's version: trajbench's for its own policies, else its package's __version__
    ("unknown" if it has none)."""
    backbone: str = "-"
    """A trained model's backbone (llama, gpt2, mamba2, lstm; '-' for other policies)."""
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
    policy_kwargs: dict[str, Any] | None = None,
) -> tuple[Policy | PrivilegedPolicy, PolicyInfo]:
    """The policy ``spec`` names, ready to act on families with ``encoding``.

    Args:
        spec: ``random``, ``expert``, ``hashmap``, ``replay``, a model directory, or
            ``package.module:factory``.
        encoding: The observation encoding of the families it will act on.
        seed: Seed of the policy's own randomness (random actions, sampling, wrong missions).
        device: Torch device of a trained model.
        mission_pool: Missions of each family, the source of ``wrong`` missions.
        use_cache: Step a trained model with its backbone's cache.
        greedy: A trained model takes its most likely action (else samples).
        policy_kwargs: Keyword arguments of a factory (only with ``package.module:factory``).

    Raises:
        TrajbenchError: ``spec`` is none of these, the model reads another observation encoding,
            or the factory does not import, raises, or returns something that is not a policy.
    """
    if policy_kwargs and (spec in REFERENCES or Path(spec).is_dir()):
        raise TrajbenchError("--policy-kwargs go to a package.module:factory policy only")
    if not Path(spec).is_dir() and IMPORT_PATH.match(spec):
        return load_factory(spec, encoding, seed, policy_kwargs or {})
    n_actions = int(encoding.n_actions)
    if spec in REFERENCES:
        reference = {
            RANDOM: lambda: RandomPolicy(n_actions, seed),
            EXPERT: ExpertPolicy,
            HASHMAP: lambda: HashmapPolicy(n_actions, seed),
            REPLAY: lambda: ReplayPolicy(n_actions, seed),
            DECODER: DecoderPolicy,
            QUERY_ONLY: QueryOnlyPolicy,
        }[spec]()
        return reference, PolicyInfo(policy=spec)
    if not Path(spec).is_dir():
        raise TrajbenchError(
            f"policy {spec!r} is not a model directory written by trajbench train, one of the "
            f"reference policies {', '.join(REFERENCES)}, or an import path "
            "package.module:factory"
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
        backbone=policy.model.cfg.backbone,
    )
    return policy, info


def load_factory(
    spec: str, encoding: ObsEncoding, seed: int, kwargs: dict[str, Any]
) -> tuple[Policy, PolicyInfo]:
    """Import ``package.module:factory``, call it and check that it returns a policy."""
    module_name, _, attr = spec.partition(":")
    try:
        factory: Any = importlib.import_module(module_name)
    except Exception as err:  # whatever the user's module raises on import
        raise TrajbenchError(
            f"--policy {spec}: cannot import {module_name!r}: {type(err).__name__}: {err}"
        ) from err
    for part in attr.split("."):
        if not hasattr(factory, part):
            raise TrajbenchError(f"--policy {spec}: {module_name!r} has no attribute {attr!r}")
        factory = getattr(factory, part)
    if not callable(factory):
        raise TrajbenchError(
            f"--policy {spec}: {attr!r} is a {type(factory).__name__}, not callable"
        )
    given = {"encoding": encoding, "seed": seed}
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # some builtins have no signature: pass only the user's
        params = {}
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    args = {k: v for k, v in given.items() if takes_any or k in params}
    try:
        policy = factory(**{**args, **kwargs})
    except Exception as err:  # the user's factory: any failure is one clear line
        raise TrajbenchError(
            f"--policy {spec}: the factory raised {type(err).__name__}: {err}"
        ) from err
    check_outside(policy, f"--policy {spec}: the factory returned")
    return policy, PolicyInfo(policy=spec, policy_version=package_version(module_name))


def check_outside(policy: object, where: str) -> None:
    """Raise :class:`TrajbenchError` unless ``policy`` is an outside policy: it implements the
    :class:`~trajbench.policy.Policy` interface (``begin(rows)`` and
    ``act(obs, prev_action, prev_reward, rows)``, subclassing it or not) and is not one of
    trajbench's privileged policies. ``where`` starts the message."""
    if isinstance(policy, PrivilegedPolicy):
        raise TrajbenchError(
            f"{where} {type(policy).__name__}, a privileged trajbench policy (it reads levels and "
            "environments): outside paths run only policies that see the protocol's view; name a "
            f"reference policy with --policy {' / '.join(REFERENCES)}"
        )
    if not all(callable(getattr(policy, name, None)) for name in ("begin", "act")):
        raise TrajbenchError(
            f"{where} a {type(policy).__name__}, not a policy (an object with begin(rows) and "
            "act(obs, prev_action, prev_reward, rows); see trajbench.policy.Policy)"
        )
    try:
        params = list(inspect.signature(policy.act).parameters.values())
    except (TypeError, ValueError):  # no signature to read: the call will tell
        return
    required = [
        p
        for p in params
        if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    if len(required) > 4:
        raise TrajbenchError(
            f"{where} a {type(policy).__name__} whose act requires {len(required)} arguments "
            f"({', '.join(p.name for p in required)}); since trajbench 0.2 act(obs, prev_action, "
            "prev_reward, rows) gets four: no envs (see docs/changelog.md)"
        )


def describe(policy: object, name: str | None = None, version: str | None = None) -> PolicyInfo:
    """How records name a policy object given to :func:`trajbench.evaluate`: ``name`` (default:
    its class's import path ``module:Class``) and ``version`` (default: :func:`package_version`)."""
    cls = type(policy)
    return PolicyInfo(
        policy=name or f"{cls.__module__}:{cls.__qualname__}",
        policy_version=version or package_version(cls.__module__),
    )


def package_version(module_name: str) -> str:
    """The ``__version__`` of ``module_name`` or of the nearest package above it that has one
    (among the imported modules), else "unknown"."""
    parts = module_name.split(".")
    for n in range(len(parts), 0, -1):
        version = getattr(sys.modules.get(".".join(parts[:n])), "__version__", None)
        if isinstance(version, str) and version:
            return version
    return "unknown"


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
        model,
        instruction=context.instruction,
        use_context=get_mode(context.mode).has_context,
        **kwargs,
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
    """Family -> the levels the policy ``spec`` trained on ({} for reference policies and for
    policies trajbench did not train: it cannot know theirs)."""
    if spec in REFERENCES or not Path(spec).is_dir():
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

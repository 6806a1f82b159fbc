"""What a family declares about the readings a report may make of it.

Two per-family properties, read from the family's class (no environment is built):

- **role** (:func:`family_role`): ``headline`` where the in-context decoder beats the best
  query-only policy by a wide margin (the family's information certificate, issue 21), ``control``
  otherwise. Read from the class attribute ``role`` (``"headline"`` / ``"control"``), else from the
  package's stored certificates (:func:`trajbench.certificates.certificate_class`); a family in
  neither is ``unclassified``. Reports show the role beside every family and never
  pool families.
- **order gap** (:func:`order_gap`): what a gap between ordered (``bursty``) and ``shuffled``
  contexts measures on the family: ``learnability`` where shuffled steps can be chained back into
  paths (deterministic, unaliased observations, e.g. DarkSequence-v0: the order is still in the
  context, so a gap measures what a model learns more easily at equal information), and
  ``information`` where a chain decoder on shuffled contexts is at the order-free oracle (the
  order is lost). Read from the class attribute ``order_gap``; ``""`` where undeclared, and then
  the report names no kind.
"""

from __future__ import annotations

import functools

import gymnasium as gym
from gymnasium.envs.registration import load_env_creator

from ..certificates import certificate_class

ROLES = ("headline", "control")
ORDER_GAPS = {
    "learnability": "a gap at equal information: shuffled steps chain back into the "
    "demonstrations' paths on this family, so it measures what the model learns more easily "
    "from ordered contexts, not what only they carry",
    "information": "a gap in information: shuffling loses the order on this family (a chain "
    "decoder on shuffled contexts is at the order-free oracle), so it measures what only ordered "
    "contexts carry",
}


@functools.cache
def _family_class(env_id: str) -> type | None:
    try:
        creator = load_env_creator(gym.spec(env_id).entry_point)
    except (gym.error.Error, AttributeError, ImportError, ValueError):
        return None
    return creator if isinstance(creator, type) else None


def family_role(env_id: str) -> str:
    """``headline``, ``control`` or ``unclassified`` (the family declares no ``role``)."""
    role = getattr(_family_class(env_id), "role", None)
    if role is None:  # the stored certificate (trajbench analyze certificates)
        found = certificate_class(env_id)
        return found if found in ROLES else "unclassified"
    if role not in ROLES:
        raise ValueError(f"{env_id} declares role {role!r}; expected one of {ROLES}")
    return role


def order_gap(env_id: str) -> str:
    """What an ordered-vs-shuffled gap measures on ``env_id``: a key of :data:`ORDER_GAPS`, or
    ``""`` where the family does not declare it."""
    gap = getattr(_family_class(env_id), "order_gap", "") or ""
    if gap and gap not in ORDER_GAPS:
        raise ValueError(f"{env_id} declares order_gap {gap!r}; expected one of {list(ORDER_GAPS)}")
    return gap

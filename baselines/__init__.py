"""Policies behind one interface (installed as ``trajbench.baselines``).

The interface itself (:class:`~trajbench.policy.Policy`) lives in the core package, so that
evaluation and any outside agent depend on it without depending on these baselines.
"""

from .decoder import DecoderPolicy, QueryOnlyPolicy
from .reference import ExpertPolicy, HashmapPolicy, RandomPolicy, ReplayPolicy

__all__ = [
    "DecoderPolicy",
    "ExpertPolicy",
    "HashmapPolicy",
    "QueryOnlyPolicy",
    "RandomPolicy",
    "ReplayPolicy",
]

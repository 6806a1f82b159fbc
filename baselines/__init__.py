"""Policies behind one interface (installed as ``trajbench.baselines``).

The interface itself (:class:`~trajbench.policy.Policy`) lives in the core package, so that
evaluation and any outside agent depend on it without depending on these baselines.
"""

from .reference import ExpertPolicy, HashmapPolicy, RandomPolicy, ReplayPolicy

__all__ = ["ExpertPolicy", "HashmapPolicy", "RandomPolicy", "ReplayPolicy"]

"""Policies behind one interface (installed as ``trajbench.baselines``)."""

from .base import EpisodeRecord, Policy, RowContext
from .reference import ExpertPolicy, HashmapPolicy, RandomPolicy

__all__ = ["EpisodeRecord", "ExpertPolicy", "HashmapPolicy", "Policy", "RandomPolicy", "RowContext"]

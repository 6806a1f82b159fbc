"""trajbench environment families (installed as ``trajbench.envs``)."""

from .levels import SPLIT_VERSION, LevelMixin, ObsEncoding, split_levels
from .registration import (
    FAMILIES,
    NAMESPACE,
    encoding_family,
    env_ids,
    family_class,
    register_all,
)

__all__ = [
    "FAMILIES",
    "NAMESPACE",
    "SPLIT_VERSION",
    "LevelMixin",
    "ObsEncoding",
    "encoding_family",
    "env_ids",
    "family_class",
    "register_all",
    "split_levels",
]

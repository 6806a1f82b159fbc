"""trajbench: a Gymnasium suite and benchmark for in-context learning from trajectories.

Importing the package registers every environment family in the ``trajbench/`` namespace.
``trajbench.evaluate(policy, data, ...)`` scores any policy in context on held-out levels
(:func:`trajbench.pipeline.evaluate.evaluate_policy`); it is imported on first use, so that
``import trajbench`` stays light.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

# pygame (pulled in by minigrid) prints a banner to stdout on import; keep stdout clean.
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

from .envs import register_all

__version__ = "0.2.0"

register_all()

#: Public names that live in a higher layer, imported on first use: name -> "module:attribute".
_LAZY = {"evaluate": "trajbench.pipeline.evaluate:evaluate_policy"}

__all__ = ["__version__", "evaluate"]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'trajbench' has no attribute {name!r}")
    module, _, attr = _LAZY[name].partition(":")
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])

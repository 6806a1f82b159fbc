"""trajbench: a Gymnasium suite and benchmark for in-context learning from trajectories.

Importing the package registers every environment family in the ``trajbench/`` namespace.
"""

from __future__ import annotations

import os

# pygame (pulled in by minigrid) prints a banner to stdout on import; keep stdout clean.
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

from .envs import register_all

__version__ = "0.1.0"

register_all()

__all__ = ["__version__"]

"""The prompt builder: context modes, their knobs, sampling and token assembly.

- :mod:`~trajbench.contexts.modes`: the registry of context modes (``MODES``);
- :mod:`~trajbench.contexts.config`: :class:`ContextConfig`, every knob;
- :mod:`~trajbench.contexts.builder`: :class:`ContextBuilder`, which samples sequences;
- :mod:`~trajbench.contexts.tokens`: runs of words and steps -> a :class:`~trajbench.batch.Batch`;
- :mod:`~trajbench.contexts.sampling`: the vectorized random draws.
"""

from .builder import ContextBuilder
from .config import ContextConfig
from .modes import MODE_NAMES, MODES, SAME_LEVEL_MODES, ContextMode, get_mode
from .tokens import RowPlan, StepTable, assemble

__all__ = [
    "MODES",
    "MODE_NAMES",
    "SAME_LEVEL_MODES",
    "ContextBuilder",
    "ContextConfig",
    "ContextMode",
    "RowPlan",
    "StepTable",
    "assemble",
    "get_mode",
]

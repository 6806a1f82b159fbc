"""``trajbench analyze``: what in a trajectory carries the lesson.

Each analysis is two modules. ``NAME`` holds what it computes: a dataclass config (its
docstrings are the ``--help``; stage configs such as ``TrainConfig`` and ``EvalConfig`` are nested,
as ``--train.*`` and ``--eval.*``) and ``compute(cfg)`` returning its tables. ``NAME_report`` holds
the prose it writes: ``render`` (Markdown generated from the numbers), ``plot`` and
``main(argv)``, which writes ``OUT/NAME.csv`` (and ``OUT/NAME_<table>.csv``), ``OUT/NAME.md``
and ``OUT/NAME.png`` (see :mod:`trajbench.analysis.common`):

=============== =================================================================================
burstiness      success vs p_bursty, vs K, and the Zipf sweep, with the no-support score beside it
importance      which context steps matter: replace/delete effects, attention, concentration
failures        successes vs failures in context, per 1,000 context tokens
phases          routine vs decision steps during training
instructions    the instruction ablation split by whether the mission is inferable
certificates    per family: the query-only solver vs the in-context decoder (headline / control)
=============== =================================================================================
"""

from __future__ import annotations

import importlib

from trajbench.errors import TrajbenchError

ANALYSES = {
    "burstiness": "success against p_bursty, K and the Zipf exponent, with the no-support score",
    "importance": "context-step importance: replacement/deletion effects vs attention",
    "failures": "successful vs failed demonstrations in the context",
    "phases": "learning phases: routine vs decision steps during training",
    "instructions": "instruction ablation split by whether the mission can be inferred",
    "certificates": "per family: the query-only solver vs the in-context decoder (headline/control)",
}


def main(argv: list[str]) -> int:
    """Dispatch ``trajbench analyze NAME ...`` to ``trajbench.analysis.NAME_report.main``."""
    if not argv or argv[0] in {"-h", "--help"}:
        width = max(map(len, ANALYSES))
        print("usage: trajbench analyze NAME [--help] [OPTIONS]\n\nanalyses:")
        for name, desc in ANALYSES.items():
            print(f"  {name:<{width}}  {desc}")
        return 0 if argv else 2
    name = argv[0]
    if name not in ANALYSES:
        raise TrajbenchError(f"unknown analysis {name!r}; expected one of {sorted(ANALYSES)}")
    return int(importlib.import_module(f"trajbench.analysis.{name}_report").main(argv[1:]) or 0)

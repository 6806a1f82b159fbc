"""Small helpers shared by the analyses: argument parsing, CI wording and atomic outputs.

Every analysis writes ``OUT/<name>.csv`` (the table), ``OUT/<name>.md`` (the table with a reading
generated from its numbers) and ``OUT/<name>.png`` (the plot) through :func:`write_outputs`.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pandas as pd

from trajbench.io import atomic_write_bytes, atomic_write_text


def parse(cls: type, argv: list[str], name: str) -> Any:
    """Parse ``trajbench analyze NAME`` flags into ``cls`` (None after ``--help``)."""
    from trajbench.cliargs import parse_config

    return parse_config(cls, argv, f"trajbench analyze {name}")


def fmt_ci(row: Any, metric: str = "success", digits: int = 2) -> str:
    """``"IQM [low, high]"`` of ``metric`` from a row of :func:`trajbench.metrics.aggregate`."""
    return (
        f"{row[f'{metric}_iqm']:.{digits}f} "
        f"[{row[f'{metric}_ci_low']:.{digits}f}, {row[f'{metric}_ci_high']:.{digits}f}]"
    )


def direction(a: Any, b: Any, metric: str = "success") -> str:
    """``"higher"`` / ``"lower"`` when the 95% CIs of ``a`` and ``b`` are separated, else ``"overlap"``."""
    if a[f"{metric}_ci_low"] > b[f"{metric}_ci_high"]:
        return "higher"
    if a[f"{metric}_ci_high"] < b[f"{metric}_ci_low"]:
        return "lower"
    return "overlap"


def compare(a: Any, b: Any, a_name: str, b_name: str, metric: str = "success") -> str:
    """``"<a> is higher than <b> (95% CIs separated)"``, ``lower than`` or ``not distinguishable``."""
    d = direction(a, b, metric)
    if d == "overlap":
        return f"{a_name} is not distinguishable from {b_name} (95% CIs overlap)"
    return f"{a_name} is {d} than {b_name} (95% CIs separated)"


def write_outputs(out: str | Path, name: str, table: pd.DataFrame, markdown: str, fig) -> Path:
    """Atomically write ``OUT/name.csv``, ``OUT/name.md`` and ``OUT/name.png``; returns the .md."""
    import matplotlib.pyplot as plt

    out = Path(out)
    atomic_write_text(out / f"{name}.csv", table.to_csv(index=False))
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    atomic_write_bytes(out / f"{name}.png", buf.getvalue())
    atomic_write_text(out / f"{name}.md", markdown)
    return out / f"{name}.md"


def pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt

"""Small pieces shared by the analyses: distributions, attention, tables and output files.

- :func:`kl_divergence`, :func:`entropy`: of action distributions given as logits.
- :func:`top_share`: how much of a total the largest few values hold (concentration).
- :func:`forward_with_attention`: a model's logits and its attention weights (eager attention).
- :func:`markdown_table`, :func:`fmt`: tables and numbers for the generated reports.
- :func:`write_outputs`: ``OUT/<name>.csv``, ``.md``, ``.png`` (and extra CSVs), written atomically
  after everything has been computed, so a failure leaves nothing half-written.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from trajbench.errors import TrajbenchError
from trajbench.io import atomic_write_bytes


# -- distributions ------------------------------------------------------------------------------
def kl_divergence(p_logits: Tensor, q_logits: Tensor) -> Tensor:
    """``KL(softmax(p) || softmax(q))`` in nats over the last axis (float64).

    Example:
        >>> p = torch.log(torch.tensor([0.5, 0.5]))
        >>> round(float(kl_divergence(p, torch.log(torch.tensor([0.9, 0.1])))), 4)
        0.5108
    """
    log_p = torch.log_softmax(p_logits.double(), -1)
    log_q = torch.log_softmax(q_logits.double(), -1)
    return (log_p.exp() * (log_p - log_q)).sum(-1).clamp(min=0.0)


def entropy(logits: Tensor) -> Tensor:
    """Entropy in nats of ``softmax(logits)`` over the last axis (float64)."""
    log_p = torch.log_softmax(logits.double(), -1)
    return -(log_p.exp() * log_p).sum(-1)


def top_share(values, fraction: float = 0.1) -> float:
    """Share of ``sum(values)`` held by the largest ``ceil(fraction * n)`` values.

    ``values`` must be non-negative. Equal values give about ``fraction`` (exactly when
    ``fraction * n`` is whole); NaN when the total is 0 or there are no values.

    Example:
        >>> top_share([1.0] * 20), top_share([5.0] + [0.0] * 9), round(top_share(range(1, 11)), 4)
        (0.1, 1.0, 0.1818)
    """
    x = np.asarray(values, dtype=float).ravel()
    if not 0.0 < fraction <= 1.0:
        raise TrajbenchError(f"fraction must be in (0, 1], got {fraction}")
    if np.isnan(x).any() or (x < 0).any():
        raise TrajbenchError("top_share needs non-negative values without NaN")
    total = x.sum()
    if len(x) == 0 or total <= 0:
        return float("nan")
    n_top = max(1, math.ceil(fraction * len(x) - 1e-9))
    return float(np.sort(x)[::-1][:n_top].sum() / total)


# -- attention ----------------------------------------------------------------------------------
@contextlib.contextmanager
def eager_attention(model) -> Iterator[None]:
    """Switch a :class:`TrajectoryTransformer`'s backbone to eager attention inside the block
    (sdpa cannot return attention weights), then back."""
    backbone = model.backbone
    before = backbone.config._attn_implementation
    if before != "eager":
        backbone.set_attn_implementation("eager")
    try:
        yield
    finally:
        if before != "eager":
            backbone.set_attn_implementation(before)


@torch.no_grad()
def forward_with_attention(model, tokens: dict[str, Tensor]) -> tuple[Tensor, list[Tensor]]:
    """Logits ``[B, T, A]`` and attention weights, one ``[B, heads, T, T]`` tensor per layer.

    ``tokens`` are right-padded (no attention mask, as in training): row ``i`` attends with causal
    attention only, so its real tokens never see its padding. Element ``[b, h, i, j]`` of a layer's
    weights is how much position ``i`` attends to position ``j``.
    """
    with eager_attention(model):
        x = model.embed(tokens)
        out = model.backbone(inputs_embeds=x, output_attentions=True, use_cache=False)
    if not out.attentions:
        raise TrajbenchError("the backbone returned no attention weights")
    return model.head(out.last_hidden_state), [a.float() for a in out.attentions]


# -- reports ------------------------------------------------------------------------------------
def fmt(value, digits: int = 3) -> str:
    """A number for a report: fixed ``digits`` decimals, scientific below ``10**-digits``,
    ``-`` for NaN/None."""
    if value is None or (isinstance(value, float | np.floating) and not np.isfinite(value)):
        return "-"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        v = float(value)
        if v != 0 and abs(v) < 10**-digits:
            return f"{v:.1e}"
        return f"{v:.{digits}f}"
    return str(value)


def markdown_table(frame: pd.DataFrame, digits: int = 3) -> str:
    """A GitHub Markdown table of ``frame`` (index dropped), numbers through :func:`fmt`."""
    cols = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in frame.itertuples(index=False):
        cells = [fmt(v, digits).replace("|", "\\|") for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def pct(value: float, digits: int = 0) -> str:
    """``0.123`` -> ``"12%"``; NaN -> ``"-"``."""
    if value is None or not np.isfinite(value):
        return "-"
    return f"{100 * value:.{digits}f}%"


def figure_png(fig) -> bytes:
    """A matplotlib figure as PNG bytes (no timestamp metadata), then closed."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def pyplot():
    """``matplotlib.pyplot`` on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_outputs(
    out: str | Path,
    name: str,
    table: pd.DataFrame,
    markdown: str,
    png: bytes,
    extra_tables: dict[str, pd.DataFrame] | None = None,
) -> list[Path]:
    """Write ``OUT/<name>.csv``, ``OUT/<name>.md``, ``OUT/<name>.png`` and ``OUT/<name>_<key>.csv``
    for each extra table, each atomically; returns the paths written."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise TrajbenchError(f"--out {out} exists and is not a directory")
    files = {f"{name}.csv": table.to_csv(index=False).encode()}
    for key, frame in (extra_tables or {}).items():
        files[f"{name}_{key}.csv"] = frame.to_csv(index=False).encode()
    files[f"{name}.md"] = markdown.encode()
    files[f"{name}.png"] = png
    paths = []
    for fname, data in files.items():
        atomic_write_bytes(out / fname, data)
        paths.append(out / fname)
    return paths


def set_threads(n: int) -> None:
    """``torch.set_num_threads(n)`` when ``n > 0`` (0 keeps torch's default)."""
    if n < 0:
        raise TrajbenchError(f"threads must be >= 0, got {n}")
    if n:
        torch.set_num_threads(n)

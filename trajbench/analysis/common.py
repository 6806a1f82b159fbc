"""What every analysis shares: its ``main``, numbers in words, distributions and output files.

Every analysis module has the same five parts: a config dataclass (its field docstrings are the
``--help``), ``compute(cfg)`` returning a small result dataclass of DataFrames and an ``about``
dict, ``render(result, cfg)`` (the Markdown report, its prose generated from the numbers),
``plot(result, cfg)`` (a matplotlib figure) and ``main(argv)``, which is :func:`run_analysis`.

- :func:`run_analysis`: parse, compute, render, plot, then :func:`write_outputs`;
- :func:`write_outputs`: ``OUT/<name>.csv`` (+ ``OUT/<name>_<key>.csv`` per extra table), ``.md``
  and ``.png``, each written atomically after everything has been computed;
- :func:`fmt`, :func:`pct`, :func:`fmt_ci`, :func:`compare`, :func:`markdown_table`: numbers,
  confidence intervals and tables in a report;
- :func:`kl_divergence`, :func:`entropy`, :func:`top_share`: action distributions and
  concentration;
- :func:`expert_demos`: fresh expert demonstrations of a level (the non-learning solvers').

Example:
    >>> fmt_ci({"success_mean": 0.5, "success_ci_low": 0.25, "success_ci_high": 0.75})
    '0.50 [0.25, 0.75]'
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from trajbench.cliargs import parse_config
from trajbench.collect import episode_seeds
from trajbench.collect import rollout as play
from trajbench.envs.demonstrators import Demonstrator
from trajbench.errors import TrajbenchError
from trajbench.io import atomic_write_bytes
from trajbench.policy import EpisodeRecord

#: Seed offset of :func:`expert_demos` (evaluation starts use the seed itself).
DEMO_SEED = 0xDE30


# -- main -----------------------------------------------------------------------------------------
def run_analysis(
    argv: list[str],
    name: str,
    config: type,
    compute: Callable[[Any], Any],
    render: Callable[[Any, Any], str],
    plot: Callable[[Any, Any], Any],
) -> int:
    """``trajbench analyze NAME``: parse ``argv`` into ``config``, compute, render, plot, write.

    The result's DataFrame fields become the tables: the first is ``OUT/<name>.csv``, every other
    one ``OUT/<name>_<field>.csv``.
    """
    cfg = parse_config(config, argv, f"trajbench analyze {name}")
    if cfg is None:  # --help
        return 0
    result = compute(cfg)
    markdown = render(result, cfg)
    frames = {k: v for k, v in vars(result).items() if isinstance(v, pd.DataFrame)}
    first = next(iter(frames))
    tables = {("" if k == first else k): v for k, v in frames.items()}
    paths = write_outputs(cfg.out, name, tables, markdown, plot(result, cfg))
    print(markdown)
    print(f"written: {', '.join(str(p) for p in paths)}")
    return 0


def require(checks: list[tuple[bool, str]]) -> None:
    """Raise :class:`TrajbenchError` with the message of the first check that is False."""
    for ok, message in checks:
        if not ok:
            raise TrajbenchError(message)


# -- outputs --------------------------------------------------------------------------------------
def output_dir(out: str | Path) -> Path:
    """``--out`` as a Path; refused when it exists and is not a directory."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise TrajbenchError(f"--out {out} exists and is not a directory")
    return out


def pyplot():
    """``matplotlib.pyplot`` on the non-interactive Agg backend."""
    # matplotlib is imported here, not at the top, to keep it off `trajbench analyze --help`.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure_png(fig) -> bytes:
    """A matplotlib figure as PNG bytes (no timestamp metadata), then closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    pyplot().close(fig)
    return buf.getvalue()


def write_outputs(
    out: str | Path, name: str, tables: Mapping[str, pd.DataFrame], markdown: str, fig
) -> list[Path]:
    """Write ``OUT/<name>.csv`` (the table under key ``""``), ``OUT/<name>_<key>.csv`` for every
    other key, ``OUT/<name>.md`` and ``OUT/<name>.png``, each atomically; returns the paths."""
    out = output_dir(out)
    files = {
        f"{name}{'_' + key if key else ''}.csv": frame.to_csv(index=False).encode()
        for key, frame in tables.items()
    }
    files[f"{name}.md"] = markdown.encode()
    files[f"{name}.png"] = figure_png(fig)
    for fname, data in files.items():
        atomic_write_bytes(out / fname, data)
    return [out / fname for fname in files]


# -- numbers in a report ----------------------------------------------------------------------------
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


def pct(value: float | None, digits: int = 0) -> str:
    """``0.123`` -> ``"12%"``; NaN or None -> ``"-"``."""
    if value is None or not np.isfinite(value):
        return "-"
    return f"{100 * value:.{digits}f}%"


def markdown_table(frame: pd.DataFrame, digits: int = 3) -> str:
    """A GitHub Markdown table of ``frame`` (index dropped), numbers through :func:`fmt`."""
    cols = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in frame.itertuples(index=False):
        cells = [fmt(v, digits).replace("|", "\\|") for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def fmt_ci(row: Any, metric: str = "success", digits: int = 2) -> str:
    """``"mean [low, high]"`` of ``metric`` from a row of :func:`trajbench.metrics.aggregate`."""
    return (
        f"{row[f'{metric}_mean']:.{digits}f} "
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


def pick(table: pd.DataFrame, **where) -> pd.Series | None:
    """The first row of ``table`` whose columns equal ``where`` (None: no such row)."""
    sel = table
    for col, val in where.items():
        sel = sel[sel[col] == val]
    return None if sel.empty else sel.iloc[0]


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


def mission_pool(store) -> dict[str, list[str]]:
    """Family -> its sorted missions in ``store`` (the source of ``wrong`` missions)."""
    eps = store.episodes
    return {env: sorted(eps.loc[eps.env_id == env, "mission"].unique()) for env in store.env_ids}


# -- demonstrations ------------------------------------------------------------------------------
def expert_demos(env, level: int, k: int, seed: int) -> list[EpisodeRecord]:
    """``k`` expert episodes of ``level``, played now (seeded by ``seed`` and the level)."""
    demos = []
    for index in range(k):
        env_seed, rng = episode_seeds(seed + DEMO_SEED, level, index)
        r = play(env, Demonstrator("expert", env, rng), level, env_seed)
        obs = r.obs.astype(np.uint8)
        demos.append(EpisodeRecord(obs, r.actions, r.rewards.astype(np.float32), level, index))
    return demos

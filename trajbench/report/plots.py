"""The report's figures: success by condition with CIs, and k-shot curves, per family."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

from trajbench.records import COMMON, DECOY, EVAL_INSTRUCTION, EVAL_SPLIT, MATCHED

from ..io import atomic_write_bytes
from .markdown import _sort_key


def write_plots(directory: Path, table: pd.DataFrame) -> list[str]:
    """Write the figures into ``directory``; returns their paths relative to the report."""
    import matplotlib  # only when plotting: it costs half a second at import

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []

    def save(fig, name: str) -> None:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
        plt.close(fig)
        atomic_write_bytes(directory / name, buf.getvalue())
        written.append(f"plots/{name}")

    headline = table[(table[EVAL_INSTRUCTION] != DECOY) & (table["support"] == "same")]
    for (group, family, split), ft in headline.groupby(["group", "family", EVAL_SPLIT], sort=False):
        stem = f"{group}-{family.split('/')[-1]}-{split}"
        kmax = int(ft["k"].max())
        at = ft[ft["k"] == kmax].copy()
        at["name"] = at["label"] + np.where(at["format"] == MATCHED, " (matched)", "")
        at = at.sort_values("name", key=lambda s: s.map(_sort_key))
        fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(at)), 3.4))
        y = at["success_mean"].to_numpy()
        err = np.vstack([y - at["success_ci_low"].to_numpy(), at["success_ci_high"].to_numpy() - y])
        ax.bar(at["name"], y, yerr=err, capsize=4, color="#4C72B0")
        ax.set_ylim(0, 1.05)
        ax.set_ylabel(f"mean success (K={kmax})")
        ax.set_title(f"{family.split('/')[-1]}, {split.replace('_', ' ')}: by condition (95% CI)")
        ax.tick_params(axis="x", rotation=30)
        save(fig, f"{stem}-success.png")
        curves = ft[ft["format"] == COMMON]
        if curves["k"].nunique() > 1:
            fig, ax = plt.subplots(figsize=(6, 3.6))
            for label, rows in sorted(curves.groupby("label"), key=lambda x: _sort_key(x[0])):
                rows = rows.sort_values("k")
                ax.plot(rows["k"], rows["success_mean"], marker="o", label=label)
                ax.fill_between(
                    rows["k"], rows["success_ci_low"], rows["success_ci_high"], alpha=0.15
                )
            ax.set_xlabel("K demonstrations in context")
            ax.set_ylabel("mean success")
            ax.set_ylim(-0.02, 1.05)
            ax.set_title(f"{family.split('/')[-1]}: k-shot curves")
            ax.legend(fontsize=7)
            save(fig, f"{stem}-kshot.png")
    return written

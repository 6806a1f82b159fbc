"""The prose and the command of ``trajbench analyze certificates``
(:mod:`trajbench.analysis.certificates` computes): the Markdown tables and the stored JSON table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from trajbench.cliargs import parse_config
from trajbench.errors import TrajbenchError
from trajbench.io import atomic_write_json, atomic_write_text
from trajbench.records import COPY_BASELINES, DECODER, HASHMAP, QUERY_ONLY, REPLAY

from .certificates import CertificatesConfig, compute
from .order import READERS


def render(table: dict) -> str:
    """The certificates as a markdown table."""
    ks = table["config"]["ks"]
    kmax = max(ks)
    head = ["family", "levels", "random", f"{QUERY_ONLY}", *[f"{DECODER} K={k}" for k in ks]]
    head += [f"{HASHMAP} K={kmax}", f"{REPLAY} K={kmax}"]
    lines = ["| " + " | ".join([*head, "gap", "class"]) + " |", "|" + "---|" * (len(head) + 2)]
    for env_id, c in table["families"].items():
        cells = [env_id.removeprefix("trajbench/"), str(c["levels"]), f"{c['random']:.2f}"]
        cells += [f"{c['query_only']:.2f}", *[f"{c[DECODER][str(k)]:.2f}" for k in ks]]
        cells += [f"{c[name]:.2f}" if name in c else "—" for name in COPY_BASELINES]
        lines.append("| " + " | ".join([*cells, f"{c['gap']:+.2f}", c["class"]]) + " |")
    lines += _render_order(table.get("order", {}), ks)
    return "\n".join(lines) + f"\n\nCommand: `{table['command']}`\n"


def _render_order(order: dict, ks: list[int]) -> list[str]:
    if not order:
        return []
    ks = [k for k in ks if k >= 1]
    head = [f"{kind} K={k}" for kind in READERS[:2] for k in ks]
    lines = [
        "",
        "Order: the chain decoder on whole demonstrations and on shuffled steps, against "
        "the order-free oracle (knows the cells, draws their order).",
        "",
    ]
    lines += ["| family | levels | " + " | ".join([*head, "oracle"]) + " |"]
    lines += ["|" + "---|" * (len(head) + 3)]
    for env_id, c in order.items():
        cells = [f"{c[kind][str(k)]:.2f}" for kind in READERS[:2] for k in ks]
        oracle = np.mean(list(c["oracle"].values()))
        lines.append(
            f"| {env_id.removeprefix('trajbench/')} | {c['levels']} | "
            + " | ".join([*cells, f"{oracle:.2f}"])
            + " |"
        )
    return lines


def merged(path: str, table: dict) -> dict:
    """``table`` over the table already at ``path``: its families and order families are replaced,
    the others kept (each entry names the command that measured it), so certifying new families
    does not remeasure the rest."""
    if not Path(path).exists():
        return table
    try:
        old = json.loads(Path(path).read_text())
    except ValueError as err:
        raise TrajbenchError(f"{path} is not a certificates table: {err}") from None
    return {
        **table,
        "families": {**old.get("families", {}), **table["families"]},
        "order": {**old.get("order", {}), **table["order"]},
    }


def main(argv: list[str]) -> int:
    """``trajbench analyze certificates``."""
    cfg = parse_config(CertificatesConfig, argv, "trajbench analyze certificates")
    if cfg is None:
        return 0
    table = compute(cfg)
    markdown = render(table)
    if cfg.out:
        out = Path(cfg.out)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "certificates.json", table)
        atomic_write_text(out / "certificates.md", markdown)
    if cfg.table:
        atomic_write_json(cfg.table, merged(cfg.table, table))
    print(markdown)
    return 0

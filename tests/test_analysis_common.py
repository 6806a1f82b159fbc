"""The analyses' shared helpers: distributions, report wording and the output files."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from trajbench.analysis.common import (
    compare,
    fmt,
    fmt_ci,
    kl_divergence,
    markdown_table,
    pct,
    pyplot,
    top_share,
    write_outputs,
)
from trajbench.errors import TrajbenchError


def test_kl_is_zero_for_identical_and_matches_a_known_pair():
    logits = torch.tensor([[0.3, -1.0, 2.0], [0.0, 0.0, 0.0]])
    assert torch.allclose(kl_divergence(logits, logits), torch.zeros(2, dtype=torch.float64))
    p, q = np.array([0.5, 0.5]), np.array([0.9, 0.1])
    expected = float(np.sum(p * np.log(p / q)))
    got = kl_divergence(torch.log(torch.tensor(p)), torch.log(torch.tensor(q)))
    assert float(got) == pytest.approx(expected, rel=1e-9)
    # Not symmetric: KL(q || p) differs.
    other = kl_divergence(torch.log(torch.tensor(q)), torch.log(torch.tensor(p)))
    assert float(other) == pytest.approx(float(np.sum(q * np.log(q / p))), rel=1e-9)
    assert float(other) != pytest.approx(expected)


def test_top_share_of_known_vectors():
    assert top_share([1.0] * 20) == pytest.approx(0.1)
    assert top_share([7.0] + [0.0] * 9) == 1.0
    assert top_share(np.arange(1, 11)) == pytest.approx(10 / 55)
    # 30 values: the top 10% is 3 values, not 4 (0.1 * 30 is 3.0000000000000004 in floats).
    assert top_share([3.0, 2.0, 1.0] + [0.0] * 27 + []) == 1.0
    assert top_share([1.0] * 3 + [1.0] * 27) == pytest.approx(3 / 30)
    assert top_share(np.arange(1, 21), fraction=0.25) == pytest.approx(sum(range(16, 21)) / 210)
    assert math.isnan(top_share([0.0, 0.0]))
    with pytest.raises(TrajbenchError):
        top_share([1.0, -1.0])
    with pytest.raises(TrajbenchError):
        top_share([1.0], fraction=0.0)


def test_report_wording_of_numbers_and_intervals():
    assert fmt(0.12345) == "0.123" and fmt(2e-5) == "2.0e-05" and fmt(float("nan")) == "-"
    assert fmt(3) == "3" and fmt(True) == "yes" and pct(0.256) == "26%" and pct(None) == "-"
    a = {"success_mean": 0.9, "success_ci_low": 0.8, "success_ci_high": 1.0}
    b = {"success_mean": 0.2, "success_ci_low": 0.1, "success_ci_high": 0.3}
    assert fmt_ci(a) == "0.90 [0.80, 1.00]"
    assert compare(a, b, "A", "B") == "A is higher than B (95% CIs separated)"
    assert compare(b, a, "B", "A") == "B is lower than A (95% CIs separated)"
    assert "not distinguishable" in compare(a, a, "A", "A")
    table = markdown_table(pd.DataFrame({"name": ["a|b"], "value": [0.5]}))
    assert table.splitlines() == ["| name | value |", "|---|---|", "| a\\|b | 0.500 |"]


def test_write_outputs_writes_every_table_the_report_and_the_figure(tmp_path):
    fig = pyplot().figure()
    tables = {"": pd.DataFrame({"x": [1, 2]}), "extra": pd.DataFrame({"y": [3]})}
    paths = write_outputs(tmp_path / "out", "demo", tables, "# demo\n", fig)
    names = sorted(p.name for p in paths)
    assert names == ["demo.csv", "demo.md", "demo.png", "demo_extra.csv"]
    assert pd.read_csv(tmp_path / "out" / "demo_extra.csv")["y"].tolist() == [3]
    assert (tmp_path / "out" / "demo.png").read_bytes()[:4] == b"\x89PNG"
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    with pytest.raises(TrajbenchError, match="not a directory"):
        write_outputs(not_a_dir, "demo", tables, "", pyplot().figure())

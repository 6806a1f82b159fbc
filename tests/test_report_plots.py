"""The report's figures (``trajbench.report.plots``) show the table's numbers: every bar, error
bar, curve and band checked against a table built here by hand, with the figures' labels,
limits and file names."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgba
from matplotlib.container import ErrorbarContainer
from PIL import Image

from trajbench.report.plots import write_plots

DR, DSEQ = "trajbench/DarkRoom-v0", "trajbench/DarkSequence-v0"
KEY_DOOR = "trajbench/DarkKeyToDoor-v0"
#: (label, format, K) -> (mean, low, high) of the headline rows (same level, true mission).
DARK_ROOM = {
    ("shuffled/full", "common", 0): (0.10, 0.05, 0.20),
    ("shuffled/full", "common", 4): (0.55, 0.40, 0.70),
    ("shuffled/full", "matched", 4): (0.45, 0.30, 0.62),
    ("bursty/full", "common", 0): (0.12, 0.02, 0.22),
    ("bursty/full", "common", 1): (0.50, 0.35, 0.66),
    ("bursty/full", "common", 4): (0.90, 0.80, 0.97),
    ("hashmap", "common", 1): (0.30, 0.21, 0.41),
    ("hashmap", "common", 4): (0.62, 0.50, 0.73),
    ("zeta-agent", "common", 4): (0.05, 0.00, 0.11),
}
#: The order the figures show them in: the modes, then the references, then the rest.
BARS = ["bursty/full", "shuffled/full", "shuffled/full (matched)", "hashmap", "zeta-agent"]


def row(family, label, fmt, k, mean, low, high, support="same", instruction="full", group="g"):
    return {
        "group": group,
        "family": family,
        "eval_split": "test_levels",
        "eval_instruction": instruction,
        "support": support,
        "label": label,
        "format": fmt,
        "k": k,
        "success_mean": mean,
        "success_ci_low": low,
        "success_ci_high": high,
    }


def table() -> pd.DataFrame:
    rows = [row(DR, label, fmt, k, *v) for (label, fmt, k), v in DARK_ROOM.items()]
    # Not on any figure: other levels' demonstrations, a decoy mission.
    rows.append(row(DR, "bursty/full", "common", 4, 0.99, 0.98, 1.0, support="other"))
    rows.append(row(DR, "bursty/full", "common", 4, 0.97, 0.96, 1.0, instruction="decoy"))
    # One K only: a bar chart and no k-shot curves.
    rows.append(row(DSEQ, "bursty/full", "common", 2, 0.40, 0.30, 0.50))
    rows.append(row(DSEQ, "hashmap", "common", 2, 0.20, 0.10, 0.30))
    # Two K: curves too.
    rows.append(row(KEY_DOOR, "bursty/full", "common", 1, 0.30, 0.20, 0.40))
    rows.append(row(KEY_DOOR, "bursty/full", "common", 4, 0.70, 0.60, 0.80))
    return pd.DataFrame(rows).sample(frac=1.0, random_state=3)  # the figures sort, not the table


@pytest.fixture
def drawn(tmp_path, monkeypatch):
    """The written paths, the plots directory and every figure as it was when closed."""
    figures = []
    close = plt.close

    def keep(fig=None):
        figures.append(fig)
        close(fig)

    monkeypatch.setattr(plt, "close", keep)
    written = write_plots(tmp_path / "plots", table())
    return written, tmp_path / "plots", {fig.axes[0].get_title(): fig for fig in figures}


def test_the_figures_written_are_one_bar_chart_per_family_and_curves_where_k_varies(drawn):
    written, directory, figures = drawn
    names = ["g-DarkRoom-v0-test_levels-success.png", "g-DarkRoom-v0-test_levels-kshot.png"]
    names.append("g-DarkSequence-v0-test_levels-success.png")
    names += [
        "g-DarkKeyToDoor-v0-test_levels-success.png",
        "g-DarkKeyToDoor-v0-test_levels-kshot.png",
    ]
    assert sorted(written) == sorted(f"plots/{n}" for n in names)
    assert sorted(p.name for p in directory.iterdir()) == sorted(names)
    assert len(figures) == 5
    for name in names:
        data = (directory / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert b"Software" not in data  # no matplotlib version stamped in: reproducible files
        with Image.open(directory / name) as image:
            assert image.info["dpi"] == pytest.approx((110, 110), abs=0.01)


def test_the_bars_are_the_means_at_the_largest_k_with_their_intervals(drawn):
    _, _, figures = drawn
    bars = figures["DarkRoom-v0, test levels: by condition (95% CI)"]
    (ax,) = bars.axes
    want = {
        f"{label} (matched)" if fmt == "matched" else label: v
        for (label, fmt, k), v in DARK_ROOM.items()
        if k == 4
    }
    assert [t.get_text() for t in ax.get_xticklabels()] == BARS
    assert all(t.get_rotation() == 30 for t in ax.get_xticklabels())
    heights = [bar.get_height() for bar in ax.patches]
    assert heights == pytest.approx([want[name][0] for name in BARS], abs=1e-12)
    assert all(bar.get_facecolor() == to_rgba("#4C72B0") for bar in ax.patches)
    (errorbar,) = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    _, caps, (stems,) = errorbar.lines
    spans = [sorted(seg[:, 1]) for seg in stems.get_segments()]
    np.testing.assert_allclose(spans, [want[name][1:] for name in BARS], atol=1e-12)
    assert caps[0].get_markersize() == 2 * 4  # capsize 4 points
    assert ax.get_ylim() == pytest.approx((0, 1.05))
    assert ax.get_ylabel() == "mean success (K=4)"
    assert ax.get_title() == "DarkRoom-v0, test levels: by condition (95% CI)"
    assert tuple(bars.get_size_inches()) == pytest.approx((max(6, 0.7 * 5), 3.4))
    # The family with one K: its own bars, at its K.
    (ax,) = figures["DarkSequence-v0, test levels: by condition (95% CI)"].axes
    assert [t.get_text() for t in ax.get_xticklabels()] == ["bursty/full", "hashmap"]
    assert [bar.get_height() for bar in ax.patches] == pytest.approx([0.40, 0.20])
    assert ax.get_ylabel() == "mean success (K=2)"
    assert ax.get_title() == "DarkSequence-v0, test levels: by condition (95% CI)"


def test_the_k_shot_curves_are_each_conditions_means_over_k_with_their_bands(drawn):
    _, _, figures = drawn
    curves = figures["DarkRoom-v0: k-shot curves"]
    (ax,) = curves.axes
    labels = ["bursty/full", "shuffled/full", "hashmap", "zeta-agent"]
    assert [line.get_label() for line in ax.lines] == labels
    assert [t.get_text() for t in ax.get_legend().get_texts()] == labels
    assert ax.get_legend().get_texts()[0].get_fontsize() == 7
    for line, band, label in zip(ax.lines, ax.collections, labels, strict=True):
        points = sorted(
            (k, v) for (lab, fmt, k), v in DARK_ROOM.items() if lab == label and fmt == "common"
        )
        assert list(line.get_xdata()) == [k for k, _ in points]
        assert list(line.get_ydata()) == pytest.approx([v[0] for _, v in points], abs=1e-12)
        assert line.get_marker() == "o"
        # The band's outline runs along the lows and back along the highs.
        outline = band.get_paths()[0].vertices
        for k, (_, low, high) in points:
            at = outline[np.isclose(outline[:, 0], k)][:, 1]
            assert min(at) == pytest.approx(low, abs=1e-12)
            assert max(at) == pytest.approx(high, abs=1e-12)
        assert band.get_alpha() == pytest.approx(0.15)
    assert ax.get_xlabel() == "K demonstrations in context"
    assert ax.get_ylabel() == "mean success"
    assert ax.get_ylim() == pytest.approx((-0.02, 1.05))
    assert ax.get_title() == "DarkRoom-v0: k-shot curves"
    assert tuple(curves.get_size_inches()) == pytest.approx((6, 3.6))
    (ax,) = figures["DarkKeyToDoor-v0: k-shot curves"].axes  # two K are enough for curves
    assert list(ax.lines[0].get_xdata()) == [1, 4]

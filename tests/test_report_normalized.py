"""Normalized scores, (success - random) / (decoder - random), checked against hand arithmetic."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trajbench.report.tables import normalized


def _row(policy: str, k: int, success: float, fmt: str = "common", instruction: str = "full"):
    return {
        "group": "g",
        "family": "f",
        "eval_split": "test_levels",
        "k": k,
        "support": "same",
        "format": fmt,
        "eval_instruction": instruction,
        "policy": policy,
        "success_mean": success,
    }


def test_normalized_puts_random_at_zero_and_the_decoder_at_one_per_k():
    table = pd.DataFrame(
        [
            _row("random", 1, 0.1),
            _row("decoder", 1, 0.9),
            _row("transformer", 1, 0.5),
            _row("transformer", 1, 0.3, fmt="matched"),
            _row("random", 4, 0.1),
            _row("decoder", 4, 0.6),
            _row("transformer", 4, 0.6),
            _row("decoder", 4, 0.0, instruction="decoy"),  # decoys never set the scale
        ]
    )
    got = normalized(table)["normalized"].to_numpy()
    expected = [0.0, 1.0, 0.4 / 0.8, 0.2 / 0.8, 0.0, 1.0, 0.5 / 0.5, (0.0 - 0.1) / 0.5]
    np.testing.assert_allclose(got, expected)


def test_normalized_is_missing_without_a_decoder_above_random():
    table = pd.DataFrame(
        [
            _row("random", 1, 0.2),
            _row("transformer", 1, 0.5),
            _row("random", 2, 0.3),
            _row("decoder", 2, 0.3),
            _row("transformer", 2, 0.5),
        ]
    )
    assert normalized(table)["normalized"].isna().all()


def test_leaderboard_rows_are_normalized_by_their_tables_random_and_decoder():
    from types import SimpleNamespace

    from trajbench.leaderboard.ranking import Row, Table

    def row(policy: str, success: float) -> Row:
        sub = SimpleNamespace(model=SimpleNamespace(policy=policy), name=policy)
        return Row(sub, SimpleNamespace(success=success), None)

    table = Table("2", "test_levels", "f", 4, (1, 2))
    table.rows = [row("random", 0.2), row("decoder", 0.7), row("transformer", 0.45)]
    assert [table.normalized(r) for r in table.rows] == pytest.approx([0.0, 1.0, 0.5])
    assert table.rows[1].bar and not table.rows[2].bar
    table.rows = [row("random", 0.2), row("transformer", 0.45)]  # no decoder in this table
    assert table.normalized(table.rows[1]) is None

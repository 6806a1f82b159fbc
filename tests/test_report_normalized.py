"""The leaderboard's normalized scores, (success - random) / (decoder - random), by hand."""

from __future__ import annotations

import pytest


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

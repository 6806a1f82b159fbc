"""How evaluation batches its rows: together for trajbench's privileged policies, in isolated
streams for every policy that is shown the protocol's view.

A row is one (level, k, support, format). Batching every condition of a level together is fast,
but it lets a policy read across rows what its own row does not show: the rows of one level share
their start states (so comparisons are paired), so a row with no demonstrations can find the row
of its level that has them by its start, and rows in a fixed order (levels sorted) name their
level by their index. An outside policy is therefore evaluated one condition at a time, in an
order where no earlier or simultaneous row showed more of a level than the rows now playing (k = 0
first, then other-level support, then same-level support by increasing k, the matched format
before the common one), its rows in an order drawn from the evaluation seed and the content of the
evaluation store (which the policy is not given). See docs/agent-view.md.

Example:
    >>> batches(["a", "b"], [(0, "same", "common"), (4, "same", "common")], 8, False, 0, "0")
    [[('a', 0, 'same', 'common'), ('b', 0, 'same', 'common'), ('a', 4, 'same', 'common'), ('b', 4, 'same', 'common')]]
    >>> len(batches(["a", "b"], [(0, "same", "common"), (4, "same", "common")], 8, True, 0, "0"))
    2
"""

from __future__ import annotations

import numpy as np

from trajbench.records import COMMON, MATCHED

#: (k, support, format): one evaluation condition.
Condition = tuple[int, str, str]


def isolated_order(conditions: list[Condition]) -> list[Condition]:
    """The conditions in the order an outside policy plays them (see the module docstring)."""
    return sorted(conditions, key=lambda c: (c[0] > 0, c[1] == "same", c[0], c[2] == COMMON))


def batches(
    levels: list, conditions: list[Condition], batch_rows: int, isolate: bool, seed: int, salt: str
) -> list[list[tuple]]:
    """Row batches ``(level, k, support, format)`` of at most ``batch_rows`` rows: every condition
    together (``isolate`` False), or one condition at a time in :func:`isolated_order`, its levels
    permuted by ``seed`` and ``salt`` (the evaluation store's content hash)."""
    if not isolate:
        rows = [(lv, *c) for c in conditions for lv in levels]
        return [rows[i : i + batch_rows] for i in range(0, len(rows), batch_rows)]
    out = []
    for k, support, fmt in isolated_order(conditions):
        key = [seed, int(salt[:16], 16), k, support == "other", fmt == MATCHED]
        order = np.random.default_rng(key).permutation(len(levels))
        rows = [(levels[i], k, support, fmt) for i in order]
        out += [rows[i : i + batch_rows] for i in range(0, len(rows), batch_rows)]
    return out

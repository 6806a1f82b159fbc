"""What the report says of its intervals (``trajbench.report.intervals``) is computed at the run's
own design, read from the right records: the trained conditions, demonstrations of the level, the
common format, the true mission, the largest K. Records that must not count are planted beside
them with other seeds, levels and episode counts; the design and the records it is estimated from
are picked here by hand. Also: ``results.json`` carries a condition's ``p_bursty``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from report_support import TRAINED, Cells, report, rows_of

from trajbench.coverage import Design, estimate_records, simulate
from trajbench.report.intervals import REPLICATES, interval_note, note, run_design
from trajbench.report.tables import labelled

LEVELS = (2, 3, 5, 7)


def cells(rng, seeds: int, levels: int, fewest: int) -> Cells:
    """Cells of 6 to 9 episodes but one of ``fewest``; successes at random."""
    episodes = rng.integers(6, 10, size=(seeds, levels))
    episodes[-1, -1] = fewest
    return Cells(episodes, rng.binomial(episodes, 0.5), np.zeros((seeds, levels)))


def trained(rng, context: str, seeds: int, levels: int, fewest: int, **kw) -> list[dict]:
    return rows_of(
        cells(rng, seeds, levels, fewest),
        policy=TRAINED,
        context=context,
        instruction="full",
        seeds=tuple(range(seeds)),
        levels=LEVELS[:levels],
        **kw,
    )


def planted(rng) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The records (labelled), and those the design must be read from."""
    counted = [
        *trained(rng, "bursty", 3, 4, 5, k=4),
        *trained(rng, "shuffled", 2, 3, 6, k=4),
    ]
    ignored = [
        *trained(rng, "bursty", 4, 4, 3, k=1),  # not the largest K
        *trained(rng, "bursty", 5, 4, 2, k=4, support="other"),
        *trained(rng, "shuffled", 5, 4, 2, k=4, fmt="matched"),
        *trained(rng, "bursty", 5, 4, 1, k=4, eval_instruction="decoy"),
        *rows_of(  # a reference, not trained
            cells(rng, 5, 4, 1), policy="hashmap", k=4, seeds=tuple(range(5)), levels=LEVELS
        ),
    ]
    records = labelled(pd.DataFrame(counted + ignored))
    return records, labelled(pd.DataFrame(counted))


def test_the_design_is_read_from_the_trained_same_level_common_records_at_the_largest_k():
    records, counted = planted(np.random.default_rng(0))
    design, variances = run_design(records)
    # The most seeds and levels of a counted condition, the fewest episodes of a counted cell.
    assert design == Design(n_seeds=3, n_levels=4, n_episodes=5)
    want = estimate_records(counted.rename(columns={"label": "condition"}), 5)
    assert variances == want


def test_no_design_without_a_trained_condition_of_two_seeds_and_two_levels():
    rng = np.random.default_rng(1)
    for seeds, levels, found in [(2, 2, True), (1, 4, False), (3, 1, False)]:
        records = labelled(pd.DataFrame(trained(rng, "bursty", seeds, levels, 6, k=4)))
        assert (run_design(records) is not None) is found, (seeds, levels)
    reference = rows_of(cells(rng, 3, 3, 6), policy="hashmap", k=4, levels=LEVELS[:3])
    assert run_design(labelled(pd.DataFrame(reference))) is None
    assert interval_note(labelled(pd.DataFrame(reference))) == ""


@pytest.mark.parametrize("seed", [0, 3])
def test_the_note_is_the_simulation_at_that_design(seed):
    records, counted = planted(np.random.default_rng(2))
    design = Design(n_seeds=3, n_levels=4, n_episodes=5)
    variances = estimate_records(counted.rename(columns={"label": "condition"}), 5)
    want = note(design, variances, simulate(design, variances, REPLICATES, 300, seed=seed))
    assert interval_note(records, seed=seed) == want
    assert want.startswith(
        f"At this run's design (3 seeds, 4 levels, 5 episodes per cell; seed sd "
        f"{variances.seed_sd:.3f}"
    )
    assert f"a simulation of {REPLICATES} runs" in want


def test_results_carry_each_conditions_p_bursty(tmp_path):
    rng = np.random.default_rng(3)
    rows = pd.DataFrame(
        trained(rng, "bursty", 2, 2, 6, k=4) + trained(rng, "shuffled", 2, 2, 6, k=4)
    )
    rows.loc[rows["train_context"] == "bursty", "p_bursty"] = 0.25
    results, _ = report(tmp_path, rows, {})
    by_label = {c["train_context"]: c["p_bursty"] for c in results["conditions"]}
    assert by_label == {"bursty": 0.25, "shuffled": None}
    assert isinstance(by_label["bursty"], float)

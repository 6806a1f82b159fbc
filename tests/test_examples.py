"""``examples/tabular_icl.py``: a policy written outside the package, scored by the README's
command (the installed console script, from the repository root) and by ``trajbench.evaluate``."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_collect_cli import _console_script

import trajbench
from trajbench.pipeline.evaluate import EvalConfig, evaluate
from trajbench.policy import RowContext, Steps

ROOT = Path(__file__).resolve().parent.parent
pytest_plugins = ["pipeline_support"]  # dr_test


@pytest.fixture()
def tabular(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    from examples import tabular_icl  # the repository root is not on sys.path before

    return tabular_icl


def test_the_readme_command_scores_it_from_the_repository_root(dr_test, tmp_path):
    out = tmp_path / "tabular"
    flags = ["--policy", "examples.tabular_icl:make_policy", "--data", dr_test, "--out", str(out)]
    flags += ["--policy-kwargs", '{"fallback": "majority"}', "--ks", "0", "4", "--support", "same"]
    done = subprocess.run(
        [_console_script(), "evaluate", *flags, "--episodes", "2", "--no-progress"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    records = pd.read_parquet(out / "records.parquet")
    assert set(records["policy"]) == {"examples.tabular_icl:make_policy"}
    assert set(records["policy_version"]) == {"2.0"}
    assert len(records) == 16 * 2 * 2 and "examples.tabular_icl:make_policy" in done.stdout


def test_with_a_random_fallback_it_is_the_hashmap_baseline(tabular, dr_test, tmp_path):
    """Through the API, the example with ``fallback="random"`` plays exactly the episodes of
    trajbench's ``hashmap`` copy baseline through the CLI path."""
    policy = tabular.make_policy(trajbench.data.load(dr_test).encoding, fallback="random")
    mine = trajbench.evaluate(policy, dr_test, ks=(0, 1, 4), support="same", episodes=2)
    assert set(mine.records["policy"]) == {"examples.tabular_icl:TabularICL"}
    assert set(mine.records["policy_version"]) == {"2.0"}
    theirs, _ = evaluate(
        EvalConfig(
            policy="hashmap",
            data=(dr_test,),
            out=str(tmp_path),
            ks=(0, 1, 4),
            support="same",
            episodes=2,
            progress=False,
        )
    )
    outcome = ["level", "k", "episode", "success", "return", "length"]
    pd.testing.assert_frame_equal(mine.records[outcome], theirs[outcome])
    assert mine.aggregates.set_index("k")["success_mean"].is_monotonic_increasing


def test_lookup_and_fallbacks(tabular):
    demo = Steps(
        obs=np.array([[0, 0], [0, 0], [0, 1], [0, 1], [4, 4]], np.uint8),
        actions=np.array([1, 1, 2, 3, 0]),
        rewards=np.zeros(5, np.float32),
    )
    row = RowContext(mission="", episodes=[demo])
    obs = np.array([[0, 1], [3, 4], [8, 8]], np.uint8)  # seen, then unseen (nearest: [4, 4])
    acts = {}
    for fallback in tabular.FALLBACKS:
        policy = tabular.TabularICL(5, fallback=fallback, seed=0)
        policy.begin([row, row, row])
        acts[fallback] = policy.act(obs, None, None, np.arange(3)).tolist()
    # At [0, 1] actions 2 and 3 tie: the first taken wins. The context's majority action is 1.
    assert acts["nearest"] == [2, 0, 0]
    assert acts["majority"] == [2, 1, 1]
    assert acts["random"][0] == 2
    empty = tabular.TabularICL(5, seed=0)
    empty.begin([RowContext(mission="")] * 50)
    random = empty.act(np.zeros((50, 2), np.uint8), None, None, np.arange(50))
    assert set(random.tolist()) == set(range(5))
    with pytest.raises(ValueError, match="fallback"):
        tabular.TabularICL(5, fallback="psychic")

"""``trajbench analyze failures``: the contexts, and end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pipeline_support import collected, tiny_model

import trajbench  # noqa: F401  (registers the families)
from trajbench.analysis import failures as F
from trajbench.analysis import main as analyze
from trajbench.contexts import ContextConfig
from trajbench.errors import TrajbenchError

DR = "trajbench/DarkRoom-v0"


# -- end to end ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dr_model(tmp_path_factory) -> str:
    data = collected(tmp_path_factory, "train", DR, "train", 2)
    context = ContextConfig(mode="bursty", k=1)
    return tiny_model(
        data, tmp_path_factory.mktemp("failures") / "run", context, steps=3, warmup_steps=1
    )


@pytest.fixture(scope="module")
def quick_run(dr_model, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("failures-out") / "out"
    argv = ["failures", "--models", dr_model, "--out", str(out), "--quick", "--no-progress"]
    assert analyze(argv) == 0
    return out


def test_quick_run_has_the_expected_rows(quick_run: Path):
    table = pd.read_csv(quick_run / "failures.csv")
    got = [(r.k, r.m, r.context) for r in table.itertuples()]
    assert got == [(2, 0, "expert"), (2, 1, "raw"), (2, 1, "cut"), (2, 2, "raw"), (2, 2, "cut")]
    by = table.set_index(["m", "context"])
    # Cuts only ever remove steps: fewer tokens than raw at the same m.
    for m in (1, 2):
        assert by.loc[(m, "cut"), "context_tokens_mean"] < by.loc[(m, "raw"), "context_tokens_mean"]
    # Equal numbers of episodes: raw with m imperfect episodes equals K episodes of 20 steps + <bos>.
    assert by.loc[(2, "raw"), "context_tokens_mean"] == by.loc[(0, "expert"), "context_tokens_mean"]
    records = pd.read_csv(quick_run / "failures_records.csv")
    assert np.allclose(
        records.success_per_1k_tokens, 1000 * records.success / records.context_tokens
    )
    md = (quick_run / "failures.md").read_text()
    assert "| 2 | 1 | 1 expert + 1 raw imperfect |" in md
    assert "| 2 | 2 | 2 imperfect, cut where it went wrong |" in md
    assert "fewer context tokens than raw" in md
    assert (quick_run / "failures.png").stat().st_size > 1000


def test_contexts_hold_k_episodes_and_cuts_are_prefixes(quick_run: Path):
    from trajbench.data import load

    data = sorted((quick_run / "data").iterdir())
    expert = load(next(d for d in data if "-expert-" in d.name))
    noisy = load(next(d for d in data if "-noisy-" in d.name))
    pool = pd.read_csv(quick_run / "failures_pool.csv")
    level = int(pool.loc[pool.cut >= 0, "level"].iloc[0])
    ctx = F.build_contexts(expert, noisy, pool, DR, level, k=2, m=2, e=0)
    assert [len(ctx[c]) for c in F.CONDITIONS] == [2, 2, 2]
    assert all(ep.level == level for c in F.CONDITIONS for ep in ctx[c])
    cuts = set(pool.loc[(pool.level == level) & (pool.cut >= 0), "cut"])
    n_imperfect = 0
    for raw, cut in zip(ctx["raw"], ctx["cut"], strict=True):
        assert np.array_equal(raw.actions[: len(cut)], cut.actions)
        if len(cut) < len(raw):
            n_imperfect += 1
            assert len(cut) in cuts
    assert n_imperfect == 2
    again = F.build_contexts(expert, noisy, pool, DR, level, k=2, m=2, e=0)
    assert [len(ep) for ep in again["cut"]] == [len(ep) for ep in ctx["cut"]]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--imperfect-shares", "0"], "imperfect_shares"),
        (["--eval.ks", "0"], "ks must be"),
        (["--epsilon", "2"], "epsilon"),
        (["--levels", "9999"], "out of range"),
    ],
)
def test_bad_input_is_one_clear_error(dr_model, tmp_path: Path, extra, message):
    argv = ["failures", "--models", dr_model, "--out", str(tmp_path / "o"), "--no-progress"]
    with pytest.raises(TrajbenchError, match=message):
        analyze([*argv, *extra])


def test_missing_or_incompatible_models_are_refused(dr_model, tmp_path: Path):
    with pytest.raises(TrajbenchError, match="no such directory"):
        analyze(["failures", "--models", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    argv = ["failures", "--models", dr_model, "--out", str(tmp_path / "o"), "--quick"]
    with pytest.raises(TrajbenchError, match="encoding"):
        analyze([*argv, "--env", "trajbench/GoToLocal-v0", "--no-progress"])

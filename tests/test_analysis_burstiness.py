"""``trajbench analyze burstiness``: end to end on --quick, resumability, the generated reading."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from trajbench.analysis import burstiness as B
from trajbench.analysis import burstiness_report as BR
from trajbench.analysis import main as analyze
from trajbench.analysis import sweep as S
from trajbench.errors import TrajbenchError


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("burst") / "out"
    assert analyze(["burstiness", "--out", str(out), "--quick", "--no-progress"]) == 0
    return out


def expected_rows(cfg: B.BurstinessConfig) -> set[tuple]:
    kmax = max(cfg.eval.ks)
    rows = set()
    sweeps = [("p_bursty", (p, 0.0)) for p in cfg.p_bursty]
    sweeps += [("zipf", (cfg.zipf_p_bursty, z)) for z in cfg.zipf]
    for sweep, (p, z) in sweeps:
        for k in cfg.eval.ks:
            rows.add((sweep, p, z, S.HELD_OUT, k, "same"))
            if k:
                rows.add((sweep, p, z, S.HELD_OUT, k, "other"))
        rows.add((sweep, p, z, S.TRAIN, kmax, "other"))
    return rows


def test_quick_run_writes_the_table_with_the_expected_rows(quick_run: Path):
    cfg = B.quick_config(B.BurstinessConfig(out=str(quick_run)))
    table = pd.read_csv(quick_run / "burstiness.csv")
    got = {(r.sweep, r.p_bursty, r.zipf, r.levels, r.k, r.support) for r in table.itertuples()}
    assert got == expected_rows(cfg)
    assert (table.n_seeds == len(cfg.seeds)).all()
    held = table[table.levels == S.HELD_OUT]
    assert (held.n_levels == cfg.eval.max_levels).all()
    assert (table[table.levels == S.TRAIN].n_levels == cfg.train_eval_levels).all()
    assert (
        (table.success_ci_low <= table.success_mean) & (table.success_mean <= table.success_ci_high)
    ).all()
    md = (quick_run / "burstiness.md").read_text()
    assert "## Against p_bursty" in md and "## Against K" in md and "## Against the Zipf" in md
    assert (quick_run / "burstiness.png").stat().st_size > 1000
    # The zipf=0 model at zipf_p_bursty is shared by both sweeps: trained once.
    assert len(list((quick_run / "models").glob("*/seed*/model"))) == len(B.conditions(cfg))


def test_rerun_reuses_models_and_evaluations(quick_run: Path):
    weights = sorted((quick_run / "models").glob("*/seed*/model/*.safetensors"))
    assert weights
    before = {p: p.stat().st_mtime_ns for p in weights}
    records = pd.read_csv(quick_run / "burstiness_records.csv")
    assert analyze(["burstiness", "--out", str(quick_run), "--quick", "--no-progress"]) == 0
    assert {p: p.stat().st_mtime_ns for p in weights} == before
    again = pd.read_csv(quick_run / "burstiness_records.csv")
    pd.testing.assert_frame_equal(records, again)


def test_a_model_trained_with_other_settings_is_refused(quick_run: Path, tmp_path: Path):
    cfg = B.quick_config(B.BurstinessConfig(out=str(tmp_path)))
    tcfg = B.train_config(cfg, tmp_path, tmp_path / "data", 1.0, 0.0, 0)
    run = Path(tcfg.out)
    run.mkdir(parents=True)
    from trajbench.configs import to_dict as config_dict

    there = config_dict(tcfg)
    (run / "train_config.json").write_text(json.dumps(there))
    S.check_reusable(tcfg)  # same settings: fine
    there["steps"] += 1
    (run / "train_config.json").write_text(json.dumps(there))
    with pytest.raises(TrajbenchError, match="other settings"):
        S.check_reusable(tcfg)


def _row(p, z, levels, k, support, iqm, lo, hi, sweep="p_bursty"):
    return dict(
        sweep=sweep,
        p_bursty=p,
        zipf=z,
        levels=levels,
        k=k,
        support=support,
        success_iqm=iqm,
        success_ci_low=lo,
        success_ci_high=hi,
        success_mean=iqm,
        n_seeds=3,
        n_levels=16,
        n_episodes=96,
    )


def test_the_reading_is_generated_from_the_numbers():
    rows = [
        _row(0.0, 0.0, S.HELD_OUT, 0, "same", 0.05, 0.0, 0.1),
        _row(0.0, 0.0, S.HELD_OUT, 4, "same", 0.1, 0.0, 0.2),
        _row(0.0, 0.0, S.HELD_OUT, 4, "other", 0.05, 0.0, 0.1),
        _row(0.0, 0.0, S.TRAIN, 4, "other", 0.6, 0.5, 0.7),
        _row(1.0, 0.0, S.HELD_OUT, 0, "same", 0.05, 0.0, 0.1),
        _row(1.0, 0.0, S.HELD_OUT, 4, "same", 0.95, 0.9, 1.0),
        _row(1.0, 0.0, S.HELD_OUT, 4, "other", 0.0, 0.0, 0.05),
        _row(1.0, 0.0, S.TRAIN, 4, "other", 0.1, 0.0, 0.2),
    ]
    table = pd.DataFrame(rows)
    cfg = B.BurstinessConfig(out="x")
    md = BR.render(B.BurstinessResult(table, pd.DataFrame(), B.about_of(cfg, 1.0)), cfg)
    assert "p_bursty=1 is higher than p_bursty=0 (95% CIs separated)" in md
    assert (
        "in-context gain (same-level minus other-level mean) ranges from 0.05 (p_bursty=0) to 0.95 (p_bursty=1)"
        in md
    )
    assert "In-weights success" in md and "p_bursty=1 is lower than p_bursty=0" in md
    assert "p_bursty=1: 0.05 -> 0.95, first separated from K=0 at K=4" in md
    assert "p_bursty=0: 0.05 -> 0.10, never separated from K=0" in md


@pytest.mark.parametrize(
    "args, message",
    [
        (["--p-bursty", "1.5"], "p_bursty must be in"),
        (["--zipf", "-1"], "zipf exponents"),
        (["--seeds", "0", "0"], "distinct"),
        (["--eval.ks"], "ks must be"),
        (["--env", "trajbench/NoSuchRoom-v0"], "unknown environment"),
    ],
)
def test_bad_input_is_one_clear_error(tmp_path: Path, args, message):
    with pytest.raises(TrajbenchError, match=message):
        analyze(["burstiness", "--out", str(tmp_path / "o"), "--no-progress", *args])
    assert not (tmp_path / "o" / "models").exists()


def test_training_counts_replay_the_batch_stream(quick_run: Path):
    cfg = B.quick_config(B.BurstinessConfig(out=str(quick_run)))
    data = next((quick_run / "data").glob("DarkRoom-v0-train-*"))
    flat = S.training_counts(B.train_config(cfg, quick_run, data, 1.0, 0.0, 0))
    steep = S.training_counts(B.train_config(cfg, quick_run, data, 1.0, 2.0, 0))
    assert flat.sum() == steep.sum() == cfg.train.steps * cfg.train.batch_size
    assert steep.max() > flat.max()  # Zipf 2 concentrates the queries on a few levels
    top = S.most_trained(steep, 3)
    assert list(steep[top]) == sorted(steep, reverse=True)[:3]
    assert S.most_trained(steep, 0) == sorted(steep.index, key=lambda lv: (-steep[lv], lv))


def test_held_out_evaluations_are_reused_only_when_they_cover_the_conditions(
    quick_run: Path, tmp_path: Path
):
    from trajbench.data import load

    cfg = B.quick_config(B.BurstinessConfig(out=str(quick_run)))
    run = tmp_path / "run"
    shutil.copytree(next((quick_run / "models").glob("*/seed0")), run)
    test_data = next((quick_run / "data").glob("DarkRoom-v0-test-*"))
    levels = sorted(int(lv) for lv in load(test_data).episodes.level.unique())
    records = run / "eval" / "seed0" / "records.parquet"
    before = records.stat().st_mtime_ns
    again = S.held_out_records(cfg.eval, run, test_data, levels, range(1))
    assert records.stat().st_mtime_ns == before  # the stage's output covers it: reused
    assert set(zip(again.k, again.support, strict=True)) == {(0, "same"), (1, "same"), (1, "other")}
    fewer = S.held_out_records(replace(cfg.eval, ks=(0,)), run, test_data, levels, range(1))
    assert records.stat().st_mtime_ns != before  # other conditions: evaluated again
    assert set(fewer.k) == {0} and len(fewer) == len(levels)

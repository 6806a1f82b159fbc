"""``trajbench run --dry-run``: job counts, tokens, FLOPs, evaluation episodes, time estimates."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from trajbench.baselines.transformer import ModelConfig, training_flops_per_token
from trajbench.cli import main as cli
from trajbench.errors import TrajbenchError
from trajbench.pipeline import sizing
from trajbench.pipeline.presets import PRESETS
from trajbench.pipeline.runner import Job, evaluations, jobs_of
from trajbench.pipeline.sizing import (
    GpuBasis,
    GroupSize,
    PresetSize,
    gpu_basis,
    peak_flops,
    preset_group,
    render,
    size_group,
)

MEASURED = {
    "card": "NVIDIA H100 80GB HBM3",
    "peak_flops": 989e12,
    "mfu": 0.05,
    "min_step_s": 0.004,
    "commit": "0123456789abcdef",
    "date": "2026-11-27T00:00:00+00:00",
}
ASSUMED = GpuBasis("H100", 989e12, 0.3, 0.01, "assumed")


@pytest.fixture(scope="module")
def ci_size() -> GroupSize:
    """The ci preset's one group, sized with 2 seeds."""
    return size_group(PRESETS["ci"].groups[0], 2, ASSUMED, n_levels=8, sequences=32)


def test_preset_group_picks_the_largest_model_or_the_named_group():
    assert preset_group("standard").name == "minigrid-navigation"  # d256 x 6, the first of two
    assert preset_group("standard:babyai").name == "babyai"
    assert preset_group("gpu:dark-sequence").train.model.d_model == 128
    with pytest.raises(TrajbenchError, match="unknown preset 'nope'"):
        preset_group("nope")
    with pytest.raises(TrajbenchError, match="has no group 'x'; its groups"):
        preset_group("gpu:x")


def test_peak_flops_by_card_name():
    assert peak_flops("NVIDIA H100 PCIe") == 756e12  # not the SXM figure
    assert peak_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert peak_flops("NVIDIA A100-SXM4-80GB") == 312e12
    assert peak_flops("Some Other Card") is None


def test_a_step_costs_its_flops_at_the_mfu_but_never_less_than_the_shortest_step():
    basis = GpuBasis("H100", 1e15, 0.5, 0.01, "assumed")
    assert basis.step_s(1e12) == 0.01  # 2 ms of FLOPs: bound by the shortest step
    assert basis.step_s(1e14) == pytest.approx(0.2)


def test_the_gpu_basis_is_assumed_until_measured(tmp_path, monkeypatch):
    missing = gpu_basis(tmp_path / "none.json")
    assert not missing.measured and missing.mfu == sizing.ASSUMED_MFU
    assert missing.min_step_s == sizing.ASSUMED_MIN_STEP_S
    path = tmp_path / "gpu_check.json"
    path.write_text(json.dumps(MEASURED))
    measured = gpu_basis(path)
    assert measured.measured and measured.mfu == 0.05 and measured.min_step_s == 0.004
    assert (
        "measured on NVIDIA H100 80GB HBM3" in measured.source and "0123456789ab" in measured.source
    )
    monkeypatch.setenv("TRAJBENCH_GPU_CHECK", str(path))
    assert gpu_basis() == measured  # the environment names the file
    path.write_text(json.dumps({**MEASURED, "mfu": 3.0}))
    with pytest.raises(TrajbenchError, match="out of range"):
        gpu_basis(path)
    path.write_text('{"card": "x"}')
    with pytest.raises(TrajbenchError, match=r"not a gpu_check\.sh measurement"):
        gpu_basis(path)


def test_group_counts_follow_the_preset(ci_size):
    group, seeds = PRESETS["ci"].groups[0], 2
    assert ci_size.train_jobs == len(group.conditions) * seeds == 4
    jobs = [j for j in jobs_of(PRESETS["ci"], (0, 1)) if j.group is group]
    # Per seed: the two trained conditions and four references (random, hashmap, replay, decoder).
    assert ci_size.eval_jobs == len(jobs) == (2 + 4) * seeds
    n_conditions = len(group.conditions)
    assert ci_size.training_tokens == pytest.approx(
        group.train.steps
        * group.train.batch_size
        * ci_size.tokens_per_sequence
        * n_conditions
        * seeds
    )
    # Dark Room, k = 4 (bursty) and no context (none): between one episode and five.
    assert 21 < ci_size.tokens_per_sequence < 5 * 21 + 5
    flops_per_token = ci_size.training_flops / ci_size.training_tokens
    model, n_actions = group.train.model, 5
    assert training_flops_per_token(model, n_actions, 0) < flops_per_token
    assert flops_per_token < training_flops_per_token(model, n_actions, 120)
    assert ci_size.cpu_tokens_per_s > 0
    assert ci_size.cpu_s == pytest.approx(ci_size.training_tokens / ci_size.cpu_tokens_per_s)


def test_evaluation_episodes_count_every_evaluation(ci_size):
    """ci: 6 held-out levels x 2 episodes x (k=0; k=2 same; k=2 other), the common format only
    (bursty and none keep whole episodes; the baselines see the common format), for 2 trained
    conditions and 4 baselines (random, hashmap, replay, decoder), 2 seeds. A ci run's
    records.parquet holds 216 rows per seed."""
    assert ci_size.eval_episodes == 6 * 2 * 3 * (2 + 4) * 2 == 432


def test_evaluations_add_decoys_and_held_out_families_where_the_group_asks():
    babyai = next(g for g in PRESETS["standard"].groups if g.name == "babyai")
    by_instruction = {c.instruction: c for c in babyai.conditions if c.train_context == "bursty"}
    full = evaluations(Job(babyai, 0, condition=by_instruction["full"]))
    empty = evaluations(Job(babyai, 0, condition=by_instruction["empty"]))
    baseline = evaluations(Job(babyai, 0, baseline="hashmap"))
    splits = {(split, instruction) for split, _, instruction, _ in full}
    assert splits == {(s, i) for s in ("test_levels", "test_families") for i in ("train", "decoy")}
    assert [(s, i) for s, _, i, _ in baseline] == [(s, i) for s, _, i, _ in full]
    assert {i for _, _, i, _ in empty} == {"train"}
    assert all(f == ("common",) for _, _, i, f in full if i == "decoy")
    dark_room = PRESETS["ci"].groups[0]
    assert [s for s, *_ in evaluations(Job(dark_room, 0, baseline="random"))] == ["test_levels"]


def synthetic(name: str, gpu_s: float, flops_bound: bool) -> GroupSize:
    return GroupSize(
        name=name,
        model=ModelConfig(d_model=128, n_layers=4),
        train_jobs=15,
        eval_jobs=27,
        steps=1500,
        batch_size=128,
        tokens_per_sequence=88.0,
        training_tokens=2.5e8,
        training_flops=1.6e15,
        eval_episodes=14400,
        cpu_tokens_per_s=5000.0,
        cpu_s=5e4,
        gpu_s=gpu_s,
        gpu_flops_bound=flops_bound,
    )


def test_the_report_names_its_assumptions_until_they_are_measured():
    groups = [synthetic("a", 240.0, False), synthetic("b", 3600.0, True)]
    assumed = render(PresetSize(PRESETS["gpu"], (0, 1, 2), 1, groups, ASSUMED, 12, 123456, 4))
    rows = [line for line in assumed.splitlines() if line.startswith("|")]
    assert len(rows) == 2 + 2 + 1  # header, rule, two groups, total
    assert "| a | d128 x 4 layers | 15 | 27 | 1500 x 128 | 88 |" in assumed
    assert "4 min (step-bound)" in assumed and "1 h 00 min (FLOPs-bound)" in assumed
    assert "| **total** | | 30 | 54 |" in assumed and "1 h 04 min |" in assumed
    assert "ASSUMED, not measured" in assumed and "gpu_check.sh" in assumed
    assert "collection (123,456 episodes in 4 stores)" in assumed
    measured = replace(ASSUMED, mfu=0.05, source="measured on X by gpu_check.sh")
    text = render(PresetSize(PRESETS["gpu"], (0,), 1, groups, measured, 12, 123456, 4))
    assert "ASSUMED" not in text and "measured on X by gpu_check.sh." in text


def test_dry_run_prints_the_table_and_runs_nothing(tmp_path, capsys, monkeypatch):
    measured = tmp_path / "gpu_check.json"
    measured.write_text(json.dumps(MEASURED))
    monkeypatch.setenv("TRAJBENCH_GPU_CHECK", str(measured))
    monkeypatch.chdir(tmp_path)
    assert cli(["run", "--preset", "ci", "--dry-run", "--seeds", "0"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("preset ci:") and "seeds [0]" in out
    assert "| dark-room | d32 x 2 layers | 2 | 6 | 40 x 32 |" in out
    assert "NVIDIA H100 80GB HBM3 (MFU 5%, step >= 4.0 ms)" in out
    assert "collection (426 episodes in 2 stores)" in out  # (65 train + 6 test levels) x 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu_check.json"]  # nothing written


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--preset", "ci"], "--out needs a run directory"),
        (["run", "--preset", "ci", "--dry-run", "--workers", "-1"], "must be non-negative"),
    ],
)
def test_bad_input_is_one_line(argv, message, capsys):
    assert cli(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err

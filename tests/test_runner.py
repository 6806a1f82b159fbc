"""The benchmark runner end to end on the ``ci`` preset: results, report, resume, leaderboard."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch

from trajbench.baselines.backbones import BACKBONES
from trajbench.baselines.transformer import TrajectoryTransformer
from trajbench.cli import main as cli
from trajbench.errors import TrajbenchError
from trajbench.metrics import aggregate
from trajbench.pipeline.launch import Pool, Sequential, SlurmConfig, Submitit
from trajbench.pipeline.presets import PRESETS
from trajbench.pipeline.runner import RunConfig, jobs_of, launcher_of, run
from trajbench.vocab import MissionVocab

CONDITION_FIELDS = {
    "train_context",
    "instruction",
    "p_bursty",
    "family",
    "eval_split",
    "k",
    "support",
    "format",
    "eval_instruction",
    "success_mean",
    "success_ci_low",
    "success_ci_high",
    "return_iqm",
    "n_seeds",
    "n_levels",
}
TOP_FIELDS = {
    "trajbench_version",
    "git_commit",
    "preset",
    "suite",
    "suite_version",
    "hardware",
    "wall_time_s",
    "conditions",
    "comparisons",
    "saturated",
}


def test_results_json_has_the_documented_schema(ci_run: Path):
    results = json.loads((ci_run / "results.json").read_text())
    assert set(results) >= TOP_FIELDS
    assert results["preset"] == "ci"
    assert results["conditions"], "no conditions"
    for cond in results["conditions"]:
        assert set(cond) >= CONDITION_FIELDS
        assert cond["success_ci_low"] <= cond["success_mean"] <= cond["success_ci_high"]
        assert cond["n_seeds"] == len(PRESETS["ci"].seeds)
    policies = {c["policy"] for c in results["conditions"]}
    assert {"transformer", "no-context", "random", "hashmap", "replay"} <= policies
    questions = {c["question"] for c in results["comparisons"]}
    assert {"context", "copying"} <= questions
    for c in results["comparisons"]:
        assert c["ci_low"] <= c["diff"] <= c["ci_high"] and c["mde"] >= 0


def test_results_match_a_recomputation_from_the_records(ci_run: Path):
    records = pd.read_parquet(ci_run / "records.parquet")
    results = json.loads((ci_run / "results.json").read_text())
    one = next(
        c
        for c in results["conditions"]
        if c["policy"] == "hashmap" and c["k"] == 2 and c["support"] == "same"
    )
    sel = records[(records.policy == "hashmap") & (records.k == 2) & (records.support == "same")]
    again = aggregate(sel, "success").iloc[0]
    assert again["success_mean"] == pytest.approx(one["success_mean"])
    assert again["success_ci_low"] == pytest.approx(one["success_ci_low"])
    assert again["success_mean"] == pytest.approx(sel["success"].mean())  # >= 1 episode per cell
    # training and evaluation seeds are apart
    assert (records["eval_seed"] != records["seed"]).all()
    # one row per evaluated episode of every job
    n_jobs = len(jobs_of(PRESETS["ci"], PRESETS["ci"].seeds))
    assert records.groupby(["group", "policy", "train_context", "seed"]).ngroups == n_jobs


def test_report_and_plots_are_written(ci_run: Path):
    report = (ci_run / "report.md").read_text()
    assert "mean success" in report and "95%" in report
    assert "Readings" in report and "would detect a difference of" in report
    plots = sorted((ci_run / "plots").glob("*.png"))
    assert plots and all(p.stat().st_size > 1000 for p in plots)
    for p in plots:
        assert f"plots/{p.name}" in report


def test_report_shows_an_expert_and_a_trained_episode_per_family(ci_run: Path):
    section = (ci_run / "report.md").read_text().split("\n## Episodes\n", 1)[1]
    groups = PRESETS["ci"].groups
    families = {s.env for g in groups for s in (*g.test_data, *g.heldout_family_data)}
    gifs = sorted((ci_run / "episodes").glob("*.gif"))
    assert len(gifs) == 2 * len(families) and len(section.splitlines()) > len(families)
    for gif in gifs:
        assert f"(episodes/{gif.name})" in section and gif.read_bytes().startswith(b"GIF89a")


def test_rerun_resumes_without_redoing_finished_stages(ci_run: Path):
    model = next((ci_run / "jobs").rglob("model/policy.safetensors"))
    before = model.stat().st_mtime_ns
    records_before = pd.read_parquet(ci_run / "records.parquet")
    start = time.perf_counter()
    run(RunConfig(preset="ci", out=str(ci_run), workers=1, progress=False))
    assert model.stat().st_mtime_ns == before  # not retrained
    assert time.perf_counter() - start < 30
    pd.testing.assert_frame_equal(pd.read_parquet(ci_run / "records.parquet"), records_before)


def test_an_interrupted_job_resumes(ci_run: Path, tmp_path: Path):
    import shutil

    out = tmp_path / "again"
    shutil.copytree(ci_run, out)
    job_dir = next(p.parent for p in (out / "jobs").rglob("model") if p.is_dir())
    shutil.rmtree(job_dir / "model")  # as if killed after its last checkpoint
    (job_dir / "records.parquet").unlink()
    run(RunConfig(preset="ci", out=str(out), workers=1, progress=False))
    assert (job_dir / "model" / "policy.safetensors").exists()
    pd.testing.assert_frame_equal(
        pd.read_parquet(out / "records.parquet"), pd.read_parquet(ci_run / "records.parquet")
    )


def sorted_records(out: Path, seeds: tuple[int, ...] | None = None) -> pd.DataFrame:
    records = pd.read_parquet(out / "records.parquet")
    if seeds is not None:
        records = records[records.seed.isin(seeds)]
    return records.sort_values(list(records.columns)).reset_index(drop=True)


@pytest.mark.slow
def test_a_process_pool_gives_the_records_of_a_run_in_order(ci_run: Path, tmp_path: Path):
    run(RunConfig(preset="ci", out=str(tmp_path), workers=2, progress=False))
    pd.testing.assert_frame_equal(sorted_records(tmp_path), sorted_records(ci_run))


@pytest.mark.slow
def test_submitit_local_gives_the_same_records_and_resumes_after_failures(
    ci_run: Path, tmp_path: Path
):
    """The cluster path on this machine: collection as shard tasks, then a task per job; a job
    that fails leaves the others' records, and the same command again runs only what is left.
    (One seed: every task is a fresh interpreter, and a job's records do not depend on the others.)
    """
    cfg = RunConfig(
        preset="ci",
        out=str(tmp_path),
        seeds=(0,),
        workers=2,
        launcher="local",
        slurm=SlurmConfig(collect_shards=2),
        progress=False,
    )
    broken = next(j for j in jobs_of(PRESETS["ci"], (0,)) if not j.baseline).directory(tmp_path)
    broken.mkdir(parents=True)
    (broken / "model").write_text("not a model directory")
    n_jobs = len(jobs_of(PRESETS["ci"], (0,)))
    with pytest.raises(TrajbenchError, match=rf"^1 of {n_jobs} .* failed, the first with: .*model"):
        run(cfg)
    for store in (tmp_path / "data").iterdir():
        assert sorted(p.name for p in store.iterdir()) == ["shard-0-of-2", "shard-1-of-2"]
    done = sorted((tmp_path / "jobs").glob("*/*/seed*/records.parquet"))
    assert len(done) == n_jobs - 1 and not (broken / "records.parquet").exists()
    stamps = [p.stat().st_mtime_ns for p in done]

    (broken / "model").unlink()
    run(cfg)
    assert [p.stat().st_mtime_ns for p in done] == stamps  # finished jobs were not run again
    pd.testing.assert_frame_equal(sorted_records(tmp_path), sorted_records(ci_run, (0,)))


def test_submission_from_the_run_validates(ci_run: Path, tmp_path: Path, capsys):
    root = tmp_path / "lb"
    (root / "submissions").mkdir(parents=True)
    assert (
        cli(
            [
                "leaderboard",
                "submit",
                str(ci_run),
                "--name",
                "ci-test",
                "--out",
                str(root / "submissions"),
            ]
        )
        == 0
    )
    assert cli(["leaderboard", "validate", "--root", str(root)]) == 0
    assert cli(["leaderboard", "build", "--root", str(root)]) == 0
    assert "ci-test" in (root / "README.md").read_text()


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--preset", "nope", "--out", "x"],
        ["run", "--preset", "ci", "--out", "x", "--workers", "-1"],
        ["run", "--preset", "ci", "--out", "x", "--device", "cuda:7"],
    ],
)
def test_bad_input_is_one_clear_error(argv, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli(argv) != 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip()
    assert not (tmp_path / "x" / "results.json").exists()


@pytest.mark.parametrize(
    ("flags", "device", "kind", "slots", "job_device"),
    [
        ({}, "cuda:1", Sequential, None, "cuda:1"),  # one GPU, one job: in this process
        ({"jobs_per_gpu": 2}, "cuda:1", Pool, ["3", "3"], "cuda"),
        ({"gpus": "all"}, "cuda", Pool, ["2", "3", "5", "7"], "cuda"),
        ({"gpus": "2", "jobs_per_gpu": 2}, "cuda", Pool, ["2", "3", "2", "3"], "cuda"),
        ({"gpus": "all", "launcher": "local"}, "cuda", Submitit, ["2", "3", "5", "7"], "cuda"),
        ({"workers": 3}, "cpu", Pool, [None] * 3, "cpu"),
        ({"workers": 1}, "cpu", Sequential, None, "cpu"),
    ],
)
def test_each_job_slot_gets_its_device(
    flags, device, kind, slots, job_device, tmp_path, monkeypatch
):
    """As on a machine with four GPUs, CUDA_VISIBLE_DEVICES=2,3,5,7, whatever runs the tests."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3,5,7")
    cfg = RunConfig(preset="ci", out=str(tmp_path), progress=False, **flags)
    launcher, got_device, _ = launcher_of(cfg, PRESETS["ci"], torch.device(device))
    assert type(launcher) is kind and got_device == job_device
    assert slots is None or launcher.slots == slots


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--gpus", "all"], "--gpus all needs CUDA, but this machine has no CUDA GPU"),
        (["--gpus", "2", "--launcher", "local"], "this machine has no CUDA GPU"),
        (["--jobs-per-gpu", "2"], "--jobs-per-gpu needs a CUDA device"),
        (["--launcher", "slurm"], "no Slurm on this machine"),
        (["--launcher", "slurm", "--gpus", "all"], "on Slurm each task gets"),
        (["--launcher", "cloud"], "--launcher"),
    ],
)
def test_scaling_flags_that_cannot_apply_here_are_one_clear_error(
    flags, message, tmp_path, capsys, monkeypatch
):
    """As on a CPU-only machine without Slurm, whatever machine runs the tests."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    code = cli(["run", "--preset", "ci", "--out", str(tmp_path / "x"), *flags])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_is_well_formed(name):
    """Every preset names registered families, known modes, and levels that exist in its splits."""
    import gymnasium as gym

    from trajbench.contexts import MODES
    from trajbench.envs import env_ids
    from trajbench.vocab import INSTRUCTIONS

    preset = PRESETS[name]
    assert jobs_of(preset, preset.seeds)
    for group in preset.groups:
        assert {c.train_context for c in group.conditions} <= set(MODES)
        assert {c.backbone for c in group.conditions} <= {"", *BACKBONES}
        assert {c.instruction for c in group.conditions} <= set(INSTRUCTIONS)
        assert group.eval.episodes >= (2 if name == "ci" else 4)
        train_envs = {s.env for s in group.train_data}
        encodings = set()
        for spec in (*group.train_data, *group.test_data, *group.heldout_family_data):
            assert spec.env in env_ids(), spec.env
            env = gym.make(spec.env).unwrapped
            encodings.add(env.encoding.feature_sizes)
            assert len(env.resolve_levels(spec.levels)) >= max(spec.max_levels, 1)
        assert len(encodings) == 1, f"{group.name}: families must share one observation encoding"
        assert not {s.env for s in group.heldout_family_data} & train_envs


def test_a_held_out_family_needing_an_untrained_action_is_refused(tmp_path, capsys, monkeypatch):
    """PickupLoc's expert picks up (and sometimes drops what blocks it); a group that trains only
    GoToLocal never shows those actions, one that also trains PutNextLocal does."""
    from dataclasses import replace

    from trajbench.pipeline.presets import (
        DataSpec,
        Group,
        Preset,
        cross,
        eval_template,
        train_template,
    )
    from trajbench.pipeline.runner import check_heldout_solvable, collect_data

    goto = DataSpec("trajbench/GoToLocal-v1", "train", 1, max_levels=6)
    pickup = DataSpec("trajbench/PickupLoc-v1", "test", 1, seed=1, max_levels=6)
    bad = Group(
        "bad", (goto,), (replace(goto, levels="test"),), (pickup,), conditions=cross(("bursty",))
    )
    putnext = replace(goto, env="trajbench/PutNextLocal-v1", episodes_per_level=2)
    for spec in (goto, pickup, putnext):
        collect_data(spec, tmp_path, workers=1, progress=False)
    with pytest.raises(TrajbenchError, match=r"PickupLoc-v1 uses action\(s\) \[3 pickup"):
        check_heldout_solvable(bad, tmp_path)
    check_heldout_solvable(replace(bad, train_data=(goto, putnext)), tmp_path)

    quick = replace(bad, train=train_template(steps=2), eval=eval_template())
    preset = Preset("bad", "a held-out family that cannot be solved", (quick,), seeds=(0,))
    monkeypatch.setitem(PRESETS, "ci", preset)
    code = cli(["run", "--preset", "ci", "--out", str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "uses action(s) [3 pickup" in err and not (tmp_path / "jobs").exists()


def test_the_architectures_preset_compares_backbones_of_about_equal_size():
    import gymnasium as gym

    preset = PRESETS["architectures"]
    for group in preset.groups:
        assert {c.train_context for c in group.conditions} == {"bursty"}
        assert {c.backbone for c in group.conditions} == {"llama", "mamba2", "lstm"}
        names = {job.name for job in jobs_of(preset, preset.seeds) if job.group is group}
        assert {"bursty-full-llama", "bursty-full-mamba2", "bursty-full-lstm"} <= names
        encoding = gym.make(group.train_data[0].env).unwrapped.encoding
        sizes = [
            TrajectoryTransformer(
                replace(group.train.model, backbone=c.backbone), encoding, MissionVocab.build([])
            ).num_parameters()
            for c in group.conditions
        ]
        assert max(sizes) <= 1.1 * min(sizes), sizes


def test_a_run_with_several_backbones_reports_them_apart(tmp_path, monkeypatch):
    """Two backbones of one condition: distinct jobs, a backbone column, a condition each in
    results.json and the report, and the in-context and architecture readings."""
    from trajbench.pipeline.presets import architecture_questions, cross

    ci = PRESETS["ci"]
    group = replace(
        ci.groups[0],
        conditions=cross(("bursty",), backbones=("llama", "lstm")),
        baselines=("hashmap",),
        train=replace(ci.groups[0].train, steps=10),
        questions=architecture_questions(("llama", "lstm"), ("hashmap",), in_context_ks=(2,)),
    )
    monkeypatch.setitem(PRESETS, "ci", replace(ci, groups=(group,), seeds=(0,)))
    results = json.loads(
        run(RunConfig(preset="ci", out=str(tmp_path), workers=1, progress=False)).read_text()
    )
    assert (tmp_path / "jobs" / "dark-room" / "bursty-full-lstm" / "seed0" / "model").is_dir()
    records = pd.read_parquet(tmp_path / "records.parquet")
    assert set(records["backbone"]) == {"llama", "lstm", "-"}
    rows = [c for c in results["conditions"] if c["k"] == 2 and c["support"] == "same"]
    assert sorted(c["backbone"] for c in rows) == ["-", "llama", "lstm"]
    questions = {(c["question"], c["a"], c["b"]) for c in results["comparisons"]}
    assert ("architecture", "bursty [llama]", "bursty [lstm]") in questions
    assert ("in context", "bursty [lstm], same level", "bursty [lstm], other levels") in questions
    for label in ("bursty [llama]", "bursty [lstm]"):  # every backbone against the copy bar
        assert ("copying", label, "hashmap") in questions
    report = (tmp_path / "report.md").read_text()
    assert "| bursty [lstm] | common | same |" in report and "*architecture*" in report

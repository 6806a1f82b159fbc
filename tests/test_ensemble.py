"""Batched ensembles (``trajbench.pipeline.ensemble``): a member is the model trained alone; it
resumes after a crash or a SIGKILL to where an uninterrupted ensemble ends; what cannot batch is
refused or left to train alone."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from trajbench.baselines.transformer import ModelConfig, TrajectoryTransformer
from trajbench.collect import CollectConfig, collect
from trajbench.contexts import ContextConfig
from trajbench.errors import TrajbenchError
from trajbench.pipeline import ensemble as ensemble_module
from trajbench.pipeline import runner as runner_module
from trajbench.pipeline import train as train_module
from trajbench.pipeline.checkpoints import CHECKPOINT
from trajbench.pipeline.ensemble import (
    ensemble_on,
    ensembles,
    stack_tokens,
    train_ensemble,
    why_not_ensemble,
)
from trajbench.pipeline.jobs import RunConfig
from trajbench.pipeline.runner import run
from trajbench.pipeline.train import train
from trajbench.pipeline.train_config import TrainConfig
from trajbench.pipeline.training_record import read_training_record

#: Members differ in seed and context mode; a small clip so that clipping is at work.
MEMBERS = (("bursty", 0), ("shuffled", 1), ("bursty", 2))


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("data") / "dr"
    levels = ",".join(str(i) for i in range(12))
    cfg = CollectConfig(
        env="trajbench/DarkRoom-v0", levels=levels, episodes_per_level=6, out=out, progress=False
    )
    return str(collect(cfg))


def configs(store: str, root: Path, backbone: str = "llama", **kw) -> list[TrainConfig]:
    base = TrainConfig(
        data=(store,),
        model=ModelConfig(backbone=backbone, d_model=16, n_layers=1, n_heads=2),
        steps=12,
        batch_size=6,
        warmup_steps=3,
        weight_decay=0.1,
        grad_clip=0.5,
        checkpoint_every=4,
        log_every=4,
        threads=1,
        progress=False,
    )
    base = replace(base, **kw)
    return [
        replace(base, out=str(root / f"{mode}-{seed}"), seed=seed, context=ContextConfig(mode, k=2))
        for mode, seed in MEMBERS
    ]


def weights(model_dir: Path) -> dict[str, torch.Tensor]:
    return TrajectoryTransformer.from_pretrained(model_dir).state_dict()


def rows(run: str | Path) -> list[dict[str, float]]:
    with open(Path(run) / "metrics.csv") as f:
        return [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]


@pytest.mark.parametrize("backbone", ["llama", "gpt2", "mamba2"])
def test_a_member_is_the_model_trained_alone(store, tmp_path, backbone):
    together = configs(store, tmp_path / "ensemble", backbone)
    alone = configs(store, tmp_path / "alone", backbone)
    dirs = train_ensemble(together)
    for cfg_e, cfg_a, model_dir in zip(together, alone, dirs, strict=True):
        a, b = weights(model_dir), weights(train(cfg_a))
        assert a.keys() == b.keys()
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)
        for x, y in zip(rows(cfg_e.out), rows(cfg_a.out), strict=True):
            for k in ("step", "loss", "lr", "grad_norm"):
                assert x[k] == pytest.approx(y[k], rel=1e-4), k
        record = read_training_record(model_dir)
        assert (
            record.config == cfg_e
            and record.parameters == read_training_record(Path(cfg_a.out) / "model").parameters
        )
    # The members really differ (their own seeds and batch streams).
    first, second = weights(dirs[0]), weights(dirs[1])
    assert not torch.equal(first["head.weight"], second["head.weight"])


def test_resume_after_a_crash_ends_where_an_uninterrupted_ensemble_ends(
    store, tmp_path, monkeypatch
):
    whole = train_ensemble(configs(store, tmp_path / "whole"))
    real_lr = ensemble_module.learning_rate

    def crash_at_9(step, cfg):
        if step == 9:
            raise RuntimeError("simulated crash")
        return real_lr(step, cfg)

    monkeypatch.setattr(ensemble_module, "learning_rate", crash_at_9)
    crashed = configs(store, tmp_path / "crashed")
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_ensemble(crashed)
    monkeypatch.setattr(ensemble_module, "learning_rate", real_lr)
    for cfg in crashed:
        assert torch.load(Path(cfg.out) / CHECKPOINT, weights_only=False)["step"] == 8
        assert not (Path(cfg.out) / "model").exists()
    with pytest.raises(TrajbenchError, match="--resume"):
        train_ensemble(crashed)

    # A member's checkpoint is an ordinary one: the first resumes alone, the others together.
    resumed = [replace(c, resume=True) for c in crashed]
    train(resumed[0])
    train_ensemble(resumed)
    for a_dir, cfg in zip(whole, resumed, strict=True):
        a, b = weights(a_dir), weights(Path(cfg.out) / "model")
        tol = {} if cfg is not resumed[0] else {"rtol": 1e-4, "atol": 1e-5}
        for k in a:
            if tol:
                torch.testing.assert_close(a[k], b[k], **tol)
            else:
                assert torch.equal(a[k], b[k]), k
    keep = ("step", "loss", "lr", "grad_norm")
    assert [{k: r[k] for k in keep} for r in rows(resumed[1].out)] == [
        {k: r[k] for k in keep} for r in rows(whole[1].parent)
    ]


def test_members_at_different_steps_resume_as_separate_ensembles(store, tmp_path, monkeypatch):
    cfgs = [replace(c, resume=True) for c in configs(store, tmp_path / "run")]
    real_lr = train_module.learning_rate

    def crash_at_5(step, cfg):
        if step == 5:
            raise RuntimeError("simulated crash")
        return real_lr(step, cfg)

    monkeypatch.setattr(train_module, "learning_rate", crash_at_5)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(cfgs[0])  # the first member was trained alone, killed after its step-4 checkpoint
    monkeypatch.setattr(train_module, "learning_rate", real_lr)
    reference = train_ensemble(configs(store, tmp_path / "reference"))
    assert torch.load(Path(cfgs[0].out) / CHECKPOINT, weights_only=False)["step"] == 4
    for model_dir, ref in zip(train_ensemble(cfgs), reference, strict=True):
        a, b = weights(model_dir), weights(ref)
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)


def test_what_cannot_batch(store, tmp_path):
    assert "lstm" in why_not_ensemble(configs(store, tmp_path, "lstm")[0])
    dropout = replace(configs(store, tmp_path)[0].model, dropout=0.1)
    assert "dropout" in why_not_ensemble(replace(configs(store, tmp_path)[0], model=dropout))
    assert why_not_ensemble(configs(store, tmp_path, "mamba2")[0]) == ""
    with pytest.raises(TrajbenchError, match="lstm backbone"):
        train_ensemble(configs(store, tmp_path, "lstm"))
    mixed = configs(store, tmp_path)
    mixed[1] = replace(mixed[1], lr=0.5)
    with pytest.raises(TrajbenchError, match="differ in more than context, seed and out"):
        train_ensemble(mixed)
    with pytest.raises(TrajbenchError, match="share one run directory"):
        train_ensemble([mixed[0], mixed[0]])
    assert not list(tmp_path.iterdir())  # refused before writing anything


def test_ensembles_groups_what_can_batch(store, tmp_path):
    llama = configs(store, tmp_path / "a")
    lstm = configs(store, tmp_path / "b", "lstm")
    bigger = [replace(c, model=replace(c.model, d_model=32)) for c in configs(store, tmp_path)]
    single = [replace(llama[0], out=str(tmp_path / "single"), steps=99)]
    groups = ensembles([llama[0], bigger[0], *lstm, llama[1], bigger[1], llama[2], *single])
    assert groups == [[llama[0], llama[1], llama[2]], [bigger[0], bigger[1]]]


def test_auto_is_on_cuda_only():
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert [ensemble_on(m, cpu) for m in ("auto", "on", "off")] == [False, True, False]
    assert [ensemble_on(m, cuda) for m in ("auto", "on", "off")] == [True, True, False]
    with pytest.raises(TrajbenchError, match="auto, on or off"):
        ensemble_on("yes", cpu)


def test_stacked_tokens_are_right_padded_without_targets():
    a = {"kind": torch.tensor([[1, 2]]), "target": torch.tensor([[-100, 3]])}
    b = {"kind": torch.tensor([[1, 2, 2, 2]]), "target": torch.tensor([[-100, 1, 2, 0]])}
    stacked = stack_tokens([a, b])
    assert stacked["kind"].tolist() == [[[1, 2, 0, 0]], [[1, 2, 2, 2]]]
    assert stacked["target"].tolist() == [[[-100, 3, -100, -100]], [[-100, 1, 2, 0]]]


# -- SIGKILL ---------------------------------------------------------------------------------------
_SCRIPT = """
import json, sys
from trajbench.configs import from_dict
from trajbench.pipeline.ensemble import train_ensemble
from trajbench.pipeline.train_config import TrainConfig
train_ensemble([from_dict(TrainConfig, c, "cfg") for c in json.loads(sys.argv[1])])
"""


def _argv(cfgs: list[TrainConfig]) -> list[str]:
    from trajbench.configs import to_dict

    return [sys.executable, "-c", _SCRIPT, json.dumps([to_dict(c) for c in cfgs])]


def _start(cfgs: list[TrainConfig]) -> subprocess.Popen:
    """Start training ``cfgs`` as an ensemble in a process group of its own; return once it has
    started to train (its first member's train_config.json is written) or ended."""
    time.sleep(0.05)  # apart from the writes of a process killed just before
    t0 = time.time()
    proc = subprocess.Popen(_argv(cfgs), start_new_session=True, stderr=subprocess.PIPE)
    marker = Path(cfgs[0].out) / "train_config.json"
    while proc.poll() is None and not (marker.exists() and marker.stat().st_mtime >= t0):
        time.sleep(0.02)
    return proc


def _steps(cfgs: list[TrainConfig]) -> list[int]:
    """Where each member would resume from: its model's last step, its checkpoint's, or 0."""
    steps = []
    for cfg in cfgs:
        ckpt = Path(cfg.out) / CHECKPOINT
        done = (Path(cfg.out) / "model").exists()
        steps.append(
            cfg.steps
            if done
            else torch.load(ckpt, weights_only=False)["step"]
            if ckpt.exists()
            else 0
        )
    return steps


@pytest.mark.slow
def test_killed_ensemble_resumes_to_the_same_weights(store, tmp_path):
    """Bit for bit when every kill left the members at one step; a kill between two members'
    checkpoint writes resumes them as separate ensembles, whose batched kernels differ in shape
    and so round differently: equal within float tolerance then, as for a member trained alone."""
    reference = configs(store, tmp_path / "reference", steps=24)
    proc = _start(reference)
    start = time.perf_counter()
    assert proc.wait(timeout=300) == 0
    work_s = time.perf_counter() - start  # training, after the imports
    cfgs = configs(store, tmp_path / "killed", steps=24, resume=True)
    steps_at_kill = []
    for delay in np.random.default_rng(3).uniform(0.2, 0.9, size=3) * work_s:
        proc = _start(cfgs)
        try:
            proc.communicate(timeout=delay)
            break
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            steps_at_kill.append(_steps(cfgs))
    assert any(max(s) for s in steps_at_kill), steps_at_kill  # killed after a checkpoint
    subprocess.run(_argv(cfgs), check=True, capture_output=True)
    in_step = all(len(set(s)) == 1 for s in steps_at_kill)
    for a, b in zip(reference, cfgs, strict=True):
        names = [p.relative_to(a.out) for p in Path(a.out).rglob("*.safetensors")]
        assert names
        for name in names:
            if in_step:
                assert (Path(a.out) / name).read_bytes() == (Path(b.out) / name).read_bytes(), name
        wa, wb = weights(Path(a.out) / "model"), weights(Path(b.out) / "model")
        for k in wa:
            torch.testing.assert_close(wa[k], wb[k], rtol=1e-4, atol=1e-5, msg=k)
    leftovers = [p for p in tmp_path.rglob("*") if p.name.endswith((".tmp", ".partial"))]
    assert leftovers == []


@pytest.mark.slow
def test_run_trains_a_group_as_one_ensemble(ci_run, tmp_path, monkeypatch):
    sizes = []

    def counted(cfgs):
        sizes.append(len(cfgs))
        return train_ensemble(cfgs)

    monkeypatch.setattr(runner_module, "train_ensemble", counted)
    out = tmp_path / "ci"
    run(RunConfig(preset="ci", out=str(out), workers=1, progress=False, ensemble="on"))
    assert sizes == [4]  # the ci group's 2 conditions x 2 seeds, in one process
    models = sorted(p.relative_to(ci_run) for p in ci_run.glob("jobs/*/*/seed*/model"))
    assert len(models) == 4
    for name in models:
        a, b = weights(ci_run / name), weights(out / name)
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)
    assert (out / "results.json").is_file()

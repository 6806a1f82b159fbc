"""``trajbench train``: resume after a crash, DistributedDataParallel, bad input, metrics, --help."""

from __future__ import annotations

import ast
import csv
import dataclasses
import inspect
import os
import re
import socket
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import pytest
import torch

from trajbench import cli
from trajbench.baselines.transformer import ModelConfig, TrajectoryTransformer
from trajbench.collect import CollectConfig, collect
from trajbench.contexts import ContextConfig
from trajbench.errors import TrajbenchError
from trajbench.pipeline import train as train_module
from trajbench.pipeline.train import CHECKPOINT, TrainConfig, train
from trajbench.pipeline.training_record import read_training_record

LEVELS = ",".join(str(i) for i in range(20))


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("data") / "dr"
    cfg = CollectConfig(
        env="trajbench/DarkRoom-v0", levels=LEVELS, episodes_per_level=6, out=out, progress=False
    )
    return str(collect(cfg))


def tiny(store: str, out: Path, **kw) -> TrainConfig:
    base = dict(
        data=(store,),
        out=str(out),
        context=ContextConfig(mode="bursty", k=2),
        model=ModelConfig(d_model=16, n_layers=1, n_heads=2),
        steps=20,
        batch_size=8,
        warmup_steps=4,
        checkpoint_every=10,
        log_every=5,
        threads=1,
        progress=False,
    )
    base.update(kw)
    return TrainConfig(**base)


def weights(model_dir: Path) -> dict[str, torch.Tensor]:
    return TrajectoryTransformer.from_pretrained(model_dir).state_dict()


def metrics(run: Path) -> list[dict]:
    with open(run / "metrics.csv") as f:
        return list(csv.DictReader(f))


# -- resume ----------------------------------------------------------------------------------------
def test_resume_after_a_crash_ends_where_an_uninterrupted_run_ends(store, tmp_path, monkeypatch):
    # Dropout on, so the resumed run also needs the RNG state exactly where it was.
    model = ModelConfig(d_model=16, n_layers=1, n_heads=2, dropout=0.1)
    whole = train(tiny(store, tmp_path / "whole", model=model))

    # Crash during step 13: the checkpoint of step 10 is on disk, steps 10-12 are lost.
    real_lr = train_module.learning_rate

    def crash_at_13(step, cfg):
        if step == 13:
            raise RuntimeError("simulated crash")
        return real_lr(step, cfg)

    run = tmp_path / "crashed"
    monkeypatch.setattr(train_module, "learning_rate", crash_at_13)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(tiny(store, run, model=model))
    monkeypatch.setattr(train_module, "learning_rate", real_lr)
    assert (run / CHECKPOINT).exists() and not (run / "model").exists()
    assert torch.load(run / CHECKPOINT, weights_only=False)["step"] == 10
    assert [r["step"] for r in metrics(run)] == ["5", "10"]

    # Without --resume the interrupted run is not silently restarted.
    with pytest.raises(TrajbenchError, match="--resume"):
        train(tiny(store, run, model=model))

    resumed = train(tiny(store, run, model=model, resume=True))
    a, b = weights(whole), weights(resumed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # The metrics of the resumed run are those of the uninterrupted one, row for row.
    keep = ("step", "loss", "lr", "grad_norm")
    assert [{k: r[k] for k in keep} for r in metrics(run)] == [
        {k: r[k] for k in keep} for r in metrics(tmp_path / "whole")
    ]
    # Resuming a finished run changes nothing.
    again = train(tiny(store, run, model=model, resume=True))
    c = weights(again)
    assert all(torch.equal(a[k], c[k]) for k in a)


def test_metrics_csv_and_run_files(store, tmp_path):
    run = tmp_path / "run"
    model_dir = train(tiny(store, run))
    rows = metrics(run)
    assert [int(r["step"]) for r in rows] == [5, 10, 15, 20]
    assert set(rows[0]) == {"step", "loss", "lr", "grad_norm", "tokens_per_s"}
    for r in rows:
        assert float(r["loss"]) > 0 and float(r["lr"]) > 0 and float(r["tokens_per_s"]) > 0
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])  # it learns something
    assert (run / "train_config.json").exists() and (run / CHECKPOINT).exists()
    assert (model_dir / "trajbench_model.json").exists()
    record = read_training_record(model_dir)
    assert record.config.steps == 20 and record.trained_levels
    assert TrajectoryTransformer.from_pretrained(model_dir).vocab.itos


# -- DDP -------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_gloo_processes_train_the_same_model_as_one(store, tmp_path):
    flags = [
        "--data", store, "--context.k", "2", "--model.d-model", "16", "--model.n-layers", "1",
        "--model.n-heads", "2", "--steps", "6", "--batch-size", "8", "--warmup-steps", "2",
        "--log-every", "3", "--checkpoint-every", "0", "--threads", "1", "--no-progress",
        "--device", "cpu",
    ]  # fmt: skip
    single = train(
        tiny(store, tmp_path / "one", steps=6, warmup_steps=2, log_every=3, checkpoint_every=0)
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    proc = subprocess.run(
        [
            sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node",
            "2", "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
            "-m", "trajbench.cli", "train", *flags, "--out", str(tmp_path / "two"),
        ],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("model saved to") == 1  # rank 0 only
    a, b = weights(single), weights(tmp_path / "two" / "model")
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-6, msg=k)
    # The logged loss is the global batch's mean loss, as in one process.
    one, two = metrics(tmp_path / "one"), metrics(tmp_path / "two")
    assert [r["step"] for r in one] == [r["step"] for r in two] == ["3", "6"]
    for r1, r2 in zip(one, two, strict=True):
        assert float(r2["loss"]) == pytest.approx(float(r1["loss"]), rel=1e-5)
        assert float(r2["grad_norm"]) == pytest.approx(float(r1["grad_norm"]), rel=1e-4)


# -- bad input -------------------------------------------------------------------------------------
def _run(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _assert_one_line_error(code: int, err: str, expected: str) -> None:
    assert code != 0
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("trajbench train: error: ")
    assert expected in err, err


def _flags(store: str, out: Path) -> list[str]:
    return [
        "train", "--data", store, "--out", str(out), "--model.d-model", "16",
        "--model.n-layers", "1", "--model.n-heads", "2", "--steps", "4", "--batch-size", "4",
        "--checkpoint-every", "2", "--threads", "1", "--no-progress",
    ]  # fmt: skip


BAD_DEVICES = {
    "tpu": "unknown device 'tpu'",
    "cuda:99": "cuda:99",
    "mps": "unsupported device 'mps'",
    "cuda-ish": "unknown device 'cuda-ish'",
}


@pytest.mark.parametrize("device", list(BAD_DEVICES))
def test_a_device_that_does_not_exist(capsys, store, tmp_path, device):
    code, _, err = _run(capsys, *_flags(store, tmp_path / "run"), "--device", device)
    _assert_one_line_error(code, err, BAD_DEVICES[device])
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_on_a_machine_without_it(capsys, store, tmp_path):
    code, _, err = _run(capsys, *_flags(store, tmp_path / "run"), "--device", "cuda")
    _assert_one_line_error(code, err, "CUDA is not available")


def test_missing_data_directory(capsys, tmp_path):
    code, _, err = _run(capsys, *_flags(str(tmp_path / "nope"), tmp_path / "run"))
    _assert_one_line_error(code, err, "no such directory")
    assert not (tmp_path / "run").exists()


def test_batch_not_divisible_by_the_ranks(capsys, store, tmp_path, monkeypatch):
    # Checked before joining the process group, so it fails at once instead of hanging.
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "0")
    code, _, err = _run(capsys, *_flags(store, tmp_path / "run"))
    _assert_one_line_error(code, err, "batch_size 4 is not divisible by the 3 ranks")


def test_checkpoint_from_another_config(capsys, store, tmp_path):
    run = tmp_path / "run"
    assert _run(capsys, *_flags(store, run))[0] == 0
    cases = {
        ("--model.d-model", "32"): "another model config",
        ("--lr", "0.01"): "another training config (lr: 0.001 -> 0.01)",
        ("--context.mode", "shuffled"): "another training config (context:",
        ("--steps", "8"): "(steps: 4 -> 8)",
    }
    before = (run / CHECKPOINT).read_bytes()
    for flags, expected in cases.items():
        code, _, err = _run(capsys, *_flags(store, run), *flags, "--resume")
        _assert_one_line_error(code, err, expected)
    assert (run / CHECKPOINT).read_bytes() == before
    code, _, err = _run(capsys, *_flags(store, run))
    _assert_one_line_error(code, err, "already exists; pass --resume")

    (run / CHECKPOINT).write_bytes(b"not a checkpoint")
    code, _, err = _run(capsys, *_flags(store, run), "--resume")
    _assert_one_line_error(code, err, "cannot read checkpoint")


def test_checkpoint_from_other_data(capsys, store, tmp_path):
    other = collect(
        CollectConfig(
            env="trajbench/DarkRoom-v0",
            levels=LEVELS,
            episodes_per_level=6,
            seed=7,
            out=tmp_path / "other",
            progress=False,
        )
    )
    run = tmp_path / "run"
    assert _run(capsys, *_flags(store, run))[0] == 0
    args = _flags(str(other), run)
    code, _, err = _run(capsys, *args, "--resume")
    _assert_one_line_error(code, err, "trained on other data")


def test_bad_numbers(capsys, store, tmp_path):
    for flags, expected in {
        ("--steps", "0"): "steps must be >= 1",
        ("--lr", "0"): "lr must be > 0",
        ("--min-lr-ratio", "2"): "min_lr_ratio must be in [0, 1]",
        ("--steps", "abc"): "--steps",
        ("--context.mode", "bogus"): "--context.mode",
    }.items():
        code, _, err = _run(capsys, *_flags(store, tmp_path / "run"), *flags)
        _assert_one_line_error(code, err, expected)
    assert not (tmp_path / "run").exists()


def test_console_script_error_has_no_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "trajbench.cli", "train", "--data", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("trajbench train: error: ") and "--out" in proc.stderr


# -- --help ------------------------------------------------------------------------------------------
def _field_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings (the string right under each field), as tyro reads them."""
    docs, body = {}, ast.parse(inspect.getsource(cls)).body[0].body
    for node, after in pairwise(body):
        if isinstance(node, ast.AnnAssign) and isinstance(after, ast.Expr):
            docs[node.target.id] = after.value.value
    return docs


def _flat_fields(cls: type, prefix: str = "") -> list[tuple[str, str, type]]:
    """(flag, field name, owning class) of every leaf field, nested dataclasses included."""
    out = []
    for f in dataclasses.fields(cls):
        name = prefix + f.name.replace("_", "-")
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(default):
            out += _flat_fields(type(default), name + ".")
        else:
            out.append((f"--{name}", f.name, cls))
    return out


def test_help_documents_every_field(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    code, out, _ = _run(capsys, "train", "--help")
    assert code == 0
    text = " ".join(re.sub(r"[│╭╮╰╯─]", " ", out).split())
    leaves = _flat_fields(TrainConfig)
    assert len(leaves) > 25
    for flag, name, owner in leaves:
        docs = _field_docs(owner)
        assert name in docs, f"{owner.__name__}.{name} has no docstring"
        assert flag in text, flag
        assert " ".join(docs[name].split()[:4]) in text, flag

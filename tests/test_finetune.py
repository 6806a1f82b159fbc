"""Fine-tuning a language model on text contexts (``trajbench finetune``), end to end on a tiny,
randomly initialized Llama and a locally trained tokenizer (``llm_support``): no weights."""

from __future__ import annotations

import csv
import importlib.util
import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from llm_support import train_tokenizer
from pipeline_support import DARK_ROOM, collected
from safetensors.torch import load_file

from trajbench.cli import main
from trajbench.contexts import ContextConfig
from trajbench.data import load
from trajbench.llm import logits_arg
from trajbench.pipeline.finetune import (
    FINETUNE_FILE,
    IGNORE,
    action_loss,
    collate,
    encode_row,
    finetune,
)
from trajbench.pipeline.finetune_config import FineTuneConfig
from trajbench.pipeline.finetune_presets import FINETUNE_PRESETS, dry_run, estimate, jobs
from trajbench.text import TextContextBuilder

pytest_plugins = ["pipeline_support", "llm_support"]
needs_peft = pytest.mark.skipif(
    importlib.util.find_spec("peft") is None, reason="peft (the [llm] extra) is not installed"
)
#: LoRA on the tiny model: its random output head is too small to move through the attention
#: alone, so the head gets an adapter too.
LORA = dict(method="lora", lora_r=8, lora_alpha=16.0, lora_targets=("q_proj", "v_proj", "lm_head"))


@pytest.fixture(scope="module")
def dr_train(tmp_path_factory) -> str:
    """Expert episodes of 8 Dark Room levels."""
    return collected(tmp_path_factory, "dr-train", DARK_ROOM, "0,1,2,3,4,5,6,7", 6)


def config(model: Path, data: str, out: Path, **kw) -> FineTuneConfig:
    base = dict(
        model=str(model),
        data=(data,),
        out=str(out),
        context=ContextConfig(mode="bursty", k=1),
        steps=30,
        batch_size=4,
        lr=1e-2,
        warmup_steps=0,
        log_every=1,
        device="cpu",
        progress=False,
    )
    return FineTuneConfig(**{**base, **kw})


def held_out_loss(model_dir: Path, rows) -> float:
    """The mean action-word loss of a model directory on ``rows``, by ``transformers``' own
    causal-LM loss (labels: the action tokens, -100 elsewhere)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    lm = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    batch = collate([encode_row(r, tokenizer, 4096) for r in rows], 0)
    with torch.no_grad():
        return float(lm(**batch).loss)


def test_only_the_action_words_carry_loss(dr_train):
    """Every token inside a target's characters (found from the whole text's offsets) is
    labelled with its own id, every other token -100; the labelled runs spell the actions."""
    tokenizer = train_tokenizer()
    rows = TextContextBuilder(load(dr_train), mode="trajectories", k=2).sample(6, seed=3)
    for row in rows:
        ids, labels = encode_row(row, tokenizer, 10**6)
        whole = tokenizer(row.text, add_special_tokens=False, return_offsets_mapping=True)
        assert ids == whole["input_ids"]
        spans = row.spans()
        inside = [any(s <= a and b <= e for s, e in spans) for a, b in whole["offset_mapping"]]
        assert labels == [t if i else IGNORE for t, i in zip(ids, inside, strict=True)]
        words = [tokenizer.decode([t for t, i in zip(ids, inside, strict=True) if i])]
        spoken = "".join(f" {('stay', 'up', 'down', 'left', 'right')[a]}" for a in row.actions)
        assert words == [spoken] and len(row.actions) >= 1
        short_ids, short_labels = encode_row(row, tokenizer, 40)
        assert short_ids == ids[-40:] and short_labels == labels[-40:]


def test_the_loss_is_the_causal_lm_loss_of_the_action_tokens(tiny_lm, dr_train):
    """Logits computed only where a label follows give the loss ``transformers`` computes on
    the whole batch."""
    from transformers import AutoModelForCausalLM

    tokenizer = train_tokenizer()
    lm = AutoModelForCausalLM.from_pretrained(tiny_lm, dtype=torch.float32)
    rows = TextContextBuilder(load(dr_train), mode="bursty", k=1).sample(5, seed=0)
    batch = collate([encode_row(r, tokenizer, 4096) for r in rows], 0)
    assert logits_arg(lm) == "logits_to_keep"
    with torch.no_grad():
        want = float(lm(**batch).loss)
        for arg in ("logits_to_keep", None):
            assert float(action_loss(lm, batch, arg)) == pytest.approx(want, rel=1e-5)


def test_full_finetuning_learns_the_actions_and_saves_a_plain_model(tiny_lm, dr_train, tmp_path):
    rows = TextContextBuilder(load(dr_train), mode="bursty", k=1).sample(16, seed=10**6)
    model_dir = finetune(config(tiny_lm, dr_train, tmp_path / "full", method="full"))
    assert model_dir == tmp_path / "full" / "model"
    before, after = held_out_loss(tiny_lm, rows), held_out_loss(model_dir, rows)
    assert after < 0.5 * before
    with (tmp_path / "full" / "metrics.csv").open() as f:
        losses = [float(r["loss"]) for r in csv.DictReader(f)]
    assert len(losses) == 30 and np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
    record = json.loads((model_dir / FINETUNE_FILE).read_text())
    assert (
        record["config"]["method"] == "full" and record["data_hash"] == load(dr_train).content_hash
    )
    assert record["trained_levels"] == {DARK_ROOM: list(range(8))}
    assert record["parameters"] == record["trained_parameters"]
    assert not any(p.name.endswith(".tmp") for p in (tmp_path / "full").iterdir())


@needs_peft
def test_lora_learns_and_is_merged_into_the_saved_weights(tiny_lm, dr_train, tmp_path):
    """The saved model is a plain Llama whose weights are the base weights plus
    (alpha / r) B A of the saved adapter on the adapted layers, and the base weights elsewhere."""
    rows = TextContextBuilder(load(dr_train), mode="bursty", k=1).sample(16, seed=10**6)
    model_dir = finetune(config(tiny_lm, dr_train, tmp_path / "lora", **LORA))
    assert held_out_loss(model_dir, rows) < 0.5 * held_out_loss(tiny_lm, rows)
    base = load_file(tiny_lm / "model.safetensors")
    saved = load_file(model_dir / "model.safetensors")
    adapter = load_file(tmp_path / "lora" / "adapter" / "adapter_model.safetensors")
    assert set(saved) == set(base) and not any("lora" in k for k in saved)
    config_json = json.loads((model_dir / "config.json").read_text())
    assert "quantization_config" not in config_json and config_json["model_type"] == "llama"
    adapted = 0
    for name, weight in base.items():
        stem = name.removesuffix(".weight")
        a = adapter.get(f"base_model.model.{stem}.lora_A.weight")
        if a is None:
            torch.testing.assert_close(saved[name], weight)
            continue
        b = adapter[f"base_model.model.{stem}.lora_B.weight"]
        assert b.abs().max() > 0  # trained: B starts at zero
        torch.testing.assert_close(saved[name], weight + 2.0 * b @ a, rtol=1e-5, atol=1e-6)
        adapted += 1
    assert adapted == 2 * 2 + 1  # q and v of both layers, and the head
    record = json.loads((model_dir / FINETUNE_FILE).read_text())
    lora = [t.numel() for k, t in adapter.items() if ".lora_" in k]
    assert record["trained_parameters"] == sum(lora)


def test_the_saved_model_is_evaluated_by_the_language_model_policy(
    tiny_lm, dr_train, dr_test, tmp_path
):
    """``trajbench finetune`` from the command line, then ``trajbench evaluate`` on its output
    (held-out levels)."""
    out = tmp_path / "cli"
    args = ["finetune", "--model", str(tiny_lm), "--data", dr_train, "--out", str(out)]
    args += ["--method", "full", "--steps", "2", "--batch-size", "2", "--device", "cpu"]
    assert main([*args, "--context.mode", "isolated", "--context.k", "1", "--quiet"]) == 0
    evaluated = tmp_path / "eval"
    kwargs = json.dumps({"model": str(out / "model"), "batch_rows": 4})
    args = ["evaluate", "--policy", "trajbench.llm:make_policy", "--policy-kwargs", kwargs]
    args += ["--data", dr_test, "--out", str(evaluated), "--ks", "0", "1", "--episodes", "1"]
    args += ["--max-levels", "2", "--no-offline", "--quiet"]
    assert main(args) == 0
    import pandas as pd

    records = pd.read_parquet(evaluated / "records.parquet")
    assert set(records["k"]) == {0, 1} and records["level"].nunique() == 2
    assert records["success"].between(0, 1).all()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; this has none")
@pytest.mark.parametrize("method", ["full", pytest.param("lora", marks=needs_peft)])
def test_on_cuda_the_bf16_step_learns_and_saves_float32(method, tiny_lm, dr_train, tmp_path):
    rows = TextContextBuilder(load(dr_train), mode="bursty", k=1).sample(16, seed=10**6)
    extra = LORA if method == "lora" else {"method": "full"}
    cfg = config(tiny_lm, dr_train, tmp_path / method, **{**extra, "device": "cuda"})
    model_dir = finetune(cfg)
    assert held_out_loss(model_dir, rows) < 0.5 * held_out_loss(tiny_lm, rows)
    assert all(
        t.dtype == torch.float32 for t in load_file(model_dir / "model.safetensors").values()
    )


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--steps", "0"], "steps must be >= 1"),
        (["--data", "nowhere"], "--data nowhere: no such directory"),
        (["--model", "no-model"], "--model no-model: no such file or directory"),
        (["--method", "half"], "half"),
        (["--context.mode", "sideways"], "sideways"),
        (["--lr", "0"], "lr and lora_alpha must be > 0"),
        (["--lora-targets", "no_such_layer"], "cannot add LoRA adapters"),
    ],
)
def test_bad_input_is_one_error_line_and_nothing_written(
    flags, message, tiny_lm, dr_train, tmp_path, capsys
):
    if "--lora-targets" in flags and importlib.util.find_spec("peft") is None:
        pytest.skip("peft (the [llm] extra) is not installed")
    out = tmp_path / "bad"
    args = ["finetune", "--model", str(tiny_lm), "--data", dr_train, "--out", str(out)]
    assert main([*args, "--steps", "1", "--batch-size", "2", "--quiet", *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("trajbench finetune: error:")
    assert message in err[0]
    assert not (out / "model").exists()


def test_an_existing_model_is_not_overwritten(tiny_lm, dr_train, tmp_path, capsys):
    (tmp_path / "done" / "model").mkdir(parents=True)
    args = [
        "finetune",
        "--model",
        str(tiny_lm),
        "--data",
        dr_train,
        "--out",
        str(tmp_path / "done"),
    ]
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err


def test_the_gpu_presets_dry_run_prints_its_jobs_and_estimate(tmp_path, capsys):
    preset = FINETUNE_PRESETS["goto-gpu"]
    assert main(["finetune", "--preset", "goto-gpu", "--out", str(tmp_path), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    rows = re.findall(r"^  (\S+) .*= +(\d+) s$", printed, flags=re.M)
    assert [name for name, _ in rows] == [
        "base",
        *(f"{m}-{i}" for m in ("bursty", "isolated") for i in ("full", "empty", "wrong")),
    ]
    total = float(re.search(r"^total: (\d+) s", printed, flags=re.M).group(1))
    assert total == pytest.approx(sum(float(s) for _, s in rows), abs=len(rows))
    assert "assumed GPU speed-up" in printed and not any(tmp_path.iterdir())
    # The estimate, computed here from the basis: tokens over speed, passes over latency.
    basis, job = preset.basis, jobs(preset, tmp_path)[1]
    cfg = job.finetune
    tokens = cfg.steps * cfg.batch_size * basis.tokens_per_row["bursty"]
    want_train = tokens / (basis.cpu_tokens_per_s["lora"] * basis.gpu_speedup) + basis.load_s
    rows_evaluated = 16 * (1 + 2)  # K = 0 (same only), K = 2 (same and other)
    passes = -(-rows_evaluated // 64) * 2 * 48 * 4
    assert estimate(preset, job) == pytest.approx(
        (want_train, passes * basis.pass_s + basis.load_s)
    )
    assert dry_run(preset, tmp_path).startswith("7 jobs")


def test_a_preset_runs_its_jobs_in_sequence_and_skips_finished_ones(tiny_lm, tmp_path, capsys):
    """A Dark Room version of the GPU preset on the tiny model: base plus two fine-tunes."""
    from trajbench.pipeline.finetune_presets import run_preset
    from trajbench.pipeline.presets import DataSpec

    gpu = FINETUNE_PRESETS["goto-gpu"]
    preset = replace(
        gpu,
        train=DataSpec(DARK_ROOM, "0,1,2,3,4,5", 4),
        test=DataSpec(DARK_ROOM, "test", 4, seed=1, max_levels=2),
        finetune=replace(gpu.finetune, model=str(tiny_lm), steps=2, batch_size=2, method="full"),
        eval=replace(gpu.eval, ks=(0, 1), episodes=1, policy_kwargs='{"batch_rows": 4}'),
        modes=("bursty",),
        instructions=("full", "empty"),
    )
    table = run_preset(preset, tmp_path, device="cpu", progress=False)
    assert list(table["job"].unique()) == ["base", "bursty-full", "bursty-empty"]
    assert set(table["k"]) == {0, 1} and (table["episodes"] > 0).all()
    config = json.loads((tmp_path / "jobs" / "bursty-empty" / "model" / FINETUNE_FILE).read_text())
    assert config["config"]["context"]["instruction"] == "empty"
    stamp = (tmp_path / "jobs" / "bursty-full" / "eval" / "evaluation.json").stat().st_mtime_ns
    again = run_preset(preset, tmp_path, device="cpu", progress=False)
    assert again.equals(table)
    assert (
        tmp_path / "jobs" / "bursty-full" / "eval" / "evaluation.json"
    ).stat().st_mtime_ns == stamp


def test_an_unknown_preset_is_one_error(tmp_path, capsys):
    assert main(["finetune", "--preset", "nope", "--out", str(tmp_path), "--dry-run"]) == 2
    assert "unknown fine-tuning preset 'nope'; known: goto-gpu" in capsys.readouterr().err

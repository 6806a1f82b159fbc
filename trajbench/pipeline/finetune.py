"""``trajbench finetune``: fine-tune a causal language model on the text track's contexts.

The rows are :class:`~trajbench.text.TextContextBuilder`'s: the prompt builder's sequences (the
same segments, steps, modes and instruction rules as ``trajbench train``), written as text. The
loss is the cross-entropy of the query's action words only, the targets the token track trains
on; every other token (header, context lines, mission, observations, rewards, padding) is
labelled -100. A row is tokenized as the language-model policy (:mod:`trajbench.llm`) reads it:
the text between two actions as one piece, each action's text (`` turn left``) as its own, so
the tokens trained on are the tokens the policy scores.

``method="full"`` trains every weight; ``method="lora"`` trains low-rank adapters (``peft``) and
merges them into the weights before saving. Either way ``OUT/model`` is a plain ``transformers``
model directory (``save_pretrained``: safetensors, the tokenizer, and ``finetune.json``, the
config, the data's hash and the last loss), written atomically, which the policy loads as any
other::

    trajbench evaluate --policy trajbench.llm:make_policy --policy-kwargs '{"model": "OUT/model"}' ...

On CUDA the step runs under bf16 autocast (the weights stay float32). The batches are a pure
function of (seed, step), as in ``trajbench train``; there is no resume.

Example:
    trajbench collect --env trajbench/GoToLocal-v2 --levels train --episodes-per-level 4 --out data/goto
    trajbench finetune --data data/goto --out runs/ft --context.mode bursty --context.k 2 --steps 200
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from trajbench import __version__
from trajbench.cliargs import parse_config
from trajbench.configs import to_dict
from trajbench.data import load
from trajbench.device import autocast, resolve_device, torch_threads
from trajbench.errors import TrajbenchError
from trajbench.io import atomic_directory, remove_stale_temporaries
from trajbench.llm import default_model_path, load_language_model, logits_arg
from trajbench.text import TextContextBuilder, TextRow

from .finetune_config import ALL_LINEAR, FineTuneConfig, validate
from .train import BatchStream, MetricsLog, learning_rate, make_optimizer
from .training_record import trained_levels

#: The record a fine-tuned model directory holds.
FINETUNE_FILE = "finetune.json"
#: The label of every token the loss ignores.
IGNORE = -100


# -- rows to tokens ----------------------------------------------------------------------------
def encode_row(row: TextRow, tokenizer, max_tokens: int) -> tuple[list[int], list[int]]:
    """A row's token ids and labels: each target's own ids, -100 elsewhere.

    The text between two targets is tokenized as one piece, each target on its own (see the
    module). A row longer than ``max_tokens`` loses its first tokens.

    Example:
        >>> ids, labels = encode_row(rows[0], tokenizer, 2048)  # doctest: +SKIP
    """
    ids: list[int] = []
    labels: list[int] = []
    targets, text = set(row.targets), ""

    def add(piece: str, target: bool) -> None:
        new = list(tokenizer(piece, add_special_tokens=False)["input_ids"])
        ids.extend(new)
        labels.extend(new if target else [IGNORE] * len(new))

    for i, piece in enumerate(row.pieces):
        if i not in targets:
            text += piece
            continue
        if text:
            add(text, False)
        add(piece, True)
        text = ""
    if text:
        add(text, False)
    return ids[-max_tokens:], labels[-max_tokens:]


def collate(encoded: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` (padding labelled -100)."""
    width = max(len(ids) for ids, _ in encoded)
    out = {
        "input_ids": torch.full((len(encoded), width), pad_id, dtype=torch.long),
        "attention_mask": torch.zeros((len(encoded), width), dtype=torch.long),
        "labels": torch.full((len(encoded), width), IGNORE, dtype=torch.long),
    }
    for r, (ids, labels) in enumerate(encoded):
        out["input_ids"][r, : len(ids)] = torch.tensor(ids)
        out["attention_mask"][r, : len(ids)] = 1
        out["labels"][r, : len(labels)] = torch.tensor(labels)
    return out


# -- the loss ----------------------------------------------------------------------------------
def action_loss(forward, tokens: dict[str, torch.Tensor], keep_arg: str | None) -> torch.Tensor:
    """Mean cross-entropy of the labelled tokens, each predicted from the tokens before it.

    Only the positions that predict a label get logits (``keep_arg``: the model's
    ``logits_to_keep`` argument, None where it has none), so the vocabulary projection costs a
    few positions per row, not the whole row.
    """
    labels = tokens["labels"]
    # Position t predicts token t + 1: keep every position whose next token is labelled in a row.
    keep = torch.nonzero((labels[:, 1:] != IGNORE).any(dim=0)).flatten()
    inputs = {"input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"]}
    if keep_arg is not None:
        logits = forward(**inputs, **{keep_arg: keep}).logits
    else:
        logits = forward(**inputs).logits[:, keep]
    target = labels[:, keep + 1]
    return torch.nn.functional.cross_entropy(
        logits.float().flatten(0, 1), target.flatten(), ignore_index=IGNORE
    )


# -- the model ---------------------------------------------------------------------------------
def forget_gguf(lm) -> None:
    """Let ``save_pretrained`` write a model read from a GGUF file.

    ``transformers`` dequantizes a GGUF file's weights on load (the model computes in float32)
    but keeps its GGUF quantizer, which makes ``save_pretrained`` refuse; the weights need none.
    Other quantizers are left alone.
    """
    quantizer = getattr(lm, "hf_quantizer", None)
    method = getattr(getattr(quantizer, "quantization_config", None), "quant_method", None)
    if str(getattr(method, "value", method)) != "gguf":
        return
    lm.hf_quantizer, lm.is_quantized = None, False
    if hasattr(lm.config, "quantization_config"):
        del lm.config.quantization_config


def add_lora(lm, cfg: FineTuneConfig):
    """``lm`` with trainable LoRA adapters (peft) on ``cfg.lora_targets``; the rest frozen."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise TrajbenchError(
            "method lora needs peft: pip install 'trajbench[llm]' (or use --method full)"
        ) from None
    targets = ALL_LINEAR if cfg.lora_targets == (ALL_LINEAR,) else list(cfg.lora_targets)
    lora = LoraConfig(
        r=cfg.lora_r, lora_alpha=cfg.lora_alpha, target_modules=targets, lora_dropout=0.0
    )
    try:
        return get_peft_model(lm, lora)
    except ValueError as err:  # e.g. target modules the model does not have
        raise TrajbenchError(f"cannot add LoRA adapters: {err}") from None


def save_model(lm, tokenizer, model_dir: Path, record: dict, dtype: str) -> None:
    """``lm`` (safetensors, in ``dtype``), its tokenizer and ``record`` into ``model_dir``,
    atomically."""
    with atomic_directory(model_dir) as tmp:
        lm.to(getattr(torch, dtype)).save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / FINETUNE_FILE).write_text(json.dumps(record, indent=2) + "\n")


# -- the run -----------------------------------------------------------------------------------
def finetune(cfg: FineTuneConfig) -> Path:
    """Fine-tune ``cfg.model`` on ``cfg.data``'s text contexts; returns ``cfg.out/model``.

    Raises:
        TrajbenchError: a bad knob, a missing store or model, ``OUT/model`` already there, a
            store that serves no query, a model that does not load, or LoRA targets it lacks.
    """
    validate(cfg)
    out = Path(cfg.out)
    model_dir = out / "model"
    if model_dir.exists():
        raise TrajbenchError(f"{model_dir} already exists; choose another --out")
    device = resolve_device(cfg.device)
    with torch_threads(cfg.threads):
        return _finetune(cfg, out, model_dir, device)


def _finetune(cfg: FineTuneConfig, out: Path, model_dir: Path, device: torch.device) -> Path:
    store = load(list(cfg.data))
    builder = TextContextBuilder(store, seed=cfg.seed, config=cfg.context)
    lm, tokenizer = load_language_model(cfg.model, device)
    forget_gguf(lm)
    keep_arg = logits_arg(lm)
    torch.manual_seed(cfg.seed)
    model = add_lora(lm, cfg) if cfg.method == "lora" else lm
    model.train()
    optimizer = make_optimizer(model, cfg, device)  # type: ignore[arg-type]  (same field names)
    params = [p for p in model.parameters() if p.requires_grad]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out)
    log = MetricsLog(out / "metrics.csv", enabled=True, resume_step=0)
    bar = tqdm(total=cfg.steps, desc="finetune", unit="step", leave=False, disable=not cfg.progress)
    loss_value, t_last, tokens_since = float("nan"), time.perf_counter(), 0
    try:
        for step, rows in BatchStream(lambda: builder, cfg.batch_size, cfg.seed, 0, cfg.steps):
            lr = learning_rate(step, cfg)  # type: ignore[arg-type]
            for group in optimizer.param_groups:
                group["lr"] = lr
            batch = collate([encode_row(r, tokenizer, cfg.max_tokens) for r in rows], pad_id)
            tokens = {k: v.to(device) for k, v in batch.items()}
            with autocast(device, cfg.bf16):
                loss = action_loss(model, tokens, keep_arg)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip or float("inf"))
            optimizer.step()
            tokens_since += int(batch["attention_mask"].sum())
            done = step + 1
            if done % cfg.log_every == 0 or done == cfg.steps:
                loss_value, now = float(loss.detach()), time.perf_counter()
                tps = tokens_since / max(now - t_last, 1e-9)
                t_last, tokens_since = now, 0
                log.write(
                    step=done, loss=loss_value, lr=lr, grad_norm=float(grad_norm), tokens_per_s=tps
                )
                bar.set_postfix(loss=f"{loss_value:.3f}", tok_s=f"{tps:,.0f}")
            bar.update(1)
    finally:
        bar.close()
        log.close()
    trainable = sum(p.numel() for p in params)
    if cfg.method == "lora":
        with atomic_directory(out / "adapter", overwrite=True) as tmp:
            model.save_pretrained(tmp)
        lm = model.merge_and_unload()
    record = {
        "config": to_dict(cfg),
        "base_model": str(cfg.model or default_model_path()),
        "data_hash": store.content_hash,
        "trained_levels": trained_levels(store),
        "parameters": sum(p.numel() for p in lm.parameters()),
        "trained_parameters": trainable,
        "last_loss": loss_value,
        "trajbench_version": __version__,
    }
    save_model(lm.eval(), tokenizer, model_dir, record, cfg.save_dtype)
    return model_dir


def main(argv: list[str]) -> int:
    """``trajbench finetune`` without ``--preset``: parse flags into :class:`FineTuneConfig` and
    fine-tune (the command's entry point is :func:`trajbench.pipeline.finetune_presets.main`)."""
    cfg = parse_config(FineTuneConfig, list(argv), "trajbench finetune")
    if cfg is None:  # --help
        return 0
    print(f"model saved to {finetune(cfg)}")
    return 0

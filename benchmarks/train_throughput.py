"""Training throughput: trajbench's training loop vs a plain PyTorch loop, same model and batches.

Measures, in one run on this machine, training tokens per second (non-padding tokens of the
global batch per second of steady-state training):

- project: :func:`trajbench.pipeline.train.train` itself -- the whole loop, with the batch built by the
  prompt builder inside it, the progress/metrics bookkeeping, bf16 autocast and fused AdamW on
  CUDA -- clocked over its second metrics window (``--steps`` steps after as many warm-up steps);
- reference: a plain PyTorch loop (forward, mean cross-entropy, backward, clip, AdamW step) over
  the same model (same initial weights) and the very same batches, built before the clock starts,
  with the same learning-rate schedule and the same autocast / fused optimizer on CUDA, clocked
  over the same steps.

Both end on the same weights (checked and printed). Rounds alternate (and alternate which side
goes first); the ratio is the median of the rounds' paired ratios. On CUDA it is the ratio of
wall-clock throughputs; on the CPU, of throughputs per CPU-second of the (single-threaded)
process, because on a shared machine wall-clock time mostly measures the other processes (both
figures are printed). On a GPU it also prints the model FLOPs utilisation, computed analytically
from the model's shape: ``6 * N + 6 * L * d * T`` FLOPs per trained token (``N`` matmul
parameters, ``L`` layers, width ``d``, mean causal context ``T``) against the card's dense bf16
peak. Ends with ``RESULT train_throughput ratio=<project/reference> target=0.9``.

``--preset-model standard`` trains the model shape and batch size of a preset's largest model
(``standard:babyai``: of a named group) instead of the flags' small model, on the same Dark Room
sequences; ``--compile`` compiles both loops; ``--json FILE`` also writes every figure there
(``benchmarks/gpu_check.sh`` reads it).

Example:
    python benchmarks/train_throughput.py            # about two minutes on 2 busy cores
    python benchmarks/train_throughput.py --quick    # a few seconds, a sanity check
    python benchmarks/train_throughput.py --preset-model standard --json out/train.json  # on a GPU
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path

import torch
from machine import dark_room_store, describe_torch
from torch.nn import functional as F

from trajbench.baselines.transformer import (
    ModelConfig,
    TrajectoryTransformer,
    training_flops_per_token,
)
from trajbench.batch import IGNORE
from trajbench.configs import to_dict
from trajbench.contexts import ContextBuilder, ContextConfig
from trajbench.data import load
from trajbench.device import autocast, resolve_device
from trajbench.errors import TrajbenchError
from trajbench.io import atomic_write_json
from trajbench.pipeline.sizing import peak_flops, preset_group
from trajbench.pipeline.train import (
    MetricsLog,
    TrainConfig,
    batch_seed,
    batch_tensors,
    learning_rate,
    make_optimizer,
    train,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per window")
    parser.add_argument("--rounds", type=int, default=6, help="alternating rounds per side")
    parser.add_argument("--batch-size", type=int, help="default: 32, or the preset group's")
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--n-layers", type=int, default=2)
    parser.add_argument("--n-heads", type=int, default=4)
    parser.add_argument(
        "--preset-model",
        metavar="PRESET[:GROUP]",
        help="the model shape (and batch size) of a preset group; PRESET alone: its largest",
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile both loops")
    parser.add_argument("--json", metavar="FILE", help="also write the figures to this file")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: default)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quick", action="store_true", help="10-step windows, 2 rounds")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.rounds = 10, 2
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        device = resolve_device(args.device)
        group = preset_group(args.preset_model) if args.preset_model else None
    except TrajbenchError as err:
        parser.error(str(err))
    if group is None:
        model_cfg = ModelConfig(d_model=args.d_model, n_layers=args.n_layers, n_heads=args.n_heads)
    else:
        model_cfg = group.train.model
    batch_size = args.batch_size or (group.train.batch_size if group else 32)
    print(describe_torch(device))

    with tempfile.TemporaryDirectory() as tmp:
        data = dark_room_store(tmp, "train", 20)
        n = args.steps
        cfg = TrainConfig(
            data=(str(data),),
            out="",
            context=ContextConfig(mode="bursty", k=4),
            model=model_cfg,
            steps=2 * n,
            batch_size=batch_size,
            warmup_steps=n // 2,
            device=str(device),
            compile=args.compile,
            threads=args.threads,
            checkpoint_every=0,
            log_every=n,
            progress=False,
        )

        # The reference: the same model, the same batches, prepared before timing.
        store = load(data)
        builder = ContextBuilder(store, seed=cfg.seed, config=cfg.context)
        batches = [
            builder.sample(cfg.batch_size, seed=batch_seed(cfg.seed, s)) for s in range(2 * n)
        ]
        tokens = [batch_tensors(b, device) for b in batches]
        n_tokens = [int((~b.pad).sum()) for b in batches]
        lengths = [float((~b.pad).sum(1).mean()) for b in batches]
        mixed_precision = autocast(device, cfg.bf16)

        def sync() -> None:
            if device.type == "cuda":
                torch.cuda.synchronize()

        window_tokens = sum(n_tokens[n:])

        def fresh_model() -> TrajectoryTransformer:
            torch.manual_seed(cfg.seed)
            return TrajectoryTransformer(cfg.model, store.encoding, builder.vocab)

        def reference() -> tuple[tuple[float, float], TrajectoryTransformer]:
            model = fresh_model().to(device).train()
            opt = make_optimizer(model, cfg, device)
            if args.compile:
                torch._dynamo.reset()  # a fresh compile per run, as train() gets
            forward = torch.compile(model) if args.compile else model
            wall = cpu = 0.0
            for step, t in enumerate(tokens):
                if step == n:
                    sync()
                    wall, cpu = time.perf_counter(), time.process_time()
                for param_group in opt.param_groups:
                    param_group["lr"] = learning_rate(step, cfg)
                with mixed_precision:
                    logits, _ = forward(t)
                loss = F.cross_entropy(
                    logits.float().flatten(0, 1), t["target"].flatten(), ignore_index=IGNORE
                )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                opt.step()
            sync()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            return (window_tokens / wall, window_tokens / cpu), model

        def project(r: int) -> tuple[tuple[float, float], TrajectoryTransformer]:
            # Clock the second metrics window of train() itself (steps n .. 2n - 1): the loop
            # writes a metrics row at steps n and 2n, right after reading the loss (a sync).
            marks = []
            write = MetricsLog.write

            def timed_write(self, **row):
                marks.append((time.perf_counter(), time.process_time()))
                write(self, **row)

            cfg.out = str(Path(tmp) / f"run{r}")
            if args.compile:
                torch._dynamo.reset()  # no cache-size limit fallback to eager across rounds
            MetricsLog.write = timed_write
            try:
                model_dir = train(cfg)
            finally:
                MetricsLog.write = write
            (w0, c0), (w1, c1) = marks[-2:]
            model = TrajectoryTransformer.from_pretrained(model_dir)
            return (window_tokens / (w1 - w0), window_tokens / (c1 - c0)), model

        results = {"ref": [], "proj": []}
        ref_models = []
        for r in range(args.rounds):
            if r % 2 == 0:  # alternate which side goes first
                ref, ref_model = reference()
                proj, proj_model = project(r)
            else:
                proj, proj_model = project(r)
                ref, ref_model = reference()
            results["ref"].append(ref)
            results["proj"].append(proj)
            ref_models = [*ref_models[-1:], ref_model]
            print(
                f"round {r + 1}: plain loop {ref[0]:9,.0f} tokens/s ({ref[1]:9,.0f} per CPU s)  "
                f"trajbench train {proj[0]:9,.0f} tokens/s ({proj[1]:9,.0f} per CPU s)"
            )
        init = fresh_model().state_dict()

        def weights(model: TrajectoryTransformer) -> dict[str, torch.Tensor]:
            return {k: v.float().cpu() for k, v in model.state_dict().items()}

        def relative_distance(a: dict, b: dict) -> float:
            """How far apart two runs ended, relative to how far training moved ``a``."""
            apart = math.sqrt(sum(float((a[k] - b[k]).pow(2).sum()) for k in init))
            moved = math.sqrt(sum(float((a[k] - init[k]).pow(2).sum()) for k in init))
            return apart / max(moved, 1e-12)

        ref_state, proj_state = weights(ref_model), weights(proj_model)
        diff = max(float((ref_state[k] - proj_state[k]).abs().max()) for k in ref_state)
        relative = relative_distance(ref_state, proj_state)
        # The plain loop against itself (two rounds, same seed and batches): the noise floor.
        floor = (
            relative_distance(weights(ref_models[0]), ref_state) if len(ref_models) == 2 else None
        )
        print(
            f"same final weights: max |difference| = {diff:.2e}, {relative:.2e} of the training "
            f"update, after {2 * n} steps"
            + ("" if floor is None else f" (the plain loop against itself: {floor:.2e})")
        )

    mean_length = sum(lengths) / len(lengths)
    shape = f" ({args.preset_model}: {group.name})" if group else ""
    print(
        f"model{shape}: {model_cfg.d_model} wide, {model_cfg.n_layers} layers, "
        f"{model_cfg.n_heads} heads, batch {batch_size} sequences of {mean_length:.0f} tokens on "
        f"average (Dark Room, bursty, k = 4){', compiled' if args.compile else ''}"
    )
    # Median over rounds of each round's paired ratio: robust to the load of a shared machine.
    # On CUDA the figure is wall-clock throughput; on the CPU it is throughput per CPU-second of
    # the (single-threaded) process, which the other processes of a busy machine distort far less.
    column = 0 if device.type == "cuda" else 1
    ratios = [p[column] / r[column] for p, r in zip(results["proj"], results["ref"], strict=True)]
    ratio = statistics.median(ratios)
    best_ref = max(r[0] for r in results["ref"])
    best_proj = max(p[0] for p in results["proj"])
    print(f"plain PyTorch loop: {best_ref:10,.0f} tokens/s (best round, wall clock)")
    print(f"trajbench train:    {best_proj:10,.0f} tokens/s (best round, wall clock)")
    for name, key in (("plain PyTorch loop", "ref"), ("trajbench train", "proj")):
        cpu = statistics.median(x[1] for x in results[key])
        print(f"{name + ':':<19} {cpu:10,.0f} tokens per CPU-second (median)")
    basis = "wall clock" if device.type == "cuda" else "CPU time"
    print(f"per-round ratios ({basis}): {', '.join(f'{x:.3f}' for x in ratios)}")
    fpt = training_flops_per_token(cfg.model, store.encoding.n_actions, mean_length / 2)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else ""
    peak = peak_flops(gpu) if gpu else None
    if peak is None:
        print(f"MFU: n/a ({f'unknown peak for {gpu}' if gpu else 'on CPU'})")
    else:
        print(
            f"MFU (bf16 peak {peak / 1e12:.0f} TFLOP/s, {fpt / 1e6:.2f} MFLOP/token): "
            f"trajbench {best_proj * fpt / peak:.2%}, plain loop {best_ref * fpt / peak:.2%}"
        )
    if args.json:
        atomic_write_json(
            args.json,
            {
                "device": str(device),
                "gpu": gpu,
                "torch": torch.__version__,
                "preset_model": args.preset_model or "",
                "model": to_dict(model_cfg),
                "batch_size": batch_size,
                "tokens_per_sequence": mean_length,
                "compile": args.compile,
                "bf16": device.type == "cuda" and cfg.bf16,
                "steps_per_window": n,
                "rounds": args.rounds,
                "tokens_per_s": best_proj,
                "reference_tokens_per_s": best_ref,
                "ratio": ratio,
                "step_s": batch_size * mean_length / best_proj,
                "flops_per_token": fpt,
                "peak_flops": peak,
                "mfu": None if peak is None else best_proj * fpt / peak,
                "reference_mfu": None if peak is None else best_ref * fpt / peak,
                "max_weight_difference": diff,
                "relative_weight_difference": relative,
                "reference_self_difference": floor,
            },
        )
    # The same batches and the same arithmetic: on the CPU bit for bit. On CUDA atomics in the
    # embedding and attention backward passes are not deterministic and bf16 amplifies it over
    # the steps, so the two runs may be as far apart as the plain loop is from itself (x3), or
    # 1% of the distance training went, whichever is larger.
    allowed = max(1e-2, 3 * floor) if floor is not None else 1e-2
    if (diff > 1e-3) if device.type == "cpu" else (relative > allowed):
        raise SystemExit("the plain loop and trajbench train did not train the same model")
    print(f"\nRESULT train_throughput ratio={ratio:.2f} target=0.9")


if __name__ == "__main__":
    main()

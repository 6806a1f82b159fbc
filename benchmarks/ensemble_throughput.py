"""Ensemble throughput: M models trained as one batched ensemble vs one after another, same batches.

Measures, in one run on this machine, training tokens per second (non-padding tokens of every
member's batch) of:

- ensemble: :class:`trajbench.pipeline.ensemble.Stacked`, the step ``trajbench run --ensemble on``
  takes: every member's forward in one ``vmap`` over stacked weights, per-member clipping, one
  AdamW over the stacked weights;
- separate: each member alone with :class:`trajbench.pipeline.train.TrainStep`, the step
  ``trajbench train`` takes, the members one after another (one model per job); only the first
  ``--alone`` members (4), since one job's throughput does not depend on how many there are and
  compiling 25 models one by one would take the whole run.

Members differ in seed and context mode (bursty / shuffled, alternating); their batches are built
before the clock starts. Rounds alternate which side goes first; the ratio is the median of the
rounds' paired ratios: of throughput per CPU-second of the (single-threaded) process on the CPU
(a shared machine's wall clock mostly measures the other processes), of wall-clock throughput on
CUDA. On a GPU it also prints the ensemble's model FLOPs utilisation (bf16 peak) and a second
line ``RESULT ensemble_mfu ratio=<MFU> target=0.30``. Ends with
``RESULT ensemble_throughput ratio=<ensemble/separate> target=1.0`` (on a CPU core, expected
about 0.9-1x: a core is compute-bound at these sizes, which is why ``--ensemble auto`` is off on
the CPU).

Example:
    OMP_NUM_THREADS=1 python benchmarks/ensemble_throughput.py        # ~2 minutes on a busy core
    python benchmarks/ensemble_throughput.py --quick                  # seconds: a sanity check
    python benchmarks/ensemble_throughput.py --preset-model standard --members 25 \\
        --compile-mode max-autotune --json out/ensemble.json          # on a GPU
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import replace

import torch
from machine import dark_room_store, describe_torch

from trajbench.baselines.transformer import (
    ModelConfig,
    TrajectoryTransformer,
    training_flops_per_token,
)
from trajbench.configs import to_dict
from trajbench.contexts import ContextBuilder, ContextConfig
from trajbench.data import load
from trajbench.device import autocast, resolve_device
from trajbench.errors import TrajbenchError
from trajbench.io import atomic_write_json
from trajbench.pipeline.ensemble import Stacked, stack_tokens
from trajbench.pipeline.sizing import peak_flops, preset_group
from trajbench.pipeline.train import (
    TrainConfig,
    TrainStep,
    batch_seed,
    batch_tensors,
    learning_rate,
    make_optimizer,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=4, help="models in the ensemble")
    parser.add_argument("--steps", type=int, default=8, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per side")
    parser.add_argument("--batch-size", type=int, help="default: 32, or the preset group's")
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--n-layers", type=int, default=2)
    parser.add_argument("--n-heads", type=int, default=4)
    parser.add_argument("--preset-model", metavar="PRESET[:GROUP]", help="a preset's model shape")
    parser.add_argument(
        "--compile-mode",
        choices=("none", "default", "reduce-overhead", "max-autotune"),
        default="none",
        help="torch.compile both sides' forward passes in this mode",
    )
    parser.add_argument(
        "--alone",
        type=int,
        default=4,
        help="members the separate side trains (one after another; each is one job's model, so "
        "its tokens/s does not depend on how many: fewer keep compiling short)",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the figures to this file")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: default)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quick", action="store_true", help="3-step rounds, 2 rounds")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.rounds = 3, 2
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        device = resolve_device(args.device)
        group = preset_group(args.preset_model) if args.preset_model else None
    except TrajbenchError as err:
        parser.error(str(err))
    model_cfg = (
        group.train.model
        if group
        else ModelConfig(d_model=args.d_model, n_layers=args.n_layers, n_heads=args.n_heads)
    )
    batch_size = args.batch_size or (group.train.batch_size if group else 32)
    M, n, warm = args.members, args.steps, 3 if args.compile_mode != "none" else 1
    alone = max(1, min(args.alone, M))
    print(describe_torch(device))

    with tempfile.TemporaryDirectory() as tmp:
        store = load(dark_room_store(tmp, "train", 20))
        base = TrainConfig(
            data=("-",),
            model=model_cfg,
            batch_size=batch_size,
            steps=warm + n,
            warmup_steps=2,
            device=str(device),
        )
        modes = ("bursty", "shuffled")
        cfgs = [replace(base, seed=m, context=ContextConfig(modes[m % 2], k=4)) for m in range(M)]
        batches = []  # [member][step]
        for cfg in cfgs:
            builder = ContextBuilder(store, seed=cfg.seed, config=cfg.context)
            batches.append(
                [builder.sample(batch_size, seed=batch_seed(cfg.seed, s)) for s in range(warm + n)]
            )
        tokens = [[batch_tensors(b, device) for b in row] for row in batches]
        norms = [[max(int(b.loss_mask.sum()), 1) for b in row] for row in batches]
        stacked_tokens = [stack_tokens([tokens[m][s] for m in range(M)]) for s in range(warm + n)]
        stacked_norms = [
            torch.tensor([norms[m][s] for m in range(M)], dtype=torch.float32).to(device)
            for s in range(warm + n)
        ]

        def compiled(fn):
            if args.compile_mode == "none":
                return fn
            mode = None if args.compile_mode == "default" else args.compile_mode
            return torch.compile(fn, mode=mode)

        def sync() -> None:
            if device.type == "cuda":
                torch.cuda.synchronize()

        vocab = builder.vocab

        def fresh(cfg: TrainConfig) -> TrajectoryTransformer:
            torch.manual_seed(cfg.seed)
            return TrajectoryTransformer(cfg.model, store.encoding, vocab).to(device)

        def timed(run_step, members: int) -> tuple[float, float]:
            """(tokens per wall second, tokens per CPU-second) of the timed steps of the first
            ``members`` members."""
            counted = sum(int((~b.pad).sum()) for row in batches[:members] for b in row[warm:])
            for s in range(warm):
                run_step(s)
            sync()
            wall, cpu = time.perf_counter(), time.process_time()
            for s in range(warm, warm + n):
                run_step(s)
            sync()
            return counted / (time.perf_counter() - wall), counted / (time.process_time() - cpu)

        def ensemble() -> tuple[float, float]:
            models = [fresh(c) for c in cfgs]
            optimizers = [make_optimizer(m, base, device) for m in models]
            stacked = Stacked(models, optimizers, base, device)
            stacked.forward = compiled(stacked.forward)
            return timed(
                lambda s: stacked(stacked_tokens[s], stacked_norms[s], learning_rate(s, base)), M
            )

        def separate() -> tuple[float, float]:
            steps = []
            for c in cfgs[:alone]:
                model = fresh(c)
                step = TrainStep(
                    compiled(model),
                    model,
                    make_optimizer(model, base, device),
                    base.grad_clip,
                    autocast(device, base.bf16),
                )
                steps.append(step)

            def run_step(s: int) -> None:
                for m, step in enumerate(steps):
                    step(tokens[m][s], norms[m][s], learning_rate(s, base))

            return timed(run_step, alone)

        results = {"ensemble": [], "separate": []}
        for r in range(args.rounds):
            order = ("ensemble", "separate") if r % 2 == 0 else ("separate", "ensemble")
            for side in order:
                results[side].append(ensemble() if side == "ensemble" else separate())

    column = 0 if device.type == "cuda" else 1
    pairs = zip(results["ensemble"], results["separate"], strict=True)
    ratios = [e[column] / s[column] for e, s in pairs]
    ratio = statistics.median(ratios)
    lengths = [float((~b.pad).sum(1).mean()) for row in batches for b in row]
    mean_length = sum(lengths) / len(lengths)
    shape = f" ({args.preset_model}: {group.name})" if group else ""
    print(
        f"model{shape}: {model_cfg.d_model} wide, {model_cfg.n_layers} layers, "
        f"{model_cfg.n_heads} heads ({model_cfg.backbone}); {M} members ({alone} alone), batch "
        f"{batch_size} "
        f"sequences of {mean_length:.0f} tokens on average; compile: {args.compile_mode}"
    )
    for side in ("ensemble", "separate"):
        wall = max(x[0] for x in results[side])
        cpu = statistics.median(x[1] for x in results[side])
        print(
            f"{side:<9} {wall:12,.0f} tokens/s (best round, wall clock), "
            f"{cpu:12,.0f} tokens per CPU-second (median)"
        )
    basis = "wall clock" if device.type == "cuda" else "CPU time"
    print(f"per-round ratios ({basis}): {', '.join(f'{x:.3f}' for x in ratios)}")
    fpt = training_flops_per_token(model_cfg, store.encoding.n_actions, mean_length / 2)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else ""
    peak = peak_flops(gpu) if gpu else None
    best = max(x[0] for x in results["ensemble"])
    mfu = None if peak is None else best * fpt / peak
    if mfu is not None:
        print(f"ensemble MFU (bf16 peak {peak / 1e12:.0f} TFLOP/s): {mfu:.2%}")
    if args.json:
        atomic_write_json(
            args.json,
            {
                "device": str(device),
                "gpu": gpu,
                "torch": torch.__version__,
                "preset_model": args.preset_model or "",
                "model": to_dict(model_cfg),
                "members": M,
                "alone": alone,
                "batch_size": batch_size,
                "tokens_per_sequence": mean_length,
                "compile_mode": args.compile_mode,
                "bf16": device.type == "cuda",
                "steps": n,
                "rounds": args.rounds,
                "ensemble_tokens_per_s": best,
                "separate_tokens_per_s": max(x[0] for x in results["separate"]),
                "ratios": ratios,
                "ratio": ratio,
                "flops_per_token": fpt,
                "peak_flops": peak,
                "mfu": mfu,
            },
        )
    print()
    if mfu is not None:
        print(f"RESULT ensemble_mfu ratio={mfu:.3f} target=0.30")
    print(f"RESULT ensemble_throughput ratio={ratio:.2f} target=1.0")


if __name__ == "__main__":
    main()

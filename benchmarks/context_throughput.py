"""Prompt-builder throughput: sequences per second per context mode, and the data share of a step.

Measures, in one run on this machine:

- sequences per second of ``ContextBuilder.sample(batch)`` for every context mode on Dark Room
  (K = 4, expert episodes of the 65 train levels) and on a BabyAI family (GoToLocal-v1, K = 4,
  if registered: its episodes draw the start pose, so expert contexts are not copies of the
  query), single process, batches of ``--batch-size`` sequences (32, what ``trajbench
  train`` uses); each figure is the median of ``--rounds`` timed windows;
- the share of a training step of the small CPU model (``ModelConfig(d_model=64, n_layers=2,
  n_heads=4)``, batch 32, AdamW, gradient clipping: the ``trajbench train`` defaults) spent
  building its batch in-process (``sample`` time / whole step time, ``to_torch`` counted apart),
  and the share spent waiting on a ``DataLoader`` with one worker process.

The reference is the target of issue 3: 20,000 Dark Room sequences per second in every mode, and
at most 5% of a training step spent on data. Ends with
``RESULT context_throughput ratio=<slowest Dark Room mode seq/s / 20000> target=1.0``.

Example:
    python benchmarks/context_throughput.py            # about a minute on 2 busy cores
    python benchmarks/context_throughput.py --quick    # a few seconds, a sanity check
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from machine import describe

import trajbench
from trajbench.collect import CollectConfig, collect
from trajbench.contexts import MODE_NAMES, ContextBuilder
from trajbench.data import load
from trajbench.pipeline.train import BatchStream, batch_seed

TARGET_SEQ_PER_S = 20_000
TARGET_DATA_SHARE = 0.05


def machine() -> str:
    return describe(
        f"numpy {np.__version__}, torch {torch.__version__} "
        f"({torch.get_num_threads()} CPU thread(s)), trajbench {trajbench.__version__}"
    )


def seq_per_s(builder: ContextBuilder, batch: int, seconds: float, rounds: int) -> tuple:
    """Median sequences/s over ``rounds`` windows of about ``seconds``; also tokens per sequence."""
    b = builder.sample(batch, seed=0)  # warm-up
    rates, step = [], 0
    for _ in range(rounds):
        n, t0 = 0, time.perf_counter()
        while True:
            builder.sample(batch, seed=step)
            step, n = step + 1, n + batch
            elapsed = time.perf_counter() - t0
            if elapsed >= seconds:
                break
        rates.append(n / elapsed)
    return statistics.median(rates), float((~b.pad).sum(1).mean()), b.shape[1]


def store_of(env: str, levels: str, episodes: int, root: Path):
    out = root / env.split("/")[-1]
    collect(
        CollectConfig(env=env, levels=levels, episodes_per_level=episodes, out=out, progress=False)
    )
    return load(out)


def data_share(store, steps: int, batch: int, workers: int) -> dict:
    """Time of a training step spent on its batch: in-process, or waiting on a DataLoader."""
    from torch.nn.functional import cross_entropy

    from trajbench.baselines.transformer import ModelConfig, TrajectoryTransformer

    builder = ContextBuilder(store, mode="bursty", k=4, seed=0)
    torch.manual_seed(0)
    model = TrajectoryTransformer(
        ModelConfig(d_model=64, n_layers=2, n_heads=4), store.encoding, builder.vocab
    )
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.01)

    def step_on(b) -> float:
        t0 = time.perf_counter()
        tokens = b.to_torch()
        t1 = time.perf_counter()
        logits, _ = model(tokens)
        loss = cross_entropy(
            logits.float().flatten(0, 1), tokens["target"].flatten(), reduction="sum"
        ) / max(int(b.loss_mask.sum()), 1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return t1 - t0

    warm = 5
    if workers == 0:
        build = convert = 0.0
        t_start = None
        for step in range(warm + steps):
            if step == warm:
                build = convert = 0.0
                t_start = time.perf_counter()
            t0 = time.perf_counter()
            b = builder.sample(batch, seed=batch_seed(0, step))
            build += time.perf_counter() - t0
            convert += step_on(b)
        total = time.perf_counter() - t_start
        return dict(build=build / total, convert=convert / total, step_ms=1e3 * total / steps)
    stream = BatchStream(
        lambda: ContextBuilder(store, mode="bursty", k=4, seed=0), batch, 0, 0, warm + steps
    )
    loader = iter(torch.utils.data.DataLoader(stream, batch_size=None, num_workers=workers))
    wait = 0.0
    t_start = None
    for i in range(warm + steps):
        if i == warm:
            wait, t_start = 0.0, time.perf_counter()
        t0 = time.perf_counter()
        _, b = next(loader)
        wait += time.perf_counter() - t0
        step_on(b)
    total = time.perf_counter() - t_start
    return dict(build=wait / total, step_ms=1e3 * total / steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=1.0, help="length of one timed window")
    parser.add_argument("--rounds", type=int, default=5, help="timed windows per mode (median)")
    parser.add_argument("--train-steps", type=int, default=40, help="timed training steps")
    parser.add_argument("--quick", action="store_true", help="short windows: a sanity check")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.rounds, args.train_steps = 0.2, 1, 5

    print(machine())
    print(f"batches of {args.batch_size} sequences, K = 4, median of {args.rounds} windows")
    with tempfile.TemporaryDirectory() as tmp:
        stores = {"Dark Room": store_of("trajbench/DarkRoom-v0", "train", 20, Path(tmp))}
        import gymnasium as gym

        if "trajbench/GoToLocal-v1" in gym.registry:
            levels = ",".join(str(x) for x in range(200))
            stores["GoToLocal"] = store_of("trajbench/GoToLocal-v1", levels, 10, Path(tmp))
        else:
            print("GoToLocal is not registered: BabyAI figures skipped")
        for name, store in stores.items():
            print(
                f"\n{name}: {len(store)} episodes, {store.n_steps} steps, "
                f"{store.episodes['level'].nunique()} levels"
            )
            rates = {}
            for mode in MODE_NAMES:
                builder = ContextBuilder(store, mode=mode, k=4, seed=0)
                rate, tokens, _ = seq_per_s(builder, args.batch_size, args.seconds, args.rounds)
                rates[mode] = rate
                print(
                    f"  {mode:13s} {rate:10,.0f} seq/s  {rate * tokens:12,.0f} tokens/s  "
                    f"({tokens:.0f} tokens per sequence)"
                )
            if name == "Dark Room":
                dark_room_rates = rates

        dr = stores["Dark Room"]
        print("\nData share of a training step (Dark Room, bursty, K = 4, d_model 64, 2 layers):")
        inproc = data_share(dr, args.train_steps, args.batch_size, workers=0)
        print(
            f"  in-process: building the batch {100 * inproc['build']:.1f}% of a "
            f"{inproc['step_ms']:.1f} ms step (to_torch another {100 * inproc['convert']:.1f}%)"
        )
        loader = data_share(dr, args.train_steps, args.batch_size, workers=1)
        print(
            f"  DataLoader, 1 worker: waiting {100 * loader['build']:.1f}% of a "
            f"{loader['step_ms']:.1f} ms step"
        )
        ok = inproc["build"] <= TARGET_DATA_SHARE
        print(f"  target <= {100 * TARGET_DATA_SHARE:.0f}% in-process: {'met' if ok else 'MISSED'}")

    slowest = min(dark_room_rates, key=dark_room_rates.get)
    ratio = dark_room_rates[slowest] / TARGET_SEQ_PER_S
    print(
        f"\nslowest Dark Room context mode: {slowest}, {dark_room_rates[slowest]:,.0f} seq/s "
        f"against the {TARGET_SEQ_PER_S:,} seq/s target"
    )
    print(f"RESULT context_throughput ratio={ratio:.3f} target=1.0")


if __name__ == "__main__":
    main()

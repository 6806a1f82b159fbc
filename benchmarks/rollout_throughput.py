"""Rollout throughput: batched KV-cached rollouts vs re-encoding the whole sequence every step.

Measures, in one run on this machine, environment steps per second of
:func:`trajbench.pipeline.evaluate.rollout` driving a :class:`TransformerPolicy` on Dark Room with K = 4
expert demonstrations of each level in the context, then ``--episodes`` episodes per level (the
policy's own earlier episodes stay in its context, so the context grows from ~85 to ~200+ tokens):

- project: ``use_cache=True`` -- the context is encoded into the KV cache once per episode (only
  the newest episode is added to the cache kept from the previous one) and each step feeds one
  token per running row;
- reference: ``use_cache=False`` -- the same model re-encodes every row's whole sequence at every
  step.

Same model (random weights of the default ``trajbench train`` shape unless told otherwise: Dark
Room episodes always last 20 steps, so the weights do not change the work), same levels, same
demonstrations and start states; the two runs' records are checked to be identical. Rounds
alternate and the best round of each is reported, which keeps the ratio honest on a shared
machine. Ends with ``RESULT rollout_throughput ratio=<cached/re-encoding> target=10``.

``--json FILE`` also writes the figures there (``benchmarks/gpu_check.sh`` reads it).

Example:
    python benchmarks/rollout_throughput.py            # about a minute on 2 busy cores
    python benchmarks/rollout_throughput.py --quick    # a few seconds, a sanity check
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch
from machine import dark_room_store, describe_torch

from trajbench.baselines.transformer import ModelConfig, TrajectoryTransformer
from trajbench.baselines.transformer_policy import TransformerPolicy
from trajbench.data import load
from trajbench.device import resolve_device
from trajbench.io import atomic_write_json
from trajbench.rollout import Demonstrations, rollout
from trajbench.vocab import MissionVocab

DARK_ROOM = "trajbench/DarkRoom-v0"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", type=int, default=64, help="rows rolled out together")
    parser.add_argument("--k", type=int, default=4, help="demonstrations per level")
    parser.add_argument("--episodes", type=int, default=6, help="online episodes per level")
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--n-layers", type=int, default=2)
    parser.add_argument("--n-heads", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per mode")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: default)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", metavar="FILE", help="also write the figures to this file")
    parser.add_argument("--quick", action="store_true", help="16 levels, 2 episodes, 1 round")
    args = parser.parse_args()
    if args.quick:
        args.levels, args.episodes, args.rounds = 16, 2, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    print(describe_torch(device))

    with tempfile.TemporaryDirectory() as tmp:
        store_dir = dark_room_store(tmp, "all", args.k + 1)
        store = load(store_dir)
        levels = sorted(int(x) for x in store.episodes.level.unique())[: args.levels]
        demos = Demonstrations(store)
        contexts = [demos(DARK_ROOM, lv, args.k, "same", 0) for lv in levels]
        missions = dict(
            store.episodes.groupby("level")["mission"].first().items()  # "" on Dark Room
        )
        vocab = MissionVocab.build(store.episodes["mission"].unique())
        torch.manual_seed(0)
        shape = ModelConfig(d_model=args.d_model, n_layers=args.n_layers, n_heads=args.n_heads)
        model = TrajectoryTransformer(shape, store.encoding, vocab)
        print(
            f"model: llama, d_model {args.d_model}, {args.n_layers} layers, "
            f"{model.num_parameters():,} parameters; {len(levels)} levels x {args.episodes} "
            f"episodes, K = {args.k}"
        )

        def run(use_cache: bool) -> tuple[float, list[dict]]:
            policy = TransformerPolicy(model, use_cache=use_cache, device=device)
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            out = rollout(policy, DARK_ROOM, levels, contexts, missions, args.episodes, seed=0)
            if device.type == "cuda":
                torch.cuda.synchronize()
            return time.perf_counter() - start, out

        run(True)  # warm-up (allocator, lazy imports)
        best = {True: float("inf"), False: float("inf")}
        records = {}
        for r in range(args.rounds):
            for use_cache in (True, False):
                elapsed, records[use_cache] = run(use_cache)
                best[use_cache] = min(best[use_cache], elapsed)
                steps = sum(rec["length"] for rec in records[use_cache])
                name = "cached" if use_cache else "re-encoding"
                print(f"round {r + 1}: {name:<12} {steps} steps in {elapsed:7.2f} s")
        if records[True] != records[False]:
            raise SystemExit("cached and re-encoding rollouts differ: the cache is wrong")
        steps = sum(rec["length"] for rec in records[True])
        cached, reference = steps / best[True], steps / best[False]
        success = np.mean([rec["success"] for rec in records[True]])
        print(f"identical records in both modes ({steps} env steps, success {success:.2f})")
        print(f"cached rollouts:      {cached:10,.0f} env steps/s")
        print(f"re-encoding rollouts: {reference:10,.0f} env steps/s")
        if args.json:
            atomic_write_json(
                args.json,
                {
                    "device": str(device),
                    "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else "",
                    "model": {"d_model": args.d_model, "n_layers": args.n_layers},
                    "levels": len(levels),
                    "k": args.k,
                    "episodes": args.episodes,
                    "env_steps": steps,
                    "cached_steps_per_s": cached,
                    "reencoding_steps_per_s": reference,
                    "ratio": cached / reference,
                },
            )
        print(f"\nRESULT rollout_throughput ratio={cached / reference:.1f} target=10")


if __name__ == "__main__":
    main()

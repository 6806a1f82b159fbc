"""Level contents: distinct contents per family, and held-out levels that repeat a training level.

Hashes every level of every registered family with its own
:meth:`~trajbench.envs.levels.LevelMixin.content_hash` (everything a level fixes: grid, objects,
doors, mission, hidden targets; never the start pose) and reports, per family, the number of
distinct contents, how many of them the train and test splits hold, and the share of test levels
whose content is also a training level's (the leak). ``-v0`` ids build the same levels as their
``-v1`` ids and are skipped. Checks that every content-split family (the ``-v2`` ids and the
families new in suite 3) leaks nothing and that each family's figure in
:data:`trajbench.envs.level_contents.DISTINCT_CONTENTS` is the one measured; exits non-zero if not.

Ends with ``RESULT level_contents ratio=<largest leak of a content-split family> target=0``.

Example:
    python benchmarks/level_contents.py                      # every family, all levels (minutes)
    python benchmarks/level_contents.py --families DoorKey-v1 DoorKey-v2 --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import gymnasium as gym
import minigrid
from machine import describe
from tqdm.auto import tqdm

import trajbench
from trajbench.envs import FAMILIES
from trajbench.envs.level_contents import DISTINCT_CONTENTS


def measure(name: str) -> dict:
    """Distinct contents and the train/test leak of one family, over all its levels."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        env = gym.make(f"trajbench/{name}")
    u = env.unwrapped
    splits = u.splits()
    hashes = {}
    for level in tqdm(range(u.n_levels), desc=name, leave=False, mininterval=5):
        hashes[level] = u.content_hash(level)
    train = {hashes[int(level)] for level in splits["train"]}
    test = [hashes[int(level)] for level in splits["test"]]
    leaked = sum(h in train for h in test)
    env.close()
    return {
        "family": name,
        "n_levels": u.n_levels,
        "distinct": len(set(hashes.values())),
        "distinct_train": len(train),
        "distinct_test": len(set(test)),
        "test_levels_leaked": leaked,
        "leak": leaked / len(test),
        "content_split": bool(getattr(u, "content_split", False)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="*", help="ids without namespace (default: all)")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    skipped = {n for n in FAMILIES if n.endswith("-v0") and f"{n[:-3]}-v1" in FAMILIES}
    names = args.families or [n for n in FAMILIES if n not in skipped]
    print(describe(f"trajbench {trajbench.__version__}, minigrid {minigrid.__version__}"))
    rows, start = [], time.perf_counter()
    print(
        "| family | levels | distinct contents | train / test contents | test levels repeating a train level |"
    )
    print("|---|---|---|---|---|")
    for name in names:
        row = measure(name)
        rows.append(row)
        print(
            f"| {name} | {row['n_levels']:,} | {row['distinct']:,} | "
            f"{row['distinct_train']:,} / {row['distinct_test']:,} | "
            f"{row['test_levels_leaked']:,} ({100 * row['leak']:.1f}%) |",
            flush=True,
        )
    print(f"wall time {time.perf_counter() - start:.0f} s")
    if args.json:
        tmp = args.json.with_suffix(".tmp")
        tmp.write_text(json.dumps(rows, indent=2))
        tmp.replace(args.json)
    problems = [
        f"{r['family']} leaks {r['leak']:.3f}" for r in rows if r["content_split"] and r["leak"]
    ]
    problems += [
        f"{r['family']}: {r['distinct']} distinct contents, DISTINCT_CONTENTS says "
        f"{DISTINCT_CONTENTS.get(r['family'])}"
        for r in rows
        if DISTINCT_CONTENTS.get(r["family"]) != r["distinct"]
    ]
    for p in problems:
        print(f"MISMATCH {p}", file=sys.stderr)
    worst = max((r["leak"] for r in rows if r["content_split"]), default=0.0)
    print(f"RESULT level_contents ratio={worst:.4f} target=0")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

"""Mutation testing of the modules that make reported numbers (mutmut; a benchmark, never part of
the pytest run or of CI).

mutmut copies the project into ``mutants/``, makes every small change it can (a *mutant*: ``<`` for
``<=``, ``-1`` for ``1``, a dropped argument, ...) to the files ``[tool.mutmut] only_mutate`` lists
in ``pyproject.toml``, and runs, for each mutant, those tests of ``[tool.mutmut]
pytest_add_cli_args_test_selection`` that execute the changed function. A mutant no test fails
*survives*: a bug of that shape would go unnoticed. A mutant that makes a test time out counts as
killed. Results are kept in ``mutants/`` between runs: a rerun only checks mutants of functions
that changed (delete ``mutants/`` to start afresh).

Usage (``pip install -e '.[mutation]'`` first)::

    python benchmarks/mutation.py                              # every module below
    python benchmarks/mutation.py --modules bootstrap metrics  # some of them
    python benchmarks/mutation.py --report-only                # the figures of the last run
    python benchmarks/mutation.py --recheck                    # its survivors again, after new tests

mutmut keeps a mutant's verdict until its function changes, and a change to the test selection
in ``pyproject.toml`` resets every verdict; so after tests are added to the selected files,
``--recheck`` runs the survivors again against them, and any mutant not checked yet (the killed
stay killed: tests were only added).

Prints every surviving mutant (its diff), the figures per module, and a last line
``RESULT mutation ratio=<killed/total> target=0.90``. docs/testing.md holds the figures and why each
remaining survivor is harmless.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe  # noqa: E402

#: Module -> mutant-name patterns (``module.x_function__mutmut_N``; methods ``xǁClassǁname``).
MODULES = {
    "bootstrap": ["trajbench.bootstrap.*"],
    "metrics": ["trajbench.metrics.*"],
    "report": ["trajbench.report.*"],
    # The evaluation's condition and format wiring, and the decoy recording.
    "evaluation": [
        "trajbench.pipeline.evaluate.x__conditions__*",
        "trajbench.pipeline.evaluate.x__roll_out__*",
        "trajbench.contexts.formats.*",
        "trajbench.rollout.x_rollout__*",
        "trajbench.rollout.x__play__*",
    ],
    # The prompt builder's cuts and modes.
    "builder": ["trajbench.contexts.builder.*_cut__*", "trajbench.contexts.modes.*"],
}
TARGET = 0.90
#: mutmut's command line, run by this interpreter (so that the trajbench it mutates is the one this
#: environment installed, a virtual environment's included), never ``python -m mutmut``: that puts
#: the repository root, with the unmutated package, first on the path of mutmut's own process.
MUTMUT = [sys.executable, "-c", "from mutmut.__main__ import cli; cli()"]
#: mutmut's exit codes of a checked mutant (its ``stats.status_by_exit_code``): which count as
#: killed; every other checked outcome (0: survived, 5 / 33: no test ran it, ...) as survived.
KILLED = {1, 3, 24, -24, 36, 37, 152, 255}


def statuses() -> dict[str, int | None]:
    """Exit code of every mutant mutmut generated (None: not checked yet)."""
    codes = {}
    for meta in (ROOT / "mutants").rglob("*.meta"):
        codes.update(json.loads(meta.read_text())["exit_code_by_key"])
    return codes


def survivors(codes: dict[str, int | None]) -> list[str]:
    """The checked mutants of ``codes`` that no test killed."""
    return sorted(n for n, c in codes.items() if c is not None and c not in KILLED)


def module_of(name: str) -> str | None:
    for module, patterns in MODULES.items():
        if any(fnmatch.fnmatch(name, p) for p in patterns):
            return module
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modules", nargs="+", choices=sorted(MODULES), default=sorted(MODULES))
    parser.add_argument("--workers", type=int, default=2, help="mutants checked at once")
    parser.add_argument("--report-only", action="store_true", help="do not run; summarize")
    parser.add_argument(
        "--recheck", action="store_true", help="run the survivors and the unchecked mutants"
    )
    args = parser.parse_args()
    patterns = [p for m in args.modules for p in MODULES[m]]
    started = time.perf_counter()
    if not args.report_only:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        targets = patterns
        if args.recheck:
            mine = {n: c for n, c in statuses().items() if module_of(n) in args.modules}
            targets = survivors(mine) + sorted(n for n, c in mine.items() if c is None)
            if not targets:
                print("no survivors or unchecked mutants to check")
                return 0
        cmd = [*MUTMUT, "run", "--max-children", str(args.workers), *targets]
        with open(ROOT / "mutants-run.log", "w") as log:
            done = subprocess.run(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        if done.returncode not in (0, 1):
            print(f"mutmut run failed (exit {done.returncode}); see mutants-run.log")
            return done.returncode
    wall = time.perf_counter() - started
    codes = {n: c for n, c in statuses().items() if module_of(n) in args.modules}
    for name in survivors(codes):
        shown = subprocess.run([*MUTMUT, "show", name], cwd=ROOT, capture_output=True, text=True)
        diff = [ln for ln in shown.stdout.splitlines() if ln[:2] in ("- ", "+ ")]
        print(f"SURVIVED {name}\n  " + "\n  ".join(diff))
    print("\n" + describe("mutmut " + version("mutmut")))
    print(f"wall time {wall:.0f} s, {args.workers} workers; modules {' '.join(args.modules)}")
    print(
        f"{'module':<12} {'mutants':>8} {'checked':>8} {'killed':>7} {'survived':>9} {'ratio':>6}"
    )
    killed_all = checked_all = 0
    for module in args.modules:
        mine = {n: c for n, c in codes.items() if module_of(n) == module}
        checked = [c for c in mine.values() if c is not None]
        killed = sum(c in KILLED for c in checked)
        ratio = killed / len(checked) if checked else float("nan")
        print(
            f"{module:<12} {len(mine):>8} {len(checked):>8} {killed:>7} "
            f"{len(checked) - killed:>9} {ratio:>6.3f}"
        )
        killed_all += killed
        checked_all += len(checked)
    ratio = killed_all / checked_all if checked_all else 0.0
    print(f"RESULT mutation ratio={ratio:.3f} target={TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

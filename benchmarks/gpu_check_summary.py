"""The figures of a ``benchmarks/gpu_check.sh`` run, gathered from its output folder.

Two commands, both reading what the script's steps left in ``OUT``:

- ``basis OUT``: the measured GPU basis of ``trajbench run --dry-run``
  (:mod:`trajbench.pipeline.sizing`) -> ``OUT/gpu_check.json``: the card and its bf16 peak, the
  MFU of the standard preset's largest model (eager, as the presets train) and the shortest
  training step measured (the gpu preset's smaller model). Nothing is written when the figures
  are not GPU figures (a ``--cpu-smoke`` run).
- ``summary OUT WORK``: copies the gpu preset's report, plots and per-job metrics from the run
  directory ``WORK`` into ``OUT/preset``, then writes ``OUT/summary.json`` and ``OUT/summary.md``:
  every step's status and time, the CUDA-marked tests, the figures and the issue's targets.

Example:
    python benchmarks/gpu_check_summary.py basis runs/gpu-check
    python benchmarks/gpu_check_summary.py summary runs/gpu-check runs/gpu-check-work/preset
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import statistics
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path

from trajbench.io import atomic_write_json, atomic_write_text
from trajbench.pipeline.presets import PRESETS
from trajbench.pipeline.runner import jobs_of
from trajbench.provenance import git_commit

#: What the issue asks of one H100: (name, figure, comparison, target).
TARGETS = (
    ("trajbench train / plain loop (tokens/s)", "train_ratio", ">=", 0.9),
    ("MFU of the standard model (bf16, eager)", "mfu", ">=", 0.30),
    ("cached / re-encoding rollouts (env steps/s)", "rollout_ratio", ">=", 10.0),
    ("gpu preset wall time, as ensembles (s)", "preset_wall_s", "<=", 300.0),
    ("MFU of the standard model's ensemble (bf16, compiled)", "ensemble_mfu", ">=", 0.30),
    ("ensemble / one model per job (tokens/s, eager)", "ensemble_ratio", ">=", 1.0),
    ("cached rollouts / the previous measurement's (env steps/s)", "rollout_speedup", ">=", 10.0),
)


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def steps(out: Path) -> list[dict]:
    """The script's ``steps.tsv``: name, status, exit code, seconds, budget."""
    rows = []
    path = out / "steps.tsv"
    for line in path.read_text().splitlines() if path.exists() else []:
        name, status, rc, seconds, budget = line.split("\t")
        rows.append(
            {"step": name, "status": status, "rc": int(rc), "seconds": float(seconds)}
            | {"budget_s": int(budget)}
        )
    return rows


def basis(out: Path) -> dict | None:
    """The measured basis, or None where the run measured no GPU."""
    standard = read_json(out / "train-standard.json")
    small = read_json(out / "train-gpu.json")
    if not standard or not standard.get("gpu") or standard.get("mfu") is None:
        return None
    step_times = [t["step_s"] for t in (standard, small) if t and t.get("gpu")]
    return {
        "card": standard["gpu"],
        "peak_flops": standard["peak_flops"],
        "mfu": standard["mfu"],
        "min_step_s": min(step_times),
        "commit": git_commit(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "torch": standard["torch"],
        "train": [t for t in (standard, small) if t],
        "rollout": read_json(out / "rollout.json"),
    }


def cuda_tests(out: Path) -> dict | None:
    """Counts from the CUDA-marked tests' JUnit XML."""
    try:
        root = ET.parse(out / "cuda-tests.xml").getroot()
    except (OSError, ET.ParseError):
        return None
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    return counts


def copy_preset(work: Path, dest: Path, name: str, seeds: tuple[int, ...]) -> dict:
    """Copy the report and per-job metrics of the run of preset ``name`` in ``work`` into
    ``dest``; returns how far the run got."""
    preset = PRESETS[name]
    jobs = jobs_of(preset, seeds or preset.seeds)
    done = sum((j.directory(work) / "records.parquet").exists() for j in jobs)
    tokens_per_s: dict[str, list[float]] = {}  # group -> every metrics row's tokens/s
    for metrics in sorted(work.glob("jobs/*/*/*/metrics.csv")):
        target = dest / metrics.relative_to(work)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(metrics, target)
        with metrics.open() as f:
            rows = [float(r["tokens_per_s"]) for r in csv.DictReader(f)][1:]  # after warm-up
        tokens_per_s.setdefault(metrics.parts[-4], []).extend(rows)
    for item in ("results.json", "report.md", "records.parquet", "wall_time.json", "plots"):
        source = work / item
        if source.is_dir():
            shutil.copytree(source, dest / item, dirs_exist_ok=True)
        elif source.exists():
            shutil.copy(source, dest / item)
    results = read_json(work / "results.json")
    comparisons = [
        c
        for c in (results or {}).get("comparisons", [])
        if c.get("a") == "bursty" and c.get("b") in ("isolated", "shuffled")
    ]
    return {
        "preset": name,
        "jobs_done": done,
        "jobs_total": len(jobs),
        "finished": results is not None,
        "wall_time_s": results["wall_time_s"] if results else None,
        "median_training_tokens_per_s": {
            g: statistics.median(v) for g, v in tokens_per_s.items() if v
        },
        "bursty_comparisons": comparisons,
    }


def progress(work: Path, name: str) -> dict:
    """How far the run of preset ``name`` (its own seeds) in ``work`` got."""
    jobs = jobs_of(PRESETS[name], PRESETS[name].seeds)
    trained = sum((j.directory(work) / "model").exists() for j in jobs if j.condition)
    return {
        "preset": name,
        "models_trained": trained,
        "models_total": sum(j.condition is not None for j in jobs),
        "jobs_done": sum((j.directory(work) / "records.parquet").exists() for j in jobs),
        "jobs_total": len(jobs),
        "finished": (work / "results.json").exists(),
    }


def summary(out: Path, work: Path) -> dict:
    """Gather everything into ``OUT/summary.json`` and ``OUT/summary.md``."""
    run = read_json(out / "run.json") or {}
    train = read_json(out / "train-standard.json") or {}
    rollout = read_json(out / "rollout.json") or {}
    preset = standard = None
    if work.exists() and run.get("preset") in PRESETS:
        preset = copy_preset(work, out / "preset", run["preset"], tuple(run.get("seeds", ())))
    if run.get("mode") == "gpu" and (work.parent / "standard").exists():
        standard = progress(work.parent / "standard", "standard")
    ensemble = read_json(out / "ensemble.json") or {}
    eager = read_json(out / "ensemble-eager.json") or {}
    previous = (read_json(out / "previous_gpu_check.json") or {}).get("rollout") or {}
    speedup = None
    if rollout.get("device") == "cuda" and previous.get("cached_steps_per_s"):
        speedup = rollout["cached_steps_per_s"] / previous["cached_steps_per_s"]
    figures = {
        "train_ratio": train.get("ratio"),
        "mfu": train.get("mfu"),
        "rollout_ratio": rollout.get("ratio"),
        "preset_wall_s": preset["wall_time_s"] if preset else None,
        "ensemble_mfu": ensemble.get("mfu"),
        "ensemble_ratio": eager.get("ratio"),
        "rollout_speedup": speedup,
    }
    targets = []
    for label, key, op, target in TARGETS:
        value = figures[key]
        met = None if value is None else (value >= target if op == ">=" else value <= target)
        targets.append({"target": label, "value": value, "wanted": f"{op} {target:g}", "met": met})
    result = {
        "mode": run.get("mode", "?"),
        "commit": git_commit(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": read_json(out / "device.json"),
        "steps": steps(out),
        "cuda_tests": cuda_tests(out),
        "train_standard": train or None,
        "train_gpu_model": read_json(out / "train-gpu.json"),
        "train_standard_compiled": read_json(out / "train-compiled.json"),
        "rollout": rollout or None,
        "gpu_basis": read_json(out / "gpu_check.json"),
        "ensemble_eager": eager or None,
        "ensemble_compiled": ensemble or None,
        "preset": preset,
        "standard": standard,
        "targets": targets,
    }
    atomic_write_json(out / "summary.json", result)
    atomic_write_text(out / "summary.md", render(result))
    return result


def render(s: dict) -> str:
    device = s["device"] or {}
    lines = [
        f"# gpu_check ({s['mode']}) at {s['commit'][:12]}, {s['date']}",
        "",
        f"device: {device.get('name', '?')}; torch {device.get('torch', '?')}",
        "",
        "| step | status | seconds | budget (s) |",
        "|---|---|---|---|",
        *(
            f"| {r['step']} | {r['status']} | {r['seconds']:.0f} | {r['budget_s']} |"
            for r in s["steps"]
        ),
        "",
    ]
    tests = s["cuda_tests"]
    if tests:
        lines += [
            f"CUDA-marked tests: {tests['passed']} passed, {tests['failures']} failed, "
            f"{tests['errors']} errors, {tests['skipped']} skipped",
            "",
        ]
    lines += ["| target | value | wanted | met |", "|---|---|---|---|"]
    for t in s["targets"]:
        value = "not measured" if t["value"] is None else f"{t['value']:.3g}"
        met = {None: "-", True: "yes", False: "**no**"}[t["met"]]
        lines.append(f"| {t['target']} | {value} | {t['wanted']} | {met} |")
    for key, label in (
        ("train_standard", "standard model, eager"),
        ("train_standard_compiled", "standard model, compiled"),
        ("train_gpu_model", "gpu preset model, eager"),
    ):
        t = s[key]
        if t:
            mfu = "n/a" if t["mfu"] is None else f"{t['mfu']:.2%}"
            lines.append(
                f"- training, {label}: {t['tokens_per_s']:,.0f} tokens/s (plain loop "
                f"{t['reference_tokens_per_s']:,.0f}), {t['step_s'] * 1e3:.1f} ms/step, MFU {mfu}"
            )
    for key, label in (("ensemble_eager", "eager"), ("ensemble_compiled", "compiled")):
        e = s[key]
        if e:
            mfu = "n/a" if e["mfu"] is None else f"{e['mfu']:.2%}"
            lines.append(
                f"- ensemble of {e['members']} ({label}, {e['compile_mode']}): "
                f"{e['ensemble_tokens_per_s']:,.0f} tokens/s against "
                f"{e['separate_tokens_per_s']:,.0f} one model per job, ratio {e['ratio']:.2f}, "
                f"MFU {mfu}"
            )
    if s["rollout"]:
        r = s["rollout"]
        lines.append(
            f"- rollouts: cached {r['cached_steps_per_s']:,.0f} env steps/s, re-encoding "
            f"{r['reencoding_steps_per_s']:,.0f}"
        )
    p = s["preset"]
    if p:
        wall = "unfinished" if p["wall_time_s"] is None else f"{p['wall_time_s']:.0f} s"
        lines.append(
            f"- preset {p['preset']}: {p['jobs_done']}/{p['jobs_total']} jobs done, wall {wall}"
        )
        for group, tps in p["median_training_tokens_per_s"].items():
            lines.append(f"  - {group}: median training {tps:,.0f} tokens/s")
        for c in p["bursty_comparisons"]:
            lines.append(
                f"  - {c['family']} k={c['k']}: bursty - {c['b']} = {c['diff']:+.3f} "
                f"[{c['ci_low']:+.3f}, {c['ci_high']:+.3f}], separated: {c['separated']}"
            )
    st = s["standard"]
    if st:
        lines.append(
            f"- preset standard: {st['models_trained']}/{st['models_total']} models trained, "
            f"{st['jobs_done']}/{st['jobs_total']} jobs done"
            + (", finished" if st["finished"] else " (a rerun resumes it)")
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("basis").add_argument("out", type=Path)
    p = sub.add_parser("summary")
    p.add_argument("out", type=Path)
    p.add_argument("work", type=Path)
    args = parser.parse_args()
    if args.command == "basis":
        measured = basis(args.out)
        if measured is None:
            print("no GPU figures: gpu_check.json not written")
            return
        atomic_write_json(args.out / "gpu_check.json", measured)
        print(f"measured basis written to {args.out / 'gpu_check.json'}")
    else:
        print(render(summary(args.out, args.work)))


if __name__ == "__main__":
    main()

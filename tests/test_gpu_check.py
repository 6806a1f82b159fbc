"""``benchmarks/gpu_check.sh``: its CPU smoke mode end to end, its time budget, and the measured
basis it hands to ``trajbench run --dry-run``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from trajbench.pipeline.sizing import gpu_basis

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu_check_summary  # noqa: E402  (a script's module, beside the script)

STEPS = [
    "install",
    "probe",
    "cuda-tests",
    "ensemble-eager",
    "ensemble-compiled",
    "train-standard",
    "train-gpu",
    "rollout",
    "basis",
    "dry-run",
    "train-compiled",
    "preset-data",
    "preset",
    "standard",
]


def run_script(tmp_path: Path, budget: int | None = None) -> tuple[int, dict]:
    env = {
        **os.environ,
        "OUT": str(tmp_path / "out"),
        "GPU_CHECK_WORK": str(tmp_path / "work"),
        "PYTHON": sys.executable,
    }
    if budget is not None:
        env["GPU_CHECK_BUDGET_S"] = str(budget)
    done = subprocess.run(
        ["bash", str(SCRIPT), "--cpu-smoke"], env=env, capture_output=True, text=True, timeout=900
    )
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    return done.returncode, summary


def committed_basis() -> str | None:
    path = ROOT / "benchmarks" / "results" / "gpu_check.json"
    return path.read_text() if path.exists() else None


@pytest.mark.slow
def test_cpu_smoke_runs_every_step_and_summarises(tmp_path):
    basis_before = committed_basis()
    code, summary = run_script(tmp_path)
    out = tmp_path / "out"
    steps = {s["step"]: s["status"] for s in summary["steps"]}
    assert code == 0, (out / "summary.md").read_text()
    assert list(steps) == STEPS
    skipped = ("install", "train-compiled", "ensemble-compiled")
    assert all(steps[k].startswith("skipped") for k in skipped)
    assert all(v == "ok" for k, v in steps.items() if k not in skipped)
    assert summary["mode"] == "cpu-smoke" and summary["device"]["name"] == "cpu"
    tests = summary["cuda_tests"]
    assert tests["tests"] >= 5 and tests["skipped"] == tests["tests"]  # collected; skip on a CPU
    assert summary["train_standard"]["tokens_per_s"] > 0 and summary["rollout"]["ratio"] > 0
    assert summary["gpu_basis"] is None  # CPU figures are never a GPU basis
    assert "| **total** |" in (out / "dry-run.log").read_text()
    preset = summary["preset"]
    # ci, seed 0: the two trained conditions (one ensemble) and random, hashmap, replay, decoder.
    assert preset["finished"] and preset["jobs_done"] == preset["jobs_total"] == 6
    assert (out / "preset" / "report.md").is_file() and (out / "preset" / "results.json").is_file()
    assert list((out / "preset" / "jobs").rglob("metrics.csv"))
    assert [t["met"] for t in summary["targets"]][1] is None  # no MFU on a CPU
    ensemble = summary["ensemble_eager"]
    assert ensemble["members"] == 2 and ensemble["ratio"] > 0 and ensemble["mfu"] is None
    assert summary["standard"] is None  # the standard preset runs on a GPU only
    # The ci preset trained its two conditions of seed 0 as one ensemble, models alone
    # beside them as trajbench train writes them.
    models = list((tmp_path / "work" / "ci" / "jobs").rglob("model/training.json"))
    assert len(models) == 2
    assert "| preset | ok |" in (out / "summary.md").read_text()
    assert committed_basis() == basis_before  # a smoke run never touches the committed basis


@pytest.mark.slow
def test_a_step_stops_at_its_budget_and_the_summary_is_still_written(tmp_path):
    """45 s in all, 30 of them kept for the summary: a step runs out of time (which one depends
    on the machine's speed), every later step is skipped, and the exit status says so."""
    code, summary = run_script(tmp_path, budget=45)
    steps = {s["step"]: s["status"] for s in summary["steps"]}
    assert code == 3
    assert steps["probe"] == "ok"
    statuses = list(steps.values())
    first = next(i for i, v in enumerate(statuses) if v in ("timed out", "skipped: no time left"))
    assert first > list(steps).index("probe")
    assert "ok" not in statuses[first + 1 :]
    assert steps["preset"] == "skipped: no time left"
    assert summary["preset"] is None or not summary["preset"]["finished"]


def test_the_measured_basis_reaches_the_dry_run(tmp_path):
    """gpu_check_summary.py basis: MFU of the standard model, the shortest step of either."""
    train = {"gpu": "NVIDIA H100 80GB HBM3", "torch": "2.13.0+cu128", "peak_flops": 989e12}
    standard = {**train, "mfu": 0.041, "step_s": 0.0095}
    small = {**train, "mfu": 0.008, "step_s": 0.0071}
    (tmp_path / "train-standard.json").write_text(json.dumps(standard))
    (tmp_path / "train-gpu.json").write_text(json.dumps(small))
    basis = gpu_check_summary.basis(tmp_path)
    assert basis["mfu"] == 0.041 and basis["min_step_s"] == 0.0071
    (tmp_path / "gpu_check.json").write_text(json.dumps(basis))
    read = gpu_basis(tmp_path / "gpu_check.json")
    assert read.measured and read.card == "NVIDIA H100 80GB HBM3" and read.mfu == 0.041
    # CPU figures (no card, no MFU) are no basis.
    (tmp_path / "train-standard.json").write_text(json.dumps({**standard, "gpu": "", "mfu": None}))
    assert gpu_check_summary.basis(tmp_path) is None

#!/usr/bin/env bash
# The GPU check (issue 12): everything the CUDA path needs measured, in one run of at most
# 9 minutes on one GPU machine:
#
#   install -> probe the device -> the CUDA-marked tests -> the standard model trained as a
#   batched ensemble (issue 23: tokens/s against one model per job, MFU in bf16; eager, then
#   compiled with CUDA graphs) -> training throughput of the standard preset's largest model and
#   of the gpu preset's model (tokens/s against a plain PyTorch loop, MFU in bf16) -> rollout
#   throughput (KV cache against re-encoding) -> the measured GPU basis and the dry-runs of the
#   gpu and standard presets on it -> `trajbench run --preset gpu --ensemble on`, timed end to
#   end -> `trajbench run --preset standard --ensemble on` with the time that is left (a rerun,
#   on the next lease, resumes both: keep GPU_CHECK_WORK) -> summary.
#
# Every log, figure and report goes to one folder: $OUT when set (as the device tool sets it),
# else runs/gpu-check. Each step runs under `timeout` with its own budget and never past the
# deadline, so a slow step cannot eat the run, and the summary (summary.md, summary.json) is
# always written. gpu_check.json there is the measured basis of `trajbench run --dry-run`: commit
# it as benchmarks/results/gpu_check.json (this script puts it there too on a GPU).
#
# Usage:
#   bash benchmarks/gpu_check.sh               # on the GPU machine
#   bash benchmarks/gpu_check.sh --cpu-smoke   # every step shrunk, on a CPU (~2 min): tests this script
#
# On the device tool: `bash benchmarks/gpu_check.sh` with timeout_s 600 (the default budget of
# 540 s leaves a minute for install and copying back); the preset runs live in GPU_CHECK_WORK, so
# a later lease resumes them only if that folder travels (carry it, or point it at shared/).
#
# Environment: OUT (output folder), PYTHON (default: python), GPU_CHECK_BUDGET_S (the whole run;
# default 540), GPU_CHECK_WORK (where the preset runs; default runs/gpu-check-work).
# Exit status: 0 when every step that ran succeeded, 3 when one only ran out of time, 1 otherwise
# (a step failed, or there is no CUDA device outside --cpu-smoke).
set -uo pipefail
cd "$(dirname "$0")/.."

MODE=gpu
case "${1:-}" in
    --cpu-smoke) MODE=cpu-smoke ;;
    "") ;;
    *) echo "usage: bash benchmarks/gpu_check.sh [--cpu-smoke]" >&2; exit 2 ;;
esac

PYTHON="${PYTHON:-$(command -v python || command -v python3)}"
export PYTHON PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
BUDGET="${GPU_CHECK_BUDGET_S:-540}"
RESERVE=30  # seconds kept for the summary
START=$(date +%s)
OUT_DIR="${OUT:-runs/gpu-check}"
WORK="${GPU_CHECK_WORK:-runs/gpu-check-work}"
mkdir -p "$OUT_DIR" "$WORK"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
WORK=$(cd "$WORK" && pwd)
# Only what this script writes is cleared; the preset's run directory is kept, so it resumes.
rm -rf "$OUT_DIR"/*.log "$OUT_DIR"/*.json "$OUT_DIR"/cuda-tests.xml "$OUT_DIR"/summary.md \
    "$OUT_DIR"/steps.tsv "$OUT_DIR"/preset
: > "$OUT_DIR/steps.tsv"
# Today's figures, before a GPU run replaces them: the rollout target is a speed-up over them.
[ -f benchmarks/results/gpu_check.json ] \
    && cp benchmarks/results/gpu_check.json "$OUT_DIR/previous_gpu_check.json"

if [ "$MODE" = gpu ]; then
    PRESET=gpu SEEDS=""
else
    PRESET=ci SEEDS=0
fi
printf '{"mode": "%s", "preset": "%s", "seeds": [%s], "budget_s": %s}\n' \
    "$MODE" "$PRESET" "$SEEDS" "$BUDGET" > "$OUT_DIR/run.json"

record() {  # record NAME STATUS RC SECONDS BUDGET
    printf '%s\t%s\t%s\t%s\t%s\n' "$@" >> "$OUT_DIR/steps.tsv"
}

skip() {  # skip NAME REASON
    echo "== $1: skipped ($2)"
    record "$1" "skipped: $2" 0 0 0
}

step() {  # step NAME BUDGET_S COMMAND...: COMMAND under timeout, output to OUT/NAME.log
    local name=$1 budget=$2 left t0 rc status
    shift 2
    left=$((START + BUDGET - RESERVE - $(date +%s)))
    ((budget > left)) && budget=$left
    if ((budget < 5)); then
        skip "$name" "no time left"
        return 0
    fi
    echo "== $name (at most ${budget} s)"
    t0=$(date +%s)
    timeout --kill-after=10 "$budget" "$@" > "$OUT_DIR/$name.log" 2>&1
    rc=$?
    case $rc in
        0) status=ok ;;
        124 | 137) status="timed out" ;;
        *) status=failed ;;
    esac
    record "$name" "$status" "$rc" "$(($(date +%s) - t0))" "$budget"
    tail -n 4 "$OUT_DIR/$name.log" | sed 's/^/   /'
    echo "   -> $status"
}

install_project() {
    # Keep a CUDA torch that is already there; otherwise the pinned one (the local wheel cache).
    local spec=("torch==2.13.0")
    if "$PYTHON" -c "import sys, torch; sys.exit(not torch.cuda.is_available())" 2> /dev/null; then
        spec=()
        echo "keeping torch $("$PYTHON" -c 'import torch; print(torch.__version__)') (CUDA)"
    fi
    "$PYTHON" -m pip install -q "${spec[@]}" -e ".[dev]" && return
    echo "retrying without build isolation (no index for setuptools?)"
    "$PYTHON" -m pip install -q --no-build-isolation "${spec[@]}" -e ".[dev]" && return
    echo "retrying with --break-system-packages (an externally managed system Python?)"
    "$PYTHON" -m pip install -q --no-build-isolation --break-system-packages "${spec[@]}" -e ".[dev]"
}

probe() {
    nvidia-smi || echo "(no nvidia-smi)"
    "$PYTHON" - "$OUT_DIR/device.json" << 'EOF'
import json, sys
import torch, trajbench
from trajbench.provenance import hardware
cuda = torch.cuda.is_available()
device = {
    "name": torch.cuda.get_device_name(0) if cuda else "cpu",
    "cuda": cuda,
    "cuda_version": torch.version.cuda,
    "devices": torch.cuda.device_count(),
    "memory_gib": torch.cuda.get_device_properties(0).total_memory / 2**30 if cuda else None,
    "torch": torch.__version__,
    "trajbench": trajbench.__version__,
    "hardware": hardware(),
}
print(json.dumps(device, indent=2))
open(sys.argv[1], "w").write(json.dumps(device, indent=2) + "\n")
EOF
}

preset_data() {  # preset_data PRESET: collect its stores with every core, as the runner would
    # (the runner collects with one process on a GPU; a store's content does not depend on the
    # number of workers, and the runner keeps an identical store it finds). With -c, not a
    # script on stdin: the collection's worker processes re-import the main module.
    "$PYTHON" -c '
import os, sys
from pathlib import Path
from trajbench.pipeline.presets import PRESETS
from trajbench.pipeline.runner import collect_data
for spec in PRESETS[sys.argv[1]].data:
    print(collect_data(spec, Path(sys.argv[2]), os.cpu_count() or 1, progress=False), flush=True)
' "$1" "$WORK/$1"
}

dry_runs() {  # the dry-run of each preset named, on the measured basis when there is one
    local preset
    for preset in "$@"; do
        TRAJBENCH_GPU_CHECK="$OUT_DIR/gpu_check.json" "$PYTHON" -m trajbench.cli run \
            --preset "$preset" --dry-run || return
    done
}
export -f install_project probe preset_data dry_runs
export OUT_DIR WORK

train_bench=("$PYTHON" benchmarks/train_throughput.py)
trajbench=("$PYTHON" -m trajbench.cli)

if [ "$MODE" = gpu ]; then
    step install 120 bash -c install_project
else
    skip install "cpu smoke: the current environment"
fi
step probe 60 bash -c probe
if [ "$MODE" = gpu ] && ! grep -q '"cuda": true' "$OUT_DIR/device.json" 2> /dev/null; then
    echo "no CUDA device: nothing more to measure" >&2
    NO_CUDA=1
    for s in cuda-tests ensemble-eager ensemble-compiled train-standard train-gpu rollout basis \
        dry-run train-compiled preset-data preset standard; do
        skip "$s" "no CUDA device"
    done
else
    # Only the CUDA test file: collecting every test module would need every optional extra
    # (minari) on the card's machine.
    step cuda-tests 180 "$PYTHON" -m pytest -q -m cuda -rs -p no:cacheprovider \
        --junitxml="$OUT_DIR/cuda-tests.xml" tests/test_cuda.py
    ensemble_bench=("$PYTHON" benchmarks/ensemble_throughput.py)
    if [ "$MODE" = gpu ]; then
        # The standard preset's largest model trains 5 conditions x 5 seeds: 25 members.
        step ensemble-eager 90 "${ensemble_bench[@]}" --preset-model standard --members 25 \
            --steps 10 --rounds 2 --json "$OUT_DIR/ensemble-eager.json"
        step ensemble-compiled 150 "${ensemble_bench[@]}" --preset-model standard --members 25 \
            --steps 10 --rounds 1 --alone 1 --compile-mode reduce-overhead \
            --json "$OUT_DIR/ensemble.json"
        step train-standard 120 "${train_bench[@]}" --preset-model standard --rounds 4 \
            --json "$OUT_DIR/train-standard.json"
        step train-gpu 90 "${train_bench[@]}" --preset-model gpu --rounds 4 \
            --json "$OUT_DIR/train-gpu.json"
        step rollout 90 "$PYTHON" benchmarks/rollout_throughput.py --json "$OUT_DIR/rollout.json"
        step basis 30 "$PYTHON" benchmarks/gpu_check_summary.py basis "$OUT_DIR"
        if [ -f "$OUT_DIR/gpu_check.json" ]; then
            mkdir -p benchmarks/results && cp "$OUT_DIR/gpu_check.json" benchmarks/results/
        fi
        step dry-run 90 bash -c 'dry_runs gpu standard'
        skip train-compiled "one model compiled was measured before (benchmarks/results)"
        step preset-data 120 bash -c "preset_data $PRESET"
        step preset 3600 "${trajbench[@]}" run --preset "$PRESET" --out "$WORK/$PRESET" \
            --ensemble on --no-progress
        step standard 3600 "${trajbench[@]}" run --preset standard --out "$WORK/standard" \
            --ensemble on --no-progress
    else
        step ensemble-eager 60 "${ensemble_bench[@]}" --quick --members 2 --batch-size 8 \
            --json "$OUT_DIR/ensemble-eager.json"
        skip ensemble-compiled "cpu smoke: compiling is measured on the GPU"
        step train-standard 60 "${train_bench[@]}" --preset-model ci --steps 6 --rounds 1 \
            --batch-size 8 --json "$OUT_DIR/train-standard.json"
        step train-gpu 60 "${train_bench[@]}" --preset-model ci:dark-room --steps 6 --rounds 1 \
            --batch-size 8 --json "$OUT_DIR/train-gpu.json"
        step rollout 60 "$PYTHON" benchmarks/rollout_throughput.py --quick \
            --json "$OUT_DIR/rollout.json"
        step basis 30 "$PYTHON" benchmarks/gpu_check_summary.py basis "$OUT_DIR"
        step dry-run 60 bash -c 'dry_runs ci'
        skip train-compiled "cpu smoke: compiling is measured on the GPU"
        step preset-data 60 bash -c "preset_data $PRESET"
        step preset 180 "${trajbench[@]}" run --preset ci --seeds 0 --out "$WORK/$PRESET" \
            --ensemble on --no-progress
        # The standard step's resume path, tiny: the finished ci run again, which resumes to
        # nothing left to do.
        step standard 60 "${trajbench[@]}" run --preset ci --seeds 0 --out "$WORK/$PRESET" \
            --ensemble on --no-progress
    fi
fi

echo "== summary"
timeout 60 "$PYTHON" benchmarks/gpu_check_summary.py summary "$OUT_DIR" "$WORK/$PRESET" \
    > "$OUT_DIR/summary.log" 2>&1
cat "$OUT_DIR/summary.log"
echo "everything is in $OUT_DIR ($(($(date +%s) - START)) s)"
if [ -n "${NO_CUDA:-}" ] || grep -q $'\tfailed\t' "$OUT_DIR/steps.tsv" \
    || [ ! -s "$OUT_DIR/summary.md" ]; then
    exit 1
fi
if grep -qE $'\t(timed out|skipped: no time left)\t' "$OUT_DIR/steps.tsv"; then
    exit 3
fi
exit 0

"""Issue 23's targets as ``trajbench run --dry-run`` estimates them on the ensemble path: each
figure recomputed here by hand from synthetic group sizes."""

from __future__ import annotations

import json

from trajbench.baselines.transformer import ModelConfig
from trajbench.pipeline.presets import PRESETS
from trajbench.pipeline.sizing import GpuBasis, GroupSize, PresetSize
from trajbench.pipeline.targets import batches, ensemble_train_s, render_targets

BASIS = GpuBasis("NVIDIA H100 80GB HBM3", 1e15, 0.01, 0.02, "measured on X by gpu_check.sh")


def size(flops: float, collect_rate: float, gpu_s: float = 1e6) -> GroupSize:
    return GroupSize(
        name="g",
        model=ModelConfig(),
        train_jobs=15,
        eval_jobs=27,
        steps=1500,
        batch_size=128,
        tokens_per_sequence=88.0,
        training_tokens=2.5e8,
        training_flops=flops,
        eval_episodes=14400,
        cpu_tokens_per_s=5000.0,
        cpu_s=5e4,
        gpu_s=gpu_s,
        gpu_flops_bound=True,
        collect_episodes_per_cpu_s=collect_rate,
        episode_steps=10.0,
    )


def test_training_on_the_ensemble_path():
    dark_room = PRESETS["gpu"].groups[0]
    assert batches(dark_room)
    # 1.5e15 FLOPs over 1500 steps: 1e12 a step, 1e12 / (1e15 x 30%) = 3.3 ms < the 20 ms floor.
    assert ensemble_train_s(dark_room, size(1.5e15, 1.0), 1e15, 0.02) == 1500 * 0.02
    # 1.5e18: 1e15 a step, 3.33 s each.
    assert abs(ensemble_train_s(dark_room, size(1.5e18, 1.0), 1e15, 0.02) - 5000.0) < 1e-6
    # The architectures groups train an LSTM: not batched, one model at a time (the table's).
    lstm = PRESETS["architectures"].groups[0]
    assert not batches(lstm)
    assert ensemble_train_s(lstm, size(1.5e15, 1.0, gpu_s=77.0), 1e15, 0.02) == 77.0


def test_the_end_to_end_estimate(tmp_path, monkeypatch):
    measured = tmp_path / "gpu_check.json"
    measured.write_text(json.dumps({"card": "X", "rollout": {"cached_steps_per_s": 16000.0}}))
    monkeypatch.setenv("TRAJBENCH_GPU_CHECK", str(measured))
    groups = [size(1.5e15, 100.0), size(3e17, 50.0)]
    text = render_targets(PresetSize(PRESETS["gpu"], (0, 1, 2), 1, groups, BASIS, 12, 120000, 4))
    # collect: 120,000 episodes at 50/s x 16 cores = 150 s; train: 30 s + 1500 x 0.2/0.3 s
    # = 1030 s; evaluate: 2 x 14,400 episodes x 10 steps at 160,000 steps/s = 1.8 s.
    assert "| gpu end to end <= 5 min | 20 min (misses): collect 2 min + train 17 min + " in text
    assert "evaluate 2 s |" in text and "160,000 env steps/s" in text
    assert "collection 800 episodes/s" in text and "16,000 env steps/s on X" in text
    # Training may take 300 - 150 - 1.8 s; 1005 s even with no step floor.
    assert "| shortest ensemble step that meets it | not reachable by a shorter step |" in text
    fast = [size(1.5e15, 1000.0), size(1.5e15, 1000.0)]
    text = render_targets(PresetSize(PRESETS["gpu"], (0,), 1, fast, BASIS, 12, 16000, 4))
    assert "| gpu end to end <= 5 min | 1 min (meets): collect 1 s + train 1 min + " in text
    # 300 - 1 - 1.8 = 297.2 s for 2 x 1500 steps: a floor up to 99.1 ms.
    assert "| shortest ensemble step that meets it | <= 99.1 ms |" in text

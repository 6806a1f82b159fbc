"""``trajbench analyze phases``: labels, the bottleneck detector on synthetic curves, end to end."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from trajbench.analysis.phases import (
    EVALS_FILE,
    PhasesConfig,
    compute,
    detect_bottleneck,
    phase_labels,
    summarize_predictions,
)
from trajbench.baselines.transformer import ModelConfig
from trajbench.contexts import ContextConfig
from trajbench.errors import TrajbenchError
from trajbench.pipeline.train import TrainConfig

DARK_ROOM = "trajbench/DarkRoom-v0"
NOOP, UP, DOWN, LEFT, RIGHT = range(5)


# -- labels and summaries -----------------------------------------------------------------------


def test_summarize_predictions_counts_and_error_share():
    pred = pd.DataFrame(
        {
            "correct": [True, True, False, True, False, False],
            "entropy": [0.1, 0.3, 0.5, 1.0, 2.0, 3.0],
            "nll": [0.1, 0.1, 2.0, 0.2, 3.0, 1.0],
            "decision": [False, False, False, True, True, True],
        }
    )
    s = summarize_predictions(pred)
    assert s["accuracy"] == pytest.approx(0.5)
    assert s["routine_accuracy"] == pytest.approx(2 / 3)
    assert s["decision_accuracy"] == pytest.approx(1 / 3)
    assert s["routine_entropy"] == pytest.approx(0.3)
    assert s["decision_entropy"] == pytest.approx(2.0)
    assert s["decision_nll"] == pytest.approx((0.2 + 3.0 + 1.0) / 3)
    assert s["n_routine"] == 3 and s["n_decision"] == 3 and s["errors"] == 3
    assert s["decision_error_share"] == pytest.approx(2 / 3)
    assert s["decision_step_share"] == pytest.approx(0.5)
    perfect = summarize_predictions(pred.assign(correct=True))
    assert math.isnan(perfect["decision_error_share"])


# -- the bottleneck detector --------------------------------------------------------------------
def curves(routine, decision, share=None, step=10) -> pd.DataFrame:
    n = len(routine)
    return pd.DataFrame(
        {
            "step": np.arange(1, n + 1) * step,
            "routine_accuracy": routine,
            "decision_accuracy": decision,
            "decision_error_share": share if share is not None else [0.3] * n,
        }
    )


def test_bottleneck_when_routine_is_learned_first():
    ev = curves([0.5, 0.9, 0.96, 0.99, 1.0, 1.0], [0.3, 0.5, 0.7, 0.9, 0.97, 0.99])
    b = detect_bottleneck(ev, 0.95)
    assert b["routine_learned"] == 30 and b["decision_learned"] == 50
    assert b["bottleneck_step"] == 30 and b["bottleneck_steps"] == 20
    assert not b["bottleneck_open"]
    assert phase_labels(ev, 0.95) == [
        "learning routine",
        "learning routine",
        "decision bottleneck",
        "decision bottleneck",
        "both learned",
        "both learned",
    ]


def test_a_routine_dip_moves_the_learned_point_and_an_unlearned_decision_stays_open():
    ev = curves([0.96, 0.97, 0.90, 0.98, 0.99], [0.4, 0.5, 0.6, 0.7, 0.8])
    b = detect_bottleneck(ev, 0.95)
    assert b["routine_learned"] == 40  # the dip at step 30 resets it
    assert b["decision_learned"] is None
    assert b["bottleneck_step"] == 40 and b["bottleneck_open"]
    assert b["bottleneck_steps"] == 10  # to the last evaluation


def test_no_bottleneck_when_both_are_learned_together_or_routine_never_is():
    both = detect_bottleneck(curves([0.5, 0.96, 0.99], [0.4, 0.96, 0.98]), 0.95)
    assert both["routine_learned"] == both["decision_learned"] == 20
    assert both["bottleneck_step"] is None and both["bottleneck_steps"] is None
    never = detect_bottleneck(curves([0.5, 0.6, 0.7], [0.4, 0.5, 0.6]), 0.95)
    assert never["routine_learned"] is None and never["bottleneck_step"] is None
    # A lower threshold finds one in the same curves.
    low = detect_bottleneck(curves([0.5, 0.6, 0.7], [0.4, 0.5, 0.6]), 0.6)
    assert low["routine_learned"] == 20 and low["bottleneck_step"] == 20
    assert low["decision_learned"] == 30


def test_error_share_crossover_ignores_evaluations_without_errors():
    ev = curves(
        [0.5, 0.8, 0.9, 0.99, 1.0],
        [0.5, 0.6, 0.8, 0.9, 1.0],
        share=[0.2, 0.6, 0.4, 0.5, float("nan")],
    )
    b = detect_bottleneck(ev, 0.95)
    assert b["crossover_step"] == 40  # 0.4 at step 30 breaks the earlier run; NaN is skipped
    none = detect_bottleneck(curves([0.5] * 3, [0.5] * 3, share=[0.6, 0.7, 0.2]), 0.95)
    assert none["crossover_step"] is None


def test_detector_refuses_bad_input():
    with pytest.raises(TrajbenchError, match="columns"):
        detect_bottleneck(pd.DataFrame({"step": [1]}), 0.95)
    with pytest.raises(TrajbenchError, match="no evaluations"):
        detect_bottleneck(curves([], []), 0.95)
    with pytest.raises(TrajbenchError, match="threshold"):
        detect_bottleneck(curves([0.5], [0.5]), 1.5)


# -- end to end ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    from trajbench.collect import CollectConfig, collect

    root = tmp_path_factory.mktemp("phases")

    def make(levels: str, n: int, name: str, env: str = DARK_ROOM):
        cfg = CollectConfig(
            env=env, levels=levels, episodes_per_level=n, out=root / name, progress=False
        )
        return str(collect(cfg))

    return root, make("0,1,2,4", 3, "train"), make("3,40", 3, "test")


def _cfg(stores, out, every=2, eval_sequences=4, threshold=0.95, eval_data=None, **kw):
    root, train, test = stores
    base = dict(
        data=(train,),
        context=ContextConfig(mode="bursty", k=1),
        model=ModelConfig(d_model=16, n_layers=1, n_heads=2),
        steps=4,
        batch_size=4,
        warmup_steps=1,
        threads=1,
        progress=False,
        device="cpu",
    )
    return PhasesConfig(
        eval_data=eval_data or (test,),
        out=str(root / out),
        train=TrainConfig(**{**base, **kw}),
        every=every,
        eval_sequences=eval_sequences,
        threshold=threshold,
    )


def test_end_to_end_evaluations_and_resume(stores):
    cfg = _cfg(stores, "run-a")
    result = compute(cfg)
    ev = result.evaluations
    assert ev["step"].tolist() == [2, 4]
    for c in ("routine_accuracy", "decision_accuracy", "decision_step_share"):
        assert ev[c].between(0, 1).all()
    assert (ev["n_routine"] + ev["n_decision"] == 4 * 20).all()  # 4 queries of 20 steps
    assert ev["train_loss"].notna().all()
    assert set(result.bottleneck) >= {"bottleneck_step", "crossover_step", "routine_learned"}
    saved = pd.read_csv(f"{cfg.out}/run/{EVALS_FILE}")
    assert saved["step"].tolist() == [2, 4]
    # A second run on the same OUT needs --resume; resumed, it keeps the same evaluations.
    with pytest.raises(TrajbenchError, match="resume"):
        compute(cfg)
    again = compute(_cfg(stores, "run-a", resume=True))
    pd.testing.assert_frame_equal(
        again.evaluations.drop(columns="phase"), ev.drop(columns="phase"), check_dtype=False
    )
    with pytest.raises(TrajbenchError, match="other settings"):
        compute(_cfg(stores, "run-a", resume=True, eval_sequences=3))


def test_the_evaluation_hook_leaves_training_unchanged(stores):
    """Weights after a run with the per-checkpoint evaluation equal those of a plain run.

    With dropout, a hook that consumed torch's RNG or left the model in eval mode would change
    the steps after the mid-run evaluations."""
    from trajbench.analysis.phases import train_config
    from trajbench.baselines.transformer import TrajectoryTransformer
    from trajbench.pipeline.train import train

    root = stores[0]
    size = ModelConfig(d_model=16, n_layers=1, n_heads=2, dropout=0.2)
    assert len(compute(_cfg(stores, "hooked", model=size, steps=6)).evaluations) == 3
    train(train_config(_cfg(stores, "plain", model=size, steps=6)))
    a = TrajectoryTransformer.from_pretrained(root / "hooked" / "run" / "model")
    b = TrajectoryTransformer.from_pretrained(root / "plain" / "run" / "model")
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), name


def test_main_writes_outputs_and_bad_inputs_fail_cleanly(stores, tmp_path):
    from trajbench.analysis import main
    from trajbench.cli import main as cli
    from trajbench.collect import CollectConfig, collect

    root, train, test = stores
    out = root / "main"
    argv = ["phases", "--train.data", train, "--eval-data", test, "--out", str(out)]
    argv += ["--train.steps", "2", "--every", "2", "--train.batch-size", "4"]
    argv += ["--train.warmup-steps", "1", "--eval-sequences", "2", "--train.context.k", "1"]
    argv += ["--train.model.d-model", "16", "--train.model.n-layers", "1"]
    argv += ["--train.model.n-heads", "2", "--train.threads", "1", "--train.no-progress"]
    argv += ["--train.device", "cpu"]
    assert main(argv) == 0
    for suffix in (".csv", ".md", ".png", "_bottleneck.csv"):
        assert (out / f"phases{suffix}").is_file()
    table = pd.read_csv(out / "phases.csv")
    md = (out / "phases.md").read_text()
    assert f"| 2 | {table['train_loss'].iloc[0]:.3f} |" in md

    with pytest.raises(TrajbenchError, match="every"):
        compute(_cfg(stores, "bad", every=5))
    with pytest.raises(TrajbenchError, match="threshold"):
        compute(_cfg(stores, "bad", threshold=0.0))
    key_door = collect(
        CollectConfig(
            env="trajbench/DarkKeyToDoor-v0",
            levels="0,1",
            episodes_per_level=2,
            out=tmp_path / "ktd",
            progress=False,
        )
    )
    with pytest.raises(TrajbenchError, match="encoding"):
        compute(_cfg(stores, "bad", eval_data=(str(key_door),)))
    assert not (root / "bad").exists()
    assert cli(["analyze", "phases", "--train.data", train, "--eval-data", test]) == 2  # no --out

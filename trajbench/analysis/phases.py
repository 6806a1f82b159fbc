"""``trajbench analyze phases``: routine vs decision steps during training.

Trains a model (``trajbench train`` with the ``--train.*`` knobs, into ``OUT/run``) and, every ``every``
steps, evaluates it teacher-forced on a fixed set of held-out query episodes (expert episodes of
held-out levels, with the training condition's context). Each query step is one of:

- **routine**: the expert repeats its previous action (``a_t == a_{t-1}``) and the action is not an
  interaction -- moving along a corridor, staying on the goal;
- **decision**: everything else -- the first step of the episode (the plan is chosen), a step where
  the action changes (a turn, arriving somewhere), and every interaction (MiniGrid/BabyAI
  ``pickup``, ``drop``, ``toggle``, ``done``), i.e. where the expert's plan turns: choosing a door,
  an object, a room.

For both classes it records accuracy (most likely action == expert action), the mean entropy of
the predicted action distribution (nats) and the mean negative log-likelihood, plus the decision
steps' share of all errors.

**Bottleneck.** With threshold ``threshold`` (0.95), a class is *learned* at the first evaluation
from which its accuracy stays at or above the threshold at every later evaluation. Decision steps
are the bottleneck from the step where routine steps are learned while decision accuracy is still
below the threshold (``bottleneck_step``), until decision steps are learned (``decision_learned``)
or the end of the run. The **error-share crossover** is the first evaluation from which decision
steps hold at least half of all errors at every later evaluation that has errors (decision steps
are a minority of the steps, so this is where they become the main source of error).

The evaluations are written to ``OUT/run/phases_evaluations.csv`` as training goes, so
``--train.resume`` continues an interrupted analysis (training resumes from its last checkpoint, which is written at
the same steps as the evaluations).

Example:
    trajbench analyze phases --train.data data/dr --eval-data data/dr-test --out runs/dr-phases
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from trajbench.contexts import ContextBuilder, ContextConfig
from trajbench.contexts.modes import BURSTY
from trajbench.data import load
from trajbench.device import resolve_device
from trajbench.errors import TrajbenchError
from trajbench.io import atomic_write_json, atomic_write_text
from trajbench.pipeline.policies import check_compatible, load_trained_policy
from trajbench.pipeline.train import TrainConfig, train
from trajbench.pipeline.train import validate as validate_train

from .common import entropy
from .steps import is_decision

NAME = "phases"
EVALS_FILE = "phases_evaluations.csv"
SETUP_FILE = "phases_setup.json"
CLASSES = ("routine", "decision")


@dataclass
class PhasesConfig:
    """Learning phases: accuracy and entropy on routine vs decision steps during training."""

    eval_data: tuple[str, ...]
    """Held-out episode stores: the query episodes evaluated at every checkpoint."""
    out: str
    """Output directory: the training run goes to OUT/run, the analysis to OUT/phases.*."""
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=300))
    """The analysed training run (data, context, model, steps, lr, seed, device, threads, resume,
    progress, ...). Its out is OUT/run and it checkpoints and logs every --every steps; --train.seed
    also draws the evaluation sequences and --train.resume continues an interrupted analysis."""
    every: int = 10
    """Evaluate (and checkpoint) every this many steps."""
    eval_sequences: int = 64
    """Held-out sequences evaluated at every checkpoint (the same ones each time)."""
    eval_k: int | None = None
    """Context episodes of the evaluation sequences (None: the training k)."""
    threshold: float = 0.95
    """Accuracy at which a class of steps counts as learned."""


@dataclass
class PhasesResult:
    """The tables of the analysis (see :func:`compute`)."""

    evaluations: pd.DataFrame
    """One row per evaluation: accuracy, entropy, NLL per class, error share, phase."""
    bottleneck: pd.DataFrame
    """One row: the detected points (see :func:`detect_bottleneck`)."""
    about: dict
    """What was run (sizes, wall time)."""


# -- core computations --------------------------------------------------------------------------
@torch.no_grad()
def step_predictions(model, batches, device, env_id: str) -> pd.DataFrame:
    """One row per query step of ``batches``: correct, entropy, nll, decision."""
    n_actions = model.encoding.n_actions
    parts = []
    for batch in batches:
        logits, _ = model(batch.to_torch(device))
        mask = torch.from_numpy(batch.loss_mask).to(logits.device)
        q = logits.float()[mask].cpu()
        target = torch.from_numpy(batch.target[batch.loss_mask])
        logp = torch.log_softmax(q.double(), -1)
        parts.append(
            pd.DataFrame(
                {
                    "correct": (q.argmax(-1) == target).numpy(),
                    "entropy": entropy(q).numpy(),
                    "nll": (-logp.gather(1, target[:, None]).squeeze(1)).numpy(),
                    "decision": is_decision(
                        batch.target[batch.loss_mask],
                        batch.prev_action[batch.loss_mask],
                        n_actions,
                        env_id,
                    ),
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def summarize_predictions(pred: pd.DataFrame) -> dict:
    """Accuracy, entropy and NLL per class, and the decision steps' share of steps and errors."""
    row: dict = {"accuracy": float(pred["correct"].mean())}
    for name, mask in (("routine", ~pred["decision"]), ("decision", pred["decision"])):
        g = pred[mask]
        row[f"n_{name}"] = len(g)
        for m in ("correct", "entropy", "nll"):
            key = f"{name}_{'accuracy' if m == 'correct' else m}"
            row[key] = float(g[m].mean()) if len(g) else float("nan")
    errors = ~pred["correct"]
    row["errors"] = int(errors.sum())
    row["decision_step_share"] = float(pred["decision"].mean())
    row["decision_error_share"] = (
        float((errors & pred["decision"]).sum() / errors.sum()) if errors.any() else float("nan")
    )
    return row


def _learned_from(steps: np.ndarray, ok: np.ndarray) -> int | None:
    """First step from which ``ok`` holds at every later evaluation (None: never)."""
    if not len(ok) or not ok[-1]:
        return None
    bad = np.flatnonzero(~ok)
    return int(steps[bad[-1] + 1]) if len(bad) else int(steps[0])


def detect_bottleneck(evals: pd.DataFrame, threshold: float = 0.95) -> dict:
    """Where decision steps become the bottleneck of learning.

    Args:
        evals: One row per evaluation with ``step``, ``routine_accuracy``, ``decision_accuracy``
            and ``decision_error_share`` (NaN where there were no errors).
        threshold: Accuracy at which a class counts as learned.

    Returns:
        ``routine_learned`` / ``decision_learned``: first step from which the class's accuracy
        stays >= ``threshold`` (None: not within the run); ``bottleneck_step``: ``routine_learned``
        if decision accuracy is still below the threshold there, else None;
        ``bottleneck_steps``: how long decision steps lagged (to ``decision_learned`` or to the
        last evaluation, then ``bottleneck_open`` is True); ``crossover_step``: first step from
        which decision steps hold at least half of the errors at every later evaluation with
        errors (None: never).
    """
    if not 0.0 < threshold <= 1.0:
        raise TrajbenchError(f"threshold must be in (0, 1], got {threshold}")
    need = {"step", "routine_accuracy", "decision_accuracy", "decision_error_share"}
    missing = need - set(evals.columns)
    if missing:
        raise TrajbenchError(f"evaluations lack columns {sorted(missing)}")
    if evals.empty:
        raise TrajbenchError("no evaluations to detect a bottleneck in")
    ev = evals.sort_values("step")
    steps = ev["step"].to_numpy(np.int64)
    routine = ev["routine_accuracy"].to_numpy(float)
    decision = ev["decision_accuracy"].to_numpy(float)
    r_learned = _learned_from(steps, np.nan_to_num(routine, nan=1.0) >= threshold)
    d_learned = _learned_from(steps, np.nan_to_num(decision, nan=1.0) >= threshold)
    bottleneck = None
    if r_learned is not None:
        at = int(np.flatnonzero(steps == r_learned)[0])
        if not decision[at] >= threshold:
            bottleneck = r_learned
    share = ev["decision_error_share"].to_numpy(float)
    has_errors = ~np.isnan(share)
    crossover = None
    if has_errors.any():
        s_steps, s_share = steps[has_errors], share[has_errors]
        crossover = _learned_from(s_steps, s_share >= 0.5)
    end = d_learned if d_learned is not None else int(steps[-1])
    return {
        "threshold": threshold,
        "routine_learned": r_learned,
        "decision_learned": d_learned,
        "bottleneck_step": bottleneck,
        "bottleneck_steps": (end - bottleneck) if bottleneck is not None else None,
        "bottleneck_open": bool(bottleneck is not None and d_learned is None),
        "crossover_step": crossover,
    }


def phase_labels(evals: pd.DataFrame, threshold: float) -> list[str]:
    """Per evaluation: which class is learned (accuracy >= threshold) at that point."""
    out = []
    for r, d in zip(evals["routine_accuracy"], evals["decision_accuracy"], strict=True):
        r_ok, d_ok = bool(r >= threshold), bool(d >= threshold)
        out.append(
            "both learned"
            if r_ok and d_ok
            else "decision bottleneck"
            if r_ok
            else "decisions first"
            if d_ok
            else "learning routine"
        )
    return out


# -- the run ------------------------------------------------------------------------------------
def train_config(cfg: PhasesConfig) -> TrainConfig:
    """The :class:`~trajbench.pipeline.train.TrainConfig` of the analysed run."""
    out = str(Path(cfg.out) / "run")
    return replace(cfg.train, out=out, checkpoint_every=cfg.every, log_every=cfg.every)


def validate(cfg: PhasesConfig) -> None:
    """Raise :class:`TrajbenchError` naming the first bad knob (the training config's included)."""
    for name in ("every", "eval_sequences"):
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise TrajbenchError(f"{name} must be an integer >= 1, got {value!r}")
    if cfg.every > cfg.train.steps:
        raise TrajbenchError(f"every ({cfg.every}) must be <= steps ({cfg.train.steps})")
    if cfg.eval_k is not None and cfg.eval_k < 1:
        raise TrajbenchError(f"eval_k must be >= 1 or None, got {cfg.eval_k}")
    if not 0.0 < cfg.threshold <= 1.0:
        raise TrajbenchError(f"threshold must be in (0, 1], got {cfg.threshold}")
    if not cfg.train.data or not cfg.eval_data:
        raise TrajbenchError("--train.data and --eval-data each need at least one episode store")
    validate_train(train_config(cfg))
    resolve_device(cfg.train.device)  # a bad device fails before any training


def eval_context(cfg: PhasesConfig) -> ContextConfig:
    """The held-out sequences' context: the training mode, k and instruction, expert queries,
    uniform levels, no bursty/trajectories mixing (``p_bursty`` set: bursty)."""
    ctx = cfg.train.context
    mode = BURSTY if ctx.p_bursty is not None else ctx.mode
    return replace(
        ctx,
        mode=mode,
        k=cfg.eval_k if cfg.eval_k is not None else ctx.k,
        p_bursty=None,
        zipf=0.0,
        query_demonstrators=("expert",),
    )


class CheckpointEvaluator:
    """The ``on_checkpoint`` hook of :func:`~trajbench.pipeline.train.train`: evaluates the model
    on the fixed held-out batches and saves every evaluation so far to ``OUT/run/phases_evaluations.csv``.

    Resuming, it reads the evaluations back, after checking that they were made with the same
    settings (``setup``); steps already evaluated are skipped.
    """

    def __init__(self, run: Path, batches: list, env_id: str, setup: dict, resume: bool):
        self.batches, self.env_id, self.setup = batches, env_id, setup
        self.path, self.setup_path = run / EVALS_FILE, run / SETUP_FILE
        self.rows: list[dict] = []
        self.seconds = 0.0
        if resume and self.path.exists():
            before = json.loads(self.setup_path.read_text()) if self.setup_path.exists() else None
            if before != json.loads(json.dumps(setup)):
                raise TrajbenchError(
                    f"{run} was evaluated with other settings ({before}); resume with the same "
                    "--eval-data, --eval-k, --eval-sequences and --train.seed, or use a new --out"
                )
            self.rows = pd.read_csv(self.path).to_dict("records")
        self.done = {int(r["step"]) for r in self.rows}

    def __call__(self, step: int, model) -> None:
        if step in self.done:
            return
        started = time.perf_counter()
        was_training = model.training
        model.eval()
        try:
            device = next(model.parameters()).device
            pred = step_predictions(model, self.batches, device, self.env_id)
        finally:
            model.train(was_training)
        self.rows.append({"step": int(step), **summarize_predictions(pred)})
        self.done.add(int(step))
        if not self.setup_path.exists():
            atomic_write_json(self.setup_path, self.setup)
        atomic_write_text(self.path, pd.DataFrame(self.rows).to_csv(index=False))
        self.seconds += time.perf_counter() - started


def compute(cfg: PhasesConfig) -> PhasesResult:
    """Train with periodic evaluation; returns the evaluations and the detected bottleneck.

    Writes the training run to ``OUT/run`` (and the evaluations so far to
    ``OUT/run/phases_evaluations.csv``), nothing else.
    """
    started = time.perf_counter()
    validate(cfg)
    tcfg = train_config(cfg)
    run = Path(tcfg.out)
    if run.exists() and any(run.iterdir()) and not tcfg.resume:
        raise TrajbenchError(f"{run} already holds a run; pass --train.resume to continue it")
    train_store, eval_store = load(list(tcfg.data)), load(list(cfg.eval_data))
    check_compatible(train_store.encoding, eval_store.encoding, "trained on --train.data")
    vocab = ContextBuilder(train_store, seed=tcfg.seed, config=tcfg.context).vocab  # as train's
    builder = ContextBuilder(eval_store, seed=tcfg.seed, vocab=vocab, config=eval_context(cfg))
    batches = [
        builder.sample(min(32, cfg.eval_sequences - s), seed=tcfg.seed * 7919 + s)
        for s in range(0, cfg.eval_sequences, 32)
    ]
    # What the evaluations depend on besides the training run (which train() itself checks).
    setup = {
        "eval_data": [str(Path(p).resolve()) for p in cfg.eval_data],
        "eval_context": asdict(eval_context(cfg)),
        "eval_sequences": cfg.eval_sequences,
        "seed": tcfg.seed,
    }
    # Families sharing an encoding share their actions: the first one names the interactions.
    evaluator = CheckpointEvaluator(run, batches, eval_store.env_ids[0], setup, tcfg.resume)
    model_dir = train(tcfg, on_checkpoint=evaluator)
    if load_trained_policy(model_dir)[0].vocab.itos != vocab.itos:
        # The evaluation sequences must be encoded as the model reads them.
        raise TrajbenchError(f"{model_dir} has another mission vocabulary than its training data")
    evals = pd.DataFrame(evaluator.rows).sort_values("step").reset_index(drop=True)
    if (run / "metrics.csv").exists():
        loss = pd.read_csv(run / "metrics.csv")[["step", "loss"]]
        evals = evals.merge(loss.rename(columns={"loss": "train_loss"}), on="step", how="left")
    evals["phase"] = phase_labels(evals, cfg.threshold)
    about = {
        "data": list(tcfg.data),
        "eval_data": list(cfg.eval_data),
        "env_ids": eval_store.env_ids,
        "context": asdict(tcfg.context),
        "eval_k": eval_context(cfg).k,
        "steps": tcfg.steps,
        "every": cfg.every,
        "eval_sequences": cfg.eval_sequences,
        "query_steps": int(evals[["n_routine", "n_decision"]].iloc[-1].sum()),
        "wall_s": time.perf_counter() - started,
        "eval_s": evaluator.seconds,
    }
    bottleneck = pd.DataFrame([detect_bottleneck(evals, cfg.threshold)])
    return PhasesResult(evals, bottleneck, about)

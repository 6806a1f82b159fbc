"""``trajbench analyze phases``: routine vs decision steps during training.

Trains a model (``trajbench train`` with the knobs below, into ``OUT/run``) and, every ``every``
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

The evaluations are written to ``OUT/run/phases_evaluations.csv`` as training goes, so ``--resume``
continues an interrupted analysis (training resumes from its last checkpoint, which is written at
the same steps as the evaluations).

Example:
    trajbench analyze phases --data data/dr --eval-data data/dr-test --out runs/dr-phases
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from trajbench.baselines.transformer import ModelConfig as ModelSize
from trajbench.cliargs import parse_config
from trajbench.contexts import ContextConfig
from trajbench.errors import TrajbenchError

from .internals import entropy, fmt, markdown_table, pct, set_threads, write_outputs

NAME = "phases"
EVALS_FILE = "phases_evaluations.csv"
CLASSES = ("routine", "decision")
#: Actions that are decisions whenever they are taken, by observation encoding (MiniGrid's
#: pickup, drop, toggle, done); the dark grids have none (their 5 actions are moves and stay).
INTERACTION_ACTIONS: dict[str, tuple[int, ...]] = {"minigrid": (3, 4, 5, 6)}


@dataclass
class PhasesConfig:
    """Learning phases: accuracy and entropy on routine vs decision steps during training."""

    data: tuple[str, ...]
    """Training episode stores (as for trajbench train)."""
    eval_data: tuple[str, ...]
    """Held-out episode stores: the query episodes evaluated at every checkpoint."""
    out: str
    """Output directory: the training run goes to OUT/run, the analysis to OUT/phases.*."""
    context: ContextConfig = field(default_factory=ContextConfig)
    """How training sequences are built (the evaluation uses the same mode, k and instruction)."""
    model: ModelSize = field(default_factory=ModelSize)
    """Model shape."""
    steps: int = 300
    """Optimizer steps of the training run."""
    every: int = 10
    """Evaluate (and checkpoint) every this many steps."""
    batch_size: int = 32
    """Sequences per optimizer step."""
    lr: float = 1e-3
    """Peak learning rate (warm-up, then cosine decay over the whole run)."""
    warmup_steps: int = 100
    """Linear warm-up steps."""
    eval_sequences: int = 64
    """Held-out sequences evaluated at every checkpoint (the same ones each time)."""
    eval_k: int | None = None
    """Context episodes of the evaluation sequences (None: the training k)."""
    threshold: float = 0.95
    """Accuracy at which a class of steps counts as learned."""
    resume: bool = False
    """Continue an interrupted analysis in OUT (its run and its evaluations so far)."""
    seed: int = 0
    """Seed of the training run and of the evaluation sequences."""
    device: str = "auto"
    """auto, cpu or cuda[:N]."""
    threads: int = 0
    """CPU threads for torch (0: torch's default)."""
    progress: bool = True
    """Show a progress bar."""


@dataclass
class PhasesResult:
    evaluations: pd.DataFrame
    """One row per evaluation: accuracy, entropy, NLL per class, error share, phase."""
    bottleneck: dict
    """The detected points (see :func:`detect_bottleneck`)."""
    about: dict
    """What was run (sizes, wall time)."""


# -- core computations --------------------------------------------------------------------------
def is_decision(
    actions: np.ndarray, prev_actions: np.ndarray, n_actions: int, encoding: str = ""
) -> np.ndarray:
    """Whether each expert step is a decision step (else routine); see the module docstring.

    Args:
        actions: The expert's actions ``a_t``.
        prev_actions: ``a_{t-1}``, with ``start_action = n_actions`` at the first step.
        n_actions: Size of the action space (``start_action``).
        encoding: Observation encoding name; selects :data:`INTERACTION_ACTIONS`.
    """
    a = np.asarray(actions, dtype=np.int64)
    prev = np.asarray(prev_actions, dtype=np.int64)
    if a.shape != prev.shape:
        raise TrajbenchError(f"actions {a.shape} and prev_actions {prev.shape} differ in shape")
    interaction = np.isin(a, INTERACTION_ACTIONS.get(encoding, ()))
    return (prev == n_actions) | (a != prev) | interaction


@torch.no_grad()
def step_predictions(model, batches, device, encoding: str) -> pd.DataFrame:
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
                        encoding,
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
def _validate(cfg: PhasesConfig) -> None:
    for name in ("steps", "every", "batch_size", "eval_sequences"):
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise TrajbenchError(f"{name} must be an integer >= 1, got {value!r}")
    if cfg.every > cfg.steps:
        raise TrajbenchError(f"every ({cfg.every}) must be <= steps ({cfg.steps})")
    if cfg.eval_k is not None and cfg.eval_k < 1:
        raise TrajbenchError(f"eval_k must be >= 1 or None, got {cfg.eval_k}")
    if not 0.0 < cfg.threshold <= 1.0:
        raise TrajbenchError(f"threshold must be in (0, 1], got {cfg.threshold}")
    if not cfg.data or not cfg.eval_data:
        raise TrajbenchError("--data and --eval-data each need at least one episode store")
    cfg.context.validate()


def train_config(cfg: PhasesConfig):
    """The :class:`~trajbench.train.TrainConfig` of the analysed run."""
    from trajbench.pipeline.train import TrainConfig

    return TrainConfig(
        data=tuple(cfg.data),
        out=str(Path(cfg.out) / "run"),
        context=replace(cfg.context),
        model=replace(cfg.model),
        steps=cfg.steps,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        warmup_steps=cfg.warmup_steps,
        seed=cfg.seed,
        device=cfg.device,
        threads=cfg.threads,
        checkpoint_every=cfg.every,
        log_every=cfg.every,
        resume=cfg.resume,
        progress=cfg.progress,
    )


def eval_context(cfg: PhasesConfig) -> ContextConfig:
    """The held-out sequences' context: the training mode, k and instruction, expert queries,
    uniform levels, no bursty/trajectories mixing (``p_bursty`` set: bursty)."""
    ctx = cfg.context
    mode = "bursty" if ctx.p_bursty is not None else ctx.mode
    return replace(
        ctx,
        mode=mode,
        k=cfg.eval_k if cfg.eval_k is not None else ctx.k,
        p_bursty=None,
        zipf=0.0,
        query_demonstrators=("expert",),
    )


def phases(cfg: PhasesConfig) -> PhasesResult:
    """Train with periodic evaluation; returns the evaluations and the detected bottleneck.

    Writes the training run to ``OUT/run`` (and the evaluations so far to
    ``OUT/run/phases_evaluations.csv``), nothing else.
    """
    from trajbench.contexts import ContextBuilder
    from trajbench.data import load
    from trajbench.device import resolve_device
    from trajbench.io import atomic_write_text
    from trajbench.pipeline.train import train

    _validate(cfg)
    set_threads(cfg.threads)
    resolve_device(cfg.device)  # a bad device fails before any training
    t0 = time.perf_counter()
    tcfg = train_config(cfg)
    run = Path(tcfg.out)
    evals_path = run / EVALS_FILE
    if run.exists() and any(run.iterdir()) and not cfg.resume:
        raise TrajbenchError(f"{run} already holds a run; pass --resume to continue it")
    train_store, eval_store = load(list(cfg.data)), load(list(cfg.eval_data))
    if tuple(train_store.encoding.feature_sizes) != tuple(eval_store.encoding.feature_sizes) or (
        train_store.encoding.n_actions != eval_store.encoding.n_actions
    ):
        raise TrajbenchError(
            f"--eval-data uses encoding {eval_store.encoding.name!r}, the training data "
            f"{train_store.encoding.name!r}: the model could not read it"
        )
    vocab = ContextBuilder(train_store, seed=cfg.seed, config=cfg.context).vocab  # as train's
    builder = ContextBuilder(eval_store, seed=cfg.seed, vocab=vocab, config=eval_context(cfg))
    batches = [
        builder.sample(min(32, cfg.eval_sequences - s), seed=cfg.seed * 7919 + s)
        for s in range(0, cfg.eval_sequences, 32)
    ]
    encoding = eval_store.encoding.name
    rows: list[dict] = []
    # What the evaluations depend on besides the training run (which train() itself checks).
    eval_setup = {
        "eval_data": [str(Path(p).resolve()) for p in cfg.eval_data],
        "eval_context": asdict(eval_context(cfg)),
        "eval_sequences": cfg.eval_sequences,
        "seed": cfg.seed,
    }
    setup_path = run / "phases_setup.json"
    if cfg.resume and evals_path.exists():
        before = json.loads(setup_path.read_text()) if setup_path.exists() else None
        if before != json.loads(json.dumps(eval_setup)):
            raise TrajbenchError(
                f"{run} was evaluated with other settings ({before}); resume with the same "
                "--eval-data, --eval-k, --eval-sequences and --seed, or use a new --out"
            )
        rows = pd.read_csv(evals_path).to_dict("records")
    done = {int(r["step"]) for r in rows}
    eval_s = [0.0]

    def on_checkpoint(step: int, model) -> None:
        if step in done:
            return
        t = time.perf_counter()
        was_training = model.training
        model.eval()
        try:
            pred = step_predictions(model, batches, next(model.parameters()).device, encoding)
        finally:
            model.train(was_training)
        rows.append({"step": int(step), **summarize_predictions(pred)})
        done.add(int(step))
        if not setup_path.exists():
            atomic_write_text(setup_path, json.dumps(eval_setup, indent=2) + "\n")
        atomic_write_text(evals_path, pd.DataFrame(rows).to_csv(index=False))
        eval_s[0] += time.perf_counter() - t

    model_dir = train(tcfg, on_checkpoint=on_checkpoint)
    saved = json.loads((Path(model_dir) / "trajbench_model.json").read_text())["vocab"]
    if saved != vocab.itos:  # the evaluation sequences must be encoded as the model reads
        raise TrajbenchError(f"{model_dir} has another mission vocabulary than its training data")
    evals = pd.DataFrame(rows).sort_values("step").reset_index(drop=True)
    metrics_path = run / "metrics.csv"
    if metrics_path.exists():
        loss = pd.read_csv(metrics_path)[["step", "loss"]].rename(columns={"loss": "train_loss"})
        evals = evals.merge(loss, on="step", how="left")
    evals["phase"] = phase_labels(evals, cfg.threshold)
    bottleneck = detect_bottleneck(evals, cfg.threshold)
    about = {
        "data": list(cfg.data),
        "eval_data": list(cfg.eval_data),
        "env_ids": eval_store.env_ids,
        "context": asdict(cfg.context),
        "eval_k": eval_context(cfg).k,
        "steps": cfg.steps,
        "every": cfg.every,
        "eval_sequences": cfg.eval_sequences,
        "query_steps": int(evals[["n_routine", "n_decision"]].iloc[-1].sum()),
        "wall_s": time.perf_counter() - t0,
        "eval_s": eval_s[0],
    }
    return PhasesResult(evals, bottleneck, about)


# -- report -------------------------------------------------------------------------------------
def _step(value) -> str:
    return "-" if value is None else str(int(value))


def render_markdown(result: PhasesResult, cfg: PhasesConfig) -> str:
    ev, b, about = result.evaluations, result.bottleneck, result.about
    thr = pct(cfg.threshold)
    last = ev.iloc[-1]
    lines = [
        "# Learning phases: routine vs decision steps",
        "",
        f"Trained on `{', '.join(about['data'])}` ({about['context']['mode']} contexts, "
        f"k = {about['context']['k']}) for {about['steps']} steps, evaluated every "
        f"{about['every']} steps on {about['eval_sequences']} held-out sequences of "
        f"`{', '.join(about['eval_data'])}` (k = {about['eval_k']}; {about['query_steps']} query "
        f"steps, {pct(last['decision_step_share'])} of them decision steps); "
        f"{about['wall_s']:.1f} s in all, {about['eval_s']:.1f} s of it evaluating.",
        "",
        "## Findings",
        "",
    ]
    r_l, d_l = b["routine_learned"], b["decision_learned"]
    lines.append(
        f"- Routine steps reach and keep {thr} accuracy "
        + (f"from step {r_l}" if r_l is not None else f"at no point within {about['steps']} steps")
        + "; decision steps "
        + (f"from step {d_l}." if d_l is not None else f"never within {about['steps']} steps.")
    )
    if b["bottleneck_step"] is not None:
        at = ev.loc[ev["step"] == b["bottleneck_step"]].iloc[0]
        lines.append(
            f"- **Decision steps are the bottleneck from step {b['bottleneck_step']}**: routine "
            f"accuracy is {pct(at['routine_accuracy'], 1)} there, decision accuracy "
            f"{pct(at['decision_accuracy'], 1)}; the lag lasts "
            + (
                f"{b['bottleneck_steps']} steps (until step {d_l})."
                if not b["bottleneck_open"]
                else f"at least {b['bottleneck_steps']} steps (to the end of the run)."
            )
        )
    elif r_l is not None and d_l is not None:
        lines.append(
            f"- No bottleneck at the {thr} threshold: decision steps are learned "
            + ("together with" if d_l == r_l else "before" if d_l < r_l else "after")
            + " routine steps while routine accuracy was still changing."
        )
    else:
        lines.append(f"- No bottleneck at the {thr} threshold: routine steps are not learned yet.")
    if b["crossover_step"] is not None:
        after = ev.loc[ev["step"] >= b["crossover_step"], "errors"]
        lines.append(
            f"- From step {b['crossover_step']} on, decision steps hold at least half of all "
            f"errors (they are {pct(last['decision_step_share'])} of the steps); from there the "
            f"model makes {int(after.min())} to {int(after.max())} errors on "
            f"{about['query_steps']} query steps per evaluation."
        )
    else:
        lines.append("- Decision steps never hold a lasting majority of the errors.")
    first = ev.iloc[0]
    lines.append(
        f"- Entropy of the predicted action: routine {fmt(first['routine_entropy'])} -> "
        f"{fmt(last['routine_entropy'])} nats, decision {fmt(first['decision_entropy'])} -> "
        f"{fmt(last['decision_entropy'])} nats (step {int(first['step'])} -> "
        f"{int(last['step'])})."
    )
    cols = [
        "step",
        "train_loss",
        "routine_accuracy",
        "decision_accuracy",
        "routine_entropy",
        "decision_entropy",
        "decision_error_share",
        "errors",
        "phase",
    ]
    cols = [c for c in cols if c in ev]
    lines += ["", "## Evaluations", "", markdown_table(ev[cols]), ""]
    lines += [
        "## Definitions",
        "",
        "- routine step: the expert repeats its previous action (not an interaction); decision "
        "step: first step, changed action, or an interaction (MiniGrid pickup/drop/toggle/done).",
        f"- learned: accuracy >= {thr} at that evaluation and every later one; bottleneck: from "
        "the step routine steps are learned while decision steps are not; crossover: decision "
        "steps hold >= 50% of the errors at every later evaluation with errors.",
        "- entropy: mean entropy (nats) of the predicted action distribution; accuracy: most "
        "likely action equals the expert's. Teacher-forced on held-out query episodes.",
        "",
        f"Files: phases.csv (one row per evaluation), phases_bottleneck.csv; the run is in "
        f"`{Path(cfg.out) / 'run'}`.",
        "",
    ]
    return "\n".join(lines)


def render_plot(result: PhasesResult, cfg: PhasesConfig) -> bytes:
    from .internals import figure_png, pyplot

    plt = pyplot()
    ev, b = result.evaluations, result.bottleneck
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for name, style in zip(CLASSES, ("-o", "-s"), strict=True):
        axes[0].plot(ev["step"], ev[f"{name}_accuracy"], style, ms=3, label=f"{name} steps")
        axes[1].plot(ev["step"], ev[f"{name}_entropy"], style, ms=3, label=f"{name} steps")
    axes[0].axhline(cfg.threshold, color="grey", lw=0.8, ls=":", label=f"{pct(cfg.threshold)}")
    axes[2].plot(
        ev["step"], ev["decision_error_share"], "-o", ms=3, label="decision share of errors"
    )
    axes[2].plot(ev["step"], ev["decision_step_share"], "--", label="decision share of steps")
    axes[2].axhline(0.5, color="grey", lw=0.8, ls=":")
    if b["bottleneck_step"] is not None:
        end = b["decision_learned"] if b["decision_learned"] is not None else ev["step"].max()
        for ax in axes:
            ax.axvspan(b["bottleneck_step"], end, color="tab:red", alpha=0.1)
    axes[0].set_ylabel("accuracy (held-out queries)")
    axes[1].set_ylabel("action entropy (nats)")
    axes[2].set_ylabel("share")
    axes[0].set_title(
        "Accuracy" + (" (shaded: decision bottleneck)" if b["bottleneck_step"] else "")
    )
    axes[1].set_title("Entropy of the predicted action")
    axes[2].set_title("Where the errors are")
    for ax in axes:
        ax.set_xlabel("training step")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return figure_png(fig)


def main(argv: list[str]) -> int:
    cfg = parse_config(PhasesConfig, argv, prog="trajbench analyze phases")
    if cfg is None:
        return 0
    result = phases(cfg)
    markdown = render_markdown(result, cfg)
    png = render_plot(result, cfg)
    bottleneck = pd.DataFrame([result.bottleneck])
    paths = write_outputs(
        cfg.out, NAME, result.evaluations, markdown, png, {"bottleneck": bottleneck}
    )
    print(markdown)
    print(f"written: {', '.join(str(p) for p in paths)}")
    return 0

"""Many models per step: the members of an ensemble train together, each exactly as if alone.

The models of a group that share a model shape (its conditions x seeds) differ only in their
context config and seed. :func:`train_ensemble` trains them in one process as one batched
ensemble: their weights are stacked along a leading member dimension and one forward pass runs
every member (``torch.func.vmap`` of ``torch.func.functional_call`` over the model), so a GPU sees
a few large kernels instead of many small ones. Every member keeps what a model trained alone has:

- its own initial weights (``torch.manual_seed(seed)`` before it is built) and its own batch
  stream (``ContextBuilder(seed)``, batch ``s`` = ``sample(seed=batch_seed(seed, s))``); batches of
  different lengths are right-padded to the longest, which changes nothing (causal models, and
  padding carries no target);
- its own loss normalizer, gradient norm and clipping: the global-norm clip is computed per member;
- its own AdamW state: one AdamW over the stacked weights is elementwise, so member ``m``'s moments
  are row ``m`` of the stacked ones (weight decay too);
- its own run directory: ``train_config.json``, ``metrics.csv``, ``checkpoint.pt`` and
  ``model/`` with ``training.json``, in the formats ``trajbench train`` writes. A member's
  checkpoint is an ordinary one: ``trajbench train --resume`` continues it alone, and an ensemble
  continues checkpoints written alone.

So an ensemble member equals the same model trained alone on the same batches, within float
tolerance (``tests/test_ensemble.py``). Members killed at different checkpoints resume as
separate ensembles, one per step they resume from.

Which backbones batch: llama, gpt2 and mamba2 do; lstm falls back to one model per process
(torch has no vmap batching rule for ``aten::lstm``). Dropout falls back too (vmap would draw one
dropout mask stream for all members, not each member's own), and so does ``torchrun``.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch.func import functional_call, vmap

from trajbench import __version__
from trajbench.baselines.transformer import TrajectoryTransformer
from trajbench.batch import IGNORE
from trajbench.configs import to_dict
from trajbench.contexts import ContextBuilder, ContextConfig
from trajbench.data import load
from trajbench.device import autocast, resolve_device, torch_threads, world_size
from trajbench.errors import TrajbenchError
from trajbench.io import atomic_write_json, remove_stale_temporaries

from .checkpoints import CHECKPOINT, load_checkpoint, save_checkpoint
from .train import (
    BatchStream,
    MetricsLog,
    adamw,
    batch_tensors,
    learning_rate,
    make_optimizer,
)
from .train_config import TrainConfig, validate
from .training_record import TrainingRecord, save_trained_model, trained_levels


def ensemble_key(cfg: TrainConfig) -> str:
    """What members of one ensemble share: every field but the context, the seed and ``out``."""
    shared = replace(cfg, context=ContextConfig(), seed=0, out="", resume=False, progress=False)
    return json.dumps(to_dict(shared), sort_keys=True)


def ensemble_on(mode: str, device: torch.device) -> bool:
    """Whether ``trajbench run --ensemble MODE`` trains ensembles on ``device``: ``on``, ``off``,
    or ``auto``: on CUDA only (on a CPU core one model already keeps it busy:
    ``benchmarks/ensemble_throughput.py`` measured 0.90x there)."""
    if mode not in ("auto", "on", "off"):
        raise TrajbenchError(f"--ensemble must be auto, on or off, got {mode!r}")
    return mode == "on" or (mode == "auto" and device.type == "cuda")


def why_not_ensemble(cfg: TrainConfig) -> str:
    """Why ``cfg`` cannot train inside an ensemble ("" if it can)."""
    if not cfg.model.kind.ensemble:
        return f"the {cfg.model.backbone} backbone does not batch under torch.func.vmap"
    if cfg.model.dropout > 0:
        return "dropout would share one random stream across members"
    if world_size() > 1:
        return "torchrun: one model per process"
    return ""


@dataclass
class _Member:
    """One model of the ensemble with its own data, optimizer and run directory."""

    cfg: TrainConfig
    model: TrajectoryTransformer
    optimizer: torch.optim.Optimizer
    start: int
    log: MetricsLog | None = None
    batches: object = None


def train_ensemble(cfgs: Sequence[TrainConfig]) -> list[Path]:
    """Train every config of ``cfgs`` as one batched ensemble; returns their model directories.

    The configs must agree on everything but ``context``, ``seed`` and ``out``
    (:func:`ensemble_key`) and each must be able to batch (:func:`why_not_ensemble`). A member
    whose model directory exists is done and skipped (with ``resume``; else an error, as for
    ``trajbench train``); members resume from their own checkpoints.
    """
    cfgs = list(cfgs)
    if not cfgs:
        return []
    for cfg in cfgs:
        validate(cfg)
        if why := why_not_ensemble(cfg):
            raise TrajbenchError(f"{cfg.out}: cannot train in an ensemble: {why}")
        if ensemble_key(cfg) != ensemble_key(cfgs[0]):
            raise TrajbenchError(
                f"{cfg.out} and {cfgs[0].out} differ in more than context, seed and out; "
                "they cannot train as one ensemble"
            )
        out = Path(cfg.out)
        for existing in (out / "model", out / CHECKPOINT):
            if existing.exists() and not cfg.resume:
                raise TrajbenchError(f"{existing} already exists; pass --resume to continue")
    if len({str(Path(c.out).resolve()) for c in cfgs}) < len(cfgs):
        raise TrajbenchError("two ensemble members share one run directory")
    todo = [c for c in cfgs if not (Path(c.out) / "model").exists()]
    device = resolve_device(cfgs[0].device)
    with torch_threads(cfgs[0].threads):
        if todo:
            store = load(list(todo[0].data))
            members = [_member(c, store, device) for c in todo]
            for start in sorted({m.start for m in members}):
                _train([m for m in members if m.start == start], store, device)
    return [Path(c.out) / "model" for c in cfgs]


def _member(cfg: TrainConfig, store, device: torch.device) -> _Member:
    """The member as ``trajbench train`` builds it: seeded weights, optimizer, checkpoint."""
    builder = ContextBuilder(store, seed=cfg.seed, config=cfg.context)

    def make_builder():  # as trajbench train does: a worker process builds its own
        if cfg.workers == 0:
            return builder
        data = load(list(cfg.data))
        return ContextBuilder(data, seed=cfg.seed, vocab=builder.vocab, config=cfg.context)

    torch.manual_seed(cfg.seed)
    model = TrajectoryTransformer(cfg.model, store.encoding, builder.vocab).to(device)
    optimizer = make_optimizer(model, cfg, device)
    start, ckpt = 0, Path(cfg.out) / CHECKPOINT
    if cfg.resume and ckpt.exists():
        start, _ = load_checkpoint(ckpt, model, optimizer, cfg, store.content_hash)
    loader = torch.utils.data.DataLoader(
        BatchStream(make_builder, cfg.batch_size, cfg.seed, start, cfg.steps),
        batch_size=None,
        num_workers=cfg.workers,
    )
    return _Member(cfg, model, optimizer, start, batches=iter(loader))


class Stacked:
    """The members' weights stacked along dimension 0, one AdamW over them, and the step.

    Args:
        models: The members (same architecture); their weights are copied, not shared.
        optimizers: Their optimizers (from :func:`~trajbench.pipeline.train.make_optimizer`),
            whose states (empty, or all at the same step) are stacked too.
        cfg: The shared training config (lr, weight decay, grad clip, bf16, compile).
        device: Where the models live.
    """

    def __init__(self, models, optimizers, cfg: TrainConfig, device: torch.device):
        self.base, self.device, self.cfg = models[0], device, cfg
        named = [dict(m.named_parameters()) for m in models]
        self.params = {
            k: torch.stack([n[k].detach() for n in named]).requires_grad_(p.requires_grad)
            for k, p in named[0].items()
        }
        self.buffers = {
            k: torch.stack([dict(m.named_buffers())[k] for m in models])
            for k, _ in models[0].named_buffers()
        }
        trainable = [k for k, p in named[0].items() if p.requires_grad]
        self.trainable = [self.params[k] for k in trainable]
        self.optimizer = adamw(
            [self.params[k] for k in trainable if named[0][k].dim() >= 2],
            [self.params[k] for k in trainable if named[0][k].dim() < 2],
            cfg,
            device,
        )
        for k in trainable:  # the members' moments, row by row
            states = [o.state.get(n[k]) for o, n in zip(optimizers, named, strict=True)]
            if states[0]:
                self.optimizer.state[self.params[k]] = {
                    s: v.clone() if s == "step" else torch.stack([st[s] for st in states])
                    for s, v in states[0].items()
                }
        self.max_norm = cfg.grad_clip or float("inf")
        self.autocast = autocast(device, cfg.bf16)

        def forward(params, buffers, tokens):
            return functional_call(self.base, (params, buffers), (tokens,))[0]

        self.forward = vmap(forward)
        if cfg.compile:
            self.forward = torch.compile(self.forward)

    @property
    def size(self) -> int:
        return len(next(iter(self.params.values())))

    def __call__(
        self, tokens: dict[str, torch.Tensor], normalizers: torch.Tensor, lr: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step of every member on ``tokens`` (``[M, B, T, ...]``); returns each
        member's loss and gradient norm before clipping (``[M]`` each), without waiting."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with self.autocast, warnings.catch_warnings():
            # vmap runs sdpa and embedding_bag member by member (no batching rule): said in
            # docs/ensemble.md, not on every step.
            warnings.filterwarnings("ignore", "There is a performance drop", UserWarning)
            logits = self.forward(self.params, self.buffers, tokens)
        target = tokens["target"]
        # Each member's summed float32 cross-entropy over its targets (action_loss, row by row).
        log_p = logits.float().log_softmax(-1)
        picked = log_p.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        losses = -torch.where(target != IGNORE, picked, 0.0).sum((1, 2)) / normalizers
        self.optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()  # members share no weight: each gets its own gradient
        grads = [p.grad for p in self.trainable if p.grad is not None]
        norms = torch.stack([torch.linalg.vector_norm(g.flatten(1), dim=1) for g in grads])
        norm = torch.linalg.vector_norm(norms, dim=0)  # [M]: each member's global norm
        coef = (self.max_norm / (norm + 1e-6)).clamp(max=1.0)  # as clip_grad_norm_
        for g in grads:
            g.mul_(coef.view(-1, *[1] * (g.dim() - 1)))
        self.optimizer.step()
        return losses.detach(), norm.detach()

    @torch.no_grad()
    def unstack(self, m: int, model: TrajectoryTransformer, optimizer) -> None:
        """Copy member ``m``'s weights and AdamW state into ``model`` and ``optimizer``."""
        for k, p in model.named_parameters():
            p.copy_(self.params[k][m])
            stacked = self.optimizer.state.get(self.params[k])
            if stacked:
                optimizer.state[p] = {
                    s: v.clone() if s == "step" else v[m].clone() for s, v in stacked.items()
                }


def stack_tokens(batches: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Member batches ``[B, T_m, ...]`` right-padded to the longest and stacked: ``[M, B, T]``.

    Padding is a PAD token (kind 0, every input 0) with no target.
    """
    length = max(b["kind"].shape[1] for b in batches)

    def pad(v: torch.Tensor, fill: int) -> torch.Tensor:
        extra = v.new_full((v.shape[0], length - v.shape[1], *v.shape[2:]), fill)
        return torch.cat([v, extra], 1)

    return {
        k: torch.stack([pad(b[k], IGNORE if k == "target" else 0) for b in batches])
        for k in batches[0]
    }


def _train(members: list[_Member], store, device: torch.device) -> None:
    """Train ``members`` (all at the same start step) to the end, checkpointing each."""
    cfg, start = members[0].cfg, members[0].start
    stacked = Stacked([m.model for m in members], [m.optimizer for m in members], cfg, device)
    for m in members:
        out = Path(m.cfg.out)
        out.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(out)
        atomic_write_json(out / "train_config.json", to_dict(m.cfg))
        m.log = MetricsLog(out / "metrics.csv", enabled=True, resume_step=start)
    t_last, tokens_since = time.perf_counter(), [0] * len(members)
    try:
        for step in range(start, cfg.steps):
            drawn = [next(m.batches) for m in members]
            assert all(s == step for s, _ in drawn), "member batch streams out of step"
            batches = [b for _, b in drawn]
            normalizers = torch.tensor(
                [max(int(b.loss_mask.sum()), 1) for b in batches], dtype=torch.float32
            ).to(device)
            tokens = stack_tokens([batch_tensors(b, device) for b in batches])
            lr = learning_rate(step, cfg)
            losses, norms = stacked(tokens, normalizers, lr)
            for i, b in enumerate(batches):
                tokens_since[i] += int((~b.pad).sum())
            done = step + 1
            if done % cfg.log_every == 0 or done == cfg.steps:
                now = time.perf_counter()
                elapsed = max(now - t_last, 1e-9)
                for i, m in enumerate(members):
                    m.log.write(
                        step=done,
                        loss=float(losses[i]),
                        lr=lr,
                        grad_norm=float(norms[i]),
                        tokens_per_s=tokens_since[i] / elapsed,
                    )
                t_last, tokens_since = now, [0] * len(members)
            if cfg.checkpoint_every and done % cfg.checkpoint_every == 0 and done < cfg.steps:
                _save(members, stacked, store, done, final=False)
    finally:
        for m in members:
            m.log.close()
    _save(members, stacked, store, cfg.steps, final=True)


def _save(members: list[_Member], stacked: Stacked, store, step: int, final: bool) -> None:
    """Each member's checkpoint (and, when ``final``, its model with ``training.json``)."""
    for i, m in enumerate(members):
        stacked.unstack(i, m.model, m.optimizer)
        out = Path(m.cfg.out)
        save_checkpoint(out / CHECKPOINT, m.model, m.optimizer, step, m.cfg, store.content_hash)
        if final:
            record = TrainingRecord(
                config=m.cfg,
                data_hash=store.content_hash,
                trained_levels=trained_levels(store),
                parameters=m.model.num_parameters(),
                trajbench_version=__version__,
            )
            save_trained_model(m.model, out / "model", record)


def ensembles(cfgs: Sequence[TrainConfig]) -> list[list[TrainConfig]]:
    """The ensembles of ``cfgs`` worth batching: two or more configs that can batch
    (:func:`why_not_ensemble`) and share an :func:`ensemble_key`, in first-seen order. The
    others train alone (``trajbench train``)."""
    groups: dict[str, list[TrainConfig]] = {}
    for cfg in cfgs:
        if not why_not_ensemble(cfg):
            groups.setdefault(ensemble_key(cfg), []).append(cfg)
    return [g for g in groups.values() if len(g) > 1]

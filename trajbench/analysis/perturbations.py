"""The perturbation machinery of ``trajbench analyze importance``.

- :func:`select_sequences`: one held-out sequence per level: a query and ``k`` context episodes;
- :class:`Perturbations`: every sequence as prompt-builder row plans: unperturbed, each context
  step replaced or deleted, each context episode replaced or deleted;
- :func:`query_logits` and :func:`mean_effects`: the query's teacher-forced action distributions
  and how far each perturbation moves them (KL, flipped greedy actions);
- :func:`received_attention`: the attention each context step receives from the query;
- :func:`online_success`: online success with whole context episodes deleted or replaced;
- :func:`step_rows`, :func:`episode_rows`: the per-step and per-episode tables of the effects.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from tqdm.auto import tqdm

from trajbench.batch import STEP
from trajbench.contexts import RowPlan, StepTable, assemble
from trajbench.errors import TrajbenchError
from trajbench.rollout import episode_record, rollout
from trajbench.vocab import shown_mission

from .common import kl_divergence
from .steps import KINDS


# -- the sequences --------------------------------------------------------------------------------
@dataclass
class SequenceSpec:
    """One analysed sequence: rows of the store's episode table."""

    env_id: str
    level: int
    query: int
    context: list[int]
    """Context episodes, in context order."""


def context_ok(eps: pd.DataFrame, demonstrators, allow_failed: bool) -> pd.Series:
    """Which episodes may fill a context."""
    ok = eps["demonstrator"].isin(list(demonstrators)) & (eps["length"] > 0)
    return ok if allow_failed else ok & eps["success"]


def select_sequences(
    eps: pd.DataFrame, n: int, k: int, demonstrators, allow_failed: bool, seed: int
) -> list[SequenceSpec]:
    """One sequence per level (seeded order, cycling): a query and ``k`` context episodes.

    ``eps`` is the store's episode table with a 0..n-1 index. A level qualifies when it has a
    successful expert episode (the query), another context episode of its own and context
    episodes of another level of the family (the replacements).
    """
    rng = np.random.default_rng([seed, 1])
    ctx_ok = context_ok(eps, demonstrators, allow_failed)
    qry_ok = (eps["demonstrator"] == "expert") & eps["success"] & (eps["length"] > 0)
    candidates = []
    for (env_id, level), group in eps.groupby(["env_id", "level"], sort=True):
        contexts = group.index[ctx_ok[group.index]].to_numpy()
        # Queries that leave at least one other context episode of their level.
        queries = np.asarray(
            [q for q in group.index[qry_ok[group.index]] if (contexts != q).any()], dtype=np.int64
        )
        others = (eps["env_id"] == env_id) & (eps["level"] != level) & ctx_ok
        if len(queries) and others.any():
            candidates.append((env_id, int(level), queries, contexts))
    if not candidates:
        raise TrajbenchError(
            "no level of the store can be analysed: each needs a successful expert episode (the "
            f"query), another {'/'.join(demonstrators)} episode of the same level "
            "(the context) and context episodes of another level of the family (replacements)"
        )
    order = rng.permutation(len(candidates))
    out = []
    for i in range(n):
        env_id, level, queries, contexts = candidates[order[i % len(candidates)]]
        q = int(queries[rng.integers(len(queries))])
        pool = contexts[contexts != q]
        ctx = rng.choice(pool, size=k, replace=len(pool) < k)
        out.append(SequenceSpec(env_id, level, q, [int(c) for c in ctx]))
    return out


def step_table(store, eps: pd.DataFrame) -> StepTable:
    """The store's steps as the prompt builder's :class:`StepTable`."""
    return StepTable.from_episodes(
        np.asarray(store.obs),
        np.asarray(store.actions),
        np.asarray(store.rewards),
        eps["offset"].to_numpy(np.int64),
        eps["length"].to_numpy(np.int64),
        eps["level"].to_numpy(np.int64),
        eps["episode_id"].to_numpy(np.int64),
    )


# -- the perturbed plans --------------------------------------------------------------------------
@dataclass
class Perturbations:
    """Every perturbed row plan of a list of sequences (built by :meth:`add`).

    A *piece* is one context episode: ``(mission words, level, episode_id, steps)``.
    """

    eps: pd.DataFrame
    ctx_ok: pd.Series
    policy: object
    """The policy whose vocabulary and instruction mode show the missions."""
    missions: dict[str, list[str]]
    """Family -> missions (the source of ``wrong`` missions)."""
    draws: int
    seed: int
    plans: list[RowPlan] = field(default_factory=list)
    meta: list[tuple[int, str, int, int]] = field(default_factory=list)
    """Per plan: (sequence, perturbation, position, draw); perturbation ``base`` is unperturbed."""
    replacements: dict[tuple[int, int], list[int]] = field(default_factory=dict)
    """(sequence, context position) -> the episode rows that replaced it."""

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng([self.seed, 2])
        self.rnd = random.Random(self.seed)
        self.shown: dict[str, list[int]] = {}

    def words(self, env_id: str, mission: str) -> list[int]:
        """A mission's words, shown the same way throughout a sequence."""
        if mission not in self.shown:
            pool = self.missions.get(env_id, [])
            text = shown_mission(mission, self.policy.instruction, pool, self.rnd)
            self.shown[mission] = self.policy.vocab.encode(text)
        return self.shown[mission]

    def steps_of(self, row: int) -> list[int]:
        s = int(self.eps.at[row, "offset"])
        return list(range(s, s + int(self.eps.at[row, "length"])))

    def piece(self, env_id: str, row: int, level: int) -> tuple:
        eps = self.eps
        return (
            self.words(env_id, eps.at[row, "mission"]),
            level,
            int(eps.at[row, "episode_id"]),
            self.steps_of(row),
        )

    def add(self, si: int, seq: SequenceSpec) -> None:
        """Add the plans of sequence ``si``: unperturbed, then every step, then every episode."""
        eps = self.eps
        self.shown = {}
        other_rows = eps.index[
            self.ctx_ok & (eps["env_id"] == seq.env_id) & (eps["level"] != seq.level)
        ].to_numpy()
        pieces = [self.piece(seq.env_id, c, seq.level) for c in seq.context]
        q = seq.query
        query = (self.words(seq.env_id, eps.at[q, "mission"]), int(eps.at[q, "episode_id"]))
        start = int(eps.at[q, "offset"])
        query_steps = range(start, start + int(eps.at[q, "length"]))

        def emit(pcs: list[tuple], what: str, pos: int, draw: int) -> None:
            plan = RowPlan()
            for w, lv, ep, st in pcs:
                plan.add_words(w, lv, ep, query=False)
                plan.add_steps(st, query=False)
            plan.add_words(query[0], seq.level, query[1], query=True)
            plan.add_steps(query_steps, query=True)
            self.plans.append(plan)
            self.meta.append((si, what, pos, draw))

        emit(pieces, "base", -1, 0)
        other_steps = np.concatenate([self.steps_of(int(r)) for r in other_rows])
        pos = 0
        for j, (w, lv, ep, st) in enumerate(pieces):
            for t in range(len(st)):
                for d in range(self.draws):
                    swapped = list(st)
                    swapped[t] = int(other_steps[self.rng.integers(len(other_steps))])
                    emit(
                        [*pieces[:j], (w, lv, ep, swapped), *pieces[j + 1 :]],
                        "step_replace",
                        pos,
                        d,
                    )
                deleted = (w, lv, ep, st[:t] + st[t + 1 :])
                emit([*pieces[:j], deleted, *pieces[j + 1 :]], "step_delete", pos, 0)
                pos += 1
        for j in range(len(pieces)):
            reps = [int(other_rows[self.rng.integers(len(other_rows))]) for _ in range(self.draws)]
            self.replacements[(si, j)] = reps
            for d, r in enumerate(reps):
                new = self.piece(seq.env_id, r, int(eps.at[r, "level"]))
                emit([*pieces[:j], new, *pieces[j + 1 :]], "episode_replace", j, d)
            emit([*pieces[:j], *pieces[j + 1 :]], "episode_delete", j, 0)

    def base_of(self) -> dict[int, int]:
        """Sequence -> the index of its unperturbed plan."""
        return {m[0]: i for i, m in enumerate(self.meta) if m[1] == "base"}


# -- effects --------------------------------------------------------------------------------------
@torch.no_grad()
def query_logits(
    model, plans: list[RowPlan], table: StepTable, batch_rows: int, device, progress: bool
) -> list[Tensor]:
    """Teacher-forced logits ``[query steps, A]`` of every plan, in batches of similar lengths."""
    n_actions = model.encoding.n_actions
    out: list[Tensor] = [None] * len(plans)  # type: ignore[list-item]
    order = np.argsort([len(p) for p in plans], kind="stable")
    chunks = [order[i : i + batch_rows] for i in range(0, len(order), batch_rows)]
    for chunk in tqdm(chunks, desc="importance", disable=not progress, leave=False):
        batch = assemble([plans[i] for i in chunk], table, n_actions)
        logits, _ = model(batch.to_torch(device))
        logits = logits.float().cpu()
        mask = torch.from_numpy(batch.loss_mask)
        for r, i in enumerate(chunk):
            out[i] = logits[r][mask[r]]
    return out


def mean_effects(perturbations: Perturbations, logits: list[Tensor]) -> pd.DataFrame:
    """KL from the unperturbed query distribution and the share of flipped greedy actions,
    averaged over the query's steps and over draws; indexed by (sequence, perturbation, position)."""
    base_of = perturbations.base_of()
    kl = np.zeros(len(logits))
    flip = np.zeros(len(logits))
    for i, (si, _, _, _) in enumerate(perturbations.meta):
        b, p = logits[base_of[si]], logits[i]
        kl[i] = float(kl_divergence(b, p).mean())
        flip[i] = float((b.argmax(-1) != p.argmax(-1)).double().mean())
    effects = pd.DataFrame(
        perturbations.meta, columns=["sequence", "perturbation", "position", "draw"]
    )
    effects["kl"], effects["flip"] = kl, flip
    return effects.groupby(["sequence", "perturbation", "position"])[["kl", "flip"]].mean()


@contextlib.contextmanager
def eager_attention(model) -> Iterator[None]:
    """Switch a :class:`TrajectoryTransformer`'s backbone to eager attention inside the block
    (sdpa cannot return attention weights), then back."""
    if not model.kind.attention:
        raise TrajbenchError(
            f"the {model.cfg.backbone} backbone has no attention weights to read; this analysis "
            "needs an attention backbone (llama, gpt2)"
        )
    backbone = model.backbone
    before = backbone.config._attn_implementation
    if before != "eager":
        backbone.set_attn_implementation("eager")
    try:
        yield
    finally:
        if before != "eager":
            backbone.set_attn_implementation(before)


@torch.no_grad()
def forward_with_attention(model, tokens: dict[str, Tensor]) -> tuple[Tensor, list[Tensor]]:
    """Logits ``[B, T, A]`` and attention weights, one ``[B, heads, T, T]`` tensor per layer.

    ``tokens`` are right-padded (no attention mask, as in training): row ``i`` attends with causal
    attention only, so its real tokens never see its padding. Element ``[b, h, i, j]`` of a layer's
    weights is how much position ``i`` attends to position ``j``.
    """
    with eager_attention(model):
        x = model.embed(tokens)
        out = model.backbone(inputs_embeds=x, output_attentions=True, use_cache=False)
    if not out.attentions:
        raise TrajbenchError("the backbone returned no attention weights")
    return model.head(out.last_hidden_state), [a.float() for a in out.attentions]


def received_attention(
    model, plan: RowPlan, table: StepTable, device
) -> tuple[np.ndarray, np.ndarray]:
    """Attention each context step of ``plan`` receives from the query's step tokens: averaged
    over layers and heads, and the largest single (layer, head) value."""
    batch = assemble([plan], table, model.encoding.n_actions)
    _, att = forward_with_attention(model, batch.to_torch(device))
    qpos = torch.from_numpy(np.flatnonzero(batch.loss_mask[0])).to(att[0].device)
    # [layers, heads, T]: attention each token receives, averaged over the query steps.
    received = torch.stack([x[0][:, qpos].mean(1) for x in att]).cpu()
    ctx = (batch.kind[0] == STEP) & ~batch.is_query[0]
    return received.mean(dim=(0, 1)).numpy()[ctx], received.flatten(0, 1).max(0).values.numpy()[ctx]


def effects(
    model, store, eps: pd.DataFrame, pert: Perturbations, batch_rows: int, device, progress: bool
) -> tuple[pd.DataFrame, list[tuple[np.ndarray, np.ndarray]]]:
    """Mean effect of every perturbation, and the attention each sequence's context steps receive."""
    longest = max(len(p) for p in pert.plans)
    if longest > model.cfg.max_positions:
        raise TrajbenchError(
            f"sequences of up to {longest} tokens exceed the model's max_positions "
            f"({model.cfg.max_positions}); use a smaller --k"
        )
    table = step_table(store, eps)
    logits = query_logits(model, pert.plans, table, batch_rows, device, progress)
    base_of = pert.base_of()
    attention = [
        received_attention(model, pert.plans[base_of[si]], table, device) for si in sorted(base_of)
    ]
    return mean_effects(pert, logits), attention


# -- online ---------------------------------------------------------------------------------------
def online_success(
    policy,
    store,
    eps: pd.DataFrame,
    seqs: list[SequenceSpec],
    replacements: dict,
    seed: int,
    n_seeds: int,
) -> pd.DataFrame:
    """Online success of every sequence's level with the unperturbed context, each context
    episode deleted, and each replaced (by its first replacement draw); paired start states.

    One row per (sequence, context position) with ``success_base``, ``success_delete``,
    ``success_replace`` and the differences ``dsuccess_delete``, ``dsuccess_replace``.
    """
    rows = []
    for env_id in sorted({s.env_id for s in seqs}):
        idx = [i for i, s in enumerate(seqs) if s.env_id == env_id]
        missions = {seqs[i].level: str(eps.at[seqs[i].query, "mission"]) for i in idx}
        levels, contexts, keys = [], [], []
        for si in idx:
            ctx = [episode_record(store, eps.loc[c]) for c in seqs[si].context]
            variants = [("base", -1, ctx)]
            for j in range(len(ctx)):
                variants.append(("delete", j, ctx[:j] + ctx[j + 1 :]))
                new = episode_record(store, eps.loc[replacements[(si, j)][0]])
                variants.append(("replace", j, [*ctx[:j], new, *ctx[j + 1 :]]))
            for name, j, c in variants:
                levels.append(seqs[si].level)
                contexts.append(c)
                keys.append((si, name, j))
        for s in range(n_seeds):
            for rec in rollout(policy, env_id, levels, contexts, missions, 1, seed + s):
                rows.append((*keys[rec["row"]], s, float(rec["success"])))
    frame = pd.DataFrame(rows, columns=["sequence", "variant", "episode_pos", "seed", "success"])
    mean = frame.groupby(["sequence", "variant", "episode_pos"])["success"].mean()
    out = pd.DataFrame(
        [
            {
                "sequence": si,
                "episode_pos": j,
                f"success_{variant}": value,
                "success_base": mean.loc[(si, "base", -1)],
            }
            for (si, variant, j), value in mean.items()
            if variant != "base"
        ]
    )
    out = out.groupby(["sequence", "episode_pos"]).first().reset_index()
    out["dsuccess_delete"] = out["success_delete"] - out["success_base"]
    out["dsuccess_replace"] = out["success_replace"] - out["success_base"]
    return out


# -- tables ---------------------------------------------------------------------------------------
def _context_rows(
    eps: pd.DataFrame, seqs: list[SequenceSpec], mean: pd.DataFrame, per_step: bool
) -> Iterator[tuple[int, int, int, int, dict, dict]]:
    """``(sequence, step position, context row, t, where, effects)`` of every context step
    (``per_step``: ``t`` is its index in its episode) or of every context episode (``t = 0``)."""
    what = "step" if per_step else "episode"
    for si, seq in enumerate(seqs):
        pos = 0
        for j, c in enumerate(seq.context):
            where = {
                "sequence": si,
                "env_id": seq.env_id,
                "level": seq.level,
                "episode_pos": j,
                "query_episode": int(eps.at[seq.query, "episode_id"]),
                "context_episode": int(eps.at[c, "episode_id"]),
                "demonstrator": eps.at[c, "demonstrator"],
            }
            for t in range(int(eps.at[c, "length"]) if per_step else 1):
                rep = mean.loc[(si, f"{what}_replace", pos if per_step else j)]
                dele = mean.loc[(si, f"{what}_delete", pos if per_step else j)]
                effects = {
                    "kl_replace": rep["kl"],
                    "kl_delete": dele["kl"],
                    "flip_replace": rep["flip"],
                    "flip_delete": dele["flip"],
                }
                yield si, pos, c, t, where, effects
                pos += 1


def step_rows(
    store,
    eps: pd.DataFrame,
    seqs: list[SequenceSpec],
    mean: pd.DataFrame,
    attention: list[tuple[np.ndarray, np.ndarray]],
    labels: dict[int, dict[str, np.ndarray]],
) -> pd.DataFrame:
    """One row per context step: where it is, its kinds, its effects and the attention it gets."""
    rows = []
    for si, pos, c, t, where, effects in _context_rows(eps, seqs, mean, per_step=True):
        g = int(eps.at[c, "offset"]) + t
        rows.append(
            {
                **where,
                "context_pos": pos,
                "t": t,
                "action": int(store.actions[g]),
                "reward": float(store.rewards[g]),
                **{k: bool(labels[c][k][t]) for k in KINDS},
                **effects,
                "attention": float(attention[si][0][pos]),
                "attention_max": float(attention[si][1][pos]),
            }
        )
    return pd.DataFrame(rows)


def episode_rows(eps: pd.DataFrame, seqs: list[SequenceSpec], mean: pd.DataFrame) -> pd.DataFrame:
    """One row per context episode: where it is, its length and its effects."""
    rows = [
        {**where, "length": int(eps.at[c, "length"]), **effects}
        for _, _, c, _, where, effects in _context_rows(eps, seqs, mean, per_step=False)
    ]
    return pd.DataFrame(rows)

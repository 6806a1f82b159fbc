"""Every question of every preset, asked of a small constructed run of that preset.

For each preset the records of every job's evaluations (what ``trajbench run`` evaluates: every
condition and reference policy, K sweep, support, formats, decoys where the group asks) are built
by hand, without training, with random successes per cell. The report path the runner calls must
then answer exactly the questions each group declared, at every K they are asked at, for every
family and split, list the ones a side is missing for, and each answer must be the difference of
the two sides' cell means computed here.
"""

from __future__ import annotations

import functools
from collections import Counter

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
from report_support import Cells, readings, report, rows_of

from trajbench.contexts import MODES
from trajbench.pipeline.jobs import evaluations, jobs_of
from trajbench.pipeline.presets import PRESETS

SEEDS = (0, 1)
N_LEVELS = 3
EPISODES = 3


@functools.cache
def held_out(family: str) -> tuple[int, ...]:
    env = gym.make(family)
    levels = tuple(sorted(int(x) for x in env.unwrapped.splits()["test"]))[:N_LEVELS]
    env.close()
    return levels


def label(job) -> str:
    """The report's label of a job's condition, written from the run's naming rules."""
    if job.baseline:
        return job.baseline
    c = job.condition
    name = c.train_context + ("" if c.instruction == "full" else f"/{c.instruction}")
    backbones = {x.backbone for x in job.group.conditions}
    return name + (f" [{c.backbone}]" if len(backbones) > 1 else "")


def construct(preset_name: str) -> tuple[pd.DataFrame, dict]:
    """Records of a run of the preset, and every condition's cell means by
    (group, family, split, label, k, support, format, shown instruction)."""
    preset = PRESETS[preset_name]
    rng = np.random.default_rng(0)
    rows, means = [], {}
    shape = (len(SEEDS), N_LEVELS)
    for job in jobs_of(preset, SEEDS[:1]):
        g, c = job.group, job.condition
        mode = MODES.get(c.train_context) if c else None
        backbone = (c.backbone or g.train.model.backbone) if c else "-"
        policy = job.baseline or ("no-context" if c.train_context == "none" else "transformer")
        for split, specs, instruction, formats in evaluations(job):
            shown = "decoy" if instruction == "decoy" else (c.instruction if c else "-")
            for family in sorted({s.env for s in specs}):
                for k in g.eval.ks:
                    for support in ("same", "other"):
                        for fmt in formats:
                            if fmt == "matched" and (mode is None or mode.ordered):
                                continue
                            if k == 0 and (support == "other" or fmt == "matched"):
                                continue
                            episodes = np.full(shape, EPISODES)
                            successes = rng.integers(0, EPISODES + 1, size=shape)
                            cells = Cells(episodes, successes, returns=rng.random(shape))
                            if shown == "decoy":
                                cells.decoys = rng.binomial(episodes - successes, 0.5)
                            key = (g.name, family, split, label(job), k, support, fmt, shown)
                            means[key] = cells.means
                            rows += rows_of(
                                cells,
                                policy=policy,
                                context=c.train_context if c else "-",
                                instruction=c.instruction if c else "-",
                                family=family,
                                split=split,
                                k=k,
                                support=support,
                                fmt=fmt,
                                eval_instruction=shown,
                                group=g.name,
                                seeds=SEEDS,
                                levels=held_out(family),
                                backbone=backbone,
                            )
    return pd.DataFrame(rows), means


def expected(preset_name: str, means: dict) -> tuple[dict, list[tuple]]:
    """Every question the preset's groups declare, at every K it is asked at, that the
    constructed run can answer, with the cells of its two sides (each the cell-wise mean of its
    conditions' cells): (group, family, split, question, a, b, k) -> (a's cells, b's cells,
    scale); and the (group, family, split, question, k) it declares but cannot answer."""
    out, missing = {}, []
    for g in PRESETS[preset_name].groups:
        for group, family, split in sorted({key[:3] for key in means if key[0] == g.name}):
            here = (group, family, split)
            ks = sorted({key[4] for key in means if key[:3] == here})

            def at(lab, k, support, fmt, where=here):
                hits = [
                    m
                    for key, m in means.items()
                    if key[:3] == where and key[3:7] == (lab, k, support, fmt) and key[7] != "decoy"
                ]
                assert len(hits) <= 1
                return hits[0] if hits else None

            for q in g.questions:
                if q.families and family not in q.families:
                    continue
                for k in q.ks or ks:
                    x = [at(lab, k, q.support[0], "common") for lab in q.a]
                    y = [at(lab, k, q.support[1], q.b_format) for lab in q.b]
                    if any(m is None for m in x + y):
                        missing.append((*here, q.name, k))
                        continue
                    a = _name(q.a, q.support, ("common", q.b_format), q.b)
                    b = _name(q.b, q.support[::-1], (q.b_format, "common"), q.a)
                    out[(*here, q.name, a, b, k)] = (np.mean(x, 0), np.mean(y, 0), q.scale)
    return out, missing


def _name(labels: tuple[str, ...], supports: tuple, formats: tuple, others: tuple) -> str:
    """How a comparison names a side: its label or the mean of its labels, whose
    demonstrations it was shown where the two sides' differ, and its format where the sides
    differ in nothing else."""
    name = labels[0] if len(labels) == 1 else f"mean({', '.join(labels)})"
    if supports[0] != supports[1]:
        name += ", same level" if supports[0] == "same" else ", other levels"
    if formats[0] != formats[1] and labels == others:
        name += f" ({formats[0]} format)"
    return name


def declared(preset_name: str) -> dict:
    return {g.name: g.questions for g in PRESETS[preset_name].groups}


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_question_of_the_preset_is_answered_from_its_records(preset, tmp_path):
    records, means = construct(preset)
    results, text = report(tmp_path, records, declared(preset))
    want, missing = expected(preset, means)
    answered = {}
    for c in results["comparisons"]:
        key = (c["group"], c["family"], c["eval_split"], c["question"], c["a"], c["b"], c["k"])
        assert key in want, f"{preset}: unexpected comparison {key}"
        assert key not in answered, f"{preset}: {key} answered twice"
        answered[key] = c
    assert set(answered) == set(want), sorted(set(want) - set(answered))
    assert want, preset
    for key, c in answered.items():
        x, y, scale = want[key]
        assert c["a_mean"] == pytest.approx(x.mean(), abs=1e-12), key
        assert c["b_mean"] == pytest.approx(y.mean(), abs=1e-12), key
        assert c["diff"] == pytest.approx(scale * (x.mean() - y.mean()), abs=1e-12), key
        assert c["ci_low"] <= c["diff"] <= c["ci_high"], key
        assert (c["n_seeds"], c["n_levels"]) == (len(SEEDS), N_LEVELS), key
    # What a declared question could not be asked of is listed, not dropped.
    unanswered = Counter(
        (u["family"], u["eval_split"], u["question"], u["k"]) for u in results["unanswered"]
    )
    assert unanswered == Counter(m[1:] for m in missing)
    # Every table of the run is in the report, and every comparison has its line in its K's block.
    for _, family, split in {w[:3] for w in want}:
        assert f"### {family} — {split.replace('_', ' ')}" in text
    lines = readings(text)
    assert len(lines) == len(want)
    for group, family, split, question, _, _, k in want:
        where = (group, family, split, k)
        assert any(r[:4] == where and r[4].startswith(f"- *{question}*: ") for r in lines), where


def test_the_presets_ask_what_their_descriptions_promise():
    """The constructed runs reach what the presets' descriptions promise: the smoke preset the
    support-and-order, order and copying questions and the instruction 2x2 (with its grounding
    reading aid), the GPU preset every mode question, the architectures preset each model's in
    context gain and the pairs of models."""
    asked = {
        p: {w[3] for w in expected(p, construct(p)[1])[0]}
        for p in ("smoke", "gpu", "architectures")
    }
    assert {
        "support and order",
        "order",
        "order (matched format)",
        "copying",
        "context (main effect)",
        "mission (main effect)",
        "interaction (context x mission)",
        "grounding (reading aid)",
    } <= asked["smoke"]
    assert {"support", "support and order", "order", "order (matched format)", "context"} <= asked[
        "gpu"
    ]
    assert {"in context", "architecture", "copying"} <= asked["architectures"]

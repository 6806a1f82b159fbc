"""Every question of every preset, asked of a small constructed run of that preset.

For each preset the records of every job's evaluations (what ``trajbench run`` evaluates: every
condition and reference policy, K sweep, support, formats, decoys where the group asks) are built
by hand, without training, with a success rate per condition that differs from every other one.
The report path the runner calls must then answer exactly the benchmark's questions that the
preset's conditions can answer, for every group, family and split, and each answer must be the
difference of the two conditions' cell means computed here.
"""

from __future__ import annotations

import functools
from itertools import combinations

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
from report_support import Cells, report, rows_of

from trajbench.contexts import MODES
from trajbench.pipeline.jobs import evaluations, jobs_of
from trajbench.pipeline.presets import PRESETS

SEEDS = (0, 1)
N_LEVELS = 3
EPISODES = 3
#: The benchmark's questions on one backbone (the spec, written apart from the report's code):
#: (question, a, b, format of b); a is shown in the common format.
QUESTIONS = (
    ("support", "bursty", "trajectories", "common"),
    ("support and order", "bursty", "isolated", "common"),
    ("order", "bursty", "shuffled", "common"),
    ("order (matched format)", "bursty", "shuffled", "matched"),
    ("order", "trajectories", "isolated", "common"),
    ("context", "bursty", "none", "common"),
    ("grounding", "none", "none/empty", "common"),
)
COPIES = ("hashmap", "replay")


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
    rows, means, taken = [], {}, {}
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
                            place = (g.name, family, split, k, support, fmt, shown)
                            # Trained conditions' means differ: the best one is unambiguous.
                            while c and successes.sum() in taken.setdefault(place, set()):
                                successes = rng.integers(0, EPISODES + 1, size=shape)
                            if c:
                                taken[place].add(successes.sum())
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


def expected(means: dict) -> dict[tuple, tuple[np.ndarray, np.ndarray]]:
    """Every question the constructed run can answer, with the cells of its two sides:
    (group, family, split, question, a, b) -> (a's cells, b's cells)."""
    out = {}
    places = {key[:3] for key in means}
    for group, family, split in places:
        kmax = max(key[4] for key in means if key[:3] == (group, family, split))

        def at(lab, support="same", fmt="common", kmax=kmax, where=(group, family, split)):
            hits = [
                m
                for key, m in means.items()
                if key[:3] == where and key[3:7] == (lab, kmax, support, fmt) and key[7] != "decoy"
            ]
            assert len(hits) <= 1
            return hits[0] if hits else None

        labels = {key[3] for key in means if key[:3] == (group, family, split)}
        trained = sorted(x for x in labels if x not in (*COPIES, "random", "expert"))
        several = any("[" in x for x in trained)
        here = (group, family, split)
        for question, a, b, fmt in QUESTIONS:
            x, y = at(a), at(b, fmt=fmt)
            if x is not None and y is not None:
                out[(*here, question, a, b)] = (x, y)
        bar = trained if several else [max(trained, key=lambda t: at(t).mean())]
        for t in bar:
            for copy in COPIES:
                if at(copy) is not None:
                    out[(*here, "copying", t, copy)] = (at(t), at(copy))
        if several:
            for t in trained:
                out[(*here, "in context", f"{t}, same level", f"{t}, other levels")] = (
                    at(t),
                    at(t, support="other"),
                )
            for a, b in combinations(trained, 2):
                out[(*here, "architecture", a, b)] = (at(a), at(b))
    return out


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_question_of_the_preset_is_answered_from_its_records(preset, tmp_path):
    records, means = construct(preset)
    results, text = report(tmp_path, records)
    want = expected(means)
    answered = {}
    for c in results["comparisons"]:
        key = (c["family"], c["eval_split"], c["question"], c["a"], c["b"])
        matches = [w for w in want if w[1:] == key]
        assert len(matches) == 1, f"{preset}: unexpected or ambiguous comparison {key}"
        assert matches[0] not in answered, f"{preset}: {key} answered twice"
        answered[matches[0]] = c
    assert set(answered) == set(want), sorted(set(want) - set(answered))
    questions = {w[3] for w in want}
    assert questions >= {"copying"}
    for key, c in answered.items():
        x, y = want[key]
        assert c["a_mean"] == pytest.approx(x.mean(), abs=1e-12), key
        assert c["b_mean"] == pytest.approx(y.mean(), abs=1e-12), key
        assert c["diff"] == pytest.approx(x.mean() - y.mean(), abs=1e-12), key
        assert c["ci_low"] <= c["diff"] <= c["ci_high"], key
        assert (c["n_seeds"], c["n_levels"]) == (len(SEEDS), N_LEVELS), key
    # Every table of the run is in the report, and every comparison has its line.
    for _, family, split in {w[:3] for w in want}:
        assert f"### {family} — {split.replace('_', ' ')}" in text
    assert text.count("- *") >= sum(1 for w in want if w[3] != "grounding")


def test_the_presets_ask_what_their_descriptions_promise():
    """The constructed runs of the README's and the GPU's presets reach the support, order and
    context questions, and the smoke preset the grounding check."""
    asked = {p: {w[3] for w in expected(construct(p)[1])} for p in ("smoke", "gpu", "standard")}
    assert {"support and order", "context", "order", "support", "grounding"} <= asked["smoke"]
    assert {"support", "order", "order (matched format)", "context"} <= asked["gpu"]
    assert {"in context", "architecture"} <= {w[3] for w in expected(construct("architectures")[1])}

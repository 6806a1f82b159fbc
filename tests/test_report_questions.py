"""Declared questions: presets declare their comparisons before a run, the report answers exactly
those at every K they are asked at, and a 2x2's effects are the contrasts of its cell means."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trajbench.pipeline.presets import MIN_SEEDS, PRESETS, Group, cross
from trajbench.report.questions import answer, ask, two_by_two
from trajbench.report.tables import labelled

FAMILY = "trajbench/GoToLocal-v1"


def _records(
    cells: dict[tuple[str, str], np.ndarray], ks=(4,), policy="transformer"
) -> pd.DataFrame:
    """Records of trained conditions (mode, instruction) -> success matrix [seeds, levels], one
    episode per cell, at every K of ``ks`` (the same cells at each)."""
    rows = []
    for (mode, instruction), m in cells.items():
        for k in ks:
            for s, lv in np.ndindex(m.shape):
                rows.append(
                    dict(
                        group="g",
                        policy=policy if mode != "none" else "no-context",
                        backbone="-",
                        train_context=mode,
                        instruction=instruction,
                        p_bursty=np.nan,
                        family=FAMILY,
                        eval_split="test_levels",
                        k=k,
                        support="same",
                        format="common",
                        eval_instruction=instruction,
                        seed=s,
                        level=100 + lv,
                        success=float(m[s, lv]),
                    )
                )
    return labelled(pd.DataFrame(rows))


def _cells(rng, n_seeds=5, n_levels=12) -> dict:
    return {
        (mode, instruction): rng.integers(0, 2, (n_seeds, n_levels)).astype(float)
        for mode in ("bursty", "none")
        for instruction in ("full", "empty", "template")
    }


def test_the_2x2_effects_are_the_contrasts_of_the_cell_means():
    cells = _cells(np.random.default_rng(0))
    mean = {key: m.mean() for key, m in cells.items()}
    bf, be = mean["bursty", "full"], mean["bursty", "empty"]
    nf, ne = mean["none", "full"], mean["none", "empty"]
    done, missing = answer(_records(cells), two_by_two())
    got = {c.question: c for c in done}
    assert missing == []
    assert got["interaction (context x mission)"].diff == pytest.approx((bf - be) - (nf - ne))
    assert got["context (main effect)"].diff == pytest.approx((bf + be) / 2 - (nf + ne) / 2)
    assert got["mission (main effect)"].diff == pytest.approx((bf + nf) / 2 - (be + ne) / 2)
    assert got["demonstrations without the mission"].diff == pytest.approx(be - ne)
    assert got["grounding (reading aid)"].diff == pytest.approx(nf - ne)
    for c in done:
        assert c.ci_low <= c.diff <= c.ci_high and c.mde >= 0
        assert (c.n_seeds, c.n_levels) == (5, 12)


def test_an_interaction_ci_is_twice_the_paired_ci_of_the_crossed_means():
    """(A - B) - (C - D) = 2 (mean(A, D) - mean(B, C)): its CI and MDE scale by 2, computed here
    from the cell-wise sums with the project's paired bootstrap of two matrices."""
    from trajbench.bootstrap import minimum_detectable_effect, paired_difference

    cells = _cells(np.random.default_rng(1))
    x = (cells["bursty", "full"] + cells["none", "empty"]) / 2
    y = (cells["bursty", "empty"] + cells["none", "full"]) / 2
    d = paired_difference(x, y, same_seeds=True, seed=0)
    (c,) = [c for c in answer(_records(cells), two_by_two())[0] if c.question.startswith("inter")]
    assert (c.ci_low, c.ci_high) == pytest.approx((2 * d.low, 2 * d.high))
    assert c.mde == pytest.approx(minimum_detectable_effect(2 * d.se))


def test_only_declared_questions_are_answered_at_every_k_they_ask():
    rng = np.random.default_rng(2)
    cells = _cells(rng)
    cells["shuffled", "full"] = np.ones((5, 12))  # the best condition, never declared
    records = _records(cells, ks=(1, 2, 4))
    done, missing = answer(
        records, (ask("context", "bursty", "none"), ask("x", "bursty", "none", ks=(2,)))
    )
    assert sorted((c.question, c.k) for c in done) == [
        ("context", 1),
        ("context", 2),
        ("context", 4),
        ("x", 2),
    ]
    assert not any("shuffled" in (c.a, c.b) for c in done)
    # a declared question whose side is missing is reported as unanswered, not dropped
    done, missing = answer(records, (ask("order", "bursty", "trajectories"),))
    assert done == [] and [(u.question, u.k) for u in missing] == [
        ("order", 1),
        ("order", 2),
        ("order", 4),
    ]


def test_a_group_refuses_a_question_about_a_condition_it_does_not_run():
    ci = PRESETS["ci"].groups[0]
    with pytest.raises(ValueError, match="trajectories"):
        Group(
            name="g",
            train_data=ci.train_data,
            test_data=ci.test_data,
            conditions=cross(("bursty", "none")),
            questions=(ask("support", "bursty", "trajectories"),),
        )


def test_every_preset_declares_questions_and_enough_seeds():
    for name, preset in PRESETS.items():
        if name != "ci":
            assert len(preset.seeds) >= MIN_SEEDS, name
        for group in preset.groups:
            assert group.questions, (name, group.name)
    smoke = {g.name: g for g in PRESETS["smoke"].groups}
    order = [q for q in smoke["dark-sequence"].questions if q.name == "order"]
    ks = smoke["dark-sequence"].eval.ks
    assert order and 4 in ks and all(q.ks == () for q in order)  # asked at every K, K = 4 too
    assert {q.name for q in smoke["babyai"].questions} >= {"interaction (context x mission)"}
    standard = {g.name: g for g in PRESETS["standard"].groups}["babyai"]
    assert standard.test_data[0].max_levels >= 200
    labels = {c.instruction for c in standard.conditions if c.train_context == "bursty"}
    assert labels >= {"full", "empty", "template", "wrong"}


def _declared(results: dict) -> dict:
    return {
        group: {(q["name"], tuple(q["a"]), tuple(q["b"])): q for q in qs}
        for group, qs in results["questions"].items()
    }


def _side(labels: tuple[str, ...]) -> str:
    return labels[0] if len(labels) == 1 else f"mean({', '.join(labels)})"


def test_the_run_report_answers_exactly_the_declared_questions(ci_run: Path):
    results = json.loads((ci_run / "results.json").read_text())
    group = PRESETS["ci"].groups[0]
    declared = _declared(results)[group.name]
    assert len(declared) == len(group.questions)
    asked = {(q.name, q.contrast) for q in group.questions}
    found = set()
    for c in results["comparisons"]:
        match = [
            q
            for (name, a, b), q in declared.items()
            if name == c["question"] and _side(a) == c["a"] and _side(b) == c["b"]
        ]
        assert match, f"undeclared comparison in the report: {c['question']} {c['a']} - {c['b']}"
        assert not match[0]["ks"] or c["k"] in match[0]["ks"]
        found.add((c["question"], c["a"], c["b"], c["k"]))
    # every declared question at every K of the sweep: answered or said to be unanswered
    for q in group.questions:
        for k in group.eval.ks:
            said = (q.name, _side(q.a), _side(q.b), k) in found or any(
                (u["question"], u["contrast"], u["k"]) == (q.name, q.contrast, k)
                for u in results["unanswered"]
            )
            assert said, (q.name, k)
    # and report.md prints one reading per comparison, under its K
    report = (ci_run / "report.md").read_text()
    readings = re.findall(r"^- \*([^*]+)\*: `", report, flags=re.M)
    assert sorted(readings) == sorted(c["question"] for c in results["comparisons"])
    assert {name for name, _ in asked} == set(readings)
    for k in group.eval.ks:
        assert f"**Readings at K={k}.**" in report


META = dict(
    preset="p",
    trajbench_version="0",
    git_commit="0" * 40,
    torch_version="0",
    hardware="cpu",
    device="cpu",
    wall_time_s=1.0,
    seeds=[0, 1, 2, 3, 4],
    date="today",
)


def test_the_report_shows_the_2x2_its_effects_and_the_decoder_scale(tmp_path):
    from trajbench.report import write_report

    rng = np.random.default_rng(7)
    cells = {
        ("bursty", "full"): rng.binomial(1, 0.8, (5, 12)).astype(float),
        ("bursty", "empty"): rng.binomial(1, 0.7, (5, 12)).astype(float),
        ("none", "full"): rng.binomial(1, 0.5, (5, 12)).astype(float),
        ("none", "empty"): rng.binomial(1, 0.2, (5, 12)).astype(float),
    }
    records = _records(cells)
    refs = []
    for policy, value in (("random", 0.1), ("decoder", 0.9)):
        ref = records[records["label"] == "bursty"].assign(
            policy=policy, train_context="-", instruction="-", eval_instruction="full"
        )
        refs.append(ref.assign(success=value))
    records = pd.concat([records, *refs], ignore_index=True).drop(columns="label")
    records["p_bursty"] = np.nan
    records = records.assign(family="trajbench/DarkRoom-v0", normalized_return=0.5, model_params=1)
    write_report(tmp_path, records, META, {"g": two_by_two()})
    report = (tmp_path / "report.md").read_text()
    mean = {key: m.mean() for key, m in cells.items()}
    interaction = (mean["bursty", "full"] - mean["bursty", "empty"]) - (
        mean["none", "full"] - mean["none", "empty"]
    )
    assert "#### Instruction ablation (2x2: context x mission)" in report
    line = next(x for x in report.splitlines() if x.startswith("- *interaction") and " = " in x)
    assert f"= {interaction:+.2f} [" in line
    section = report.split("#### Instruction ablation", 1)[1].splitlines()
    row = next(x for x in section if x.startswith("| none | "))
    assert f"{mean['none', 'full']:.2f} [" in row and f"{mean['none', 'empty']:.2f} [" in row
    # normalized to the decoder in parentheses: (score - 0.1) / (0.9 - 0.1)
    row = next(x for x in section if x.startswith("| bursty | "))
    assert f"({(mean['bursty', 'full'] - 0.1) / 0.8:.2f})" in row
    assert "did not ground" not in report  # the grounding check reads, it does not gate
    assert "*grounding (reading aid)*" in report
    results = json.loads((tmp_path / "results.json").read_text())
    assert {c["question"] for c in results["comparisons"]} == {q.name for q in two_by_two()}

"""Scores on the decoder scale, saturation, and what a family declares about its readings; every
expected value is worked out by hand from constructed tables."""

from __future__ import annotations

import json
import math
from importlib.resources import files

import pandas as pd
import pytest

from trajbench.coverage import Coverage, Design, Variances
from trajbench.report.classes import ORDER_GAPS, family_role, order_gap
from trajbench.report.intervals import note
from trajbench.report.readings import order_sentence
from trajbench.report.tables import add_normalized, decoder_scale, saturated

KEYS = dict(
    group="g", family="f", eval_split="test_levels", support="same", eval_instruction="full"
)


def _table(rows: list[tuple[str, str, float]], k: int = 4, fmt: str = "common") -> pd.DataFrame:
    """(policy, train_context, success_mean) rows of one table."""
    return pd.DataFrame(
        [
            {**KEYS, "k": k, "format": fmt, "policy": p, "train_context": c, "success_mean": v}
            for p, c, v in rows
        ]
    )


def test_normalized_is_zero_at_random_and_one_at_the_decoder():
    assert decoder_scale(0.2, 0.2, 0.8) == 0.0
    assert decoder_scale(0.8, 0.2, 0.8) == 1.0
    assert decoder_scale(0.5, 0.2, 0.8) == pytest.approx(0.5)
    assert decoder_scale(0.1, 0.2, 0.8) == pytest.approx(-1 / 6)  # below random: negative
    assert math.isnan(decoder_scale(0.5, 0.6, 0.6))  # a decoder no better than random: no scale


def test_add_normalized_uses_each_tables_own_random_and_decoder():
    t = pd.concat(
        [
            _table(
                [
                    ("random", "-", 0.1),
                    ("decoder", "-", 0.9),
                    ("transformer", "bursty", 0.5),
                    ("hashmap", "-", 0.3),
                ],
                k=4,
            ),
            _table(
                [("random", "-", 0.2), ("decoder", "-", 0.6), ("transformer", "bursty", 0.5)], k=1
            ),
            _table([("random", "-", 0.2), ("transformer", "bursty", 0.5)], k=0),  # no decoder
        ],
        ignore_index=True,
    )
    got = add_normalized(t).set_index(["k", "policy"])["normalized"]
    assert got[4, "transformer"] == pytest.approx((0.5 - 0.1) / 0.8)
    assert got[4, "hashmap"] == pytest.approx((0.3 - 0.1) / 0.8)
    assert got[4, "decoder"] == pytest.approx(1.0) and got[4, "random"] == pytest.approx(0.0)
    assert got[1, "transformer"] == pytest.approx((0.5 - 0.2) / 0.4)
    assert got[0].isna().all()  # normalized to the decoder only where the table has one


def test_saturated_when_the_best_trained_condition_reaches_095_of_the_decoder_scale():
    # (0.87 - 0.1) / (0.9 - 0.1) = 0.9625: saturated although the raw score is below 0.95
    assert saturated(
        _table([("random", "-", 0.1), ("decoder", "-", 0.9), ("transformer", "bursty", 0.87)])
    )
    # (0.85 - 0.1) / 0.8 = 0.9375: not
    assert not saturated(
        _table([("random", "-", 0.1), ("decoder", "-", 0.9), ("transformer", "bursty", 0.85)])
    )
    # only the best trained condition counts, not the best three
    assert saturated(
        _table(
            [
                ("random", "-", 0.0),
                ("decoder", "-", 1.0),
                ("transformer", "bursty", 0.98),
                ("transformer", "isolated", 0.2),
                ("no-context", "none", 0.1),
            ]
        )
    )
    # references never count: a copy baseline or the decoder at the bar is not a trained model
    assert not saturated(
        _table(
            [
                ("random", "-", 0.0),
                ("decoder", "-", 1.0),
                ("hashmap", "-", 1.0),
                ("transformer", "bursty", 0.5),
            ]
        )
    )
    # no decoder: the expert's success of 1 is the ceiling; Dark Room's 0.98 over random 0.1
    assert saturated(
        _table([("random", "-", 0.1), ("expert", "-", 1.0), ("transformer", "bursty", 0.98)])
    )
    assert not saturated(_table([("random", "-", 0.1)]))  # nothing trained


def test_families_declare_their_order_gap_and_role():
    assert order_gap("trajbench/DarkSequence-v0") == "learnability"
    assert order_sentence("trajbench/DarkSequence-v0") == (
        "On DarkSequence-v0 the *order* gap is a gap at equal information: shuffled steps chain "
        "back into the demonstrations' paths on this family, so it measures what the model "
        "learns more easily from ordered contexts, not what only they carry."
    )
    assert (
        order_gap("trajbench/DarkRoom-v0") == "" and order_sentence("trajbench/DarkRoom-v0") == ""
    )
    assert set(ORDER_GAPS) == {"learnability", "information"}
    assert family_role("trajbench/DarkRoom-v0") in ("headline", "control", "unclassified")


def test_a_family_class_attribute_sets_its_role_and_order_gap(monkeypatch):
    from trajbench.report import classes

    class Aliased:
        role = "headline"
        order_gap = "information"

    class Bad:
        role = "main"

    monkeypatch.setattr(classes, "_family_class", lambda env_id: {"a": Aliased, "b": Bad}[env_id])
    assert family_role("a") == "headline" and order_gap("a") == "information"
    assert "loses the order" in order_sentence("a")
    with pytest.raises(ValueError, match="role"):
        family_role("b")


def test_a_family_without_a_role_takes_its_stored_certificates_class(monkeypatch):
    """The classes stored in ``trajbench/certificates.json`` (read here as a file); a family in
    neither the certificates nor its class is unclassified."""
    stored = json.loads(files("trajbench").joinpath("certificates.json").read_text())["families"]
    for env_id in ("trajbench/DarkRoom-v0", "trajbench/GoToLocal-v2"):
        assert family_role(env_id) == stored[env_id]["class"]
    assert {family_role(f) for f in stored} == {"headline", "control"}
    from trajbench.report import classes

    class Plain:
        pass

    monkeypatch.setattr(classes, "_family_class", lambda env_id: Plain)
    assert "trajbench/Plain-v0" not in stored
    assert family_role("trajbench/Plain-v0") == "unclassified"


def test_an_undeclared_order_gap_is_refused_by_name(monkeypatch):
    from trajbench.report import classes

    class Odd:
        order_gap = "memory"

    monkeypatch.setattr(classes, "_family_class", lambda env_id: Odd)
    with pytest.raises(
        ValueError, match=r"odd declares order_gap 'memory'; expected one of \['learnability'"
    ):
        order_gap("odd")


@pytest.mark.parametrize(
    ("mean", "difference", "verdict"),
    [
        (0.93, 0.99, "."),  # both at the accepted bounds: nominal
        (0.929, 0.95, ": the intervals are conditional on the trained models"),
        (0.95, 0.92, ": the intervals are conditional on the trained models"),
        (0.95, 0.991, ": the intervals are conservative at this design (wider than nominal)."),
    ],
)
def test_the_interval_note_says_what_the_simulated_coverage_shows(mean, difference, verdict):
    """Coverage below 0.93 (either interval) makes the intervals conditional on the trained
    models, above 0.99 conservative; the sentence gives the design and the coverage."""
    said = note(
        Design(n_seeds=3, n_levels=40, n_episodes=6),
        Variances(seed_sd=0.05, level_sd=0.125, cell_sd=0.0104),
        Coverage(mean=mean, difference=difference, replicates=200),
    )
    assert said.startswith(
        "At this run's design (3 seeds, 40 levels, 6 episodes per cell; seed sd 0.050, level sd "
        "0.125, cell sd 0.010, estimated from its records) a simulation of 200 runs covers the "
        f"mean {mean:.0%} and the paired difference {difference:.0%} of the time at nominal 95%"
    )
    assert said[said.index("nominal 95%") + len("nominal 95%") :].startswith(verdict)
    if "conditional" in verdict:
        assert said.endswith(
            "(they describe these trained seeds on the family's levels, not another training of "
            "the same conditions), and so are the smallest detectable differences."
        )

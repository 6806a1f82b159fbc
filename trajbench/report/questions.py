"""The questions a preset declares before it runs, and the paired comparisons that answer them.

A :class:`Question` names two sides, each the mean success of one or more conditions (their
labels, as :func:`trajbench.report.tables.labelled` writes them: ``bursty``, ``none/empty``,
``hashmap``, ``bursty [lstm]``), the families and the K values it is asked at. The report answers
exactly the declared questions, at every K of the sweep a question does not restrict, and never
chooses a condition after seeing the results (:func:`answer`). A side of several conditions lets a
2x2 design declare its main effects and its interaction as contrasts of cell means
(:func:`two_by_two`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pandas as pd

from trajbench.contexts.modes import BURSTY, NONE
from trajbench.records import (
    COMMON,
    COPY_BASELINES,
    DECOY,
    EVAL_INSTRUCTION,
    EVAL_SPLIT,
    MATCHED,
)

from .tables import Comparison, compare_sides


@dataclass(frozen=True)
class Question:
    """One declared comparison: ``scale * (mean of a's conditions - mean of b's conditions)``."""

    name: str
    """What it asks (``support``, ``order``, ``context``, ``copying``, ...): the reading's title."""
    a: tuple[str, ...]
    """Labels of the conditions averaged on the first side."""
    b: tuple[str, ...]
    """Labels of the conditions averaged on the second side."""
    families: tuple[str, ...] = ()
    """Env ids it is asked on; (): every family the group evaluates."""
    ks: tuple[int, ...] = ()
    """K values it is asked at; (): every K the group evaluates."""
    support: tuple[str, str] = ("same", "same")
    """Whose demonstrations each side is shown: ``same`` level or ``other`` levels."""
    b_format: str = COMMON
    """The format side ``b`` is evaluated in (``matched``: its own training format)."""
    scale: float = 1.0
    """Multiplies the difference (2 turns a 2x2's mean contrast into its interaction)."""
    text: str = ""
    """How the report writes the contrast ("" for ``a - b``)."""

    def __post_init__(self):
        if not self.a or not self.b:
            raise ValueError(f"question {self.name!r} needs conditions on both sides")

    @property
    def contrast(self) -> str:
        """The contrast as the report writes it."""
        return self.text or f"{_side(self.a)} - {_side(self.b)}"

    def to_dict(self) -> dict:
        return asdict(self)


def ask(name: str, a: str | tuple[str, ...], b: str | tuple[str, ...], **kw) -> Question:
    """A question whose sides may be given as one label each."""
    return Question(name, _tuple(a), _tuple(b), **kw)


def copying(label: str, copies: tuple[str, ...] = COPY_BASELINES, **kw) -> tuple[Question, ...]:
    """``label`` against each copy baseline: the floor a model must clear."""
    return tuple(ask("copying", label, copy, **kw) for copy in copies)


def about_itself(label: str, **kw) -> tuple[Question, ...]:
    """What one policy scored in both formats (an outside policy with an unordered
    ``context_mode``) answers about itself: support (same vs other levels), order (whole vs
    shuffled demonstrations, of the same and of other levels), and the copy baselines' floor."""
    return (
        ask("support", label, label, support=("same", "other"), **kw),
        ask("order (matched format)", label, label, b_format=MATCHED, **kw),
        ask("order", label, label, support=("other", "other"), b_format=MATCHED, **kw),
        *copying(label, **kw),
    )


def two_by_two(
    context: tuple[str, str] = (BURSTY, NONE),
    mission: tuple[str, str] = ("full", "empty"),
    **kw,
) -> tuple[Question, ...]:
    """The instruction ablation's 2x2 (context x mission): both main effects, the interaction
    ``(c1/m1 - c1/m2) - (c2/m1 - c2/m2)`` and the two simple effects a reader needs: whether
    demonstrations stand in for the mission (``c1/m2 - c2/m2``) and the grounding check
    (``c2/m1 - c2/m2``, a reading aid, never a gate)."""
    (c1, c2), (m1, m2) = context, mission
    cell = {(c, m): label_of(c, m) for c in context for m in mission}
    a1, a2, b1, b2 = cell[c1, m1], cell[c1, m2], cell[c2, m1], cell[c2, m2]
    return (
        Question(
            "context (main effect)",
            (a1, a2),
            (b1, b2),
            text=f"mean({a1}, {a2}) - mean({b1}, {b2})",
            **kw,
        ),
        Question(
            "mission (main effect)",
            (a1, b1),
            (a2, b2),
            text=f"mean({a1}, {b1}) - mean({a2}, {b2})",
            **kw,
        ),
        Question(
            "interaction (context x mission)",
            (a1, b2),
            (a2, b1),
            scale=2.0,
            text=f"({a1} - {a2}) - ({b1} - {b2})",
            **kw,
        ),
        ask("demonstrations without the mission", a2, b2, **kw),
        ask("grounding (reading aid)", b1, b2, **kw),
    )


#: The names :func:`two_by_two` gives its questions (the report shows them in the 2x2's section).
TWO_BY_TWO = (
    "context (main effect)",
    "mission (main effect)",
    "interaction (context x mission)",
    "demonstrations without the mission",
    "grounding (reading aid)",
)


def label_of(mode: str, instruction: str = "full") -> str:
    """The label of a trained condition (the training instruction shown unless ``full``)."""
    return mode if instruction == "full" else f"{mode}/{instruction}"


@dataclass(frozen=True)
class Unanswered:
    """A declared question the records could not answer at one (family, split, K), and why."""

    question: str
    contrast: str
    family: str
    eval_split: str
    k: int
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)


def answer(
    records: pd.DataFrame, questions: tuple[Question, ...]
) -> tuple[list[Comparison], list[Unanswered]]:
    """Every declared question at every (family, split, K) it is asked at, on one group's labelled
    records (demonstrations as the question says, the training instruction, no decoys).

    Returns the comparisons and the declared (question, family, split, K) the records lack a side
    of, so a report shows what it could not answer instead of dropping it.
    """
    rows = records[records[EVAL_INSTRUCTION] != DECOY]
    done, missing = [], []
    for (family, split), fr in rows.groupby(["family", EVAL_SPLIT], sort=False):
        for q in questions:
            if q.families and family not in q.families:
                continue
            for k in sorted(q.ks or fr["k"].unique()):
                at = fr[fr["k"] == k]
                c = compare_sides(
                    at,
                    q.name,
                    [_where(label, q.support[0], COMMON) for label in q.a],
                    [_where(label, q.support[1], q.b_format) for label in q.b],
                    scale=q.scale,
                    contrast=q.text,
                )
                if c is None:
                    reason = "a side has no records here"
                    missing.append(Unanswered(q.name, q.contrast, family, split, int(k), reason))
                else:
                    done.append(c)
    return done, missing


def _where(label: str, support: str, fmt: str) -> dict:
    return {"label": label, "support": support, "format": fmt}


def _tuple(x: str | tuple[str, ...]) -> tuple[str, ...]:
    return (x,) if isinstance(x, str) else tuple(x)


def _side(labels: tuple[str, ...]) -> str:
    return labels[0] if len(labels) == 1 else f"mean({', '.join(labels)})"

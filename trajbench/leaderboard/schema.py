"""The submission schema: pydantic models, the single definition of a leaderboard entry.

``schema_text()`` exports :class:`Submission` as the JSON Schema in ``leaderboard/schema.json``.
The models check types and ranges; what they cannot see (record grids, level splits, recomputed
aggregates) is checked by :func:`trajbench.leaderboard.validate.check`.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from trajbench.suite import SUITE, SUITE_VERSIONS

#: Metrics aggregated per condition (episode-averaged per (seed, level) first).
METRICS = ("success", "normalized_return")
#: What an aggregate is computed over: one (family, held-out split, k, support).
AGG_KEYS = ("family", "eval_split", "k", "support")
#: What one record is: one (seed, level) cell of an aggregate.
RECORD_KEYS = (*AGG_KEYS, "seed", "level")
#: Labels used for reference policies, which have no training condition.
NO_VALUE = ("", "-", None)


class _Strict(BaseModel):
    # strict: no "0.5" -> 0.5 coercion; allow_inf_nan=False: a NaN is an error, not a score.
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        allow_inf_nan=False,
        frozen=True,
        use_attribute_docstrings=True,
    )


Text = Annotated[str, Field(min_length=1)]
Unit = Annotated[float, Field(ge=0.0, le=1.0)]


class Model(_Strict):
    """The policy that was evaluated."""

    name: Text
    """Human-readable model name, e.g. "trajbench transformer"."""
    policy: Text
    """Policy kind: transformer, no-context, random, hashmap, expert, or your own."""
    parameters: int = Field(ge=0)
    """Number of trained parameters (0 for reference policies)."""


class Training(_Strict):
    """The training condition; reference policies use "-" for what does not apply."""

    train_context: Text
    """Context mode of the training sequences: bursty, trajectories, shuffled, isolated, none."""
    instruction: Text
    """Instruction mode: full, empty, template, wrong."""
    p_bursty: Unit | None
    """Probability that a training sequence is bursty (null where it does not apply)."""


class Bootstrap(_Strict):
    """Settings of the stratified bootstrap behind every confidence interval."""

    reps: int = Field(ge=1000, le=100_000)
    """Bootstrap replicates."""
    confidence: Literal[0.95]
    """Confidence level of the intervals."""
    seed: int = Field(ge=0)
    """Bootstrap seed; with reps it makes every interval reproducible."""


class _Cell(_Strict):
    """What records and aggregates are keyed by (``AGG_KEYS``)."""

    family: Text
    """Environment id, e.g. "trajbench/DarkRoom-v0"."""
    eval_split: Literal["test_levels", "test_families"]
    """What is held out: levels of a training family, or a whole family."""
    k: int = Field(ge=0)
    """Demonstrations in the context."""
    support: Literal["same", "other"]
    """Demonstrations from the level itself (same) or from other levels (other)."""


class Record(_Cell):
    """One (seed, level) cell: the policy's episodes on one level, averaged."""

    seed: int
    """Training seed."""
    level: int = Field(ge=0)
    """Level of the family."""
    n_episodes: int = Field(ge=1)
    """Episodes averaged in this cell."""
    success: Unit
    """Mean success over the episodes."""
    normalized_return: float
    """Mean return over the episodes divided by the expert's mean return on the level."""


class Aggregate(_Cell):
    """IQM over (seeds x levels) with 95% stratified-bootstrap CIs for one (family, split, k, support)."""

    success_iqm: Unit
    success_ci_low: Unit
    success_ci_high: Unit
    normalized_return_iqm: float
    normalized_return_ci_low: float
    normalized_return_ci_high: float
    n_seeds: int = Field(ge=1)
    n_levels: int = Field(ge=1)
    n_episodes: int = Field(ge=1)
    """Episodes behind the aggregate (sum over its records)."""


class Submission(_Strict):
    """One leaderboard entry: one policy under one training condition, on one suite version.

    Beyond this schema, ``trajbench leaderboard validate`` checks that the name is unique and
    matches the file name, every family belongs to the suite version and every level to its
    family's test split, records form complete (seed x level) grids without duplicates, their
    seeds are ``seeds``, and every aggregate equals the one recomputed from the records (to 1e-9)
    with the recorded bootstrap settings.
    """

    schema_version: Literal[1]
    """Version of this schema."""
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,119}$")
    """Unique id of the entry; the file is <name>.json."""
    authors: list[Text] = Field(min_length=1)
    """Who submitted it."""
    model: Model
    suite: str
    """Benchmark suite measured on (trajbench)."""
    suite_version: str = Field(json_schema_extra={"enum": sorted(SUITE_VERSIONS)})
    """Suite version: pins the families and their level splits."""
    training: Training
    seeds: list[int] = Field(min_length=1)
    """Training seeds."""
    trajbench_version: Text
    git_commit: Text
    """Commit of trajbench the run used."""
    hardware: Text
    """What the run ran on."""
    wall_time_s: float = Field(ge=0.0)
    """Wall time of the whole run the entry comes from, in seconds."""
    date: Text
    """ISO 8601 date of the run."""
    command: Text
    """The command that produced the run."""
    preset: str | None
    """Preset of trajbench run, if any."""
    config: dict[str, Any]
    """Configuration of the run, as written in results.json."""
    bootstrap: Bootstrap
    records: list[Record] = Field(min_length=1)
    aggregates: list[Aggregate] = Field(min_length=1)

    @field_validator("suite")
    @classmethod
    def _known_suite(cls, value: str) -> str:
        if value != SUITE:
            raise ValueError(f"unknown suite {value!r} (accepted: {SUITE!r})")
        return value

    @field_validator("suite_version")
    @classmethod
    def _known_version(cls, value: str) -> str:
        if value not in SUITE_VERSIONS:
            accepted = ", ".join(repr(v) for v in sorted(SUITE_VERSIONS))
            raise ValueError(f"unknown suite version {value!r} (accepted: {accepted})")
        return value

    @field_validator("date")
    @classmethod
    def _iso_date(cls, value: str) -> str:
        try:
            datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"not an ISO 8601 date: {value!r}") from None
        return value


def schema_text() -> str:
    """The JSON Schema of :class:`Submission`, as written to ``leaderboard/schema.json``.

    Example:
        >>> json.loads(schema_text())["title"]
        'Submission'
    """
    schema = Submission.model_json_schema()
    return json.dumps(schema, indent=2, allow_nan=False) + "\n"


def agg_key(item: Aggregate | dict) -> tuple:
    """The ``AGG_KEYS`` values of an aggregate (model or dict).

    Example:
        >>> agg_key({"family": "f", "eval_split": "test_levels", "k": 4, "support": "same"})
        ('f', 'test_levels', 4, 'same')
    """
    get = item.get if isinstance(item, dict) else lambda k: getattr(item, k)
    return tuple(get(k) for k in AGG_KEYS)


def key_text(key: tuple) -> str:
    """``family=..., eval_split=..., k=..., support=...`` for messages."""
    return ", ".join(f"{name}={value}" for name, value in zip(AGG_KEYS, key, strict=True))

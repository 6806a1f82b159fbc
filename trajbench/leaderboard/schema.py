"""The submission schema: pydantic models, the single definition of a leaderboard entry.

Two schema versions are read. **Version 2** (:class:`Submission`, suite version 2 on) keys every
record and aggregate by (family, eval_split, k, support, format, eval_instruction); its
aggregates hold the mean success over (seed, level) cells with a two-level bootstrap CI (seeds and
levels), the normalized-return IQM, and the decoy success of decoy-mission evaluations.
**Version 1** (:class:`SubmissionV1`) is how suite-version-1 entries were written: keyed by
(family, eval_split, k, support), success IQM with CIs over seeds only. Its files are archived
and read unchanged (their ``bootstrap`` has no ``method``; the default, ``"iqm, seeds"``, is what
they used).

``schema_text()`` exports both as the JSON Schema in ``leaderboard/schema.json`` and
:func:`parse` reads either. The models check types and ranges; what they cannot see (record grids,
level splits, recomputed aggregates) is checked by :func:`trajbench.leaderboard.validate.check`.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    field_validator,
    model_serializer,
    model_validator,
)

from trajbench.records import (
    COMMON,
    DECOY,
    DECOY_SUCCESS,
    EVAL_INSTRUCTION,
    EVAL_SPLIT,
    NORMALIZED_RETURN,
    Format,
    Split,
)
from trajbench.suite import SUITE, SUITE_VERSIONS

#: Metrics aggregated per condition (episode-averaged per (seed, level) first).
METRICS = ("success", NORMALIZED_RETURN)
#: What an aggregate is computed over (schema 2).
AGG_KEYS = ("family", EVAL_SPLIT, "k", "support", "format", EVAL_INSTRUCTION)
#: What one record is: one (seed, level) cell of an aggregate (schema 2).
RECORD_KEYS = (*AGG_KEYS, "seed", "level")
#: The keys of schema 1 (suite version 1: no formats, no instruction override).
AGG_KEYS_V1 = AGG_KEYS[:4]
RECORD_KEYS_V1 = (*AGG_KEYS_V1, "seed", "level")
#: Labels used for reference policies, which have no training condition.
NO_VALUE = ("", "-", None)
#: How aggregates are computed: schema 2, and schema 1 (suite version 1).
MEAN, IQM = "mean, seeds and levels", "iqm, seeds"
#: Suite versions measured with schema 1; every other version uses ``SCHEMA_VERSION``.
SUITES_OF_SCHEMA_1 = ("1",)
#: The schema new entries are written with.
SCHEMA_VERSION = 2


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
    """Policy kind: transformer, no-context, random, hashmap, replay, expert, or the import path
    (package.module:factory) of a policy trajbench did not train."""
    parameters: int = Field(ge=0)
    """Number of trained parameters (0 for reference policies and where trajbench cannot count
    them)."""
    version: Text | None = None
    """The policy's version: trajbench's for its own policies, else the __version__ of the
    policy's package ("unknown" if it has none); null in entries that did not record it."""

    @model_serializer(mode="wrap")
    def _without_absent_version(self, handler) -> dict[str, Any]:
        # entries written before versions were recorded keep their bytes
        return {k: v for k, v in handler(self).items() if k != "version" or v is not None}


class Training(_Strict):
    """The training condition; reference policies use "-" for what does not apply."""

    train_context: Text
    """Context mode of the training sequences: bursty, trajectories, shuffled, isolated, none."""
    instruction: Text
    """Instruction mode trained with: full, empty, template, wrong."""
    p_bursty: Unit | None
    """Probability that a training sequence is bursty (null where it does not apply)."""


class Bootstrap(_Strict):
    """How the aggregates are computed, and the bootstrap behind every confidence interval."""

    method: Literal["mean, seeds and levels", "iqm, seeds"] = IQM
    """"mean, seeds and levels" (schema 2): mean success per aggregate, CIs from resampling
    seeds and levels (normalized return: IQM). "iqm, seeds" (schema 1, the default): IQM, CIs
    from resampling seeds within each level."""
    reps: int = Field(ge=1000, le=100_000)
    """Bootstrap replicates."""
    confidence: Literal[0.95]
    """Confidence level of the intervals."""
    seed: int = Field(ge=0)
    """Bootstrap seed; with reps it makes every interval reproducible."""


# -- records and aggregates ----------------------------------------------------------------------
class _CellV1(_Strict):
    """What records and aggregates of schema 1 are keyed by (``AGG_KEYS_V1``)."""

    family: Text
    """Environment id, e.g. "trajbench/DarkRoom-v0"."""
    eval_split: Split
    """What is held out: levels of a training family, or a whole family."""
    k: int = Field(ge=0)
    """Demonstrations in the context."""
    support: Literal["same", "other"]
    """Demonstrations from the level itself (same) or from other levels (other)."""


class _Cell(_CellV1):
    """What records and aggregates are keyed by (``AGG_KEYS``)."""

    format: Format
    """How the demonstrations were shown: common (whole demonstrations in order, every policy)
    or matched (a model trained on an unordered mode, in its own format)."""
    eval_instruction: Text
    """What the query's mission said: the training instruction, or "decoy" (a mission naming
    another object of the level; the demonstrations go to the true goal)."""

    @model_serializer(mode="wrap")
    def _without_absent_decoys(self, handler) -> dict[str, Any]:
        # decoy fields exist only where a decoy was shown: keep the other lines short
        out = handler(self)
        return {k: v for k, v in out.items() if not (k.startswith(DECOY_SUCCESS) and v is None)}


class Record(_Cell):
    """One (seed, level) cell: the policy's episodes on one level, averaged."""

    seed: int
    """Training seed."""
    level: int = Field(ge=0)
    """Level of the family."""
    eval_seed: int
    """Evaluation seed (start states, demonstration choice, shuffles, decoys)."""
    n_episodes: int = Field(ge=1)
    """Episodes averaged in this cell."""
    success: Unit
    """Mean success over the episodes (reached the demonstrations' goal)."""
    normalized_return: float
    """Mean return over the episodes divided by the expert's mean return on the level."""
    decoy_success: Unit | None = None
    """Where the query named a decoy: mean over the episodes of reaching the decoy's object."""

    @model_validator(mode="after")
    def _decoy_only_where_shown(self) -> Record:
        if self.decoy_success is not None and self.eval_instruction != DECOY:
            raise ValueError(f"decoy_success needs eval_instruction {DECOY!r}")
        return self


class Aggregate(_Cell):
    """Mean success over (seeds x levels) with a 95% two-level bootstrap CI, normalized-return
    IQM with its CI, and decoy success where a decoy was shown."""

    STATISTIC: ClassVar[str] = "mean"
    success_mean: Unit
    success_ci_low: Unit
    success_ci_high: Unit
    normalized_return_iqm: float
    normalized_return_ci_low: float
    normalized_return_ci_high: float
    decoy_success_mean: Unit | None = None
    decoy_success_ci_low: Unit | None = None
    decoy_success_ci_high: Unit | None = None
    n_seeds: int = Field(ge=1)
    n_levels: int = Field(ge=1)
    n_episodes: int = Field(ge=1)
    """Episodes behind the aggregate (sum over its records)."""

    @property
    def success(self) -> float:
        """The ranked statistic: mean success."""
        return self.success_mean

    @model_validator(mode="after")
    def _decoy_all_or_none(self) -> Aggregate:
        given = [
            getattr(self, f"{DECOY_SUCCESS}_{s}") is not None for s in ("mean", "ci_low", "ci_high")
        ]
        if any(given) and not all(given):
            raise ValueError(f"{DECOY_SUCCESS}_mean, _ci_low and _ci_high go together")
        if any(given) and self.eval_instruction != DECOY:
            raise ValueError(f"{DECOY_SUCCESS}_mean needs eval_instruction {DECOY!r}")
        return self


# -- schema 1 (suite version 1, archived) -------------------------------------------------------
class RecordV1(_CellV1):
    """Schema 1: one (seed, level) cell, averaged over its episodes."""

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


class AggregateV1(_CellV1):
    """Schema 1: IQM over (seeds x levels) with 95% CIs that resample seeds within each level."""

    STATISTIC: ClassVar[str] = "IQM"
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

    @property
    def success(self) -> float:
        """The statistic suite version 1 ranked by: success IQM."""
        return self.success_iqm


# -- entries -------------------------------------------------------------------------------------
class _Entry(_Strict):
    """What every schema version of an entry holds besides its records and aggregates."""

    schema_version: int
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

    #: This schema's version, the keys of its records and aggregates, how they are computed.
    VERSION: ClassVar[int]
    AGG_KEYS: ClassVar[tuple[str, ...]]
    RECORD_KEYS: ClassVar[tuple[str, ...]]
    METHOD: ClassVar[str]

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
        if schema_of(value) != cls.VERSION:
            raise ValueError(
                f"entries of suite version {value} are written with schema {schema_of(value)}, "
                f"not {cls.VERSION}"
            )
        return value

    @field_validator("date")
    @classmethod
    def _iso_date(cls, value: str) -> str:
        try:
            datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"not an ISO 8601 date: {value!r}") from None
        return value

    @field_validator("bootstrap")
    @classmethod
    def _method_of_the_schema(cls, value: Bootstrap) -> Bootstrap:
        if value.method != cls.METHOD:
            raise ValueError(
                f"method must be {cls.METHOD!r} in schema {cls.VERSION}, got {value.method!r}"
            )
        return value

    def headline(self, item: Record | Aggregate | RecordV1 | AggregateV1) -> tuple | None:
        """``(family, eval_split, k, support, format)`` of a record or aggregate measured with
        the mission the entry trained with; None for another mission (a decoy)."""
        cell = (item.family, item.eval_split, item.k, item.support)
        fmt = getattr(item, "format", COMMON)  # schema 1 showed whole demonstrations only
        shown = getattr(item, EVAL_INSTRUCTION, self.training.instruction)
        return (*cell, fmt) if shown == self.training.instruction else None


class EvalStore(_Strict):
    """An evaluation store of the run: how to collect it again, and what it must hold."""

    eval_split: Split
    """The held-out split whose evaluation reads it."""
    spec: dict[str, Any]
    """Its collection (the preset's DataSpec): trajbench run writes it to data/<name>."""
    content_hash: Text
    """Content hash of the store the run collected."""


class Reproduction(_Strict):
    """What re-runs the entry's evaluation (``trajbench leaderboard verify``), with ``git_commit``
    and the evaluation config in ``config``."""

    group: Text | None
    """The preset group (in config.groups) whose models and evaluation the entry holds; null for
    an entry of ``trajbench evaluate``, whose config is its evaluation config."""
    data: list[EvalStore] = Field(min_length=1)
    models: dict[str, Text]
    """Training seed -> its model directory, relative to the run directory (none for reference
    policies)."""


class Verification(_Strict):
    """A re-run of part of the entry's evaluation that gave the submitted records."""

    date: Text
    """ISO 8601 date of the re-run."""
    git_commit: Text
    """Commit of trajbench that re-ran it."""
    cells: int = Field(ge=1)
    """Records sampled; the evaluations that produced them were re-run whole."""
    records: int = Field(ge=1)
    """Records re-run and found equal to the submitted ones."""
    seed: int = Field(ge=0)
    """Seed of the sample."""
    tolerance: float = Field(ge=0.0)
    """Largest difference accepted (0: exact)."""


class Submission(_Entry):
    """One leaderboard entry: one policy under one training condition, on one suite version.

    Beyond this schema, ``trajbench leaderboard validate`` checks that the name is unique and
    matches the file name, every family belongs to the suite version and every level to its
    family's test split, records form complete (seed x level) grids without duplicates, their
    seeds are ``seeds``, and every aggregate equals the one recomputed from the records (to 1e-9)
    with the recorded bootstrap settings.
    """

    VERSION: ClassVar[int] = 2
    AGG_KEYS: ClassVar[tuple[str, ...]] = AGG_KEYS
    RECORD_KEYS: ClassVar[tuple[str, ...]] = RECORD_KEYS
    METHOD: ClassVar[str] = MEAN
    schema_version: Literal[2]
    """Version of this schema."""
    reproduce: Reproduction | None = None
    """How to re-run the evaluation (entries of trajbench run); null: it cannot be re-checked."""
    verified: Verification | None = None
    """Set by ``trajbench leaderboard verify --write`` when a re-run gave the same records."""
    records: list[Record] = Field(min_length=1)
    aggregates: list[Aggregate] = Field(min_length=1)

    @model_serializer(mode="wrap")
    def _without_absent_checks(self, handler) -> dict[str, Any]:
        # entries written before these fields existed keep their bytes
        out = handler(self)
        return {k: v for k, v in out.items() if k not in _OPTIONAL or v is not None}


_OPTIONAL = ("reproduce", "verified")


class SubmissionV1(_Entry):
    """A leaderboard entry of schema 1 (suite version 1): read, validated and archived."""

    VERSION: ClassVar[int] = 1
    AGG_KEYS: ClassVar[tuple[str, ...]] = AGG_KEYS_V1
    RECORD_KEYS: ClassVar[tuple[str, ...]] = RECORD_KEYS_V1
    METHOD: ClassVar[str] = IQM
    schema_version: Literal[1]
    """Version of this schema."""
    records: list[RecordV1] = Field(min_length=1)
    aggregates: list[AggregateV1] = Field(min_length=1)


#: An entry of any schema version.
Entry = Submission | SubmissionV1
#: schema_version -> the model that reads it.
MODELS: dict[int, type[Submission] | type[SubmissionV1]] = {2: Submission, 1: SubmissionV1}


def schema_of(suite_version: str) -> int:
    """The schema version entries of ``suite_version`` are written with.

    Example:
        >>> schema_of("1"), schema_of("2")
        (1, 2)
    """
    return 1 if suite_version in SUITES_OF_SCHEMA_1 else SCHEMA_VERSION


def parse(obj: Any) -> Entry:
    """Read an entry with the model of its ``schema_version`` (the newest when it has none).

    Raises:
        pydantic.ValidationError: ``obj`` is not a valid entry.
        ValueError: its schema version is unknown.
    """
    version = obj.get("schema_version") if isinstance(obj, dict) else None
    if isinstance(obj, dict) and "schema_version" in obj and version not in MODELS:
        accepted = ", ".join(map(str, sorted(MODELS)))
        raise ValueError(
            f"schema_version: unknown schema version {version!r} ({accepted} accepted)"
        )
    return MODELS.get(version, Submission).model_validate(obj)


def schema_text() -> str:
    """The JSON Schema of an entry (either schema version), as written to ``leaderboard/schema.json``.

    Example:
        >>> json.loads(schema_text())["title"]
        'Submission'
    """
    either = Annotated[Submission | SubmissionV1, Field(discriminator="schema_version")]
    schema = {
        "title": "Submission",
        "description": "A trajbench leaderboard entry: schema 2 (suite version 2 on) or "
        "schema 1 (suite version 1, archived).",
        **TypeAdapter(either).json_schema(),
    }
    return json.dumps(schema, indent=2, allow_nan=False) + "\n"


def agg_key(item: Aggregate | AggregateV1 | dict, keys: tuple[str, ...] = AGG_KEYS) -> tuple:
    """The ``keys`` values of an aggregate (model or dict).

    Example:
        >>> agg_key({"family": "f", "eval_split": "test_levels", "k": 4, "support": "same"},
        ...         AGG_KEYS_V1)
        ('f', 'test_levels', 4, 'same')
    """
    get = item.get if isinstance(item, dict) else lambda k: getattr(item, k)
    return tuple(get(k) for k in keys)


def key_text(key: tuple, keys: tuple[str, ...] = AGG_KEYS) -> str:
    """``family=..., eval_split=..., k=..., support=..., ...`` for messages."""
    return ", ".join(f"{name}={value}" for name, value in zip(keys, key, strict=True))

"""The leaderboard: submissions of ``trajbench run`` and ``trajbench evaluate`` results,
validated and ranked.

A submission is one JSON file ``leaderboard/submissions/<name>.json`` holding one policy under
one training condition on one suite version, with its per-(seed, level) records and the
aggregates computed from them (schema 2: mean success with CIs over seeds and levels, per
format and evaluation mission; suite-version-1 entries keep schema 1 and are archived). ``trajbench leaderboard`` (:mod:`.cli`) submits, validates and
builds it:

=========== ==================================================================================
schema      the pydantic models of a submission, both schema versions (``schema.json``)
validate    reading files, checking families, levels, grids and recomputed aggregates
sources     reading a run directory or an evaluate output (results.json / evaluation.json)
submit      a run directory -> one submission per trained condition; an evaluate output -> one
ranking     which entries share a table (suite version, split, family, level set), their ranks,
            copy baselines and saturation
render      the generated README.md, index.html (with an SVG plot) and schema.json
cli         ``main(argv)``: the submit, validate and build actions
=========== ==================================================================================

Example:
    trajbench run --preset smoke --out runs/smoke
    trajbench leaderboard submit runs/smoke --name smoke-2cpu --authors "Ada Lovelace"
    trajbench leaderboard validate
    trajbench leaderboard build
"""

from .ranking import Row, Table, tables
from .render import render_html, render_markdown
from .schema import (
    Aggregate,
    AggregateV1,
    Bootstrap,
    Entry,
    Model,
    Record,
    RecordV1,
    Submission,
    SubmissionV1,
    Training,
    parse,
    schema_text,
)
from .submit import dumps, make_submissions, write_submissions
from .validate import check, compute_aggregates, load, submission_files, validate_files

__all__ = [
    "Aggregate",
    "AggregateV1",
    "Bootstrap",
    "Entry",
    "Model",
    "Record",
    "RecordV1",
    "Row",
    "Submission",
    "SubmissionV1",
    "Table",
    "Training",
    "check",
    "compute_aggregates",
    "dumps",
    "load",
    "make_submissions",
    "parse",
    "render_html",
    "render_markdown",
    "schema_text",
    "submission_files",
    "tables",
    "validate_files",
    "write_submissions",
]
